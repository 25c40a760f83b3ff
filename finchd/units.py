"""systemd user units: `finchd install-units`, `finchd uninstall-units` and the engine unit.

The units in the repository's systemd/ folder run /usr/bin/finchd, which is
where packages install it. install-units writes them to
$XDG_CONFIG_HOME/systemd/user with the path of the running finchd instead.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import xdg_base_dirs

import finchd

log = logging.getLogger(__name__)

SOCKET_UNIT = "finch.socket"
SERVICE_UNIT = "finch.service"
ENGINE_UNIT = "finch-engine.service"
UNIT_NAMES = (SOCKET_UNIT, SERVICE_UNIT, ENGINE_UNIT)
PACKAGED_EXECUTABLE = "/usr/bin/finchd"
SYSTEMCTL_TIMEOUT = 30.0
# finch-engine.service's TimeoutStartSec is 120 s.
ENGINE_START_TIMEOUT = 150.0


class UnitError(Exception):
    """The units cannot be found, written or removed, or systemctl failed."""


def user_unit_dir() -> Path:
    return xdg_base_dirs.xdg_config_home() / "systemd" / "user"


def unit_source_dirs() -> list[Path]:
    """Return the folders that may hold the shipped units, in order of preference.

    A wheel installs them under `<prefix>/share/finchd/systemd/user`, a source
    checkout has them in `systemd/`, and distribution packages put them in
    /usr/lib/systemd/user.
    """
    return [
        Path(sys.prefix) / "share" / "finchd" / "systemd" / "user",
        Path(finchd.__file__).resolve().parent.parent / "systemd",
        Path("/usr/lib/systemd/user"),
    ]


def find_unit_sources() -> Path:
    for folder in unit_source_dirs():
        if all((folder / name).is_file() for name in UNIT_NAMES):
            return folder
    searched = ", ".join(str(folder) for folder in unit_source_dirs())
    raise UnitError(f"the finchd units ({', '.join(UNIT_NAMES)}) were not found in {searched}; "
                    "reinstall finchd")


def finchd_command() -> str:
    """Return the command line that starts this finchd, quoted for ExecStart=.

    An entry point script (`finchd`) is used as it was invoked, without
    resolving links, so that a reinstalled virtual environment behind
    ~/.local/bin/finchd keeps working. `python -m finchd` becomes this
    interpreter with `-m finchd`.
    """
    program = Path(sys.argv[0])
    if program.name == "finchd" and os.access(program, os.X_OK):
        return shlex.quote(str(program.absolute()))
    return f"{shlex.quote(sys.executable)} -m finchd"


def render_unit(text: str, command: str) -> str:
    """Replace the packaged executable at the start of ExecStart= lines with `command`."""
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith("ExecStart=" + PACKAGED_EXECUTABLE):
            line = "ExecStart=" + command + line[len("ExecStart=" + PACKAGED_EXECUTABLE):]
        lines.append(line)
    return "".join(lines)


def systemctl_environment() -> dict[str, str]:
    """Return the environment for `systemctl --user`: what finds the user's manager, no more."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for name in ("HOME", "USER", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS", "LANG"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def systemctl(*args: str, timeout: float = SYSTEMCTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("systemctl")
    if executable is None:
        raise UnitError("systemctl not found; install systemd")
    try:
        return subprocess.run([executable, "--user", *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, env=systemctl_environment(),
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise UnitError(f"systemctl --user {' '.join(args)} timed out after {timeout:.0f} s") from exc


def user_manager_running() -> bool:
    """Return whether `systemctl --user` reaches a running user manager."""
    try:
        result = systemctl("is-system-running")
    except UnitError:
        return False
    # is-system-running exits non-zero for "degraded", which still runs units.
    return result.stdout.strip() in ("running", "degraded", "starting", "initializing")


def install_units() -> int:
    """Write the units into the user's unit folder and reload the user manager."""
    source = find_unit_sources()
    target = user_unit_dir()
    command = finchd_command()
    target.mkdir(parents=True, exist_ok=True)
    for name in UNIT_NAMES:
        text = render_unit((source / name).read_text(), command)
        (target / name).write_text(text)
        print(f"wrote {target / name}")
    if user_manager_running():
        result = systemctl("daemon-reload")
        if result.returncode != 0:
            raise UnitError(f"systemctl --user daemon-reload failed: {result.stderr.strip()}")
        print("reloaded the user manager; start the socket with:\n"
              f"  systemctl --user enable --now {SOCKET_UNIT}")
    else:
        print("no user manager (systemd --user) is reachable; after logging in run:\n"
              f"  systemctl --user daemon-reload && systemctl --user enable --now {SOCKET_UNIT}")
    return 0


def uninstall_units() -> int:
    """Stop and disable the API units, remove all three files and reload the user manager.

    finch-engine.service keeps running if it runs, because stopping it stops
    every container. Its unit file is removed all the same.
    """
    target = user_unit_dir()
    manager = user_manager_running()
    if manager:
        result = systemctl("disable", "--now", SOCKET_UNIT, SERVICE_UNIT)
        if result.returncode != 0:
            print(f"systemctl --user disable --now failed: {result.stderr.strip()}",
                  file=sys.stderr)
    for name in UNIT_NAMES:
        path = target / name
        if path.exists():
            path.unlink()
            print(f"removed {path}")
    if manager:
        systemctl("daemon-reload")
        if systemctl("is-active", "--quiet", ENGINE_UNIT).returncode == 0:
            print(f"{ENGINE_UNIT} still runs the engine and its containers; stop them with:\n"
                  f"  systemctl --user stop {ENGINE_UNIT}")
    return 0


def start_engine_unit() -> bool:
    """Start finch-engine.service through the user manager and wait for it.

    Return False when the unit is not installed. Raise UnitError when
    systemctl fails to start it.
    """
    known = systemctl("cat", ENGINE_UNIT)
    if known.returncode != 0:
        return False
    log.info("starting %s", ENGINE_UNIT)
    result = systemctl("start", ENGINE_UNIT, timeout=ENGINE_START_TIMEOUT)
    if result.returncode != 0:
        raise UnitError(f"systemctl --user start {ENGINE_UNIT} failed: {result.stderr.strip()}; "
                        f"see journalctl --user -u {ENGINE_UNIT}")
    return True
