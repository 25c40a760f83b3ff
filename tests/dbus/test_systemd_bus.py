"""finchd on the session bus of a real `systemd --user`, started by D-Bus activation.

These tests need a running user manager with its session bus at
`$XDG_RUNTIME_DIR/bus` (scripts/test starts one) and finchd installed with
scripts/install-user, which puts dbus/io.finchd.Finchd1.service where that bus
reads activation files. The module installs the units with a short idle
timeout and removes them at its end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from finchd.dbus.names import BUS_NAME, INTERFACE_NAME, OBJECT_PATH
from tests.dbus.buslib import (
    INTERFACE_XML,
    SOCKET_LEAK_FILTERS,
    busctl,
    gdbus,
    get_property,
    interface_shape,
    wait_for_property,
)
from tests.e2e.conftest import BUSYBOX, DockerCLI

pytestmark = [pytest.mark.engine, *SOCKET_LEAK_FILTERS]

IDLE_TIMEOUT = 4
# The idle exit must come this long after the idle timeout at the latest.
EXIT_MARGIN = 15.0
# Debian's session.conf gives an activated service 120 s (service_start_timeout)
# to take its name, and a cold engine start can take most of that.
ACTIVATION_SECONDS = 120
ACTIVATION_TIMEOUT = ACTIVATION_SECONDS + 30.0
COUNT_DEADLINE = 2.0

DROP_IN = """[Service]
Environment=FINCHD_IDLE_TIMEOUT={idle}
StandardOutput=append:{log}
StandardError=append:{log}
"""


def systemctl(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def installed_finchd() -> str | None:
    beside = Path(sys.executable).parent / "finchd"
    return str(beside) if beside.exists() else shutil.which("finchd")


def missing_user_session() -> str | None:
    """Return why the user manager and its bus cannot be used, or None."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        return "XDG_RUNTIME_DIR is not set"
    try:
        state = systemctl("is-system-running", timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"systemctl --user failed: {exc}"
    if state not in ("running", "degraded"):
        return f"no systemd --user manager is running ({state or 'unreachable'})"
    if not Path(runtime, "bus").is_socket():
        return f"the user manager has no session bus at {runtime}/bus"
    activation_file = Path.home() / ".local/share/dbus-1/services/io.finchd.Finchd1.service"
    if not activation_file.exists():
        return f"{activation_file} is missing; run scripts/install-user"
    if installed_finchd() is None:
        return "finchd is not installed; run scripts/install-user"
    return None


@dataclass
class UserBus:
    """The user manager's session bus and finch.service's output file."""

    address: str
    log_path: Path
    socket_path: Path

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("DBUS_")}
        env["DBUS_SESSION_BUS_ADDRESS"] = self.address
        return env

    def service_state(self) -> str:
        return systemctl("show", "--value", "-p", "ActiveState", "finch.service").stdout.strip()

    def wait_for_service(self, states: tuple[str, ...], timeout: float) -> float:
        started = time.monotonic()
        while (state := self.service_state()) not in states:
            assert time.monotonic() - started < timeout, (
                f"finch.service is {state}, not {' or '.join(states)}, after {timeout} s; "
                f"its output:\n{self.log_path.read_text(errors='replace')[-4000:]}"
            )
            time.sleep(0.1)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def user_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserBus]:
    reason = missing_user_session()
    if reason is not None:
        pytest.skip(reason)
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    bus = UserBus(f"unix:path={runtime}/bus", tmp_path_factory.mktemp("finchd-dbus") / "finchd.log",
                  runtime / "finch.sock")
    if busctl(bus.address, "status", BUS_NAME).returncode == 0:
        pytest.skip(f"another process already owns {BUS_NAME} on the user's session bus")

    finchd = installed_finchd()
    assert finchd is not None
    engine_was_active = systemctl("is-active", "finch-engine.service").stdout.strip() == "active"
    installed = subprocess.run([finchd, "install-units"], capture_output=True, text=True,
                               timeout=60, check=False)
    assert installed.returncode == 0, installed.stderr

    unit_dir = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "systemd/user"
    drop_in = unit_dir / "finch.service.d" / "dbus-test.conf"
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text(DROP_IN.format(idle=IDLE_TIMEOUT, log=bus.log_path))
    assert systemctl("daemon-reload").returncode == 0
    started = systemctl("start", "finch.socket")
    assert started.returncode == 0, started.stderr

    try:
        yield bus
    finally:
        systemctl("stop", "finch.service", "finch.socket")
        if not engine_was_active:
            systemctl("stop", "finch-engine.service", timeout=90)
        subprocess.run([finchd, "uninstall-units"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(drop_in.parent, ignore_errors=True)
        systemctl("daemon-reload")
        systemctl("reset-failed", "finch.socket", "finch.service", "finch-engine.service")


@pytest.fixture(scope="module")
def user_docker(user_bus: UserBus, busybox_archive: Path,
                tmp_path_factory: pytest.TempPathFactory) -> DockerCLI:
    docker = DockerCLI(str(user_bus.socket_path), tmp_path_factory.mktemp("docker-config"))
    docker.ok("load", "-i", str(busybox_archive), timeout=180)
    return docker


def test_activation_starts_finch_service(user_bus: UserBus) -> None:
    systemctl("stop", "finch.service")
    user_bus.wait_for_service(("inactive", "failed"), 30)

    result = gdbus(user_bus.env(), "call", "--session", "--timeout", str(ACTIVATION_SECONDS),
                   "--dest", BUS_NAME, "--object-path", OBJECT_PATH, "--method",
                   f"{INTERFACE_NAME}.Ping", timeout=ACTIVATION_TIMEOUT)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "('OK',)"
    assert user_bus.service_state() == "active"
    assert get_property(user_bus.address, "State") == 's "running"'


def test_user_bus_introspection(user_bus: UserBus) -> None:
    listing = busctl(user_bus.address, "introspect", BUS_NAME, OBJECT_PATH,
                     timeout=ACTIVATION_TIMEOUT)
    xml = gdbus(user_bus.env(), "introspect", "--session", "--xml", "--dest", BUS_NAME,
                "--object-path", OBJECT_PATH, timeout=ACTIVATION_TIMEOUT)
    assert listing.returncode == 0, listing.stderr
    assert any(line.split()[:2] == [INTERFACE_NAME, "interface"]
               for line in listing.stdout.splitlines())
    assert xml.returncode == 0, xml.stderr
    assert interface_shape(xml.stdout) == interface_shape(INTERFACE_XML.read_text())


def test_user_bus_count_follows_docker(user_bus: UserBus, user_docker: DockerCLI) -> None:
    name = f"dbus-user-{os.getpid()}"
    user_docker("rm", "-f", name)
    before = int(get_property(user_bus.address, "ContainersRunning").split()[1])
    try:
        user_docker.ok("run", "-d", "--name", name, BUSYBOX, "sleep", "60")
        assert wait_for_property(user_bus.address, "ContainersRunning", f"u {before + 1}",
                                 COUNT_DEADLINE) < COUNT_DEADLINE
        user_docker.ok("stop", "-t", "1", name)
        assert wait_for_property(user_bus.address, "ContainersRunning", f"u {before}",
                                 COUNT_DEADLINE) < COUNT_DEADLINE
    finally:
        user_docker("rm", "-f", name)


def test_user_bus_status_matches_info(user_bus: UserBus, user_docker: DockerCLI) -> None:
    keys = ("Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images")
    info = json.loads(user_docker.ok("info", "--format", "{{json .}}").stdout)
    result = subprocess.run([sys.executable, "-m", "finchd", "status", "--json"],
                            capture_output=True, text=True, env=user_bus.env(), timeout=30,
                            check=False)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    for key in keys:
        assert status[key] == info[key], key


def test_polling_lets_finch_service_exit(user_bus: UserBus) -> None:
    gdbus(user_bus.env(), "call", "--session", "--timeout", str(ACTIVATION_SECONDS), "--dest",
          BUS_NAME, "--object-path", OBJECT_PATH, "--method", f"{INTERFACE_NAME}.Ping",
          timeout=ACTIVATION_TIMEOUT)
    assert user_bus.service_state() == "active"

    deadline = time.monotonic() + IDLE_TIMEOUT + EXIT_MARGIN
    codes = []
    while user_bus.service_state() == "active" and time.monotonic() < deadline:
        codes.append(subprocess.run([sys.executable, "-m", "finchd", "status"],
                                    capture_output=True, env=user_bus.env(), timeout=30,
                                    check=False).returncode)
        time.sleep(0.5)
    user_bus.wait_for_service(("inactive", "failed"), 5)
    after = [subprocess.run([sys.executable, "-m", "finchd", "status"], capture_output=True,
                            text=True, env=user_bus.env(), timeout=30, check=False)
             for _ in range(3)]

    assert codes and codes[0] == 0
    assert all(result.returncode == 3 for result in after)
    assert "systemctl --user start finch.socket" in after[-1].stdout
    assert user_bus.service_state() in ("inactive", "failed")
