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
from finchd.nerdctl.containerd import Containerd
from finchd.nerdctl.containers import raise_for_container
from finchd.nerdctl.runner import Runner
from finchd.paths import Paths

log = logging.getLogger(__name__)

HELPER = Path(__file__).with_name("archive_helper.py")
READ_CHUNK = 1 << 16
STDERR_TAIL = 4000


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

    def __init__(self, runner: Runner, paths: Paths, containerd: Containerd):
        self.runner = runner
        self.paths = paths
        self.containerd = containerd

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
        return await self.containerd.snapshot_mounts(snapshotter, key)

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
