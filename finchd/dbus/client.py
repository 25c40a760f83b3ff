"""`finchd status`: read finchd's status from the session bus and print it."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timezone
from typing import Any

from dbus_next.constants import MessageFlag, MessageType
from dbus_next.message import Message
from dbus_next.aio.message_bus import MessageBus

from finchd.dbus.names import BUS_NAME, INTERFACE_NAME, OBJECT_PATH
from finchd.dbus.service import session_bus_address

EXIT_NOT_RUNNING = 3
EXIT_NO_BUS = 4
CALL_TIMEOUT = 10.0
# Errors of the bus daemon when no process owns BUS_NAME and none may be started.
NOT_RUNNING_ERRORS = (
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
)
START_COMMANDS = ("systemctl --user start finch.socket", "finchd serve")


class StatusError(Exception):
    """The session bus or finchd failed to return the status."""


async def read_status(address: str) -> dict[str, Any] | None:
    """Return finchd's properties, or None when finchd does not own its bus name.

    The call carries NO_AUTO_START, so reading the status never starts finchd
    through D-Bus activation.
    """
    try:
        bus = await MessageBus(bus_address=address).connect()
    except Exception as exc:  # noqa: BLE001 - any connection failure has one answer
        raise StatusError(f"cannot connect to the D-Bus session bus at {address}: {exc}") from exc
    try:
        call = Message(
            destination=BUS_NAME, path=OBJECT_PATH, interface="org.freedesktop.DBus.Properties",
            member="GetAll", signature="s", body=[INTERFACE_NAME], flags=MessageFlag.NO_AUTOSTART,
        )
        reply = await asyncio.wait_for(bus.call(call), CALL_TIMEOUT)
    except TimeoutError as exc:
        raise StatusError(f"{BUS_NAME} did not reply within {CALL_TIMEOUT:.0f} s") from exc
    finally:
        bus.disconnect()
    assert reply is not None
    if reply.message_type == MessageType.ERROR:
        if reply.error_name in NOT_RUNNING_ERRORS:
            return None
        text = reply.body[0] if reply.body else ""
        raise StatusError(f"{BUS_NAME} returned {reply.error_name}: {text}")
    return {name: variant.value for name, variant in reply.body[0].items()}


def started_text(microseconds: int) -> str:
    started = datetime.fromtimestamp(microseconds / 1e6, timezone.utc).astimezone()
    return started.strftime("%Y-%m-%d %H:%M:%S %Z")


def format_status(status: dict[str, Any]) -> str:
    """Return the few lines that `finchd status` prints for a running finchd."""
    state = status["State"]
    if state != "running":
        state = f"{state} ({status['StateReason']})"
    total = status["ContainersRunning"] + status["ContainersPaused"] + status["ContainersStopped"]
    lines = [
        f"finchd {status['Version']} (API {status['ApiVersion']}): {state}",
        f"  Socket:     {status['SocketPath']}, since {started_text(status['StartedAt'])}",
        f"  Engine:     {'rootless' if status['Rootless'] else 'rootful'}, "
        f"{status['NetworkDriver']} network, {status['PortDriver']} port driver, "
        f"cgroup v{status['CgroupVersion']}",
        f"  Containers: {total} ({status['ContainersRunning']} running, "
        f"{status['ContainersPaused']} paused, {status['ContainersStopped']} stopped)",
        f"  Images:     {status['Images']}",
    ]
    lines += [f"  {warning}" for warning in status["Warnings"]]
    return "\n".join(lines)


def not_running_text() -> str:
    return (
        f"finchd is not running: no process owns {BUS_NAME} on the session bus.\n"
        f"Start it with `{START_COMMANDS[0]}` (systemd) or `{START_COMMANDS[1]}`."
    )


def json_status(status: dict[str, Any] | None) -> dict[str, Any]:
    """Return the `--json` document: the D-Bus properties plus Running and Containers."""
    if status is None:
        return {"Running": False, "State": "not running", "StartCommands": list(START_COMMANDS)}
    total = status["ContainersRunning"] + status["ContainersPaused"] + status["ContainersStopped"]
    return {"Running": True, **status, "Containers": total}


def run_status(as_json: bool) -> int:
    """Print finchd's status. Return 0 when finchd replies, 3 when it is not running."""
    address = session_bus_address()
    try:
        if address is None:
            raise StatusError(
                "no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is unset and "
                "$XDG_RUNTIME_DIR/bus does not exist"
            )
        status = asyncio.run(read_status(address))
    except StatusError as exc:
        if as_json:
            print(json.dumps({"Running": None, "Error": str(exc)}))
        print(f"finchd status: {exc}", file=sys.stderr)
        return EXIT_NO_BUS
    if as_json:
        print(json.dumps(json_status(status), indent=2))
    else:
        print(format_status(status) if status is not None else not_running_text())
    return 0 if status is not None else EXIT_NOT_RUNNING
