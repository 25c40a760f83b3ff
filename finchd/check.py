"""`finchd check`: a preflight of what rootless containers need on this machine.

Each check prints one line with its status, and a failed check prints the
command that fixes it. The exit status is 1 when containers cannot run.
"""

from __future__ import annotations

import enum
import os
import platform
import pwd
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from finchd.config import Settings
from finchd.engine.environment import (
    CNI_PLUGIN_DIR,
    PACKAGED_ENGINE_DIR,
    UNKNOWN_VERSION,
    ExecutableNotFoundError,
    base_path,
    engine_versions,
    resolve_executable,
)
from finchd.engine.supervisor import engine_running
from finchd.paths import Paths

# A user namespace needs 65536 ids to map every uid and gid an image may use.
MIN_SUBORDINATE_IDS = 65536
CNI_PLUGINS = ("bridge", "portmap", "host-local", "loopback", "firewall", "tuning")
# Controllers behind Docker's memory, CPU and pids limits. A limit on a
# controller that is not delegated to the user is not enforced.
LIMIT_CONTROLLERS = ("cpu", "memory", "pids")


class Status(enum.Enum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Result:
    """The outcome of one check, with the command that fixes a failure."""

    status: Status
    name: str
    message: str
    fix: str = ""


def ok(name: str, message: str) -> Result:
    return Result(Status.OK, name, message)


def warning(name: str, message: str, fix: str = "") -> Result:
    return Result(Status.WARNING, name, message, fix)


def error(name: str, message: str, fix: str) -> Result:
    return Result(Status.ERROR, name, message, fix)


def user_name() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def check_not_root() -> Iterator[Result]:
    if os.getuid() == 0:
        yield error(
            "user",
            "finchd runs the engine rootless, but this is root",
            "run finchd as a plain user, for example `runuser -u USER -- finchd check`",
        )
    else:
        yield ok("user", f"{user_name()} (uid {os.getuid()})")


def check_id_mapper(name: str) -> Result:
    path = Path("/usr/bin") / name
    fix = "sudo apt-get install uidmap"
    if not path.exists():
        return error(name, f"{path} is missing", fix)
    mode = path.stat().st_mode
    try:
        has_capabilities = bool(os.getxattr(path, "security.capability"))
    except OSError:
        has_capabilities = False
    if mode & stat.S_ISUID and path.stat().st_uid == 0:
        return ok(name, f"{path} is setuid root")
    if has_capabilities:
        return ok(name, f"{path} has file capabilities")
    return error(
        name,
        f"{path} is neither setuid root nor has file capabilities, so it cannot map ids",
        f"sudo chmod u+s {path}",
    )


def check_id_mappers() -> Iterator[Result]:
    yield check_id_mapper("newuidmap")
    yield check_id_mapper("newgidmap")


def subordinate_ids(file: Path, name: str, number: int) -> int:
    """Return how many subordinate ids `file` grants to the user `name` or `number`."""
    total = 0
    try:
        lines = file.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (name, str(number)):
            continue
        try:
            total += int(parts[2])
        except ValueError:
            continue
    return total


def check_subordinate_ids() -> Iterator[Result]:
    name = user_name()
    fix = (
        f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}"
    )
    for file, number in ((Path("/etc/subuid"), os.getuid()), (Path("/etc/subgid"), os.getgid())):
        count = subordinate_ids(file, name, number)
        if count == 0:
            yield error(file.name, f"{file} has no range for {name}", fix)
        elif count < MIN_SUBORDINATE_IDS:
            yield warning(
                file.name,
                f"{file} grants {name} {count} ids, fewer than {MIN_SUBORDINATE_IDS}; "
                "images with high uids or gids fail to unpack",
                fix,
            )
        else:
            yield ok(file.name, f"{count} ids for {name}")


