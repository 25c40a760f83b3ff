"""Running nerdctl: the only place that starts it as a child process."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finchd.errors import EngineError, InvalidParameterError

log = logging.getLogger(__name__)

# Linux's MAX_ARG_STRLEN: execve fails for a longer single argument.
MAX_ARGUMENT_BYTES = 131072

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


JOINED_ERRORS_HEADER = re.compile(r"^\d+ errors?:\\n")


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
            # logrus escapes the newline after Go's joined-errors header "N errors:".
            message = JOINED_ERRORS_HEADER.sub("", message)
            messages.append(message.replace('\\"', '"').replace("\\n", "; "))
        elif "level=" not in line:
            messages.append(line)
    return messages[-1] if messages else lines[-1]


class Runner:
    """Start nerdctl with the engine's environment and collect what it prints.

    Given rootlesskit's state directory, the runner enters the engine's user and
    mount namespaces with nsenter itself, as rootless nerdctl would do by
    re-executing itself, which saves one nerdctl start (about 20 ms) per command.
    """

    def __init__(self, executable: str, env_factory: Callable[[], Mapping[str, str]],
                 rootlesskit_state: Path | None = None):
        self.executable = executable
        self._env_factory = env_factory
        self._env: dict[str, str] | None = None
        self._rootlesskit_state = rootlesskit_state
        self._resolved: tuple[str, str] | None = None

    @property
    def env(self) -> dict[str, str]:
        if self._env is None:
            env = dict(self._env_factory())
            for name in PRIVATE_VARIABLES:
                env.pop(name, None)
            if self._rootlesskit_state is not None:
                # What rootless nerdctl sets before it enters the namespaces itself.
                env["ROOTLESSKIT_STATE_DIR"] = str(self._rootlesskit_state)
                env["ROOTLESSKIT_PARENT_EUID"] = str(os.geteuid())
                env["ROOTLESSKIT_PARENT_EGID"] = str(os.getegid())
                env.setdefault("NERDCTL_HOST_GATEWAY_IP", host_gateway_ip())
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
        try:
            stdout, stderr = await process.communicate(input)
        except asyncio.CancelledError:
            # The request that needed this command is gone; so is the command.
            if process.returncode is None:
                process.kill()
            raise
        result = Result(tuple(args), process.returncode or 0, stdout, stderr)
        log.debug("nerdctl %s exited %d", shlex.join(args), result.returncode)
        if check and result.returncode != 0:
            raise EngineError(result.error_text or f"nerdctl {args[0]} failed")
        return result

    async def spawn(self, args: Sequence[str], **kwargs: Any) -> asyncio.subprocess.Process:
        """Start `nerdctl ARGS` and return the process. Pipes default to PIPE."""
        for arg in args:
            if "\0" in arg:
                # execve takes C strings, so a NUL byte would cut the argument short.
                flag = arg.split("=", 1)[0] if arg.startswith("--") else "an argument"
                raise InvalidParameterError(f"invalid value of {flag}: it contains a NUL byte")
            if len(arg.encode()) >= MAX_ARGUMENT_BYTES:
                flag = arg.split("=", 1)[0] if arg.startswith("--") else "an argument"
                raise InvalidParameterError(
                    f"value of {flag} is {len(arg.encode())} bytes long; nerdctl takes at most "
                    f"{MAX_ARGUMENT_BYTES - 1} bytes in one argument")
        kwargs.setdefault("stdin", asyncio.subprocess.DEVNULL)
        kwargs.setdefault("stdout", asyncio.subprocess.PIPE)
        kwargs.setdefault("stderr", asyncio.subprocess.PIPE)
        log.debug("starting nerdctl %s", shlex.join(args))
        try:
            # Debug lines on stderr would be mixed into container output (logs, attach).
            command = [*self._engine_entry(), "--debug=false", *args]
            return await asyncio.create_subprocess_exec(
                *command, env=self.env, close_fds=True, **kwargs
            )
        except OSError as exc:
            raise EngineError(f"cannot run {self.executable}: {exc.strerror}") from exc

    def _engine_entry(self) -> list[str]:
        """Return the argv prefix that runs nerdctl inside the engine's namespaces.

        Falls back to plain nerdctl, which enters them itself or reports why it
        cannot, when the engine's child PID is not readable.
        """
        if self._rootlesskit_state is None:
            return [self.executable]
        try:
            child_pid = int((self._rootlesskit_state / "child_pid").read_text().strip())
        except (OSError, ValueError):
            return [self.executable]
        if self._resolved is None or not all(map(os.path.exists, self._resolved)):
            # Looked up again when a package upgrade or removal moved the binaries.
            self._env = None
            search = self.env.get("PATH")
            nerdctl = shutil.which(self.executable, path=search)
            nsenter = shutil.which("nsenter", path=search)
            if nerdctl is None or nsenter is None:
                return [self.executable]
            self._resolved = (nsenter, nerdctl)
        nsenter, nerdctl = self._resolved
        # No `-r/`: nsenter's chroot into the child's root makes nerdctl's bind mounts
        # fail with EINVAL, and nerdctl 2.0's own re-execution never applies it.
        entry = [nsenter, "-w/", "--preserve-credentials", "-m", "-U", f"-t{child_pid}", "-F"]
        if not (self._rootlesskit_state / "netns").exists():
            entry.append("-n")
        return [*entry, nerdctl]


def host_gateway_ip() -> str:
    """Return the host's first non-loopback IPv4 address, as nerdctl's default does."""
    try:
        output = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                                capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in output.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    return ""
