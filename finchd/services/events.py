"""`GET /events`: Docker container events made from containerd's event stream.

Only container events are produced (create, start, die, destroy, pause,
unpause), for events that happen while the client is connected. `since` in
the past replays nothing, because containerd keeps no event history.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from finchd.errors import EngineError, InvalidParameterError
from finchd.nerdctl.containers import Containers
from finchd.nerdctl.events import Events
from finchd.services.status import container_action

log = logging.getLogger(__name__)

SUPPORTED_FILTERS = ("type", "event", "container", "image")


@dataclass(frozen=True)
class EventFilters:
    """The `filters` of `/events`: accepted values per key; an empty key accepts all."""

    types: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    containers: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> EventFilters:
        """Parse Docker's filters JSON: `{"key": ["value"]}` or `{"key": {"value": true}}`."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"invalid filters {text!r}: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidParameterError(f"invalid filters {text!r}: expected a JSON object")
        values: dict[str, frozenset[str]] = {}
        for key, accepted in data.items():
            if key not in SUPPORTED_FILTERS:
                raise InvalidParameterError(f"invalid filter '{key}'")
            if isinstance(accepted, dict):
                accepted = [value for value, enabled in accepted.items() if enabled]
            if not isinstance(accepted, list):
                raise InvalidParameterError(f"invalid filter '{key}': expected a list of values")
            values[key] = frozenset(str(value) for value in accepted)
        return cls(
            types=values.get("type", frozenset()),
            actions=values.get("event", frozenset()),
            containers=values.get("container", frozenset()),
            images=values.get("image", frozenset()),
        )

    def accepts(self, message: dict[str, Any]) -> bool:
        if self.types and message["Type"] not in self.types:
            return False
        if self.actions and message["Action"] not in self.actions:
            return False
        actor = message["Actor"]
        if self.containers and not any(
            actor["ID"].startswith(reference) or actor["Attributes"].get("name") == reference
            for reference in self.containers
        ):
            return False
        if self.images and actor["Attributes"].get("image") not in self.images:
            return False
        return True


def parse_timestamp(text: str | None, name: str) -> float | None:
    """Parse `since` or `until` as Unix seconds, with an optional fraction, as the docker CLI sends it."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidParameterError(f"invalid {name} {text!r}: expected Unix seconds")
    return value


def docker_event(container_id: str, action: str, attributes: dict[str, str],
                 time_ns: int) -> dict[str, Any]:
    """Return a container event in the shape of Docker's `/events` (API 1.43)."""
    return {
        "status": action,
        "id": container_id,
        "from": attributes.get("image", ""),
        "Type": "container",
        "Action": action,
        "Actor": {"ID": container_id, "Attributes": attributes},
        "scope": "local",
        "time": time_ns // 1_000_000_000,
        "timeNano": time_ns,
    }


class EventService:
    """Turns containerd's events of one namespace into Docker container events."""

    def __init__(self, events: Events, containers: Containers, namespace: str) -> None:
        self.events = events
        self.containers = containers
        self.namespace = namespace
        self._attributes: dict[str, dict[str, str]] = {}

    async def attributes(self, container_id: str) -> dict[str, str]:
        """Return the image and name of a container, from the last lookup once it is gone."""
        try:
            natives = await self.containers.inspect([container_id])
        except EngineError:
            natives = []
        if natives:
            native = natives[0]
            attributes = {
                "image": str(native.get("Image") or ""),
                "name": str(native.get("Name") or "").lstrip("/"),
            }
            self._attributes[container_id] = attributes
        return self._attributes.get(container_id, {"image": "", "name": ""})

    async def stream(self, filters: EventFilters,
                     until: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield Docker container events until the engine's stream ends or `until` passes."""
        async for event in self.events.stream():
            if until is not None and time.time() > until:
                return
            if event.namespace != self.namespace:
                continue
            action = container_action(event)
            if action is None:
                continue
            attributes = await self.attributes(event.container_id)
            if action == "destroy":
                self._attributes.pop(event.container_id, None)
            message = docker_event(event.container_id, action, attributes, time.time_ns())
            if filters.accepts(message):
                yield message
