"""Docker's stream framing and connection hijacking for attach."""

from __future__ import annotations

import asyncio
import json
import select
import struct
from typing import Any

from aiohttp import web

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"
STDOUT, STDERR = 1, 2
HANGUP_POLL_SECONDS = 1.0


def frame(stream: int, data: bytes) -> bytes:
    """Prefix data with the 8-byte header of Docker's multiplexed stream."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def send_headers_now(response: web.StreamResponse) -> None:
    """Flush the status line and headers before the first body byte.

    Clients such as the docker CLI wait for the headers of `/wait` before they go on
    to start the container, so the headers cannot wait for the body.
    """
    writer = getattr(response, "_payload_writer", None)
    send = getattr(writer, "send_headers", None)
    if send is not None:
        send()


async def json_lines(request: web.Request) -> web.StreamResponse:
    """Prepare a streamed `application/json` response of one JSON object per line."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    send_headers_now(response)
    return response


async def write_json(response: web.StreamResponse, message: dict[str, Any]) -> None:
    await response.write(json.dumps(message).encode() + b"\r\n")


class HijackedConnection(asyncio.Protocol):
    """The client's socket after `101 UPGRADED`: raw bytes both ways.

    An EOF from the client ends only its input (the docker CLI half-closes at once when
    it sends no stdin), and output keeps flowing. A client that has closed the socket
    entirely is noticed by polling for a hang-up, so that an attach to a container
    with no output does not outlive its client.
    """

    def __init__(self, transport: asyncio.Transport, pending: bytes):
        self.transport = transport
        self._hangup_watch: asyncio.Task[None] | None = None
        self.reader = asyncio.StreamReader()
        if pending:
            self.reader.feed_data(pending)
        self.closed = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()

    def data_received(self, data: bytes) -> None:
        self.reader.feed_data(data)

    def eof_received(self) -> bool:
        self.reader.feed_eof()
        if self._hangup_watch is None:
            self._hangup_watch = asyncio.ensure_future(self._watch_hangup())
        return True

    async def _watch_hangup(self) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLHUP)
        while not self.closed.is_set():
            if any(events & select.POLLHUP for _, events in poller.poll(0)):
                self.closed.set()
                self.close()
                return
            await asyncio.sleep(HANGUP_POLL_SECONDS)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reader.feed_eof()
        self.closed.set()
        if self._hangup_watch is not None:
            self._hangup_watch.cancel()
        self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def write(self, data: bytes) -> None:
        if self.closed.is_set():
            raise ConnectionResetError("client closed the attach connection")
        self.transport.write(data)
        await self._can_write.wait()

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


async def hijack(
    request: web.Request, content_type: str
) -> tuple[web.StreamResponse, HijackedConnection]:
    """Send `101 UPGRADED` and take the raw socket over from aiohttp."""
    upgrade = "upgrade" in request.headers.get("Connection", "").lower()
    response = web.StreamResponse(status=101 if upgrade else 200, reason="UPGRADED" if upgrade else "OK")
    response.headers["Content-Type"] = content_type
    if upgrade:
        response.headers["Connection"] = "Upgrade"
        response.headers["Upgrade"] = "tcp"
    response.force_close()
    await response.prepare(request)
    send_headers_now(response)
    transport = request.transport
    assert transport is not None
    pending = getattr(request.protocol, "_message_tail", b"") or b""
    connection = HijackedConnection(transport, pending)
    transport.set_protocol(connection)
    return response, connection
