"""StateChanged when the engine's containerd is killed and the engine restarts it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from dbus_next import MessageType

from finchd.dbus.names import ENGINE_ERROR
from finchd.paths import Paths
from tests.dbus.buslib import SOCKET_LEAK_FILTERS, SignalRecorder, is_signal
from tests.dbus.conftest import BusFinchd

pytestmark = [pytest.mark.engine, *SOCKET_LEAK_FILTERS]

# The engine child restarts containerd after a backoff of 1 s (docs/engine.md).
RESTART_TIMEOUT = 60.0


def containerd_pids() -> list[int]:
    """Return the pids of this user's engine containerd, found by its config path."""
    config = str(Paths.from_environment().containerd_config)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arguments[0].endswith(b"containerd") and config.encode() in arguments:
            pids.append(int(entry.name))
    return pids


async def test_state_changes_when_engine_killed(bus_finchd: BusFinchd) -> None:
    pids = containerd_pids()
    assert pids, "the engine's containerd is not running"
    client = await SignalRecorder.connect(bus_finchd.bus.address)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        down = await client.wait_for(is_signal("StateChanged", "degraded", "running"), 10)
        info = await client.call_finchd("GetInfo")
        back = await client.wait_for(is_signal("StateChanged", "running", "degraded"),
                                     RESTART_TIMEOUT)
    finally:
        await client.disconnect()
    assert down.body[2]
    assert back.body[2] == "the engine is running"
    if info.message_type == MessageType.ERROR:
        # containerd may be back already; while it is not, GetInfo fails cleanly.
        assert info.error_name == ENGINE_ERROR
        assert "\n" not in info.body[0]