def check_runtime_dir() -> Iterator[Result]:
    expected = f"/run/user/{os.getuid()}"
    value = os.environ.get("XDG_RUNTIME_DIR")
    if not value:
        yield error(
            "XDG_RUNTIME_DIR",
            "XDG_RUNTIME_DIR is not set",
            f"export XDG_RUNTIME_DIR={expected}",
        )
        return
    path = Path(value)
    create = f"sudo install -d -o {user_name()} -m 0700 {path}"
    try:
        info = path.stat()
    except FileNotFoundError:
        yield error("XDG_RUNTIME_DIR", f"{path} does not exist", create)
        return
    if info.st_uid != os.getuid():
        try:
            owner = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            owner = f"uid {info.st_uid}"
        if str(path) == expected:
            fix = f"sudo chown {user_name()} {path} && chmod 0700 {path}"
        else:
            fix = (
                f"sudo install -d -o {user_name()} -m 0700 {expected} && "
                f"export XDG_RUNTIME_DIR={expected}"
            )
        yield error("XDG_RUNTIME_DIR", f"{path} is owned by {owner}, not {user_name()}", fix)
    elif stat.S_IMODE(info.st_mode) & 0o077:
        yield warning(
            "XDG_RUNTIME_DIR",
            f"{path} has mode {stat.S_IMODE(info.st_mode):04o}, so other users can reach "
            "the engine's sockets",
            f"chmod 0700 {path}",
        )
    else:
        yield ok("XDG_RUNTIME_DIR", f"{path}, owned by {user_name()}, mode 0700")


def check_tun() -> Iterator[Result]:
    path = "/dev/net/tun"
    try:
        descriptor = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        yield error("tun", f"{path} is missing; slirp4netns needs it", "sudo modprobe tun")
        return
    except PermissionError:
        yield error(
            "tun",
            f"{path} cannot be opened by {user_name()}; slirp4netns needs it",
            f"sudo chmod 0666 {path}",
        )
        return
    os.close(descriptor)
    yield ok("tun", f"{path} opens for reading and writing")


