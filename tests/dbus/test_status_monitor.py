"""StatusMonitor with a fake event stream, fake counts and a switchable engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from finchd.errors import EngineError
from finchd.nerdctl.events import EngineEvent, parse_event
from finchd.services import status as status_module
from finchd.services.status import ContainerEvent, Status, StatusMonitor, container_action
from finchd.services.system import ContainerState

NAMESPACE = "default"


class FakeEvents:
    """An event stream fed by the test; `end()` ends it like a containerd restart."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[EngineEvent | None] = asyncio.Queue()
        self.streams = 0

    async def stream(self) -> AsyncIterator[EngineEvent]:
        self.streams += 1
        while True:
            event = await self.queue.get()
            if event is None:
                return
            yield event

    def send(self, topic: str, container_id: str, process_id: str | None = None,
             namespace: str = NAMESPACE) -> None:
        process = container_id if process_id is None else process_id
        self.queue.put_nowait(EngineEvent(topic, namespace, container_id, process))

    def end(self) -> None:
        self.queue.put_nowait(None)


class FakeSystem:
    def __init__(self) -> None:
        self.containers: list[ContainerState] = []
        self.images = 1
        self.fail = False

    async def container_states(self) -> list[ContainerState]:
        if self.fail:
            raise EngineError("nerdctl container ls failed")
        return list(self.containers)

    async def image_count(self) -> int:
        return self.images


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[Status, list[str]]] = []
        self.states: list[tuple[str, str, str]] = []
        self.events: list[list[ContainerEvent]] = []

    def status_changed(self, status: Status, changed: list[str]) -> None:
        self.changes.append((status, changed))

    def state_changed(self, new: str, old: str, reason: str) -> None:
        self.states.append((new, old, reason))

    def container_events(self, events: list[ContainerEvent]) -> None:
        self.events.append(events)


class Harness:
    def __init__(self) -> None:
        self.events = FakeEvents()
        self.system = FakeSystem()
        self.engine_up = True
        self.recorder = Recorder()
        self.monitor = StatusMonitor(self.system, self.events, NAMESPACE,  # type: ignore[arg-type]
                                     "/tmp/d.sock", lambda: self.engine_up)
        self.monitor.listener = self.recorder

    async def wait(self, condition: Any, timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"condition not met within {timeout} s: {self.recorder.__dict__}")
            await asyncio.sleep(0.02)


