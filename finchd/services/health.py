"""Container health checks, run by finchd because nerdctl does not run them.

Each running container whose Healthcheck has a test gets a task that runs the test
with `nerdctl exec` at the configured interval. The task keeps Docker's Health state
(Status, FailingStreak, the last five results) in the container's record, where
inspect and list read it. Checks run only while finchd runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from finchd.errors import FinchdError, InvalidParameterError
from finchd.services.records import RecordStore
from finchd.services.timefmt import now_rfc3339
from finchd.services.validation import expect, strict_string_list

log = logging.getLogger(__name__)

NANOSECONDS = 1_000_000_000
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT_BYTES = 4096


def check_healthcheck(value: Any) -> dict[str, Any] | None:
    """Check a Healthcheck object and return it, or raise 400 naming the field."""
    health = expect(value, dict, "Healthcheck")
    if health is None:
        return None
    test = strict_string_list(health.get("Test"), "Healthcheck.Test")
    if test:
        kind = test[0]
        if kind not in ("NONE", "CMD", "CMD-SHELL"):
            raise InvalidParameterError(
                f"invalid Healthcheck.Test {kind!r}: must start with NONE, CMD or CMD-SHELL")
        if kind != "NONE" and len(test) < 2:
            raise InvalidParameterError(f"invalid Healthcheck.Test: {kind} needs a command")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        duration = expect(health.get(key), int, f"Healthcheck.{key}")
        if duration is not None and duration != 0 and duration < 1_000_000:
            raise InvalidParameterError(f"{key} in Healthcheck cannot be less than 1ms")
    retries = expect(health.get("Retries"), int, "Healthcheck.Retries")
    if retries is not None and retries < 0:
        raise InvalidParameterError("Retries in Healthcheck cannot be negative")
    return dict(health)


def effective_healthcheck(record: dict[str, Any]) -> dict[str, Any] | None:
    """Merge the request's Healthcheck over the image's; None when there is no test."""
    image = (record.get("ImageConfig") or {}).get("Healthcheck") or {}
    sent = (record.get("Config") or {}).get("Healthcheck") or {}
    merged = {**image, **{key: value for key, value in sent.items() if value not in (None, 0, [])}}
    test = merged.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    return merged


def test_command(test: list[str]) -> list[str]:
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", test[1]]
    return test[1:]


class HealthMonitor:
    """One checking task per running container that has a health check."""

    def __init__(self, adapter: Any, records: RecordStore):
        self.adapter = adapter
        self.records = records
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def watch(self, container_id: str) -> None:
        record = self.records.load(container_id)
        health = effective_healthcheck(record)
        if health is None or container_id in self._tasks:
            return
        record["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        self.records.save(container_id, record)
        self._tasks[container_id] = asyncio.ensure_future(self._run(container_id, health))

    def forget(self, container_id: str) -> None:
        task = self._tasks.pop(container_id, None)
        if task is not None:
            task.cancel()

    async def _run(self, container_id: str, health: dict[str, Any]) -> None:
        interval = (health.get("Interval") or 0) / NANOSECONDS or DEFAULT_INTERVAL
        start_interval = (health.get("StartInterval") or 0) / NANOSECONDS or interval
        start_period = (health.get("StartPeriod") or 0) / NANOSECONDS
        started = time.monotonic()
        try:
            while True:
                in_start_period = time.monotonic() - started < start_period
                await asyncio.sleep(start_interval if in_start_period else interval)
                if not await self._running(container_id):
                    return
                await self._check_once(container_id, health, in_start_period)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken check must not stop finchd
            log.exception("health check of container %s stopped", container_id)
        finally:
            self._tasks.pop(container_id, None)

    async def _running(self, container_id: str) -> bool:
        natives = await self.adapter.inspect([container_id])
        return bool(natives and (natives[0].get("State") or {}).get("Running"))

    async def _check_once(self, container_id: str, health: dict[str, Any],
                          in_start_period: bool) -> None:
        timeout = (health.get("Timeout") or 0) / NANOSECONDS or DEFAULT_TIMEOUT
        retries = health.get("Retries") or DEFAULT_RETRIES
        begun = now_rfc3339()
        exit_code, output = await self._exec(container_id, test_command(health["Test"]), timeout)
        record = self.records.load(container_id)
        if not record:
            return
        state = record.get("Health") or {"Status": "starting", "FailingStreak": 0, "Log": []}
        entries = (state.get("Log") or [])[-(MAX_LOG_ENTRIES - 1):]
        entries.append({"Start": begun, "End": now_rfc3339(), "ExitCode": exit_code, "Output": output})
        state["Log"] = entries
        if exit_code == 0:
            state["Status"] = "healthy"
            state["FailingStreak"] = 0
        elif not in_start_period:
            state["FailingStreak"] = int(state.get("FailingStreak") or 0) + 1
            if state["FailingStreak"] >= retries:
                state["Status"] = "unhealthy"
        record["Health"] = state
        self.records.save(container_id, record)

    async def _exec(self, container_id: str, command: list[str],
                    timeout: float) -> tuple[int, str]:
        try:
            process = await self.adapter.runner.spawn(
                self.adapter.exec_args(container_id, {"Cmd": command}),
                stderr=asyncio.subprocess.STDOUT)
        except FinchdError as exc:
            return -1, exc.message
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            return -1, f"Health check exceeded timeout ({timeout:g}s)"
        text = output[:MAX_OUTPUT_BYTES].decode(errors="replace")
        code = process.returncode or 0
        if code != 0 and "exec failed with exit code" in text:
            code = int(text.rsplit("exit code", 1)[1].split('"')[0].strip())
            text = text.split('time="', 1)[0]
        return code, text
