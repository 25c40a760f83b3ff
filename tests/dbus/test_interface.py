"""io.finchd.Finchd1 exported in-process on a private bus, with fake services.

These tests force failures inside methods and property getters and check
that every error leaves as a one-line io.finchd.Finchd1.Error, never as a
Python traceback.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from dbus_next import MessageType, NameFlag, RequestNameReply, Variant

from finchd.dbus.interface import FinchdInterface
from finchd.dbus.names import BUS_NAME, INTERFACE_NAME, OBJECT_PATH
from finchd.dbus.service import GuardedMessageBus
from finchd.dbus.values import flatten_info
from finchd.errors import EngineError
from finchd.services.status import Status
from tests.dbus.buslib import SOCKET_LEAK_FILTERS, INTERFACE_XML, SignalRecorder, interface_shape
from tests.dbus.conftest import PrivateBus, start_private_bus

STATUS = Status(
    version="0.1.0", api_version="1.43", state="running", state_reason="the engine is running",
    socket_path="/run/user/1000/finch.sock", rootless=True, network_driver="slirp4netns",
    port_driver="builtin", cgroup_version="2", warnings=("WARNING: one",),
    containers_running=1, containers_paused=0, containers_stopped=2, images=3,
    started_at=1_700_000_000_000_000,
)
pytestmark = SOCKET_LEAK_FILTERS
TRACEBACK_MARKERS = ("Traceback", 'File "', "line ", "\n")


class FakeSystem:
    """A SystemService whose info() returns a fixed document or raises."""

    def __init__(self) -> None:
        self.result: dict[str, Any] = {"ServerVersion": "0.1.0", "Containers": 3}
        self.error: BaseException | None = None

    async def info(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture(scope="module")
def private_bus() -> Iterator[PrivateBus]:
    bus = start_private_bus()
    yield bus
    bus.stop()
    shutil.rmtree(bus.folder, ignore_errors=True)


@pytest.fixture
async def exported(private_bus: PrivateBus) -> AsyncIterator[tuple[FinchdInterface, FakeSystem]]:
    system = FakeSystem()
    interface = FinchdInterface(STATUS, system)  # type: ignore[arg-type]
    bus = await GuardedMessageBus(bus_address=private_bus.address).connect()
    bus.export(OBJECT_PATH, interface)
    reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
    assert reply == RequestNameReply.PRIMARY_OWNER
    yield interface, system
    await bus.release_name(BUS_NAME)
    bus.disconnect()
    await bus.wait_for_disconnect()


async def run_tool(private_bus: PrivateBus, *command: str) -> tuple[int, str, str]:
    """Run a bus tool without blocking the loop that serves the exported object."""
    process = await asyncio.create_subprocess_exec(
        *command, env=private_bus.env(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, stdout.decode(), stderr.decode()


def gdbus_call(method: str) -> tuple[str, ...]:
    return ("gdbus", "call", "--session", "--dest", BUS_NAME, "--object-path", OBJECT_PATH,
            "--method", f"{INTERFACE_NAME}.{method}")


def assert_one_line_error(stderr: str, error_name: str) -> None:
    message = stderr.strip()
    assert f"GDBus.Error:{error_name}: " in message
    for marker in TRACEBACK_MARKERS:
        assert marker not in message, f"{marker!r} in {message!r}"


async def test_ping_returns_ok(private_bus: PrivateBus, exported: Any) -> None:
    code, stdout, stderr = await run_tool(private_bus, *gdbus_call("Ping"))
    assert code == 0, stderr
    assert stdout.strip() == "('OK',)"


async def test_get_info_returns_flat_dict(private_bus: PrivateBus, exported: Any) -> None:
    client = await SignalRecorder.connect(private_bus.address)
    try:
        reply = await client.call_finchd("GetInfo")
    finally:
        await client.disconnect()
    assert reply.message_type == MessageType.METHOD_RETURN
    assert reply.signature == "a{sv}"
    assert reply.body[0]["ServerVersion"] == Variant("s", "0.1.0")
    assert reply.body[0]["Containers"] == Variant("x", 3)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("first line\nsecond line"),
        KeyError("Containers"),
        ZeroDivisionError("division by zero"),
        AssertionError(),
    ],
    ids=["multi-line", "key-error", "zero-division", "bare-assert"],
)
async def test_internal_failure_is_one_line(
    private_bus: PrivateBus, exported: tuple[FinchdInterface, FakeSystem], error: Exception
) -> None:
    exported[1].error = error
    code, _, stderr = await run_tool(private_bus, *gdbus_call("GetInfo"))
    assert code != 0
    assert_one_line_error(stderr, "io.finchd.Finchd1.Error.Internal")
    assert "internal error in GetInfo; see finchd's log" in stderr


async def test_engine_failure_is_engine_unavailable(
    private_bus: PrivateBus, exported: tuple[FinchdInterface, FakeSystem]
) -> None:
    exported[1].error = EngineError("cannot connect to containerd\nretry later")
    code, _, stderr = await run_tool(private_bus, *gdbus_call("GetInfo"))
    assert code != 0
    assert_one_line_error(stderr, "io.finchd.Finchd1.Error.EngineUnavailable")
    assert "cannot connect to containerd" in stderr
    assert "retry later" not in stderr


async def test_unmarshallable_reply_is_internal(
    private_bus: PrivateBus, exported: tuple[FinchdInterface, FakeSystem]
) -> None:
    exported[1].result = {"TooLarge": 2**70}
    code, _, stderr = await run_tool(private_bus, *gdbus_call("GetInfo"))
    assert code != 0
    assert_one_line_error(stderr, "io.finchd.Finchd1.Error.Internal")


async def test_failing_property_getter_is_internal(
    private_bus: PrivateBus, exported: tuple[FinchdInterface, FakeSystem]
) -> None:
    interface, _ = exported
    interface.status_changed(replace(STATUS, containers_running="many"),  # type: ignore[arg-type]
                             ["containers_running"])
    code, _, stderr = await run_tool(
        private_bus, "gdbus", "call", "--session", "--dest", BUS_NAME, "--object-path",
        OBJECT_PATH, "--method", "org.freedesktop.DBus.Properties.Get", INTERFACE_NAME,
        "ContainersRunning",
    )
    assert code != 0
    assert_one_line_error(stderr, "io.finchd.Finchd1.Error.Internal")


async def test_properties_are_read_only(private_bus: PrivateBus, exported: Any) -> None:
    code, _, stderr = await run_tool(
        private_bus, "busctl", f"--address={private_bus.address}", "set-property",
        BUS_NAME, OBJECT_PATH, INTERFACE_NAME, "State", "s", "stopping",
    )
    assert code != 0
    assert "read" in stderr.lower()


@pytest.mark.parametrize(
    "command",
    [
        ("set-property", BUS_NAME, OBJECT_PATH, INTERFACE_NAME, "State", "s", "stopping"),
        ("get-property", BUS_NAME, OBJECT_PATH, INTERFACE_NAME, "Nope"),
    ],
)
async def test_client_mistake_logs_no_error(
    private_bus: PrivateBus, exported: Any, caplog: pytest.LogCaptureFixture,
    command: tuple[str, ...],
) -> None:
    with caplog.at_level(logging.DEBUG):
        code, _, _ = await run_tool(
            private_bus, "busctl", f"--address={private_bus.address}", *command)
    assert code != 0
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []


async def test_status_change_emits_properties_changed(
    private_bus: PrivateBus, exported: tuple[FinchdInterface, FakeSystem]
) -> None:
    client = await SignalRecorder.connect(private_bus.address)
    try:
        exported[0].status_changed(replace(STATUS, containers_running=5, warnings=()),
                                   ["containers_running", "warnings"])
        message = await client.wait_for(lambda m: m.member == "PropertiesChanged", 5)
    finally:
        await client.disconnect()
    assert message.body[0] == INTERFACE_NAME
    assert message.body[1] == {"ContainersRunning": Variant("u", 5), "Warnings": Variant("as", [])}


async def test_introspection_matches_xml(private_bus: PrivateBus, exported: Any) -> None:
    code, stdout, stderr = await run_tool(
        private_bus, "gdbus", "introspect", "--session", "--xml", "--dest", BUS_NAME,
        "--object-path", OBJECT_PATH,
    )
    assert code == 0, stderr
    assert interface_shape(stdout) == interface_shape(INTERFACE_XML.read_text())


def test_flatten_info_types() -> None:
    flat = flatten_info({
        "Name": "host", "Debug": False, "NCPU": 2, "Load": 0.5, "Labels": [],
        "DriverStatus": [["driver-type", "snapshotter"]], "Plugins": {"Log": ["json-file"],
                                                                      "Authorization": None},
        "GenericResources": None, "Runtimes": {"runc": {"path": "runc"}},
        "Mixed": [1, "a"],
    })
    assert flat == {
        "Name": Variant("s", "host"), "Debug": Variant("b", False), "NCPU": Variant("x", 2),
        "Load": Variant("d", 0.5), "Labels": Variant("as", []),
        "DriverStatus": Variant("aas", [["driver-type", "snapshotter"]]),
        "Plugins.Log": Variant("as", ["json-file"]), "Runtimes.runc.path": Variant("s", "runc"),
        "Mixed": Variant("s", '[1, "a"]'),
    }