@pytest.fixture
async def harness(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.setattr(status_module, "HEALTH_INTERVAL", 0.05)
    monkeypatch.setattr(status_module, "RETRY_INTERVAL", 0.05)
    monkeypatch.setattr(status_module, "COALESCE_SECONDS", 0.05)
    state = Harness()
    state.monitor.start()
    yield state
    await state.monitor.stop()


def running(container_id: str) -> ContainerState:
    return ContainerState(container_id, f"name-{container_id}", "running")


async def test_monitor_enters_running(harness: Harness) -> None:
    await harness.wait(lambda: harness.monitor.status.state == "running")
    assert harness.recorder.states[0] == ("running", "starting", "the engine is running")
    assert harness.monitor.status.images == 1


async def test_start_event_updates_counts(harness: Harness) -> None:
    await harness.wait(lambda: harness.monitor.status.state == "running")
    harness.system.containers = [running("c1")]
    harness.events.send("/tasks/start", "c1")
    await harness.wait(lambda: harness.recorder.events)
    assert harness.recorder.events[0] == [ContainerEvent("c1", "name-c1", "start")]
    assert harness.monitor.status.containers_running == 1
    assert any("containers_running" in changed for _, changed in harness.recorder.changes)


async def test_burst_is_coalesced(harness: Harness) -> None:
    await harness.wait(lambda: harness.monitor.status.state == "running")
    harness.system.containers = [running("c1")]
    for _ in range(500):
        harness.events.send("/tasks/start", "c1")
    for index in range(200):
        harness.events.send("/containers/create", f"n{index}")
    await harness.wait(lambda: sum(len(batch) for batch in harness.recorder.events) >= 64)
    await asyncio.sleep(0.3)
    sent = [event for batch in harness.recorder.events for event in batch]
    assert sent.count(ContainerEvent("c1", "name-c1", "start")) == 1
    assert len(sent) <= 1 + 200
    assert max(len(batch) for batch in harness.recorder.events) <= status_module.MAX_EVENTS_PER_BATCH


async def test_exec_exit_is_not_die(harness: Harness) -> None:
    await harness.wait(lambda: harness.monitor.status.state == "running")
    harness.events.send("/tasks/exit", "c1", process_id="exec-1")
    harness.events.send("/tasks/exit", "c2")
    await harness.wait(lambda: harness.recorder.events)
    assert harness.recorder.events[0] == [ContainerEvent("c2", "", "die")]


async def test_other_namespace_is_ignored(harness: Harness) -> None:
    await harness.wait(lambda: harness.monitor.status.state == "running")
    harness.events.send("/tasks/start", "other", namespace="buildkit")
    harness.events.send("/tasks/start", "c1")
    await harness.wait(lambda: harness.recorder.events)
    assert [event.id for event in harness.recorder.events[0]] == ["c1"]


async def test_engine_down_and_back(harness: Harness) -> None:
    await harness.wait(lambda: harness.monitor.status.state == "running")
    harness.engine_up = False
    harness.events.end()
    await harness.wait(lambda: harness.monitor.status.state == "degraded")
    assert harness.recorder.states[-1][:2] == ("degraded", "running")
    harness.engine_up = True
    await harness.wait(lambda: harness.monitor.status.state == "running")
    assert harness.recorder.states[-1][:2] == ("running", "degraded")
    assert harness.events.streams == 2


async def test_failed_count_is_degraded(harness: Harness) -> None:
    await harness.wait(lambda: harness.monitor.status.state == "running")
    harness.system.fail = True
    harness.events.send("/tasks/start", "c1")
    await harness.wait(lambda: harness.monitor.status.state == "degraded")
    assert harness.monitor.status.state_reason == "nerdctl container ls failed"


async def test_stop_enters_stopping(harness: Harness) -> None:
    await harness.wait(lambda: harness.monitor.status.state == "running")
    await harness.monitor.stop()
    assert harness.recorder.states[-1] == ("stopping", "running", "finchd is shutting down")


@pytest.mark.parametrize(
    ("topic", "action"),
    [
        ("/containers/create", "create"),
        ("/tasks/start", "start"),
        ("/tasks/exit", "die"),
        ("/containers/delete", "destroy"),
        ("/tasks/paused", "pause"),
        ("/tasks/resumed", "unpause"),
        ("/tasks/create", None),
        ("/tasks/delete", None),
        ("/snapshot/prepare", None),
    ],
)
def test_container_action_per_topic(topic: str, action: str | None) -> None:
    assert container_action(EngineEvent(topic, NAMESPACE, "c1", "c1")) == action


def test_parse_event_task_and_container_topics() -> None:
    task = parse_event('{"Timestamp":"2026-01-01T00:00:00Z","ID":"c1","Namespace":"default",'
                       '"Topic":"/tasks/exit","Status":"unknown",'
                       '"Event":"{\\"container_id\\":\\"c1\\",\\"id\\":\\"e1\\",\\"pid\\":7}"}')
    created = parse_event('{"Namespace":"default","Topic":"/containers/create",'
                          '"Event":"{\\"id\\":\\"c2\\",\\"image\\":\\"busybox\\"}"}')
    assert task == EngineEvent("/tasks/exit", "default", "c1", "e1")
    assert created == EngineEvent("/containers/create", "default", "c2", "c2")
    assert parse_event("\n") is None


def test_parse_event_rejects_garbage() -> None:
    with pytest.raises(EngineError):
        parse_event("not json")
