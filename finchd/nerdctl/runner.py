"""Running nerdctl: the only place that starts it as a child process."""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from finchd.errors import EngineError

log = logging.getLogger(__name__)

# Variables that belong to finchd's own service manager session, never to a child.
PRIVATE_VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")


@dataclass(frozen=True)
class Result:
    """The outcome of one finished nerdctl command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def error_text(self) -> str:
        """Return nerdctl's error message without its logrus prefix."""
        return clean_error(self.stderr.decode(errors="replace"))


def clean_error(text: str) -> str:
    """Strip nerdctl's `time=... level=fatal msg="..."` framing from stderr."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    messages = []
    for line in lines:
        if 'msg="' in line:
            start = line.index('msg="') + 5
            end = line.rfind('"')
            message = line[start:end] if end > start else line[start:]
            messages.append(message.replace('\\"', '"'))
        elif "level=" not in line:
            messages.append(line)
    return messages[-1] if messages else lines[-1]


class Runner:
    """Start nerdctl with the engine's environment and collect what it prints."""

    def __init__(self, executable: str, env_factory: Callable[[], Mapping[str, str]]):
        self.executable = executable
        self._env_factory = env_factory
        self._env: dict[str, str] | None = None

    @property
    def env(self) -> dict[str, str]:
        if self._env is None:
            env = dict(self._env_factory())
            for name in PRIVATE_VARIABLES:
                env.pop(name, None)
            self._env = env
        return self._env

    async def run(
        self, args: Sequence[str], *, input: bytes | None = None, check: bool = True
    ) -> Result:
        """Run `nerdctl ARGS` to completion. Raise EngineError on failure if check."""
        process = await self.spawn(
            args,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        )
        stdout, stderr = await process.communicate(input)
        result = Result(tuple(args), process.returncode or 0, stdout, stderr)
        log.debug("nerdctl %s exited %d", shlex.join(args), result.returncode)
        if check and result.returncode != 0:
            raise EngineError(result.error_text or f"nerdctl {args[0]} failed")
        return result

    async def spawn(self, args: Sequence[str], **kwargs: Any) -> asyncio.subprocess.Process:
        """Start `nerdctl ARGS` and return the process. Pipes default to PIPE."""
        kwargs.setdefault("stdin", asyncio.subprocess.DEVNULL)
        kwargs.setdefault("stdout", asyncio.subprocess.PIPE)
        kwargs.setdefault("stderr", asyncio.subprocess.PIPE)
        log.debug("starting nerdctl %s", shlex.join(args))
        try:
            # Debug lines on stderr would be mixed into container output (logs, attach).
            return await asyncio.create_subprocess_exec(
                self.executable, "--debug=false", *args, env=self.env, close_fds=True, **kwargs
            )
        except OSError as exc:
            raise EngineError(f"cannot run {self.executable}: {exc.strerror}") from exc


def base_environment() -> dict[str, str]:
    """Return finchd's own environment without service manager variables."""
    env = dict(os.environ)
    for name in PRIVATE_VARIABLES:
        env.pop(name, None)
    return env
