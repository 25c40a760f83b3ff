"""Activation and idle exit: reading the status never starts or keeps finchd up."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from finchd.dbus.client import read_status
from finchd.dbus.names import BUS_NAME, OBJECT_PATH
from tests.dbus.buslib import SOCKET_LEAK_FILTERS, SignalRecorder, gdbus, is_signal
from tests.dbus.conftest import BusFinchd, PrivateBus, start_private_bus

pytestmark = SOCKET_LEAK_FILTERS

IDLE_TIMEOUT = 3
POLL_INTERVAL = 0.3
# The idle exit must come this long after the idle timeout at the latest.
EXIT_MARGIN = 20.0


@pytest.fixture
def empty_bus() -> Iterator[PrivateBus]:
    """A private bus on which nothing owns io.finchd.Finchd1."""
    bus = start_private_bus()
    yield bus
    bus.stop()
    shutil.rmtree(bus.folder, ignore_errors=True)


def run_status(bus: PrivateBus, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "finchd", "status", *args], capture_output=True,
                          text=True, env=bus.env(), timeout=30, check=False)


def activation_attempts(bus: PrivateBus) -> list[str]:
    log = (bus.folder / "dbus-daemon.log").read_text(errors="replace")
    return [line for line in log.splitlines() if "Activating service" in line]


def test_status_says_not_running(empty_bus: PrivateBus) -> None:
    started = time.monotonic()
    result = run_status(empty_bus)
    assert time.monotonic() - started < 10
    assert result.returncode == 3
    assert result.stdout.startswith("finchd is not running")
    assert "systemctl --user start finch.socket" in result.stdout
    assert "finchd serve" in result.stdout
    assert activation_attempts(empty_bus) == []


def test_status_json_not_running(empty_bus: PrivateBus) -> None:
    result = run_status(empty_bus, "--json")
    assert result.returncode == 3
    assert '"Running": false' in result.stdout
    assert activation_attempts(empty_bus) == []


def test_status_without_bus_fails_clearly(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DBUS_")}
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={tmp_path}/none"
    result = subprocess.run([sys.executable, "-m", "finchd", "status"], capture_output=True,
                            text=True, env=env, timeout=30, check=False)
    assert result.returncode == 4
    assert "cannot connect to the D-Bus session bus" in result.stderr
    assert "Traceback" not in result.stderr


def test_activation_without_systemd_fails_fast(empty_bus: PrivateBus) -> None:
    started = time.monotonic()
    result = gdbus(empty_bus.env(), "call", "--session", "--dest", BUS_NAME, "--object-path",
                   OBJECT_PATH, "--method", "io.finchd.Finchd1.Ping")
    assert time.monotonic() - started < 10
    assert result.returncode != 0
    assert "org.freedesktop.DBus.Error.Spawn" in result.stderr
    assert activation_attempts(empty_bus) != []


@pytest.mark.engine
async def test_polling_does_not_prevent_idle_exit(empty_bus: PrivateBus) -> None:
    daemon = BusFinchd(empty_bus, Path(tempfile.mkdtemp(prefix="fdi-", dir="/tmp")),
                       extra_args=("--idle-timeout", str(IDLE_TIMEOUT)))
    client: SignalRecorder | None = None
    try:
        daemon.start()
        assert daemon.process is not None
        client = await SignalRecorder.connect(empty_bus.address)
        reads = 0
        deadline = time.monotonic() + IDLE_TIMEOUT + EXIT_MARGIN
        while daemon.process.poll() is None and time.monotonic() < deadline:
            if await read_status(empty_bus.address) is not None:
                reads += 1
            await asyncio.sleep(POLL_INTERVAL)
        exit_code = daemon.process.poll()
        stopping = await client.wait_for(is_signal("StateChanged", "stopping"), 5)
        after_exit = await read_status(empty_bus.address)
    finally:
        if client is not None:
            await client.disconnect()
        daemon.stop()
        shutil.rmtree(daemon.folder, ignore_errors=True)
    assert exit_code == 0, "finchd did not exit while a client polled its status"
    assert reads >= 2
    assert stopping.body[1] == "running"
    assert after_exit is None
    assert not empty_bus.name_has_owner()
    assert activation_attempts(empty_bus) == []


@pytest.mark.engine
def test_bus_loss_keeps_api_serving(empty_bus: PrivateBus) -> None:
    daemon = BusFinchd(empty_bus, Path(tempfile.mkdtemp(prefix="fdl-", dir="/tmp")))
    try:
        daemon.start()
        empty_bus.stop()
        time.sleep(1)
        still_serving = daemon.ping()
        daemon.stop()
        log = daemon.log_path.read_text(errors="replace")
    finally:
        daemon.stop()
        shutil.rmtree(daemon.folder, ignore_errors=True)
    assert still_serving
    assert daemon.process is not None
    assert daemon.process.returncode == 0
    assert "lost the session bus connection" in log
    assert "Future exception was never retrieved" not in log
