"""Idle exit on a real aiohttp server: streams keep it running and no queued connection is lost."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from finchd.activation import Notifier
from finchd.lifecycle import Acceptor, ActivityMonitor, Lifecycle

IDLE = 1.0
# Generous bounds: the checks are about what happens, never about speed.
EXIT_WITHIN = 30.0


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def stream(request: web.Request) -> web.StreamResponse:
    """Send headers, then nothing until the client goes away."""
    response = web.StreamResponse()
    await response.prepare(request)
    await asyncio.Event().wait()
    return response


@dataclass
class Server:
    path: Path
    listener: socket.socket
    runner: web.AppRunner


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[Server, ActivityMonitor]]:
    monitor = ActivityMonitor()
    app = web.Application(middlewares=[monitor.middleware])
    app.router.add_get("/_ping", ping)
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    path = tmp_path / "api.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    listener.setblocking(False)
    yield Server(path, listener, runner), monitor
    await runner.cleanup()
    listener.close()


def make_lifecycle(server: Server, monitor: ActivityMonitor) -> Lifecycle:
    assert server.runner.server is not None
    acceptor = Acceptor(server.listener, server.runner.server, monitor.touch)
    return Lifecycle(acceptor, monitor, Notifier(None), IDLE)


async def http_get(path: Path, target: str) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def test_idle_exit_after_timeout(server: tuple[Server, ActivityMonitor]) -> None:
    api, monitor = server
    lifecycle = make_lifecycle(api, monitor)
    run = asyncio.create_task(lifecycle.run())

    assert (await http_get(api.path, "/_ping")).endswith(b"OK")
    reason = await asyncio.wait_for(run, EXIT_WITHIN)

    assert reason == "idle"
    assert monitor.in_flight == 0


async def test_open_stream_prevents_idle_exit(server: tuple[Server, ActivityMonitor]) -> None:
    api, monitor = server
    lifecycle = make_lifecycle(api, monitor)
    run = asyncio.create_task(lifecycle.run())
    reader, writer = await asyncio.open_unix_connection(str(api.path))
    writer.write(b"GET /stream HTTP/1.1\r\nHost: api\r\n\r\n")
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")

    await asyncio.sleep(IDLE * 3)
    assert not run.done()
    assert monitor.in_flight == 1

    writer.close()
    reason = await asyncio.wait_for(run, EXIT_WITHIN)
    assert reason == "idle"
    assert monitor.in_flight == 0


async def test_queued_connection_served_by_next_instance(
    server: tuple[Server, ActivityMonitor]
) -> None:
    api, monitor = server
    first = make_lifecycle(api, monitor)
    assert await asyncio.wait_for(first.run(), EXIT_WITHIN) == "idle"

    # Accepting has stopped but the listening socket is open, as systemd keeps it.
    pending = asyncio.create_task(http_get(api.path, "/_ping"))
    await asyncio.sleep(IDLE)
    assert not pending.done()

    second = make_lifecycle(api, monitor)
    run = asyncio.create_task(second.run())
    assert (await asyncio.wait_for(pending, EXIT_WITHIN)).endswith(b"OK")
    assert await asyncio.wait_for(run, EXIT_WITHIN) == "idle"


async def test_stop_signal_ends_run(server: tuple[Server, ActivityMonitor]) -> None:
    api, monitor = server
    lifecycle = make_lifecycle(api, monitor)
    lifecycle.idle_timeout = 0
    run = asyncio.create_task(lifecycle.run())
    await asyncio.sleep(0.2)

    lifecycle.stop_requested.set()

    assert await asyncio.wait_for(run, EXIT_WITHIN) == "stop"


async def test_busy_work_keeps_monitor_active() -> None:
    busy = [True]
    monitor = ActivityMonitor(busy=lambda: busy[0])
    monitor.last_activity -= 100
    server = web.Server(lambda request: web.Response())
    assert monitor.idle_for(server) == 0.0
    busy[0] = False
    assert monitor.idle_for(server) < 1.0
