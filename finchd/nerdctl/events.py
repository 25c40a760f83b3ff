"""`nerdctl events`: containerd's event stream, one JSON object per line."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from finchd.errors import EngineError
from finchd.nerdctl.runner import Runner, clean_error

log = logging.getLogger(__name__)

# Maximum length of one event line. asyncio's default of 64 KiB could cut a large event.
MAX_LINE_BYTES = 1 << 20


@dataclass(frozen=True)
class EngineEvent:
    """One containerd event as `nerdctl events --format '{{json .}}'` prints it.

    `container_id` is the container the event is about, taken from the event's
    `container_id` field (task events) or `id` field (container events).
    `process_id` is the event's `id` field, which for `/tasks/exit` names the
    process that exited: the container id for its init process, an exec id
    otherwise.
    """

    topic: str
    namespace: str
    container_id: str
    process_id: str


def parse_event(line: str) -> EngineEvent | None:
    """Parse one output line of `nerdctl events`; return None for blank lines."""
    if not line.strip():
        return None
    try:
        envelope = json.loads(line)
        payload = json.loads(envelope.get("Event") or "{}")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise EngineError(f"cannot parse nerdctl events output {line[:200]!r}: {exc}") from exc
    if not isinstance(envelope, dict) or not isinstance(payload, dict):
        raise EngineError(f"unexpected nerdctl events output {line[:200]!r}")
    process_id = str(payload.get("id") or "")
    return EngineEvent(
        topic=str(envelope.get("Topic") or ""),
        namespace=str(envelope.get("Namespace") or ""),
        container_id=str(payload.get("container_id") or process_id),
        process_id=process_id,
    )


class Events:
    """nerdctl's event stream."""

    def __init__(self, runner: Runner):
        self.runner = runner

    async def stream(self) -> AsyncIterator[EngineEvent]:
        """Yield containerd's events, of every namespace, until the stream ends.

        The stream ends when containerd stops or restarts. Raise EngineError
        with nerdctl's message when nerdctl exits with a failure.
        """
        process = await self.runner.spawn(
            ["events", "--format={{json .}}"], limit=MAX_LINE_BYTES
        )
        assert process.stdout is not None and process.stderr is not None
        stderr_reader = asyncio.ensure_future(process.stderr.read())
        try:
            async for raw in process.stdout:
                event = parse_event(raw.decode(errors="replace"))
                if event is not None:
                    yield event
            code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            stderr = await stderr_reader
        if code != 0:
            message = clean_error(stderr.decode(errors="replace")) or "no output"
            raise EngineError(f"nerdctl events exited with status {code}: {message}")
        log.debug("nerdctl events ended")
