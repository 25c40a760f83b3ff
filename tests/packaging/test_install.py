"""Install the deb as root and use it as a fresh plain user under `systemd --user`.

The tests run in file order and share one machine state: install, enable
finch.socket and run a container, `finchd check`, upgrade, purge. Each test
fails at once when a step before it failed. The user (FINCHD_PACKAGE_TEST_USER,
default finchpkg) is deleted and created again at the start. The package is
purged at the end, whatever happened, because /usr/bin/finchd is visible to
every user of the machine.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import DOCKER_CLI
from tests.fixtures.images import build_busybox_image, write_image_archive
from tests.fixtures.user_session import UserSession, kill_processes, subordinate_range

pytestmark = pytest.mark.timeout(900)

PACKAGE_USER = os.environ.get("FINCHD_PACKAGE_TEST_USER", "finchpkg")
BUSYBOX = "busybox:latest"
KEPT_CONTAINER = "finchpkg-kept"
# Folders that only this package creates. Purging must remove them.
PACKAGE_FOLDERS = (
    Path("/usr/lib/finchd"),
    Path("/usr/libexec/finchd"),
    Path("/usr/share/doc/finchd"),
)
# Nothing listens on the discard port, so a stray pull of docker.io fails at
# once on this machine instead of reaching the internet.
BLOCKED_DOCKER_IO = 'server = "http://127.0.0.1:9"\n'


def apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "-y", *args],
        env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def apt_install(deb: Path) -> subprocess.CompletedProcess[str]:
    """Install a local deb with apt, once more after `apt-get update` if apt suggests it."""
    result = apt_get("install", str(deb))
    if result.returncode != 0 and "apt-get update" in result.stdout + result.stderr:
        apt_get("update")
        result = apt_get("install", str(deb))
    return result


def installed_version() -> str | None:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status} ${Version}", "finchd"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.startswith("install ok installed"):
        return None
    return result.stdout.split()[-1]


def deb_version(deb: Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def purge_package() -> subprocess.CompletedProcess[str] | None:
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "finchd"],
        capture_output=True,
        text=True,
        check=False,
    )
    if status.returncode != 0 or status.stdout.startswith("un"):
        return None
    return apt_get("purge", "finchd")


def recreate_user(user: str) -> None:
    """Delete `user` with its home, processes and container files, then create it again."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        entry = None
    if entry is not None:
        ranges = [range(entry.pw_uid, entry.pw_uid + 1)]
        subordinate = subordinate_range(user)
        if subordinate is not None:
            ranges.append(range(subordinate[0], subordinate[0] + subordinate[1]))
        kill_processes(ranges)
        subprocess.run(["userdel", "--remove", user], capture_output=True, check=False)
        # Files owned by subordinate uids are removed by userdel too, but a
        # leftover home from an interrupted run must not leak into this one.
        shutil.rmtree(entry.pw_dir, ignore_errors=True)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", user], check=True)
    for path, option in ((Path("/etc/subuid"), "--add-subuids"), (Path("/etc/subgid"), "--add-subgids")):
        if subordinate_range(user, path) is None:
            start = max(
                [100000]
                + [
                    int(fields[1]) + int(fields[2])
                    for fields in (line.split(":") for line in path.read_text().splitlines())
                    if len(fields) == 3
                ]
            )
            subprocess.run(["usermod", option, f"{start}-{start + 65535}", user], check=True)


