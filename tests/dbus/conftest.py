"""Fixtures for D-Bus tests: a private session bus and a finchd that owns its name.

Each session starts its own dbus-daemon, so no test touches the user's real
session bus. The bus's service folder contains a copy of
dbus/io.finchd.Finchd1.service, as a user's session bus would after
scripts/install-user. Engine tests start one `finchd serve` that sees only that
bus and share the user's engine with the end-to-end tests.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from finchd.dbus.names import BUS_NAME, INTERFACE_NAME, OBJECT_PATH
from tests.e2e.conftest import (  # noqa: F401 - fixtures shared with the e2e tests
    BUSYBOX,
    Cleanup,
    DockerCLI,
    busybox_archive,
    busybox_image,
)
from tests.e2e.unixhttp import ApiClient
from tests.fixtures.processes import stop_gracefully

REPOSITORY = Path(__file__).resolve().parents[2]
SERVICE_FILE = REPOSITORY / "dbus" / "io.finchd.Finchd1.service"
BUS_TOOLS = ("dbus-daemon", "busctl", "gdbus")
BUS_START_TIMEOUT = 10.0
FINCHD_START_TIMEOUT = 180.0
FINCHD_STOP_TIMEOUT = 30.0

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <servicedir>{services}</servicedir>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture(autouse=True)
def _collect_closed_connections() -> Iterator[None]:
    """Collect a test's closed bus connections while its warning filters apply."""
    yield
    gc.collect()


def missing_bus_tools() -> list[str]:
    return [tool for tool in BUS_TOOLS if shutil.which(tool) is None]


def tail(path: Path, max_chars: int = 20000) -> str:
    try:
        return path.read_text(errors="replace")[-max_chars:]
    except FileNotFoundError:
        return f"({path} does not exist)"


@dataclass
class PrivateBus:
    """A dbus-daemon of type session, listening on a socket in its own folder."""

    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.folder / "bus"

    @property
    def address(self) -> str:
        return f"unix:path={self.socket_path}"

    def env(self, **extra: str) -> dict[str, str]:
        """Return this process's environment pointed at this bus only."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("DBUS_")}
        env["DBUS_SESSION_BUS_ADDRESS"] = self.address
        env.update(extra)
        return env

    def start(self) -> None:
        services = self.folder / "services"
        services.mkdir()
        shutil.copy(SERVICE_FILE, services / SERVICE_FILE.name)
        config = self.folder / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=self.socket_path, services=services))
        with open(self.folder / "dbus-daemon.log", "ab") as log:
            self.process = subprocess.Popen(
                ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )
        deadline = time.monotonic() + BUS_START_TIMEOUT
        while not self.socket_path.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"dbus-daemon did not listen on {self.socket_path}: "
                    f"{tail(self.folder / 'dbus-daemon.log')}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def name_has_owner(self, name: str = BUS_NAME) -> bool:
        result = subprocess.run(
            ["busctl", f"--address={self.address}", "status", name],
            capture_output=True, text=True, timeout=10, check=False,
        )
        return result.returncode == 0


def start_private_bus() -> PrivateBus:
    """Start a private bus in a short folder under /tmp (sun_path has 108 bytes).

    Skip the calling test when dbus-daemon, busctl or gdbus is missing.
    """
    missing = missing_bus_tools()
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: run scripts/install-deps")
    bus = PrivateBus(Path(tempfile.mkdtemp(prefix="fdbus-", dir="/tmp")))
    bus.start()
    return bus


@pytest.fixture(scope="session")
def session_bus() -> Iterator[PrivateBus]:
    bus = start_private_bus()
    try:
        yield bus
    finally:
        bus.stop()
        shutil.rmtree(bus.folder, ignore_errors=True)


@dataclass
class BusFinchd:
    """A `finchd serve` whose only session bus is a private one."""

    bus: PrivateBus
    folder: Path
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> str:
        return str(self.folder / "d.sock")

    @property
    def log_path(self) -> Path:
        return self.folder / "finchd.log"

    def start(self) -> None:
        command = [sys.executable, "-m", "finchd", "serve", "--socket", self.socket_path,
                   "--log-level", "debug", *self.extra_args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.folder, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=self.bus.env(),
            )
        deadline = time.monotonic() + FINCHD_START_TIMEOUT
        while not (self.ping() and self.bus.name_has_owner() and self.state() == "running"):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"finchd serve exited with status {self.process.returncode}; "
                    f"its output:\n{tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"finchd serve did not own {BUS_NAME} in state running within "
                    f"{FINCHD_START_TIMEOUT} s; "
                    f"its output:\n{tail(self.log_path)}"
                )
            time.sleep(0.2)

    def state(self) -> str:
        """Return the State property, or "" while it cannot be read."""
        result = subprocess.run(
            ["busctl", f"--address={self.bus.address}", "get-property", BUS_NAME, OBJECT_PATH,
             INTERFACE_NAME, "State"],
            capture_output=True, text=True, timeout=10, check=False,
        )
        return result.stdout.strip().removeprefix('s "').removesuffix('"')

    def ping(self) -> bool:
        try:
            response = ApiClient(self.socket_path).request("GET", "/_ping", timeout=5)
        except OSError:
            return False
        return response.status == 200

    def stop(self) -> None:
        stop_gracefully(self.process, FINCHD_STOP_TIMEOUT)


@pytest.fixture(scope="session")
def bus_finchd(session_bus: PrivateBus) -> Iterator[BusFinchd]:
    """The session's finchd, owning io.finchd.Finchd1 on the private bus."""
    daemon = BusFinchd(session_bus, Path(tempfile.mkdtemp(prefix="fdd-", dir="/tmp")))
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        if daemon.process is not None and daemon.process.returncode not in (0, None):
            sys.stderr.write(f"finchd serve exited with status {daemon.process.returncode}; "
                             f"its output:\n{tail(daemon.log_path)}\n")
        shutil.rmtree(daemon.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def docker(bus_finchd: BusFinchd, tmp_path_factory: pytest.TempPathFactory) -> DockerCLI:
    return DockerCLI(bus_finchd.socket_path, tmp_path_factory.mktemp("docker-config"))


@pytest.fixture(scope="session")
def busybox(docker: DockerCLI, busybox_archive: Path) -> str:  # noqa: F811
    """Load the busybox archive through the D-Bus test daemon and return its tag.

    The image stays, because the end-to-end tests share the engine and load it too.
    """
    result = docker.ok("load", "-i", str(busybox_archive), timeout=120)
    assert f"Loaded image: {BUSYBOX}" in result.stdout
    return BUSYBOX


@pytest.fixture
def cleanup(docker: DockerCLI) -> Iterator[Cleanup]:
    tracker = Cleanup(docker)
    yield tracker
    tracker.remove_all()
