"""finchd's status on the D-Bus session bus, for desktop tools (see docs/dbus.md)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from finchd.dbus.service import StatusBusService

log = logging.getLogger(__name__)


async def start_status_bus(services: dict[str, Any]) -> StatusBusService | None:
    """Own io.finchd.Finchd1 on the session bus; log one warning and return None if D-Bus is unavailable."""
    try:
        from finchd.dbus.service import start_status_service
    except ImportError as exc:
        log.warning("D-Bus status is off: %s (install dbus-next)", exc)
        return None
    return await start_status_service(services["status"], services["system"])


async def stop_status_bus(service: StatusBusService | None) -> None:
    """Release io.finchd.Finchd1, if finchd owns it."""
    if service is not None:
        await service.stop()
