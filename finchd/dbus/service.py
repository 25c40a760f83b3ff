"""Owning io.finchd.Finchd1 on the session bus while finchd serves the API."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from dbus_next.constants import MessageType, NameFlag, ReleaseNameReply, RequestNameReply
from dbus_next.errors import DBusError
from dbus_next.message import Message
from dbus_next.aio.message_bus import MessageBus

from finchd.dbus.interface import FinchdInterface
from finchd.dbus.names import BUS_NAME, ERROR_PREFIX, INTERNAL_ERROR, OBJECT_PATH
from finchd.services.status import StatusMonitor
from finchd.services.system import SystemService

log = logging.getLogger(__name__)

# dbus-next's error names that carry a formatted traceback in their message.
TRACEBACK_ERRORS = ("org.freedesktop.DBus.Error.ServiceError", "org.freedesktop.DBus.Error.InternalError")
RELEASE_TIMEOUT = 5.0
# How long finchd waits for its first count before it takes the bus name. A
# client that started finchd through D-Bus activation then reads real counts.
FIRST_PASS_TIMEOUT = 10.0


def session_bus_address() -> str | None:
    """Return the session bus address, as libdbus and sd-bus find it.

    That is `DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus` when that
    socket exists (dbus-user-session's bus), else None.
    """
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime, "bus").is_socket():
        return f"unix:path={runtime}/bus"
    return None


def internal_error(reply: Message, text: str) -> Message:
    """Return an Internal error that goes where `reply` (an error or method return) goes."""
    return Message(
        message_type=MessageType.ERROR,
        reply_serial=reply.reply_serial,
        destination=reply.destination,
        error_name=INTERNAL_ERROR,
        signature="s",
        body=[text],
    )


class GuardedMessageBus(MessageBus):
    """A message bus that never sends a Python traceback.

    Exported methods convert their own errors (finchd.dbus.interface.guarded).
    This catches the rest: a failing property getter, a reply that cannot be
    marshalled, an error inside dbus-next.
    """

    def send(self, msg: Message) -> asyncio.Future[None]:  # type: ignore[override]
        if msg.message_type == MessageType.ERROR and self._carries_traceback(msg):
            log.error("replacing a D-Bus error %s with %s: %s", msg.error_name,
                      INTERNAL_ERROR, msg.body[0] if msg.body else "")
            msg = internal_error(msg, "internal error; see finchd's log")
        try:
            future: asyncio.Future[None] = super().send(msg)
            return future
        except Exception:
            if msg.message_type != MessageType.METHOD_RETURN:
                raise
            log.exception("cannot marshal the reply to call %s", msg.reply_serial)
            error = internal_error(msg, "internal error: invalid reply; see finchd's log")
            future = super().send(error)
            return future

    def _on_message(self, msg: Message) -> None:
        # dbus-next replies to a call that fails with DBusError (an unknown
        # property, a write to a read-only one) and then logs the error with a
        # traceback at ERROR under the root logger. Such a call is the client's
        # mistake, so it is logged at DEBUG.
        try:
            self._process_message(msg)
        except DBusError as exc:
            log.debug("D-Bus call %s.%s from %s failed: %s: %s", msg.interface, msg.member,
                      msg.sender, exc.type, exc.text)
        except Exception:
            log.exception("cannot process D-Bus message %s.%s from %s", msg.interface,
                          msg.member, msg.sender)

    @staticmethod
    def _carries_traceback(msg: Message) -> bool:
        text = str(msg.body[0]) if msg.body else ""
        if msg.error_name in TRACEBACK_ERRORS or "\n" in text:
            return True
        return not msg.error_name.startswith(ERROR_PREFIX) and "Traceback" in text


class StatusBusService:
    """finchd's status object on the bus, exported and owned under BUS_NAME."""

    def __init__(self, bus: MessageBus, monitor: StatusMonitor, interface: FinchdInterface):
        self.bus = bus
        self.monitor = monitor
        self.interface = interface
        self._watcher = asyncio.create_task(self._watch_connection(), name="dbus-connection")

    async def _watch_connection(self) -> None:
        try:
            await self.bus.wait_for_disconnect()
        except Exception as exc:  # noqa: BLE001 - the API goes on without the bus
            log.warning("lost the session bus connection (%s); finchd serves the API "
                        "without D-Bus until it restarts", repr(exc))
            self.monitor.listener = None
            await self.monitor.stop()

    async def stop(self) -> None:
        """Enter `stopping`, stop the monitor and release the bus name."""
        await self.monitor.stop()
        self.monitor.listener = None
        if not self.bus.connected:
            return
        try:
            reply = await asyncio.wait_for(self.bus.release_name(BUS_NAME), RELEASE_TIMEOUT)
            if reply != ReleaseNameReply.RELEASED:
                log.warning("releasing %s returned %s", BUS_NAME, reply.name)
        except Exception as exc:  # noqa: BLE001 - shutdown goes on without the bus
            log.warning("releasing %s failed: %s", BUS_NAME, exc)
        self.bus.unexport(OBJECT_PATH)
        self.bus.disconnect()
        try:
            await asyncio.wait_for(self._watcher, RELEASE_TIMEOUT)
        except TimeoutError:
            log.warning("the session bus connection did not close within %.0f s", RELEASE_TIMEOUT)
        log.info("released %s", BUS_NAME)


async def start_status_service(
    monitor: StatusMonitor, system: SystemService
) -> StatusBusService | None:
    """Export the status object and own BUS_NAME; return None when that fails.

    Every failure is logged as one warning, because finchd serves the API
    without D-Bus.
    """
    address = session_bus_address()
    if address is None:
        log.warning("D-Bus status is off: no session bus (DBUS_SESSION_BUS_ADDRESS is unset "
                    "and $XDG_RUNTIME_DIR/bus does not exist)")
        return None
    try:
        bus = await GuardedMessageBus(bus_address=address).connect()
    except Exception as exc:  # noqa: BLE001 - any connection failure means no D-Bus
        log.warning("D-Bus status is off: cannot connect to the session bus at %s: %s",
                    address, exc)
        return None

    interface = FinchdInterface(monitor.status, system)
    bus.export(OBJECT_PATH, interface)
    monitor.listener = interface
    monitor.start()
    try:
        await asyncio.wait_for(monitor.first_pass.wait(), FIRST_PASS_TIMEOUT)
    except TimeoutError:
        log.warning("no container count within %.0f s; taking %s anyway",
                    FIRST_PASS_TIMEOUT, BUS_NAME)
    try:
        reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
    except Exception as exc:  # noqa: BLE001 - any failure here means no D-Bus
        reply = None
        problem = f"requesting the name failed: {exc}"
    else:
        problem = f"another process owns {BUS_NAME}"
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        log.warning("D-Bus status is off: %s", problem)
        await monitor.stop()
        monitor.listener = None
        bus.disconnect()
        return None
    log.info("owning %s on the session bus at %s", BUS_NAME, address)
    return StatusBusService(bus, monitor, interface)
