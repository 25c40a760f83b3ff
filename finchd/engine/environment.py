"""The environment and executables of the rootless engine and of nerdctl."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from finchd.config import Settings
from finchd.paths import Paths

# iptables lives in /usr/sbin and the CNI plugins call it, so /usr/sbin must be
# on PATH even for a user whose login PATH lacks it.
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
# The deb and rpm packages carry their pinned nerdctl, containerd, buildkit and
# rootlesskit here, because Debian 12 lacks them or ships versions too old.
PACKAGED_ENGINE_DIR = "/usr/libexec/finchd/bin"
CNI_PLUGIN_DIR = "/usr/lib/cni"

# Variables copied from the caller's environment. Everything else, in particular
# the socket-activation variables LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES and
# NOTIFY_SOCKET, stays out so that no engine process mistakes them for its own.
PASSED_VARIABLES = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "DOCKER_CONFIG")


class ExecutableNotFoundError(Exception):
    """An engine executable is neither a usable path nor a name on the engine's PATH."""


def base_path(settings: Settings) -> str:
    """Return the PATH of every engine process.

    The folders of binaries configured by path come first, then the packaged
    engine folder when it exists, then the system folders.
    """
    folders: list[str] = []
    for name in (settings.nerdctl, settings.containerd, settings.buildkitd, settings.rootlesskit):
        if os.sep in name:
            folder = str(Path(name).expanduser().parent)
            if folder not in folders:
                folders.append(folder)
    if os.path.isdir(PACKAGED_ENGINE_DIR) and PACKAGED_ENGINE_DIR not in folders:
        folders.append(PACKAGED_ENGINE_DIR)
    for folder in SYSTEM_PATH:
        if folder not in folders:
            folders.append(folder)
    return os.pathsep.join(folders)


def resolve_executable(settings: Settings, name: str) -> str:
    """Return the absolute path of `name`, looked up on the engine's PATH."""
    found = shutil.which(os.path.expanduser(name), path=base_path(settings))
    if found is None:
        raise ExecutableNotFoundError(
            f"{name} not found on PATH {base_path(settings)}; run `sudo scripts/install-deps` "
            "or set its path in finchd.toml"
        )
    return os.path.abspath(found)


def xdg_variables(paths: Paths) -> dict[str, str]:
    """Return the XDG variables from which `Paths.from_environment` rebuilds `paths`."""
    return {
        "XDG_CONFIG_HOME": str(paths.config.parent),
        "XDG_DATA_HOME": str(paths.data.parent),
        "XDG_RUNTIME_DIR": str(paths.runtime.parent),
    }


def clean_environment(settings: Settings, paths: Paths) -> dict[str, str]:
    """Return a minimal environment for engine processes, free of socket activation."""
    env = {name: os.environ[name] for name in PASSED_VARIABLES if name in os.environ}
    env.setdefault("HOME", str(Path.home()))
    env.update(xdg_variables(paths))
    env["PATH"] = base_path(settings)
    return env


def engine_env(settings: Settings, paths: Paths) -> dict[str, str]:
    """Return the environment in which nerdctl runs from the host namespaces.

    Rootless nerdctl finds the engine through ROOTLESSKIT_STATE_DIR (it reads
    `child_pid` and `netns` there and enters the child's namespaces with nsenter)
    and reads the rest of its configuration from NERDCTL_TOML.
    """
    env = clean_environment(settings, paths)
    env.update(
        {
            "ROOTLESSKIT_STATE_DIR": str(paths.rootlesskit_state),
            "NERDCTL_TOML": str(paths.nerdctl_toml),
            "CONTAINERD_ADDRESS": str(paths.containerd_socket),
            "CONTAINERD_NAMESPACE": settings.namespace,
            "CONTAINERD_SNAPSHOTTER": "overlayfs",
            "BUILDKIT_HOST": f"unix://{paths.buildkit_socket}",
            "CNI_PATH": CNI_PLUGIN_DIR,
            "NETCONFPATH": str(paths.cni_conf_dir),
        }
    )
    return env


# Each entry: the executable's setting name or plain name, its version flag, and
# a pattern whose first group is the version number.
VERSION_COMMANDS: dict[str, tuple[str, str, str]] = {
    "containerd": ("containerd", "--version", r"containerd \S+ v?(\S+)"),
    "runc": ("runc", "--version", r"runc version (\S+)"),
    "rootlesskit": ("rootlesskit", "--version", r"rootlesskit version (\S+)"),
    "slirp4netns": ("slirp4netns", "--version", r"slirp4netns version (\S+)"),
    "buildkitd": ("buildkitd", "--version", r"buildkitd \S+ v?(\S+)"),
    "nerdctl": ("nerdctl", "--version", r"nerdctl version v?(\S+)"),
}

UNKNOWN_VERSION = "unknown"


def _configured_name(settings: Settings, component: str) -> str:
    configured = getattr(settings, component, None)
    return configured if isinstance(configured, str) else component


def read_version(settings: Settings, component: str) -> str:
    """Run one engine executable with its version flag and return the version number.

    Return "unknown" when the executable is missing, fails or prints something
    unexpected, because a version is informational only.
    """
    name, flag, pattern = VERSION_COMMANDS[component]
    try:
        executable = resolve_executable(settings, _configured_name(settings, name))
        completed = subprocess.run(
            [executable, flag],
            capture_output=True,
            text=True,
            timeout=10,
            env={
                name: os.environ[name]
                for name in ("HOME", "XDG_RUNTIME_DIR")
                if name in os.environ
            }
            | {"PATH": base_path(settings)},
            check=False,
        )
    except (ExecutableNotFoundError, OSError, subprocess.TimeoutExpired):
        return UNKNOWN_VERSION
    match = re.search(pattern, completed.stdout + completed.stderr)
    return match.group(1) if match else UNKNOWN_VERSION


@functools.cache
def _cached_versions(settings: Settings) -> tuple[tuple[str, str], ...]:
    return tuple((component, read_version(settings, component)) for component in VERSION_COMMANDS)


def engine_versions(settings: Settings) -> dict[str, str]:
    """Return the versions of the engine components, read once per settings value.

    Keys: containerd, runc, rootlesskit, slirp4netns, buildkitd, nerdctl. A
    component whose version cannot be read maps to "unknown".
    """
    return dict(_cached_versions(settings))
