"""Exec instances: create, start (attached or detached), inspect, resize."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from finchd.errors import ConflictError, InvalidParameterError, NotFoundError
from finchd.services.container_io import AttachSession
from finchd.services.containers import ContainerService
from finchd.services.validation import check_console_size, console_size, expect, strict_string_list

log = logging.getLogger(__name__)

# Finished exec instances stay inspectable this long, so that a client can read the
# exit code after its stream ends, and are then dropped.
KEEP_FINISHED_SECONDS = 300.0


@dataclass
class ExecInstance:
    """One exec instance and the state of its process."""

    id: str
    container_id: str
    config: dict[str, Any]
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    finished_at: float | None = None
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    messages: list[str] = field(default_factory=list)
    # The (height, width) of the last resize, kept for a terminal that does not exist yet.
    size: tuple[int, int] | None = None


class ExecService:
    """Docker's exec semantics on top of `nerdctl exec`."""

    def __init__(self, containers: ContainerService):
        self.containers = containers
        self._instances: dict[str, ExecInstance] = {}

    async def create(self, reference: str, body: Any) -> str:
        config = _check_config(body)
        view = await self.containers.find(reference)
        if view["State"]["Paused"]:
            raise ConflictError(f"Container {view['Id']} is paused, unpause the container before exec")
        if not view["State"]["Running"]:
            raise ConflictError(f"Container {view['Id']} is not running")
        self._drop_finished()
        instance = ExecInstance(secrets.token_hex(32), view["Id"], config)
        self._instances[instance.id] = instance
        return instance.id

    def get(self, exec_id: str) -> ExecInstance:
        self._drop_finished()
        instance = self._instances.get(exec_id)
        if instance is None:
            raise NotFoundError(f"No such exec instance: {exec_id}")
        return instance

    async def check_startable(self, exec_id: str) -> ExecInstance:
        """Raise the error a start would meet, before a handler hijacks the connection."""
        instance = self.get(exec_id)
        if instance.started:
            raise ConflictError(f"Error: Exec command {exec_id} has already run")
        view = await self.containers.find(instance.container_id)
        if not view["State"]["Running"]:
            raise ConflictError(f"Container {instance.container_id} is not running")
        return instance

    async def start(self, exec_id: str, *, detach: bool, tty: bool,
                    session: AttachSession | None) -> None:
        """Start the process. Attached starts return once its output has ended."""
        instance = await self.check_startable(exec_id)
        # Another start of the same instance may have begun during the check's await.
        if instance.started:
            raise ConflictError(f"Error: Exec command {exec_id} has already run")
        instance.started = True
        instance.running = True
        config = dict(instance.config, Tty=tty or instance.config.get("Tty", False))
        if detach or session is None:
            config["AttachStdin"] = False
        adapter = self.containers.containers
        io = self.containers.io
        sessions = [session] if session is not None else []
        try:
            args = adapter.exec_args(instance.container_id, config)
            if config["Tty"]:
                size = instance.size or console_size(instance.config.get("ConsoleSize"))
                instance.process = await io.start_on_terminal(
                    args, sessions, key=exec_id, diagnostics=instance.messages, size=size)
                # The docker CLI sends its resize as soon as it has the 101 response,
                # which can be while nerdctl is starting.
                if instance.size is not None and instance.size != size:
                    io.resize(exec_id, *instance.size)
            else:
                instance.process = await io.start_piped(args, sessions, instance.messages,
                                                        user=config.get("User") or "")
        except BaseException:
            # No process ran: record the failure as dockerd does, with exit code 126.
            instance.running = False
            instance.exit_code = 126
            instance.finished_at = time.monotonic()
            raise
        waiter = asyncio.ensure_future(self._reap(instance))
        if session is not None and not detach:
            await waiter

    async def _reap(self, instance: ExecInstance) -> None:
        assert instance.process is not None
        code = exit_code(await instance.process.wait(), instance.messages)
        instance.exit_code = code
        instance.running = False
        instance.finished_at = time.monotonic()
        log.debug("exec %s in container %s exited %d", instance.id, instance.container_id, code)

    def resize(self, exec_id: str, height: int, width: int) -> None:
        instance = self.get(exec_id)
        if not self.containers.io.resize(instance.id, height, width):
            instance.size = (height, width)

    def inspect(self, exec_id: str) -> dict[str, Any]:
        instance = self.get(exec_id)
        config = instance.config
        cmd = config["Cmd"]
        return {
            "CanRemove": False, "DetachKeys": config.get("DetachKeys") or "",
            "ID": instance.id, "Running": instance.running, "ExitCode": instance.exit_code,
            "ProcessConfig": {"privileged": bool(config.get("Privileged")),
                              "user": config.get("User") or "", "tty": bool(config.get("Tty")),
                              "entrypoint": cmd[0], "arguments": cmd[1:]},
            "OpenStdin": bool(config.get("AttachStdin")),
            "OpenStderr": bool(config.get("AttachStderr")),
            "OpenStdout": bool(config.get("AttachStdout")),
            "ContainerID": instance.container_id,
            "Pid": instance.process.pid if instance.process and instance.running else 0,
        }

    def _drop_finished(self) -> None:
        now = time.monotonic()
        for exec_id, instance in list(self._instances.items()):
            if instance.finished_at is not None and now - instance.finished_at > KEEP_FINISHED_SECONDS:
                del self._instances[exec_id]


EXIT_CODE_MESSAGE = re.compile(r"exec failed with exit code (\d+)")


def exit_code(returncode: int, messages: list[str]) -> int:
    """Return the exec'd process's exit code from nerdctl's status and messages.

    nerdctl exits 1 and logs `exec failed with exit code N` when the process exits N.
    A process that could not start at all gets 126, as with dockerd.
    """
    for message in reversed(messages):
        match = EXIT_CODE_MESSAGE.search(message)
        if match:
            return int(match.group(1))
    if returncode != 0 and messages:
        return 126
    return returncode


def _check_config(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidParameterError("invalid exec config: expected a JSON object")
    config = dict(body)
    # ExecConfig.Cmd is a plain []string in Docker, so a single string is rejected.
    cmd = strict_string_list(config.get("Cmd"), "Cmd")
    if not cmd or not cmd[0]:
        raise InvalidParameterError("No exec command specified")
    config["Cmd"] = cmd
    config["Env"] = strict_string_list(config.get("Env"), "Env") or []
    for key in ("User", "WorkingDir", "DetachKeys"):
        expect(config.get(key), str, key)
    for key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "Privileged"):
        expect(config.get(key), bool, key)
    check_console_size(config.get("ConsoleSize"))
    working_dir = config.get("WorkingDir")
    if working_dir and not working_dir.startswith("/"):
        raise InvalidParameterError(f"invalid WorkingDir {working_dir!r}: the path must be absolute")
    return config
