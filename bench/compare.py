"""Time the same Docker API calls against two engines and print the ratios.

Usage: python bench/compare.py --finchd SOCKET --dockerd SOCKET [--rounds N]

Each operation runs N rounds against each engine, alternating between them so
that background load hits both alike. The table shows the median and the 90th
percentile in milliseconds, and finchd's median divided by dockerd's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        self.sock.connect(self.path)


class Engine:
    """A Docker API endpoint on a Unix socket."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path

    def call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        connection = UnixConnection(self.path)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload else {}
            connection.request(method, "/v1.41" + url, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status >= 400:
            raise RuntimeError(f"{self.name}: {method} {url} -> {response.status} {data[:200]!r}")
        return json.loads(data) if data.strip().startswith((b"{", b"[")) else data


def lifecycle(engine: Engine) -> None:
    """Create, start, wait for and remove a container running `true`."""
    created = engine.call("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"]})
    engine.call("POST", f"/containers/{created['Id']}/start")
    engine.call("POST", f"/containers/{created['Id']}/wait")
    engine.call("DELETE", f"/containers/{created['Id']}")


OPERATIONS: list[tuple[str, Callable[[Engine], object]]] = [
    ("GET /_ping", lambda engine: engine.call("GET", "/_ping")),
    ("GET /version", lambda engine: engine.call("GET", "/version")),
    ("GET /info", lambda engine: engine.call("GET", "/info")),
    ("GET /containers/json?all=1", lambda engine: engine.call("GET", "/containers/json?all=1")),
    ("GET /images/json", lambda engine: engine.call("GET", "/images/json")),
    ("GET /images/busybox/json", lambda engine: engine.call("GET", "/images/busybox/json")),
    ("create+start+wait+rm", lifecycle),
]


def measure(engines: list[Engine], rounds: int) -> None:
    print(f"{'operation':32} {'finchd p50':>11} {'p90':>8} {'dockerd p50':>12} {'p90':>8} {'ratio':>7}")
    for label, operation in OPERATIONS:
        times: dict[str, list[float]] = {engine.name: [] for engine in engines}
        for engine in engines:
            operation(engine)  # warm-up
        for _ in range(rounds):
            for engine in engines:
                started = time.perf_counter()
                operation(engine)
                times[engine.name].append((time.perf_counter() - started) * 1000)
        finchd, dockerd = times["finchd"], times["dockerd"]
        ratio = statistics.median(finchd) / statistics.median(dockerd)
        print(f"{label:32} {statistics.median(finchd):11.1f} {p90(finchd):8.1f} "
              f"{statistics.median(dockerd):12.1f} {p90(dockerd):8.1f} {ratio:7.2f}")


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finchd", required=True, help="finchd's API socket")
    parser.add_argument("--dockerd", required=True, help="dockerd's API socket")
    parser.add_argument("--rounds", type=int, default=20, help="rounds per operation")
    args = parser.parse_args()
    measure([Engine("finchd", args.finchd), Engine("dockerd", args.dockerd)], args.rounds)


if __name__ == "__main__":
    main()
