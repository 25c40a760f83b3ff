"""The io.finchd.Finchd1 interface: read-only status properties, signals, two methods.

This module alone contains the D-Bus signature strings. dbus-next reads them from
the annotations, so this module does not use postponed annotations, and mypy
cannot check those annotations as types.
"""
# mypy: disable-error-code="name-defined,valid-type,misc"
# ruff: noqa: F821

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dbus_next import introspection as intr
from dbus_next.constants import PropertyAccess
from dbus_next.errors import DBusError
from dbus_next.signature import SignatureTree
from dbus_next.service import ServiceInterface, dbus_property, method, signal

from finchd.dbus.names import (
    ENGINE_ERROR,
    ERROR_PREFIX,
    INTERFACE_NAME,
    INTERNAL_ERROR,
    STOPPING_ERROR,
    one_line,
)
from finchd.dbus.values import flatten_info
from finchd.errors import EngineError, FinchdError
from finchd.services.status import ContainerEvent, Status
from finchd.services.system import SystemService

log = logging.getLogger(__name__)

# D-Bus property name for each `Status` field.
PROPERTY_NAMES = {
    "version": "Version",
    "api_version": "ApiVersion",
    "state": "State",
    "state_reason": "StateReason",
    "socket_path": "SocketPath",
    "rootless": "Rootless",
    "network_driver": "NetworkDriver",
    "port_driver": "PortDriver",
    "cgroup_version": "CgroupVersion",
    "warnings": "Warnings",
    "containers_running": "ContainersRunning",
    "containers_paused": "ContainersPaused",
    "containers_stopped": "ContainersStopped",
    "images": "Images",
    "started_at": "StartedAt",
}

# Argument names for the introspection data; dbus-next leaves out-arguments unnamed.
ARGUMENT_NAMES = {
    "StateChanged": ("new", "old", "reason"),
    "ContainerEvent": ("id", "name", "action"),
    "Ping": ("reply",),
    "GetInfo": ("info",),
}

READ = PropertyAccess.READ
AsyncMethod = Callable[..., Awaitable[Any]]


def bus_error(name: str, exc: BaseException) -> DBusError:
    return DBusError(name, one_line(str(exc)) or type(exc).__name__)


def guarded(function: AsyncMethod) -> AsyncMethod:
    """Turn every failure of an exported method into a one-line io.finchd.Finchd1.Error.

    dbus-next sends any exception other than DBusError to the caller with its
    traceback, and a result that does not match the signature fails later,
    inside the library. The result is therefore checked here, and the
    traceback of an unexpected error goes to finchd's log only.
    """
    signature = inspect.signature(function).return_annotation
    tree = SignatureTree(signature)

    @functools.wraps(function)
    async def wrapper(self: Any, *args: Any) -> Any:
        try:
            result = await function(self, *args)
            tree.verify([result])
            return result
        except DBusError as exc:
            if exc.type.startswith(ERROR_PREFIX):
                raise DBusError(exc.type, one_line(exc.text)) from None
            raise bus_error(INTERNAL_ERROR, exc) from None
        except EngineError as exc:
            raise bus_error(ENGINE_ERROR, exc) from None
        except asyncio.CancelledError:
            raise DBusError(STOPPING_ERROR, "finchd is shutting down") from None
        except Exception as exc:  # noqa: BLE001 - nothing but DBusError may reach the bus
            log.exception("D-Bus method %s failed", function.__name__)
            if isinstance(exc, FinchdError) and exc.public:
                raise bus_error(ERROR_PREFIX + "Failed", exc) from None
            raise DBusError(
                INTERNAL_ERROR, f"internal error in {function.__name__}; see finchd's log"
            ) from None

    return wrapper


class FinchdInterface(ServiceInterface):
    """finchd's status on the bus. Nothing here changes any state."""

    def __init__(self, status: Status, system: SystemService) -> None:
        super().__init__(INTERFACE_NAME)
        self._status = status
        self._system = system

    def introspect(self) -> intr.Interface:
        """Return the introspection data, with every argument named."""
        data = super().introspect()
        for signal_data in data.signals:
            self._name_arguments(signal_data.name, signal_data.args)
        for method_data in data.methods:
            self._name_arguments(method_data.name, method_data.out_args)
        return data

    @staticmethod
    def _name_arguments(member: str, arguments: list[intr.Arg]) -> None:
        for argument, name in zip(arguments, ARGUMENT_NAMES.get(member, ())):
            argument.name = name

    def status_changed(self, status: Status, changed: list[str]) -> None:
        """Store the new snapshot and emit PropertiesChanged for the changed fields."""
        self._status = status
        values = {PROPERTY_NAMES[name]: self._value(name) for name in changed}
        self._emit("PropertiesChanged", lambda: self.emit_properties_changed(values))

    def state_changed(self, new: str, old: str, reason: str) -> None:
        self._emit("StateChanged", lambda: self.StateChanged(new, old, reason))

    def container_events(self, events: list[ContainerEvent]) -> None:
        for event in events:
            self._emit(
                "ContainerEvent",
                functools.partial(self.ContainerEvent, event.id, event.name, event.action),
            )

    def _emit(self, name: str, emit: Callable[[], object]) -> None:
        try:
            emit()
        except Exception:  # noqa: BLE001 - a failed signal must not stop the monitor
            log.exception("emitting the D-Bus signal %s failed", name)

    def _value(self, name: str) -> Any:
        value = getattr(self._status, name)
        return list(value) if isinstance(value, tuple) else value

    @dbus_property(access=READ)
    def Version(self) -> "s":
        return str(self._status.version)

    @dbus_property(access=READ)
    def ApiVersion(self) -> "s":
        return str(self._status.api_version)

    @dbus_property(access=READ)
    def State(self) -> "s":
        return str(self._status.state)

    @dbus_property(access=READ)
    def StateReason(self) -> "s":
        return str(self._status.state_reason)

    @dbus_property(access=READ)
    def SocketPath(self) -> "s":
        return str(self._status.socket_path)

    @dbus_property(access=READ)
    def Rootless(self) -> "b":
        return bool(self._status.rootless)

    @dbus_property(access=READ)
    def NetworkDriver(self) -> "s":
        return str(self._status.network_driver)

    @dbus_property(access=READ)
    def PortDriver(self) -> "s":
        return str(self._status.port_driver)

    @dbus_property(access=READ)
    def CgroupVersion(self) -> "s":
        return str(self._status.cgroup_version)

    @dbus_property(access=READ)
    def Warnings(self) -> "as":
        return [str(warning) for warning in self._status.warnings]

    @dbus_property(access=READ)
    def ContainersRunning(self) -> "u":
        return int(self._status.containers_running)

    @dbus_property(access=READ)
    def ContainersPaused(self) -> "u":
        return int(self._status.containers_paused)

    @dbus_property(access=READ)
    def ContainersStopped(self) -> "u":
        return int(self._status.containers_stopped)

    @dbus_property(access=READ)
    def Images(self) -> "u":
        return int(self._status.images)

    @dbus_property(access=READ)
    def StartedAt(self) -> "t":
        return int(self._status.started_at)

    @signal()
    def StateChanged(self, new: str, old: str, reason: str) -> "sss":
        return [new, old, reason]

    @signal()
    def ContainerEvent(self, container_id: str, name: str, action: str) -> "sss":
        return [container_id, name, action]

    @method()
    @guarded
    async def Ping(self) -> "s":
        return "OK"

    @method()
    @guarded
    async def GetInfo(self) -> "a{sv}":
        return flatten_info(await self._system.info())
