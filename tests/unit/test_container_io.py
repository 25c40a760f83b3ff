"""ContainerIO with a real subprocess in place of nerdctl."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from finchd.services.container_io import AttachSession, ContainerIO


class ExitingRunner:
    """Starts `true` for any nerdctl command, so the output ends at once."""

    async def spawn(self, args: list[str], **kwargs: Any) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "true", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


class FakeContainers:
    runner = ExitingRunner()

    def logs_args(self, container_id: str, **options: Any) -> list[str]:
        return ["logs", container_id]


async def discard(stream: int, data: bytes) -> None:
    return None


async def test_follow_output_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    io = ContainerIO(FakeContainers())  # type: ignore[arg-type]
    session = AttachSession(write=discard, stdin=None, stdout=True, stderr=True)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await io.follow_output("c1", [session], since="2026-01-01T00:00:00Z")
        await asyncio.sleep(0.1)
        gc.collect()
    assert session.done.is_set()
    assert "exception was never retrieved" not in caplog.text
