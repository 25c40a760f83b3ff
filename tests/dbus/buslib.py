"""A test client for finchd on D-Bus: calls, signal recording, introspection XML."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dbus_next import Message, MessageType
from dbus_next.aio import MessageBus

from finchd.dbus.names import BUS_NAME, INTERFACE_NAME, OBJECT_PATH

REPOSITORY = Path(__file__).resolve().parents[2]
INTERFACE_XML = REPOSITORY / "dbus" / "io.finchd.Finchd1.xml"


def interface_shape(xml_text: str) -> list[tuple[str, ...]]:
    """Return the members of io.finchd.Finchd1 in `xml_text` as comparable tuples.

    Each member and argument becomes the tuple of its tag and attributes;
    whitespace, comments and the other interfaces are left out.
    """
    root = ElementTree.fromstring(xml_text)
    interfaces = [node for node in root.iter("interface") if node.get("name") == INTERFACE_NAME]
    assert len(interfaces) == 1, f"{INTERFACE_NAME} not found once in {xml_text}"
    shape = []
    for member in interfaces[0]:
        shape.append((member.tag, *sorted(f"{k}={v}" for k, v in member.attrib.items())))
        for argument in member:
            shape.append(("  " + argument.tag, *sorted(f"{k}={v}" for k, v in argument.attrib.items())))
    return shape


def busctl(address: str, *args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    """Run `busctl --user ARGS` with DBUS_SESSION_BUS_ADDRESS set to `address`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DBUS_")}
    env["DBUS_SESSION_BUS_ADDRESS"] = address
    return subprocess.run(["busctl", "--user", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def gdbus(env: dict[str, str], *args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["gdbus", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def get_property(address: str, name: str) -> str:
    """Return `busctl get-property` output for one property, such as `u 1`."""
    result = busctl(address, "get-property", BUS_NAME, OBJECT_PATH, INTERFACE_NAME, name)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def wait_for_property(address: str, name: str, expected: str, timeout: float) -> float:
    """Poll a property with busctl until it equals `expected`; return the seconds taken."""
    started = time.monotonic()
    value = ""
    while time.monotonic() - started < timeout:
        value = get_property(address, name)
        if value == expected:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{name} is {value!r}, not {expected!r}, after {timeout} s")


class SignalRecorder:
    """A dbus-next connection that records every signal sent by BUS_NAME's owner."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.signals: list[Message] = []
        self._arrived = asyncio.Event()

    @classmethod
    async def connect(cls, address: str) -> SignalRecorder:
        recorder = cls(await MessageBus(bus_address=address).connect())
        recorder.bus.add_message_handler(recorder._record)
        await recorder.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                            "AddMatch", "s", [f"type='signal',sender='{BUS_NAME}'"])
        return recorder

    def _record(self, message: Message) -> None:
        if message.message_type == MessageType.SIGNAL and message.path == OBJECT_PATH:
            self.signals.append(message)
            self._arrived.set()

    async def call(self, destination: str, path: str, interface: str, member: str,
                   signature: str = "", body: list[Any] | None = None) -> Message:
        reply = await self.bus.call(Message(destination=destination, path=path,
                                            interface=interface, member=member,
                                            signature=signature, body=body or []))
        assert reply is not None
        return reply

    async def call_finchd(self, member: str) -> Message:
        return await self.call(BUS_NAME, OBJECT_PATH, INTERFACE_NAME, member)

    async def wait_for(self, matches: Callable[[Message], bool], timeout: float) -> Message:
        """Return the first recorded signal that `matches`, waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.signals:
                if matches(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [(m.member, m.body) for m in self.signals]
                raise AssertionError(f"no matching signal within {timeout} s; seen: {seen}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass

    async def disconnect(self) -> None:
        self.bus.disconnect()
        await self.bus.wait_for_disconnect()


def is_signal(member: str, *body: Any) -> Callable[[Message], bool]:
    """Match a finchd signal by member and the leading arguments of its body."""
    def matches(message: Message) -> bool:
        return (message.interface == INTERFACE_NAME and message.member == member
                and list(message.body[: len(body)]) == list(body))
    return matches


def is_properties_changed(name: str, value: Any) -> Callable[[Message], bool]:
    """Match PropertiesChanged of io.finchd.Finchd1 that sets `name` to `value`."""
    def matches(message: Message) -> bool:
        if message.member != "PropertiesChanged" or message.body[0] != INTERFACE_NAME:
            return False
        changed = message.body[1]
        return name in changed and changed[name].value == value
    return matches


# NOTE: dbus-next 0.2.3's disconnect() shuts its socket down but never closes
# it, so every test connection ends in a ResourceWarning. Only sockets
# connected to the private test buses under /tmp/fdbus-* are ignored.
SOCKET_LEAK_FILTERS = [
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <socket.socket fd=\d+, family=1, type=1, proto=0, "
        r"raddr=/tmp/fdbus-:pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.filterwarnings(r"ignore:unclosed <socket.socket .*raddr=/tmp/fdbus-:ResourceWarning"),
]
