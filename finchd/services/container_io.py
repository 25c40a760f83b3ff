"""Container output and input: logs, attach, and terminal size."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import shutil
import struct
import tempfile
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from finchd.errors import EngineError, FinchdError, InvalidParameterError
from finchd.nerdctl.containers import Containers, JsonFileLog
from finchd.services.timefmt import now_rfc3339, rfc3339

log = logging.getLogger(__name__)

STDOUT, STDERR = 1, 2
Writer = Callable[[int, bytes], Awaitable[None]]


@dataclass
class AttachSession:
    """One client attached to a container: where its output goes, where input comes from."""

    write: Writer
    stdin: asyncio.StreamReader | None
    stdout: bool
    stderr: bool
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ContainerIO:
    """Streams between clients and containers, through nerdctl."""

    def __init__(self, containers: Containers, fifo_root: Path | None = None):
        self.containers = containers
        self.fifo_root = fifo_root
        self._pending: dict[str, list[AttachSession]] = {}
        self._terminals: dict[str, int] = {}
        self._relays: dict[str, FifoRelay] = {}

    async def logs(self, container_id: str, *, follow: bool, timestamps: bool,
                   since: str | None, until: str | None, tail: str | None,
                   stdout: bool, stderr: bool) -> AsyncIterator[tuple[int, bytes]]:
        """Yield (stream, bytes) chunks of the container's log."""
        if not stdout and not stderr:
            raise InvalidParameterError("Bad parameters: you must choose at least one stream")
        since_time = _unix_time(since, "since")
        until_time = _unix_time(until, "until")
        tail_lines = _tail(tail)
        if tail_lines == "0":
            # nerdctl reads --tail=0 as every line, but Docker's tail=0 means none of
            # the lines logged so far: only new ones, and those only with follow.
            if not follow:
                return
            tail_lines = None
            since_time = now_rfc3339()
        args = self.containers.logs_args(container_id, follow=follow, timestamps=timestamps,
                                         since=since_time, until=until_time, tail=tail_lines)
        process = await self.containers.runner.spawn(args)
        fixer = TimestampFixer() if timestamps else None
        try:
            async for stream, data in _output_of(process, stdout=stdout, stderr=stderr):
                if fixer is not None:
                    data = fixer.feed(stream, data)
                if data:
                    yield stream, data
            for stream, data in fixer.flush() if fixer else []:
                yield stream, data
        finally:
            await _end(process)

    def add_pending(self, container_id: str, session: AttachSession) -> None:
        """Keep an attach made before start; start() connects it."""
        self._pending.setdefault(container_id, []).append(session)

    def take_pending(self, container_id: str) -> list[AttachSession]:
        return self._pending.pop(container_id, [])

    async def start_on_terminal(self, args: list[str], sessions: list[AttachSession],
                                key: str, diagnostics: list[str] | None = None,
                                log: JsonFileLog | None = None,
                                size: tuple[int, int] | None = None,
                                ) -> asyncio.subprocess.Process:
        """Run `nerdctl ARGS` on a new pseudo-terminal relayed to the sessions.

        nerdctl's `--tty` paths need a terminal on their own stdin. `key` names the
        terminal for resize (a container or exec id). Output also goes to `log`.
        `size` is the terminal's initial (height, width), which nerdctl passes on.
        """
        master, slave = os.openpty()
        if size is not None:
            _set_size(master, *size)
        try:
            process = await self.containers.runner.spawn(
                args, stdin=slave, stdout=slave,
                stderr=asyncio.subprocess.PIPE if diagnostics is not None else slave,
                start_new_session=True, preexec_fn=_take_controlling_terminal,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._terminals[key] = master
        if diagnostics is not None and process.stderr is not None:
            asyncio.ensure_future(_collect_messages(process.stderr, diagnostics))
        asyncio.ensure_future(self._relay_terminal(key, master, process, sessions, log))
        return process

    async def start_piped(self, args: list[str], sessions: list[AttachSession],
                          diagnostics: list[str] | None = None,
                          user: str = "") -> asyncio.subprocess.Process:
        """Run `nerdctl ARGS` with pipes relayed to the sessions, framed per stream.

        With `diagnostics`, nerdctl's own log lines are taken out of stderr and their
        messages appended there.
        """
        process = await self.containers.runner.spawn(args, stdin=asyncio.subprocess.PIPE)
        asyncio.ensure_future(self._relay_process(process, sessions, diagnostics, user))
        return process

    async def start_with_stdin(self, container_id: str, sessions: list[AttachSession],
                               log_path: str, stdin_once: bool) -> None:
        """Start a non-TTY container with OpenStdin, its stdio on FIFOs that finchd owns.

        finchd relays the output to attached sessions and appends it to the json-file
        log at log_path until the process exits, and copies the sessions' input to
        the process's stdin. stdin stays open while no client is attached, as in
        dockerd, and closes when an attached client's input ends if stdin_once.
        """
        if self.fifo_root is None:
            raise EngineError("starting a container with stdin needs a folder for its FIFOs")
        self.fifo_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{container_id[:12]}-", dir=self.fifo_root))
        fifos = [folder / name for name in FIFO_NAMES]
        opened: list[int] = []
        try:
            (folder / CONTAINER_ID_FILE).write_text(container_id)
            for fifo in fifos:
                os.mkfifo(fifo, 0o600)
            opened = _open_fifos(folder)
            await self.containers.create_task_with_stdio(container_id, *map(str, fifos))
            await self.containers.start_task(container_id)
        except BaseException:
            for descriptor in opened:
                os.close(descriptor)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        relay = FifoRelay(self, container_id, folder, opened, log_path, stdin_once)
        for session in sessions:
            relay.add(session)

    def resume_relay(self, container_id: str, folder: Path, log_path: str,
                     stdin_once: bool) -> None:
        """Read again the FIFOs of a running container that an earlier finchd started."""
        FifoRelay(self, container_id, folder, _open_fifos(folder), log_path, stdin_once)
        log.info("resumed relaying the output of container %s", container_id)

    def relay_folders(self) -> dict[str, Path]:
        """Return the FIFO folders that earlier starts left, by container ID."""
        folders: dict[str, Path] = {}
        if self.fifo_root is None or not self.fifo_root.is_dir():
            return folders
        for folder in self.fifo_root.iterdir():
            try:
                folders[(folder / CONTAINER_ID_FILE).read_text().strip()] = folder
            except OSError:
                shutil.rmtree(folder, ignore_errors=True)
        return folders

    def relay_of(self, container_id: str) -> FifoRelay | None:
        """Return the relay of a running container whose stdio finchd owns, if any."""
        return self._relays.get(container_id)

    def relaying(self) -> bool:
        """Return whether finchd relays the stdio of a container it started with stdin.

        Such a container's output has no other reader, so finchd must keep running.
        """
        return bool(self._relays)

    async def _relay_terminal(self, key: str, master: int,
                              process: asyncio.subprocess.Process,
                              sessions: list[AttachSession],
                              log: JsonFileLog | None = None) -> None:
        loop = asyncio.get_running_loop()
        output: asyncio.Queue[bytes] = asyncio.Queue()
        loop.add_reader(master, _read_into, master, output)
        inputs = [asyncio.ensure_future(_forward_input(session.stdin, master))
                  for session in sessions if session.stdin is not None]
        exited = asyncio.ensure_future(process.wait())
        newlines = NewlineFixer()
        try:
            while True:
                getter = asyncio.ensure_future(output.get())
                done, _ = await asyncio.wait({getter, exited}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    data = getter.result()
                    if not data:
                        break
                    await _send(sessions, log, newlines.feed(data))
                else:
                    getter.cancel()
                    await asyncio.sleep(0.05)
                    while not output.empty():
                        data = output.get_nowait()
                        if data:
                            await _send(sessions, log, newlines.feed(data))
                    break
            await _send(sessions, log, newlines.flush())
            if log is not None:
                log.close()
        finally:
            loop.remove_reader(master)
            for task in inputs:
                task.cancel()
            self._terminals.pop(key, None)
            os.close(master)
            await exited
            for session in sessions:
                session.done.set()

    async def follow_output(self, container_id: str, sessions: list[AttachSession],
                            since: str) -> None:
        """Forward a running container's new output to the sessions until it exits."""
        args = self.containers.logs_args(container_id, follow=True, timestamps=False,
                                         since=since, until=None, tail=None)
        process = await self.containers.runner.spawn(args)
        # `nerdctl logs --follow` stops once every attached client has gone.
        abandoned = asyncio.ensure_future(
            asyncio.gather(*(session.done.wait() for session in sessions)))

        def stop_following(future: asyncio.Future[list[Any]]) -> None:
            # A cancelled gather stores CancelledError as its exception, which asyncio
            # logs with a traceback unless something retrieves it.
            if not future.cancelled():
                future.exception()
            if process.returncode is None:
                process.terminate()

        abandoned.add_done_callback(stop_following)
        try:
            async for stream, data in _output_of(process):
                await _broadcast(_wanting(sessions, stream), stream, data)
        finally:
            abandoned.cancel()
            await _end(process)
            for session in sessions:
                session.done.set()

    async def run_with_stdin(self, args: list[str], cidfile: Path,
                             sessions: list[AttachSession]) -> str:
        """Run `nerdctl run --interactive` wired to the sessions; return the new id."""
        process = await self.start_piped(args, sessions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while loop.time() < deadline and process.returncode is None:
            text = cidfile.read_text().strip() if cidfile.exists() else ""
            if text:
                return text
            await asyncio.sleep(0.05)
        text = cidfile.read_text().strip() if cidfile.exists() else ""
        if text:
            return text
        raise EngineError("nerdctl run did not create the container")

    async def _relay_process(self, process: asyncio.subprocess.Process,
                             sessions: list[AttachSession],
                             diagnostics: list[str] | None = None, user: str = "") -> None:
        assert process.stdin is not None
        feeders = [asyncio.ensure_future(_feed_stdin(session.stdin, process.stdin))
                   for session in sessions if session.stdin is not None]
        try:
            async for stream, data in _output_of(process):
                if stream == STDERR and diagnostics is not None:
                    data = strip_nerdctl_messages(data, diagnostics, user)
                    if not data:
                        continue
                await _broadcast(_wanting(sessions, stream), stream, data)
            await process.wait()
        finally:
            for task in feeders:
                task.cancel()
            for session in sessions:
                session.done.set()

    def resize(self, key: str, height: int, width: int) -> bool:
        """Set the size of the terminal of a container or exec id; return whether it has one."""
        master = self._terminals.get(key)
        if master is None:
            return False
        _set_size(master, height, width)
        return True


def _set_size(master: int, height: int, width: int) -> None:
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


async def _feed_stdin(reader: asyncio.StreamReader | None, writer: asyncio.StreamWriter) -> None:
    try:
        while reader is not None:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (BrokenPipeError, ConnectionResetError):
        return
    writer.close()


FIFO_NAMES = ("stdin", "stdout", "stderr")
# The file in a FIFO folder that names its container.
CONTAINER_ID_FILE = "container-id"


def _open_fifos(folder: Path) -> list[int]:
    """Open a FIFO folder's stdin for writing and its stdout and stderr for reading.

    O_RDWR opens stdin without waiting for a reader. The runc shim's open of each
    output FIFO for writing waits for a reader, so the outputs open before the task
    is created. finchd reads them only after the shim has opened its write ends,
    because until then a read returns end of file.
    """
    opened = [os.open(folder / "stdin", os.O_RDWR | os.O_NONBLOCK)]
    try:
        for name in FIFO_NAMES[1:]:
            opened.append(os.open(folder / name, os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
        for descriptor in opened:
            os.close(descriptor)
        raise
    return opened


class FifoRelay:
    """The stdio of one running container whose FIFOs finchd owns.

    The relay reads stdout and stderr until the shim closes them after the process
    exits, and sends the output to the json-file log and to the attached sessions.
    """

    def __init__(self, io: ContainerIO, container_id: str, folder: Path,
                 descriptors: list[int], log_path: str, stdin_once: bool):
        self.io = io
        self.container_id = container_id
        self.folder = folder
        self.stdin, stdout, stderr = descriptors
        self.outputs = {STDOUT: stdout, STDERR: stderr}
        self.sessions: list[AttachSession] = []
        self.stdin_once = stdin_once
        self.stdin_closed = False
        self.feeders: list[asyncio.Task[None]] = []
        self.logs = {STDOUT: JsonFileLog(Path(log_path)),
                     STDERR: JsonFileLog(Path(log_path))} if log_path else {}
        io._relays[container_id] = self
        asyncio.ensure_future(self._run())

    def add(self, session: AttachSession) -> None:
        """Attach a client: it gets the output from now on, and its input goes to stdin."""
        self.sessions.append(session)
        if session.stdin is not None and not self.stdin_closed:
            self.feeders.append(asyncio.ensure_future(self._feed(session.stdin)))

    async def _feed(self, reader: asyncio.StreamReader) -> None:
        await _copy_to_fifo(reader, self.stdin)
        if not self.stdin_once or self.stdin_closed:
            return
        # The process reads end of file once both writers are closed: finchd's
        # descriptor, and the shim's own, which Tasks.CloseIO closes.
        self.stdin_closed = True
        for feeder in self.feeders:
            if feeder is not asyncio.current_task():
                feeder.cancel()
        os.close(self.stdin)
        try:
            await self.io.containers.close_task_stdin(self.container_id)
        except FinchdError as exc:
            # The process may have exited, and its task with it.
            log.debug("cannot close the stdin of container %s: %s", self.container_id,
                      exc.message)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()

        def read(stream: int, descriptor: int) -> None:
            try:
                data = os.read(descriptor, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(descriptor)
            chunks.put_nowait((stream, data))

        for stream, descriptor in self.outputs.items():
            loop.add_reader(descriptor, read, stream, descriptor)
        open_streams = set(self.outputs)
        try:
            while open_streams:
                stream, data = await chunks.get()
                if not data:
                    open_streams.discard(stream)
                    continue
                if stream in self.logs:
                    self.logs[stream].write(_stream_name(stream), data)
                await _broadcast(_wanting(self.sessions, stream), stream, data)
        finally:
            self.io._relays.pop(self.container_id, None)
            for stream, descriptor in self.outputs.items():
                loop.remove_reader(descriptor)
                os.close(descriptor)
                if stream in self.logs:
                    self.logs[stream].close(_stream_name(stream))
            for feeder in self.feeders:
                feeder.cancel()
            await asyncio.gather(*self.feeders, return_exceptions=True)
            if not self.stdin_closed:
                os.close(self.stdin)
            if not open_streams:
                shutil.rmtree(self.folder, ignore_errors=True)
            # Otherwise finchd is stopping while the container runs, and the next
            # finchd reads the FIFOs again (resume_relay).
            for session in self.sessions:
                session.done.set()


def _stream_name(stream: int) -> str:
    return "stdout" if stream == STDOUT else "stderr"


async def _copy_to_fifo(reader: asyncio.StreamReader, descriptor: int) -> None:
    loop = asyncio.get_running_loop()
    while data := await reader.read(65536):
        pending = memoryview(data)
        while pending:
            try:
                pending = pending[os.write(descriptor, pending):]
            except BlockingIOError:
                writable: asyncio.Future[None] = loop.create_future()
                loop.add_writer(descriptor, _resolve, writable)
                try:
                    await writable
                finally:
                    loop.remove_writer(descriptor)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


NERDCTL_LINE = re.compile(rb'^time="[^"]*" level=(?:fatal|error|warning) msg="(.*)"\r?(?:\n|$)', re.M)


def strip_nerdctl_messages(data: bytes, messages: list[str],
                           user: str = "") -> bytes:
    """Replace nerdctl's logrus lines in data by their bare messages, and record them.

    A message about the process's own exit status is dropped from the output, and
    nerdctl's failed user lookup, which names a host folder, gets dockerd's wording.
    """
    def replace(match: re.Match[bytes]) -> bytes:
        message = match.group(1).decode(errors="replace").replace('\\"', '"')
        if "no users found" in message or "no matching entries in passwd" in message:
            message = f"unable to find user {user}: no matching entries in passwd file"
        messages.append(message)
        return b"" if "exit code" in message else message.encode() + b"\n"

    return NERDCTL_LINE.sub(replace, data)


async def _collect_messages(reader: asyncio.StreamReader, messages: list[str]) -> None:
    strip_nerdctl_messages(await reader.read(), messages)


LOG_TIMESTAMP = re.compile(
    rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) ", re.M)


class NewlineFixer:
    """Undo the second CR that finchd's own pseudo-terminal adds to a container's CRLF.

    The container's terminal already turns "\\n" into "\\r\\n". nerdctl copies that to
    finchd's terminal, whose output processing (nerdctl leaves `onlcr` on) makes it
    "\\r\\r\\n". A chunk that ends in CRs keeps them until the next chunk shows what follows.
    """

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        data = self._carry + data
        stripped = data.rstrip(b"\r")
        self._carry = data[len(stripped):]
        return stripped.replace(b"\r\r\n", b"\r\n")

    def flush(self) -> bytes:
        carry, self._carry = self._carry, b""
        return carry


class TimestampFixer:
    """Rewrite nerdctl's log timestamps with all nine fraction digits, as dockerd prints them.

    nerdctl uses Go's RFC3339Nano, which drops trailing zeros; dockerd uses a fixed
    width. Lines are rewritten whole, so each stream keeps its partial last line.
    """

    def __init__(self) -> None:
        self._pending: dict[int, bytes] = {}

    def feed(self, stream: int, data: bytes) -> bytes:
        text = self._pending.pop(stream, b"") + data
        complete, newline, rest = text.rpartition(b"\n")
        if not newline:
            self._pending[stream] = text
            return b""
        if rest:
            self._pending[stream] = rest
        return fix_timestamps(complete + newline)

    def flush(self) -> list[tuple[int, bytes]]:
        pending, self._pending = self._pending, {}
        return [(stream, fix_timestamps(data)) for stream, data in pending.items() if data]


def fix_timestamps(data: bytes) -> bytes:
    return LOG_TIMESTAMP.sub(
        lambda match: match.group(1) + b"." + (match.group(2) or b"").ljust(9, b"0")
        + match.group(3) + b" ", data)


def _take_controlling_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read_into(master: int, output: asyncio.Queue[bytes]) -> None:
    try:
        data = os.read(master, 65536)
    except OSError:
        data = b""
    output.put_nowait(data)


async def _forward_input(reader: asyncio.StreamReader | None, master: int) -> None:
    if reader is None:
        return
    while True:
        data = await reader.read(65536)
        if not data:
            return
        os.write(master, data)


async def _send(sessions: list[AttachSession], log: JsonFileLog | None, data: bytes) -> None:
    if not data:
        return
    if log is not None:
        log.write("stdout", data)
    await _broadcast(sessions, STDOUT, data)


async def _broadcast(sessions: list[AttachSession], stream: int, data: bytes) -> None:
    for session in sessions:
        try:
            await session.write(stream, data)
        except (ConnectionError, RuntimeError):
            session.done.set()


async def _output_of(process: asyncio.subprocess.Process, *, stdout: bool = True,
                     stderr: bool = True) -> AsyncIterator[tuple[int, bytes]]:
    """Yield (stream, bytes) chunks from a process's stdout and stderr as they come.

    Streams not asked for are read and dropped, so the process never blocks on them.
    """
    assert process.stdout is not None
    assert process.stderr is not None
    queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=64)
    pumps = [asyncio.ensure_future(_pump(process.stdout, STDOUT if stdout else 0, queue)),
             asyncio.ensure_future(_pump(process.stderr, STDERR if stderr else 0, queue))]
    try:
        finished = 0
        while finished < len(pumps):
            item = await queue.get()
            if item is None:
                finished += 1
            else:
                yield item
    finally:
        for pump in pumps:
            pump.cancel()


async def _end(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
    await process.wait()


def _wanting(sessions: list[AttachSession], stream: int) -> list[AttachSession]:
    """Return the sessions that asked for this stream."""
    return [session for session in sessions
            if (session.stdout if stream == STDOUT else session.stderr)]


async def _pump(reader: asyncio.StreamReader, stream: int,
                queue: asyncio.Queue[tuple[int, bytes] | None]) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if stream:
                await queue.put((stream, data))
    finally:
        await queue.put(None)


def _unix_time(value: str | None, name: str) -> str | None:
    """Convert Docker's `seconds[.nanoseconds]` into the RFC 3339 time that nerdctl takes."""
    if value is None or value in ("", "0"):
        return None
    try:
        seconds_text, _, fraction = value.partition(".")
        seconds = int(seconds_text)
        nanos = int((fraction or "0")[:9].ljust(9, "0"))
        moment = datetime.fromtimestamp(seconds, timezone.utc)
    except (ValueError, OverflowError, OSError):
        # OverflowError and OSError come from times beyond what time_t or datetime holds.
        raise InvalidParameterError(f"invalid value for {name}: {value!r}") from None
    return rfc3339(moment.replace(microsecond=nanos // 1000))



def _tail(value: str | None) -> str | None:
    if value is None or value in ("", "all", "-1"):
        return None
    if not (value.isascii() and value.isdigit()):
        raise InvalidParameterError(f"invalid value for tail: {value!r}")
    return value
