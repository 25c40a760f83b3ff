"""Raw HTTP over the daemon's Unix socket, for checks the docker CLI hides.

`ApiClient.request` uses http.client, so status, headers and body arrive exactly
as the daemon sent them. `ApiClient.upgrade` writes the request by hand and reads
the header block itself, because http.client cannot hand over the socket after a
101 response.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

STDOUT = 1
STDERR = 2


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class HeaderLookup:
    """Case-insensitive access to a response's header list."""

    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_names(self) -> set[str]:
        return {key.lower() for key, _ in self.headers}


@dataclass(frozen=True)
class ApiResponse(HeaderLookup):
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class UpgradedStream(HeaderLookup):
    """A connection after the daemon's response to an upgrade request.

    `data` contains the stream bytes that arrived with the response headers.
    """

    status: int
    headers: list[tuple[str, str]]
    sock: socket.socket
    data: bytes

    def read_until_closed(self, timeout: float) -> bytes:
        """Read the stream until the daemon closes it; raise TimeoutError if not."""
        deadline = time.monotonic() + timeout
        chunks = [self.data]
        self.data = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the stream stayed open for {timeout} s")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def close(self) -> None:
        self.sock.close()


class ApiClient:
    """Docker Engine API requests to one Unix socket."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> ApiResponse:
        """Send one request and read the whole response body."""
        all_headers = dict(headers or {})
        payload: bytes | None
        if isinstance(body, dict):
            payload = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            payload = body.encode()
            all_headers.setdefault("Content-Type", "application/json")
        else:
            payload = body
        connection = UnixHTTPConnection(self.socket_path, timeout)
        try:
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
            return ApiResponse(response.status, response.getheaders(), data)
        finally:
            connection.close()

    def upgrade(self, method: str, path: str, timeout: float = 30.0) -> UpgradedStream:
        """Send a request with `Upgrade: tcp` and return the open connection."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.socket_path)
            request = (
                f"{method} {path} HTTP/1.1\r\n"
                "Host: localhost\r\n"
                "Upgrade: tcp\r\n"
                "Connection: Upgrade\r\n"
                "Content-Length: 0\r\n"
                "\r\n"
            )
            sock.sendall(request.encode())
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(
                        f"connection closed before the response headers: {received!r}"
                    )
                received += chunk
        except BaseException:
            sock.close()
            raise

        head, _, rest = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = []
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return UpgradedStream(status, headers, sock, rest)


def demultiplex(data: bytes) -> list[tuple[int, bytes]]:
    """Split a multiplexed stream into (stream, payload) frames.

    Each frame starts with 8 bytes: the stream number (0 stdin, 1 stdout,
    2 stderr), three zero bytes and the payload size as a big-endian uint32.
    """
    frames = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 8:
            raise ValueError(
                f"truncated frame header at byte {offset}: {data[offset:]!r}"
            )
        stream, size = struct.unpack(">BxxxL", data[offset : offset + 8])
        if stream not in (0, 1, 2):
            raise ValueError(f"invalid stream number {stream} at byte {offset}")
        payload = data[offset + 8 : offset + 8 + size]
        if len(payload) != size:
            raise ValueError(f"truncated frame at byte {offset}: {size} bytes expected")
        frames.append((stream, payload))
        offset += 8 + size
    return frames


def stream_text(frames: list[tuple[int, bytes]], stream: int) -> str:
    return b"".join(payload for number, payload in frames if number == stream).decode()
