"""finchd's status for desktop tools: state, engine facts and counts, kept current.

`StatusMonitor` follows containerd's event stream and recounts containers and
images after each burst of events, so changes made with nerdctl directly show
as well as those made through the API. It reports changes to a listener and
does not depend on D-Bus.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Protocol

from finchd import __version__
from finchd.errors import EngineError
from finchd.nerdctl.events import EngineEvent, Events
from finchd.services.system import (
    API_VERSION,
    ContainerCounts,
    SystemService,
    cgroup_version,
    info_warnings,
)

log = logging.getLogger(__name__)

STARTING = "starting"
RUNNING = "running"
DEGRADED = "degraded"
STOPPING = "stopping"

# Events that arrive within this window lead to one recount and one batch of
# container events.
COALESCE_SECONDS = 0.1
# A burst sends at most this many container events. The rest are dropped and
# counted in the log, but the counts stay exact because they come from a recount.
MAX_EVENTS_PER_BATCH = 64
# How often the engine's health is checked while the event stream is open.
HEALTH_INTERVAL = 1.0
# How often a down engine is checked for its return.
RETRY_INTERVAL = 0.5
# A full recount at this interval repairs counts after any lost event.
RESYNC_INTERVAL = 30.0
# nerdctl needs a moment to subscribe; a recount after it covers events sent meanwhile.
SUBSCRIBE_SETTLE_SECONDS = 1.0
# While finchd starts, a missing engine is `starting`, not `degraded`, this long.
STARTUP_GRACE_SECONDS = 120.0

# containerd event topics and the Docker event action each one is.
CONTAINER_ACTIONS = {
    "/containers/create": "create",
    "/tasks/start": "start",
    "/tasks/exit": "die",
    "/containers/delete": "destroy",
    "/tasks/paused": "pause",
    "/tasks/resumed": "unpause",
}
IMAGE_TOPIC_PREFIX = "/images/"


@dataclass(frozen=True)
class Status:
    """A snapshot of everything that desktop tools read."""

    version: str
    api_version: str
    state: str
    state_reason: str
    socket_path: str
    rootless: bool
    network_driver: str
    port_driver: str
    cgroup_version: str
    warnings: tuple[str, ...]
    containers_running: int
    containers_paused: int
    containers_stopped: int
    images: int
    started_at: int
    """Microseconds since the epoch."""


@dataclass(frozen=True)
class ContainerEvent:
    """A Docker-style container event: id, name and action."""

    id: str
    name: str
    action: str


class StatusListener(Protocol):
    """Receiver of every change that StatusMonitor detects."""

    def status_changed(self, status: Status, changed: list[str]) -> None:
        """Receive the new snapshot and the names of the `Status` fields that changed."""

    def state_changed(self, new: str, old: str, reason: str) -> None:
        """Receive a change of `Status.state`."""

    def container_events(self, events: list[ContainerEvent]) -> None:
        """Receive one coalesced batch of container events."""


def container_action(event: EngineEvent) -> str | None:
    """Return the Docker action of a containerd event, or None if it has none."""
    action = CONTAINER_ACTIONS.get(event.topic)
    if action == "die" and event.process_id != event.container_id:
        return None  # an exec'd process exited, not the container
    return action


def changed_fields(old: Status, new: Status) -> list[str]:
    return [item.name for item in fields(Status) if getattr(old, item.name) != getattr(new, item.name)]


class StatusMonitor:
    """Keep a `Status` current and tell a listener what changed."""

    def __init__(
        self,
        system: SystemService,
        events: Events,
        namespace: str,
        socket_path: str,
        engine_running: Callable[[], bool],
    ) -> None:
        self.system = system
        self.events = events
        self.namespace = namespace
        self.engine_running = engine_running
        self.listener: StatusListener | None = None
        self.status = Status(
            version=__version__, api_version=API_VERSION, state=STARTING,
            state_reason="waiting for the engine", socket_path=socket_path, rootless=True,
            network_driver="slirp4netns", port_driver="builtin",
            cgroup_version=cgroup_version(), warnings=tuple(info_warnings()),
            containers_running=0, containers_paused=0, containers_stopped=0, images=0,
            started_at=time.time_ns() // 1000,
        )
        self._started = time.monotonic()
        self._names: dict[str, str] = {}
        self._pending: dict[tuple[str, str], None] = {}
        self._images_changed = True
        self._wakeup = asyncio.Event()
        # Set once the counts are real or the engine was found down.
        self.first_pass = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="status-monitor")

    async def stop(self) -> None:
        """Enter `stopping` and stop following the engine."""
        self._set_state(STOPPING, "finchd is shutting down")
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _update(self, **values: object) -> None:
        new = replace(self.status, **values)  # type: ignore[arg-type]
        changed = changed_fields(self.status, new)
        self.status = new
        if changed and self.listener is not None:
            self.listener.status_changed(new, changed)

    def _set_state(self, state: str, reason: str) -> None:
        old = self.status.state
        if old == STOPPING:
            return
        if old == state and self.status.state_reason == reason:
            return
        if old != state:
            log.info("state %s -> %s: %s", old, state, reason)
        self._update(state=state, state_reason=reason)
        if old != state and self.listener is not None:
            self.listener.state_changed(state, old, reason)

    def _engine_down(self, reason: str) -> None:
        self.first_pass.set()
        within_grace = time.monotonic() - self._started < STARTUP_GRACE_SECONDS
        if self.status.state == STARTING and within_grace:
            self._set_state(STARTING, f"waiting for the engine: {reason}")
        else:
            self._set_state(DEGRADED, reason)

    async def _engine_up(self) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.engine_running)

    async def _run(self) -> None:
        while True:
            if not await self._engine_up():
                self._engine_down("containerd does not accept connections")
                await asyncio.sleep(RETRY_INTERVAL)
                continue
            try:
                await self._follow_engine()
            except EngineError as exc:
                log.warning("following the engine failed: %s", exc)
                self._engine_down(str(exc))
            except Exception:  # noqa: BLE001 - the monitor must outlive any bug in one pass
                log.exception("the status monitor failed; retrying")
                self._engine_down("internal error; see finchd's log")
            await asyncio.sleep(RETRY_INTERVAL)

    async def _follow_engine(self) -> None:
        """Follow the event stream until it ends or the engine goes down."""
        reader = asyncio.create_task(self._read_events(), name="status-events")
        try:
            self._images_changed = True
            await self._recount()
            self._set_state(RUNNING, "the engine is running")
            self.first_pass.set()
            await self._serve_batches(reader)
        finally:
            reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, EngineError):
                pass

    async def _serve_batches(self, reader: asyncio.Task[None]) -> None:
        next_recount = time.monotonic() + SUBSCRIBE_SETTLE_SECONDS
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), HEALTH_INTERVAL)
            except TimeoutError:
                pass
            if reader.done():
                reader.result()  # raises EngineError when nerdctl failed
                raise EngineError("the engine's event stream ended")
            if not await self._engine_up():
                raise EngineError("containerd does not accept connections")
            if self._wakeup.is_set():
                await asyncio.sleep(COALESCE_SECONDS)
                self._wakeup.clear()
                await self._flush()
            elif time.monotonic() >= next_recount:
                self._images_changed = True
                await self._recount()
                next_recount = time.monotonic() + RESYNC_INTERVAL

    async def _read_events(self) -> None:
        async for event in self.events.stream():
            if event.namespace != self.namespace:
                continue
            if event.topic.startswith(IMAGE_TOPIC_PREFIX):
                self._images_changed = True
                self._wakeup.set()
                continue
            action = container_action(event)
            if action is not None and event.container_id:
                self._pending[(event.container_id, action)] = None
                self._wakeup.set()

    async def _recount(self) -> None:
        containers = await self.system.container_states()
        for container in containers:
            self._names[container.id] = container.name
        counts = ContainerCounts.of([container.status for container in containers])
        values: dict[str, object] = {
            "containers_running": counts.running,
            "containers_paused": counts.paused,
            "containers_stopped": counts.stopped,
            "warnings": tuple(info_warnings()),
        }
        if self._images_changed:
            self._images_changed = False
            values["images"] = await self.system.image_count()
        self._update(**values)

    async def _flush(self) -> None:
        """Recount, then send the container events collected since the last flush."""
        pending = list(self._pending)
        self._pending.clear()
        await self._recount()
        if len(pending) > MAX_EVENTS_PER_BATCH:
            log.info("dropped %d of %d container events in one burst",
                     len(pending) - MAX_EVENTS_PER_BATCH, len(pending))
            pending = pending[:MAX_EVENTS_PER_BATCH]
        batch = [ContainerEvent(cid, self._names.get(cid, ""), action) for cid, action in pending]
        for cid, action in pending:
            if action == "destroy":
                self._names.pop(cid, None)
        if batch and self.listener is not None:
            self.listener.container_events(batch)