@dataclass
class PackageMachine:
    """The machine state that the tests in this file build up, step by step."""

    deb: Path
    upgrade_deb: Path
    session: UserSession
    passed: set[str] = field(default_factory=set)

    def require(self, step: str) -> None:
        if step not in self.passed:
            pytest.fail(f"the earlier step {step!r} failed, so this one cannot run")

    def docker(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        socket = self.session.runtime_dir / "finch.sock"
        return self.session.run(
            [str(DOCKER_CLI), *args], timeout=timeout, env={"DOCKER_HOST": f"unix://{socket}"}
        )

    def user_data(self) -> Path:
        return self.session.home / ".local/share/finchd"


def write_user_file(session: UserSession, path: Path, content: str | None = None) -> None:
    """Create the folders down to `path` as the user would, and optionally the file."""
    relative = path.relative_to(session.home)
    current = session.home
    for part in relative.parent.parts:
        current = current / part
        current.mkdir(exist_ok=True)
        os.chown(current, session.uid, session.gid)
    if content is not None:
        path.write_text(content)
        os.chown(path, session.uid, session.gid)


@pytest.fixture(scope="module")
def machine(
    deb_path: Path, upgrade_deb_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PackageMachine]:
    if os.geteuid() != 0:
        pytest.skip("installing the deb needs root; scripts/test runs these tests as root")
    assert deb_version(upgrade_deb_path) != deb_version(deb_path)
    purge_package()
    recreate_user(PACKAGE_USER)
    log_path = tmp_path_factory.mktemp("session") / "systemd-user.log"
    session = UserSession(PACKAGE_USER, log_path)
    state = PackageMachine(deb_path, upgrade_deb_path, session)
    try:
        yield state
    finally:
        session.stop()
        purge_package()


def test_apt_install_resolves_dependencies(machine: PackageMachine) -> None:
    result = apt_install(machine.deb)
    assert result.returncode == 0, f"apt-get install failed:\n{result.stdout}\n{result.stderr}"
    assert installed_version() == deb_version(machine.deb)
    assert Path("/usr/bin/finchd").exists()
    assert "systemctl --user enable --now finch.socket" in result.stdout
    machine.passed.add("install")


def test_socket_runs_docker_hello(machine: PackageMachine) -> None:
    machine.require("install")
    session = machine.session
    write_user_file(
        session, session.home / ".config/finchd/certs.d/docker.io/hosts.toml", BLOCKED_DOCKER_IO
    )
    archive = session.home / "busybox.tar"
    write_image_archive(build_busybox_image(), archive, [BUSYBOX])
    os.chown(archive, session.uid, session.gid)
    session.start()

    enable = session.systemctl("enable", "--now", "finch.socket")
    assert enable.returncode == 0, enable.stderr
    assert session.systemctl("is-enabled", "finch.socket").stdout.strip() == "enabled"
    assert session.systemctl("is-active", "finch.socket").stdout.strip() == "active"

    load = machine.docker("load", "-i", str(archive))
    assert load.returncode == 0, f"docker load failed:\n{load.stderr}"
    run = machine.docker("run", "--rm", BUSYBOX, "echo", "hello")
    assert run.returncode == 0, f"docker run failed:\n{run.stderr}"
    assert run.stdout == "hello\n"
    machine.passed.add("hello")


def test_finchd_check_passes(machine: PackageMachine) -> None:
    machine.require("install")
    result = machine.session.run(["finchd", "check"])
    assert result.returncode == 0, f"finchd check failed:\n{result.stdout}\n{result.stderr}"
    assert "/usr/libexec/finchd/bin/nerdctl" in result.stdout
    assert "/usr/libexec/finchd/bin/rootlesskit" in result.stdout


def test_upgrade_keeps_images_and_containers(machine: PackageMachine) -> None:
    machine.require("hello")
    create = machine.docker("create", "--name", KEPT_CONTAINER, BUSYBOX, "echo", "kept")
    assert create.returncode == 0, create.stderr

    result = apt_install(machine.upgrade_deb)
    assert result.returncode == 0, f"apt-get install failed:\n{result.stdout}\n{result.stderr}"
    assert installed_version() == deb_version(machine.upgrade_deb)
    # The new build serves only after a restart, which the package leaves to the user.
    restart = machine.session.systemctl("restart", "finch-engine.service", "finch.service")
    assert restart.returncode == 0, restart.stderr

    images = machine.docker("image", "inspect", BUSYBOX)
    assert images.returncode == 0, f"the image is gone after the upgrade:\n{images.stderr}"
    names = machine.docker("ps", "--all", "--format", "{{.Names}}")
    assert names.returncode == 0, names.stderr
    assert KEPT_CONTAINER in names.stdout.split()
    start = machine.docker("start", "--attach", KEPT_CONTAINER)
    assert start.returncode == 0, start.stderr
    assert start.stdout == "kept\n"
    machine.passed.add("upgrade")


def test_purge_removes_package_files(machine: PackageMachine) -> None:
    machine.require("install")
    listed = subprocess.run(
        ["dpkg-query", "-L", "finchd"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    files = [Path(name) for name in listed if name and not Path(name).is_dir()]
    assert Path("/usr/bin/finchd") in files

    machine.session.stop()
    result = purge_package()
    assert result is not None
    assert result.returncode == 0, f"apt-get purge failed:\n{result.stdout}\n{result.stderr}"
    assert installed_version() is None
    left = [str(path) for path in files if path.exists() or path.is_symlink()]
    assert not left, f"purge left package files: {left[:20]}"
    for folder in PACKAGE_FOLDERS:
        assert not folder.exists(), f"purge left {folder}"

    assert (machine.user_data() / "containerd").is_dir()
    assert any((machine.user_data() / "containerd").iterdir())
    assert (machine.session.home / ".config/finchd/certs.d/docker.io/hosts.toml").is_file()
