"""Access to container file systems: the archive helper and snapshot mounts.

The helper (archive_helper.py) runs with nsenter in the user and mount
namespaces of the rootlesskit child, where it is uid 0 and sees the files of
every container, which the finchd user on the host cannot read. containerd's
snapshot mounts of a container come from its Snapshots API over gRPC, because
nerdctl has no command that prints them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from finchd.errors import EngineError
from finchd.nerdctl.containers import raise_for_container
from finchd.nerdctl.runner import Runner
from finchd.paths import Paths

log = logging.getLogger(__name__)

HELPER = Path(__file__).with_name("archive_helper.py")
SNAPSHOT_MOUNTS_METHOD = "/containerd.services.snapshots.v1.Snapshots/Mounts"
RPC_TIMEOUT = 30.0
READ_CHUNK = 1 << 16
STDERR_TAIL = 4000


def _protobuf_string(field: int, value: str) -> bytes:
    data = value.encode()
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        low = number & 0x7F
        number >>= 7
        if number:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _protobuf_fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """Decode one protobuf message into (field number, value) pairs."""
    fields: list[tuple[int, bytes | int]] = []
    position = 0
    while position < len(data):
        key, position = _read_varint(data, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _read_varint(data, position)
            fields.append((field, value))
        elif wire_type == 2:
            length, position = _read_varint(data, position)
            fields.append((field, data[position:position + length]))
            position += length
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        else:
            raise EngineError(f"invalid reply from containerd: unknown protobuf wire type {wire_type}")
    return fields


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if position >= len(data):
            raise EngineError("invalid reply from containerd: truncated protobuf varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def decode_mounts(reply: bytes) -> list[dict[str, Any]]:
    """Decode a MountsResponse: `repeated Mount mounts = 1`, each with type,
    source, target and repeated options (fields 1 to 4)."""
    mounts = []
    for field, value in _protobuf_fields(reply):
        if field != 1 or not isinstance(value, bytes):
            continue
        mount: dict[str, Any] = {"type": "", "source": "", "target": "", "options": []}
        for inner, item in _protobuf_fields(value):
            if not isinstance(item, bytes):
                continue
            text = item.decode()
            if inner == 1:
                mount["type"] = text
            elif inner == 2:
                mount["source"] = text
            elif inner == 3:
                mount["target"] = text
            elif inner == 4:
                mount["options"].append(text)
        mounts.append(mount)
    return mounts


class HelperProcess:
    """A running archive helper: its first output line, then its output stream."""

    def __init__(self, process: asyncio.subprocess.Process, operation: str):
        self.process = process
        self.operation = operation
        # stderr is drained all along, so a chatty helper cannot block on a full pipe.
        self._stderr_task = asyncio.ensure_future(self._read_stderr())

    async def _read_stderr(self) -> str:
        if self.process.stderr is None:
            return ""
        tail = b""
        while chunk := await self.process.stderr.read(READ_CHUNK):
            tail = (tail + chunk)[-STDERR_TAIL:]
        return tail.decode(errors="replace").strip()

    async def first_line(self) -> dict[str, Any]:
        """Read the helper's first JSON line, or its error after it exits."""
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            await self.process.wait()
            stderr = await self._stderr()
            raise EngineError(
                f"archive helper {self.operation} exited {self.process.returncode}"
                + (f": {stderr}" if stderr else "")
            )
        try:
            data: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EngineError(f"cannot parse the archive helper's output {line[:200]!r}") from exc
        return data

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the rest of stdout. Raise EngineError if the helper then fails."""
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.read(READ_CHUNK):
            yield chunk
        await self.process.wait()
        if self.process.returncode != 0:
            stderr = await self._stderr()
            raise EngineError(f"archive helper {self.operation} failed: {stderr or 'no message'}")

    async def feed(self, body: AsyncIterator[bytes]) -> None:
        """Copy body to stdin until it ends or the helper stops reading."""
        assert self.process.stdin is not None
        try:
            async for chunk in body:
                self.process.stdin.write(chunk)
                await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if not self.process.stdin.is_closing():
                self.process.stdin.close()

    async def _stderr(self) -> str:
        return await self._stderr_task

    async def close(self) -> None:
        """Kill the helper if it still runs and reap it."""
        if self.process.returncode is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass
        await self.process.wait()
        await self._stderr_task


class ContainerFiles:
    """The engine side of the archive, export and changes endpoints."""

    def __init__(self, runner: Runner, paths: Paths, namespace: str):
        self.runner = runner
        self.paths = paths
        self.namespace = namespace

    async def inspect_native(self, container_id: str) -> dict[str, Any]:
        """Return nerdctl's native inspect of one container (spec, snapshot key)."""
        result = await self.runner.run(
            ["container", "inspect", "--mode=native", "--", container_id], check=False
        )
        raise_for_container(result, container_id)
        try:
            data = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise EngineError(f"cannot parse nerdctl inspect output: {exc}") from exc
        if not data:
            raise EngineError(f"nerdctl inspect returned nothing for {container_id}")
        native: dict[str, Any] = data[0]
        return native

    async def snapshot_mounts(self, snapshotter: str, key: str) -> list[dict[str, Any]]:
        """Return the mounts of a snapshot from containerd's Snapshots API."""
        request = _protobuf_string(1, snapshotter) + _protobuf_string(2, key)
        reply = await asyncio.to_thread(self._call, SNAPSHOT_MOUNTS_METHOD, request)
        return decode_mounts(reply)

    def _call(self, method: str, request: bytes) -> bytes:
        import grpc  # type: ignore[import-untyped]

        target = f"unix://{self.paths.containerd_socket}"
        with grpc.insecure_channel(target) as channel:
            call = channel.unary_unary(method)
            try:
                reply: bytes = call(
                    request, timeout=RPC_TIMEOUT,
                    metadata=[("containerd-namespace", self.namespace)],
                )
            except grpc.RpcError as exc:
                raise EngineError(f"containerd {method} failed: {exc.details()}") from exc
        return reply

    def helper_argv(self, operation: str, config: dict[str, Any]) -> list[str]:
        """Build the argv that runs the helper in the rootlesskit child's namespaces."""
        child_pid_file = self.paths.rootlesskit_state / "child_pid"
        try:
            child_pid = int(child_pid_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise EngineError(f"the engine is not running: cannot read {child_pid_file}; "
                "start it with `finchd engine` or restart `finchd serve`") from exc
        nsenter = shutil.which("nsenter", path=self.runner.env.get("PATH")) or "nsenter"
        return [
            nsenter, "--user", "--mount", "--preserve-credentials", f"--target={child_pid}",
            "--", sys.executable, "-I", str(HELPER), operation, json.dumps(config),
        ]

    def scratch_directory(self) -> Path:
        """Return the folder for the helper's private mount points."""
        folder = self.paths.runtime / "archive"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder

    async def start_helper(self, operation: str, config: dict[str, Any], *,
                           stdin: bool = False) -> HelperProcess:
        argv = self.helper_argv(operation, config)
        log.debug("starting archive helper %s for %s", operation, config.get("path", "/"))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.runner.env,
                close_fds=True,
                limit=READ_CHUNK * 4,
            )
        except OSError as exc:
            raise EngineError(f"cannot run {argv[0]}: {exc.strerror}") from exc
        return HelperProcess(process, operation)
