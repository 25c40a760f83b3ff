"""Fixtures for tests of finchd under a real `systemd --user`.

The tests need a running user manager for the test user (scripts/test starts
one) and the rootless engine. They install the units with `finchd
install-units`, add a drop-in that shortens the idle timeout and sends finchd's
output to a file, and enable finch.socket at `$XDG_RUNTIME_DIR/finch.sock`.
Everything is disabled and removed again at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DOCKER_CLI
from tests.e2e.conftest import BUSYBOX, DockerCLI, _tail
from tests.fixtures.images import build_busybox_image, write_image_archive

IDLE_TIMEOUT = 2.0
# How long after its last client closed finchd may take to exit: the idle
# timeout, a poll interval, the drain and interpreter shutdown, with margin.
EXIT_MARGIN = 6.0
ENGINE_START_TIMEOUT = 150.0
UNITS = ("finch.socket", "finch.service", "finch-engine.service")


def systemctl(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def user_manager_state() -> str:
    try:
        result = systemctl("is-system-running", timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"systemctl failed: {exc}"
    return result.stdout.strip() or result.stderr.strip()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    ours = [item for item in items if tests_dir in Path(str(item.fspath)).parents]
    if not ours:
        return
    state = user_manager_state()
    if state not in ("running", "degraded"):
        skip = pytest.mark.skip(
            reason=f"no systemd --user manager is running ({state}); scripts/test starts one"
        )
        for item in ours:
            item.add_marker(skip)


def finchd_executable() -> str:
    """Return the installed `finchd` entry point next to this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "finchd"
    if beside.exists():
        return str(beside)
    found = shutil.which("finchd")
    assert found is not None, "finchd is not installed; run scripts/install-user"
    return found


@dataclass
class Units:
    """The installed units, their drop-in and finchd's output file."""

    unit_dir: Path
    log_path: Path
    socket_path: Path

    def show(self, unit: str, prop: str) -> str:
        return systemctl("show", "--value", "-p", prop, unit).stdout.strip()

    def active_state(self, unit: str = "finch.service") -> str:
        return self.show(unit, "ActiveState")

    def main_pid(self) -> int:
        return int(self.show("finch.service", "MainPID") or 0)

    def wait_for_state(self, states: tuple[str, ...], timeout: float,
                       unit: str = "finch.service") -> float:
        """Wait until the unit's ActiveState is one of `states`; return the seconds waited."""
        started = time.monotonic()
        state = self.active_state(unit)
        while state not in states:
            assert time.monotonic() - started < timeout, (
                f"{unit} is {state}, not {' or '.join(states)}, after {timeout} s; "
                f"finchd output:\n{_tail(self.log_path, 4000)}"
            )
            time.sleep(0.1)
            state = self.active_state(unit)
        return time.monotonic() - started

    def wait_inactive(self, timeout: float = IDLE_TIMEOUT + EXIT_MARGIN) -> float:
        return self.wait_for_state(("inactive", "failed"), timeout)


DROP_IN = """[Service]
Environment=FINCHD_IDLE_TIMEOUT={idle:g}
StandardOutput=append:{log}
StandardError=append:{log}
"""


@pytest.fixture(scope="session")
def units(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Units]:
    config_home = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    unit_dir = config_home / "systemd" / "user"
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    log_path = tmp_path_factory.mktemp("finchd-systemd") / "finchd.log"
    installed = subprocess.run([finchd_executable(), "install-units"], capture_output=True,
                               text=True, timeout=60, check=False)
    assert installed.returncode == 0, installed.stderr
    drop_in = unit_dir / "finch.service.d" / "test.conf"
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text(DROP_IN.format(idle=IDLE_TIMEOUT, log=log_path))
    assert systemctl("daemon-reload").returncode == 0
    enabled = systemctl("enable", "--now", "finch.socket")
    assert enabled.returncode == 0, enabled.stderr
    try:
        yield Units(unit_dir, log_path, runtime / "finch.sock")
    finally:
        systemctl("disable", "--now", "finch.socket", "finch.service")
        systemctl("stop", "finch-engine.service", timeout=90)
        subprocess.run([finchd_executable(), "uninstall-units"], capture_output=True,
                       timeout=60, check=False)
        shutil.rmtree(drop_in.parent, ignore_errors=True)
        systemctl("daemon-reload")
        systemctl("reset-failed", *UNITS)


@pytest.fixture(scope="session")
def docker(units: Units, tmp_path_factory: pytest.TempPathFactory) -> DockerCLI:
    return DockerCLI(str(units.socket_path), tmp_path_factory.mktemp("docker-config"),
                     DOCKER_CLI)


@pytest.fixture(scope="session")
def busybox(docker: DockerCLI, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Load busybox through the socket; this first request also starts the engine."""
    archive = write_image_archive(build_busybox_image(),
                                  tmp_path_factory.mktemp("images") / "busybox.tar", [BUSYBOX])
    result = docker("load", "-i", str(archive), timeout=ENGINE_START_TIMEOUT)
    assert result.returncode == 0, result.stderr
    return BUSYBOX


@pytest.fixture
def container(docker: DockerCLI, busybox: str) -> Iterator[Callable[[str], str]]:
    """Start detached `sleep 1000` containers by name and remove them afterwards."""
    names: list[str] = []

    def start(name: str) -> str:
        names.append(name)
        docker("rm", "-f", name)
        docker.ok("run", "-d", "--name", name, busybox, "sleep", "1000")
        return name

    yield start
    for name in names:
        docker("rm", "-f", name)