def read_sysctl(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def check_user_namespaces() -> Iterator[Result]:
    maximum = read_sysctl("/proc/sys/user/max_user_namespaces")
    if maximum == "0":
        yield error(
            "user namespaces",
            "user.max_user_namespaces is 0",
            "sudo sysctl -w user.max_user_namespaces=28633",
        )
        return
    if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        yield error(
            "user namespaces",
            "kernel.unprivileged_userns_clone is 0",
            "sudo sysctl -w kernel.unprivileged_userns_clone=1",
        )
        return
    try:
        completed = subprocess.run(
            ["unshare", "--user", "--map-root-user", "true"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        yield warning("user namespaces", f"could not run unshare: {exc}", "sudo apt-get install util-linux")
        return
    if completed.returncode != 0:
        fix = "sudo sysctl -w user.max_user_namespaces=28633"
        if read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
            fix = "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
        yield error(
            "user namespaces",
            f"`unshare --user --map-root-user true` failed: {completed.stderr.strip()}",
            fix,
        )
        return
    yield ok("user namespaces", f"unprivileged user namespaces work (max {maximum})")


def version_tuple(version: str) -> tuple[int, ...]:
    numbers = []
    for part in version.lstrip("v").split("+")[0].split("-")[0].split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


# Oldest versions that finchd's engine layout works with: rootlesskit 2.0 added
# --detach-netns, and nerdctl 2.0 requires containerd 1.7 or later.
MIN_VERSIONS = {"rootlesskit": (2, 0), "containerd": (1, 7), "nerdctl": (2, 0)}


def install_fix() -> str:
    """Return the command that installs missing engine executables."""
    if os.path.isdir(PACKAGED_ENGINE_DIR):
        return "sudo apt-get install --reinstall finchd (or: sudo dnf reinstall finchd)"
    return "sudo scripts/install-deps"


def check_executables(settings: Settings) -> Iterator[Result]:
    fix = install_fix()
    versions = engine_versions(settings)
    required = {
        "rootlesskit": settings.rootlesskit,
        "containerd": settings.containerd,
        "containerd-shim-runc-v2": "containerd-shim-runc-v2",
        "buildkitd": settings.buildkitd,
        "nerdctl": settings.nerdctl,
        "runc": "runc",
        "slirp4netns": "slirp4netns",
        "nsenter": "nsenter",
        "iptables": "iptables",
    }
    for component, name in required.items():
        try:
            path = resolve_executable(settings, name)
        except ExecutableNotFoundError:
            yield error(component, f"{name} not found on PATH {base_path(settings)}", fix)
            continue
        version = versions.get(component)
        if version is None:
            yield ok(component, path)
            continue
        minimum = MIN_VERSIONS.get(component)
        if version == UNKNOWN_VERSION:
            yield warning(component, f"{path}: version unknown", fix)
        elif minimum and version_tuple(version) < minimum:
            required_version = ".".join(str(number) for number in minimum)
            yield error(
                component,
                f"{path} is version {version}, but finchd requires {required_version} or later",
                fix,
            )
        else:
            yield ok(component, f"{path} version {version}")
    missing = [name for name in CNI_PLUGINS if not (Path(CNI_PLUGIN_DIR) / name).exists()]
    if missing:
        yield error(
            "CNI plugins",
            f"{', '.join(missing)} missing from {CNI_PLUGIN_DIR}",
            "sudo apt-get install containernetworking-plugins",
        )
    else:
        yield ok("CNI plugins", f"{', '.join(CNI_PLUGINS)} in {CNI_PLUGIN_DIR}")


def check_cgroups() -> Iterator[Result]:
    root = Path("/sys/fs/cgroup")
    if not (root / "cgroup.controllers").exists():
        yield warning(
            "cgroups",
            "cgroup v1: rootless containers run without cgroups, so memory, CPU and pids "
            "limits are not enforced and container stats are unavailable",
            "boot with systemd.unified_cgroup_hierarchy=1 to use cgroup v2",
        )
        return
    uid = os.getuid()
    own = root / f"user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers"
    try:
        delegated = own.read_text().split()
    except OSError:
        delegated = []
    missing = [name for name in LIMIT_CONTROLLERS if name not in delegated]
    if missing:
        yield warning(
            "cgroups",
            f"cgroup v2, but {', '.join(missing)} not delegated to {user_name()}; "
            "limits on them are not enforced",
            "delegate them with a systemd drop-in: "
            "https://rootlesscontaine.rs/getting-started/common/cgroup2/",
        )
    else:
        yield ok("cgroups", f"cgroup v2 with {' '.join(delegated)} delegated")


def check_kernel() -> Iterator[Result]:
    release = platform.release()
    # Rootless overlayfs, which the overlayfs snapshotter uses, came in Linux 5.11.
    if version_tuple(release) < (5, 11):
        yield warning(
            "kernel",
            f"Linux {release} is older than 5.11 and cannot mount overlayfs rootless",
            "upgrade the kernel",
        )
    else:
        yield ok("kernel", f"Linux {release}")


def check_engine(paths: Paths) -> Iterator[Result]:
    if engine_running(paths):
        yield ok("engine", f"containerd accepts connections on {paths.containerd_socket}")
    else:
        yield warning(
            "engine",
            "not running; `finchd serve` starts it on demand",
            "finchd engine",
        )


def all_results(settings: Settings, paths: Paths) -> Iterator[Result]:
    checks: list[Callable[[], Iterator[Result]]] = [
        check_not_root,
        check_id_mappers,
        check_subordinate_ids,
        check_runtime_dir,
        check_tun,
        check_user_namespaces,
        lambda: check_executables(settings),
        check_kernel,
        check_cgroups,
        lambda: check_engine(paths),
    ]
    for check in checks:
        yield from check()


def run_check(settings: Settings, paths: Paths) -> int:
    """Print each check's result and return 1 if containers cannot run, else 0."""
    errors = 0
    for result in all_results(settings, paths):
        print(f"{result.status.value:<8}{result.name}: {result.message}")
        if result.status is not Status.OK and result.fix:
            print(f"{'':<8}fix: {result.fix}")
        if result.status is Status.ERROR:
            errors += 1
    if errors:
        print(f"\n{errors} problem(s) prevent rootless containers from running.")
        return 1
    print("\nRootless containers can run.")
    return 0
