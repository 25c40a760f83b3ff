"""Accepting connections, tracking activity, idle exit and the systemd status line.

finchd accepts connections itself instead of through an asyncio Server, so that
it can stop and resume accepting without closing the listening socket. Under
socket activation that socket belongs to systemd: connections that arrive while
finchd does not accept wait in its backlog and start the next finch.service.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from finchd.activation import Notifier

log = logging.getLogger(__name__)

# Connections taken from the backlog per readable event.
ACCEPT_BATCH = 64
# How long a connection accepted just before accepting stopped may take to send
# its first request, and how long any open connection must have been quiet
# before an idle exit closes it.
DRAIN_GRACE = 1.0
DRAIN_POLL = 0.1
# How often the status line is refreshed while nothing changes.
STATUS_INTERVAL = 60.0
# Delay between a request that may change containers and the status refresh it causes.
STATUS_DELAY = 1.0
MUTATING_METHODS = frozenset({"POST", "PUT", "DELETE"})
# How long counting the running containers for the status line may take.
COUNT_TIMEOUT = 10.0
# How often a running handler checks that its client is still connected.
CLIENT_CHECK_INTERVAL = 1.0


class Acceptor:
    """Accepts connections on a listening socket and hands them to an aiohttp server."""

    def __init__(self, listener: socket.socket, server: web.Server,
                 on_connection: Callable[[], None]) -> None:
        self.listener = listener
        self.server = server
        self.on_connection = on_connection
        self.accepting = False
        # Connections taken from the backlog whose transport is not set up yet.
        self.pending = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if not self.accepting:
            asyncio.get_running_loop().add_reader(self.listener.fileno(), self._accept_ready)
            self.accepting = True

    def pause(self) -> None:
        """Stop taking connections from the backlog. The listening socket stays open."""
        if self.accepting:
            asyncio.get_running_loop().remove_reader(self.listener.fileno())
            self.accepting = False

    def _accept_ready(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                connection, _address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("accepting a connection failed: %s", exc)
                return
            connection.setblocking(False)
            self.pending += 1
            self.on_connection()
            task = asyncio.get_running_loop().create_task(self._connect(connection))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect(self, connection: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(self.server, connection)
        except OSError as exc:
            log.warning("setting up an accepted connection failed: %s", exc)
            connection.close()
        finally:
            self.pending -= 1


async def cancel_when_client_gone(request: web.Request, handler_task: asyncio.Task[object]) -> None:
    """Cancel the handler, every CLIENT_CHECK_INTERVAL s, once its connection is lost.

    aiohttp's handler_cancellation cancels the handler once, when the
    connection is lost. Python 3.11's asyncio.wait_for can swallow that
    cancellation when its inner future completes at the same moment. A handler
    that then goes on waiting, for example for a container to exit, would count
    as in flight forever and block the idle exit. Hijacked
    connections (attach) are left alone: aiohttp's protocol no longer sees
    their transport, so its `transport` stays set.
    """
    while True:
        await asyncio.sleep(CLIENT_CHECK_INTERVAL)
        if request.protocol.transport is None:
            log.debug("%s %s: the client is gone, cancelling its handler",
                      request.method, request.path)
            handler_task.cancel()


class ActivityMonitor:
    """Counts requests in flight and remembers when each connection was last active.

    A request counts as in flight until its handler returns. Streaming
    responses (logs -f, events, wait, pull, load) and hijacked connections
    (attach) return only when the stream ends, so they keep finchd busy.
    """

    def __init__(self, busy: Callable[[], bool] | None = None) -> None:
        # busy() is true while finchd carries work that no request keeps open, such
        # as relaying the output of a container whose stdio finchd owns.
        self.busy = busy
        self.in_flight = 0
        self.requests_started = 0
        self.last_activity = time.monotonic()
        self.mutations = 0
        self._connection_activity: dict[object, float] = {}

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        self.in_flight += 1
        self.requests_started += 1
        self.touch()
        self._connection_activity[request.protocol] = self.last_activity
        handler_task = asyncio.current_task()
        assert handler_task is not None
        watcher = asyncio.create_task(cancel_when_client_gone(request, handler_task))
        try:
            return await handler(request)
        finally:
            watcher.cancel()
            self.in_flight -= 1
            self.touch()
            self._connection_activity[request.protocol] = self.last_activity
            if request.method in MUTATING_METHODS:
                self.mutations += 1

    def sample_connections(self, server: web.Server) -> None:
        """Record connections first seen now as activity and forget closed ones."""
        now = time.monotonic()
        current = server.connections
        activity = {}
        for connection in current:
            if connection not in self._connection_activity:
                self.last_activity = now
            activity[connection] = self._connection_activity.get(connection, now)
        self._connection_activity = activity

    def idle_for(self, server: web.Server) -> float:
        """Return how many seconds nothing has happened, or 0 while a request is in flight."""
        self.sample_connections(server)
        if self.in_flight:
            return 0.0
        if self.busy is not None and self.busy():
            self.touch()
            return 0.0
        return time.monotonic() - self.last_activity

    def quiet(self, server: web.Server, grace: float) -> bool:
        """Return whether no request is in flight and every connection was quiet for `grace` s."""
        self.sample_connections(server)
        if self.in_flight:
            return False
        now = time.monotonic()
        return all(now - seen >= grace for seen in self._connection_activity.values())


class StatusReporter:
    """Keeps the service manager's STATUS= line current: API, engine and running containers."""

    def __init__(self, notifier: Notifier, monitor: ActivityMonitor,
                 engine_running: Callable[[], bool],
                 count_running: Callable[[], Awaitable[int]]) -> None:
        self.notifier = notifier
        self.monitor = monitor
        self.engine_running = engine_running
        self.count_running = count_running

    async def describe(self) -> str:
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.engine_running):
            return "API ready; engine not running"
        try:
            running = await asyncio.wait_for(self.count_running(), COUNT_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - the status line must not stop the server
            log.debug("counting running containers failed: %s", exc)
            return "API ready; engine running; containers unknown"
        noun = "container" if running == 1 else "containers"
        return f"API ready; engine running; {running} {noun} running"

    async def run(self) -> None:
        """Refresh the status after requests that may change containers, and every minute."""
        seen_mutations = self.monitor.mutations
        next_refresh = 0.0
        while True:
            now = time.monotonic()
            if self.monitor.mutations != seen_mutations or now >= next_refresh:
                seen_mutations = self.monitor.mutations
                self.notifier.status(await self.describe())
                next_refresh = time.monotonic() + STATUS_INTERVAL
            await asyncio.sleep(STATUS_DELAY)


class Lifecycle:
    """Runs accepting, idle exit and stop for one `finchd serve` process."""

    def __init__(self, acceptor: Acceptor, monitor: ActivityMonitor, notifier: Notifier,
                 idle_timeout: float) -> None:
        self.acceptor = acceptor
        self.monitor = monitor
        self.notifier = notifier
        self.idle_timeout = idle_timeout
        self.stop_requested = asyncio.Event()

    @property
    def server(self) -> web.Server:
        return self.acceptor.server

    def poll_interval(self) -> float:
        if self.idle_timeout <= 0:
            return 3600.0
        return max(0.1, min(1.0, self.idle_timeout / 4))

    async def run(self) -> str:
        """Accept connections until a stop signal or an idle exit; return which one."""
        self.acceptor.start()
        while True:
            try:
                await asyncio.wait_for(self.stop_requested.wait(), self.poll_interval())
            except TimeoutError:
                pass
            if self.stop_requested.is_set():
                self.acceptor.pause()
                self.notifier.stopping("stopping: stop requested")
                await self.wait_for_new_connections()
                return "stop"
            if self.idle_timeout <= 0:
                continue
            idle = self.monitor.idle_for(self.server)
            if idle < self.idle_timeout:
                continue
            # Nothing ran between the idle check and the pause, so no connection
            # was accepted in between.
            self.acceptor.pause()
            log.info("idle for %.0f s, no longer accepting connections", idle)
            if await self.drain():
                self.notifier.stopping(f"stopping: idle for {self.idle_timeout:g} s")
                return "idle"
            log.info("a request arrived while stopping; accepting connections again")
            self.acceptor.start()

    async def drain(self) -> bool:
        """Wait until accepted connections are served and quiet.

        Return False when a request starts meanwhile, so that finchd serves on
        instead of exiting in the middle of it.
        """
        started = self.monitor.requests_started
        while True:
            await asyncio.sleep(DRAIN_POLL)
            if self.stop_requested.is_set():
                return True
            if self.monitor.requests_started != started or self.monitor.in_flight:
                return False
            if self.acceptor.pending == 0 and self.monitor.quiet(self.server, DRAIN_GRACE):
                return True

    async def wait_for_new_connections(self) -> None:
        """Give connections accepted just before a stop up to DRAIN_GRACE s to send a request."""
        deadline = time.monotonic() + DRAIN_GRACE
        while time.monotonic() < deadline:
            if self.acceptor.pending == 0 and self.monitor.quiet(self.server, DRAIN_GRACE):
                return
            if self.monitor.in_flight:
                # aiohttp's shutdown lets requests in flight finish.
                return
            await asyncio.sleep(DRAIN_POLL)
