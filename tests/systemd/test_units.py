"""finchd under a real `systemd --user`: socket activation, idle exit and the engine unit."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import DockerCLI
from tests.e2e.unixhttp import ApiClient
from tests.systemd.conftest import EXIT_MARGIN, IDLE_TIMEOUT, UNITS, Units, systemctl

pytestmark = pytest.mark.engine

ACTIVATION_VARIABLES = (b"LISTEN_FDS=", b"LISTEN_PID=", b"LISTEN_FDNAMES=", b"NOTIFY_SOCKET=")
# Streams stay open this long, well past the idle timeout.
STREAM_SECONDS = IDLE_TIMEOUT + 3.0
CYCLES = 20


def started_at(docker: DockerCLI, name: str) -> str:
    return docker.ok("inspect", "--format", "{{.State.StartedAt}}", name).stdout.strip()


def running_names(docker: DockerCLI) -> dict[str, str]:
    """Return `docker ps` as name -> status."""
    lines = docker.ok("ps", "--format", "{{.Names}}\t{{.Status}}").stdout.splitlines()
    return dict(line.split("\t", 1) for line in lines if line)


def ping(units: Units, timeout: float = 60.0) -> int:
    return ApiClient(str(units.socket_path)).request("GET", "/_ping", timeout=timeout).status


def children(pid: int) -> list[int]:
    """Return every descendant of `pid`."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def unit_processes(unit: str) -> list[int]:
    control_group = systemctl("show", "--value", "-p", "ControlGroup", unit).stdout.strip()
    assert control_group, f"{unit} has no control group"
    procs = Path("/sys/fs/cgroup/unified") / control_group.lstrip("/") / "cgroup.procs"
    if not procs.exists():
        procs = Path("/sys/fs/cgroup") / control_group.lstrip("/") / "cgroup.procs"
    return [int(line) for line in procs.read_text().split()]


def socket_links(pid: int) -> set[str]:
    links = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return links
    for entry in entries:
        try:
            links.add(os.readlink(entry))
        except OSError:
            continue
    return links


@pytest.fixture
def idle_service(units: Units) -> Units:
    """finch.service after it exited for idleness, so the next request activates it."""
    units.wait_inactive()
    return units


def test_first_connection_starts_service(units: Units, docker: DockerCLI, busybox: str) -> None:
    units.wait_inactive()
    assert units.active_state("finch.socket") == "active"
    assert units.active_state() == "inactive"

    result = docker.ok("run", "--rm", busybox, "echo", "hi")

    assert result.stdout == "hi\n"
    assert units.active_state() == "active"
    status = systemctl("status", "--no-pager", "finch.service").stdout
    assert 'Status: "API ready; engine running;' in status, status
    assert units.active_state("finch-engine.service") == "active"


def test_status_counts_running_containers(units: Units, docker: DockerCLI,
                                          container: Callable[[str], str]) -> None:
    container("status-count")
    deadline = time.monotonic() + 10
    text = units.show("finch.service", "StatusText")
    while "1 container running" not in text and time.monotonic() < deadline:
        time.sleep(0.2)
        text = units.show("finch.service", "StatusText")
    assert text.startswith("API ready; engine running; ")
    assert text.endswith(" running")
    assert "container" in text


def test_stop_service_keeps_containers(units: Units, docker: DockerCLI,
                                       container: Callable[[str], str]) -> None:
    name = container("keep")
    before = started_at(docker, name)
    engine_pid = units.show("finch-engine.service", "MainPID")

    assert systemctl("stop", "finch.service").returncode == 0
    assert units.active_state() == "inactive"

    assert running_names(docker)[name].startswith("Up")
    assert units.active_state() == "active"
    assert started_at(docker, name) == before
    assert units.show("finch-engine.service", "MainPID") == engine_pid


def test_idle_exit_keeps_containers(units: Units, docker: DockerCLI,
                                    container: Callable[[str], str]) -> None:
    name = container("keep-idle")
    before = started_at(docker, name)

    units.wait_inactive()
    assert units.show("finch.service", "Result") == "success"
    assert units.show("finch.service", "ExecMainStatus") == "0"

    assert running_names(docker)[name].startswith("Up")
    assert started_at(docker, name) == before


def assert_kept_alive_then_exits(units: Units, close: Callable[[], None]) -> None:
    time.sleep(STREAM_SECONDS)
    assert units.active_state() == "active"
    close()
    units.wait_inactive(IDLE_TIMEOUT + EXIT_MARGIN)


def test_events_stream_keeps_service(units: Units, docker: DockerCLI, busybox: str) -> None:
    units.wait_inactive()
    events = docker.popen("events", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        units.wait_for_state(("active",), 60)
        assert_kept_alive_then_exits(units, events.terminate)
    finally:
        events.kill()
        events.wait(timeout=10)


def test_events_stream_sends_container_events(units: Units, docker: DockerCLI,
                                              busybox: str) -> None:
    events = docker.popen("events", "--format", "{{.Action}} {{.Actor.Attributes.name}}",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        docker.ok("run", "--rm", "--name", "evented", busybox, "true")
        time.sleep(1.0)
    finally:
        events.terminate()
        output, _ = events.communicate(timeout=10)
    lines = output.decode().splitlines()
    assert "start evented" in lines
    assert "die evented" in lines


def test_logs_follow_keeps_service(units: Units, docker: DockerCLI,
                                   container: Callable[[str], str]) -> None:
    name = container("quiet")
    logs = docker.popen("logs", "-f", name, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    try:
        assert_kept_alive_then_exits(units, logs.terminate)
    finally:
        logs.kill()
        logs.wait(timeout=10)


def test_attached_session_keeps_service(units: Units, docker: DockerCLI, busybox: str) -> None:
    pid, terminal = pty.fork()
    if pid == 0:
        os.execve(str(docker.executable),
                  [str(docker.executable), "run", "-it", "--rm", busybox, "sh"], docker.env)
    try:
        os.write(terminal, b"echo attached-$((20+22))\n")
        output = b""
        deadline = time.monotonic() + 60
        while b"attached-42" not in output and time.monotonic() < deadline:
            output += os.read(terminal, 4096)
        assert b"attached-42" in output

        def leave() -> None:
            os.write(terminal, b"exit\n")
            os.waitpid(pid, 0)

        assert_kept_alive_then_exits(units, leave)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        except ProcessLookupError:
            pass
        os.close(terminal)


def test_activation_cycles(units: Units, docker: DockerCLI, busybox: str) -> None:
    invocations = set()
    for _ in range(CYCLES):
        units.wait_inactive()
        assert ping(units) == 200
        invocations.add(units.show("finch.service", "InvocationID"))
    assert len(invocations) == CYCLES
    assert units.active_state("finch.socket") == "active"
    assert docker.ok("run", "--rm", busybox, "echo", "after cycles").stdout == "after cycles\n"


def wait_for_log_line(path: Path, text: str, offset: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with path.open("rb") as log:
            log.seek(offset)
            if text.encode() in log.read():
                return
        time.sleep(0.005)
    raise AssertionError(f"{text!r} did not appear in {path} within {timeout} s")


def test_request_during_shutdown_succeeds(units: Units) -> None:
    for _ in range(3):
        assert ping(units) == 200
        pid = units.main_pid()
        offset = units.log_path.stat().st_size
        wait_for_log_line(units.log_path, "no longer accepting connections", offset,
                          IDLE_TIMEOUT + EXIT_MARGIN)

        assert ping(units) == 200

        assert units.main_pid() != pid


def test_kill_finchd_keeps_containers(units: Units, docker: DockerCLI,
                                      container: Callable[[str], str]) -> None:
    name = container("survivor")
    before = started_at(docker, name)
    pid = units.main_pid()
    assert pid > 0

    os.kill(pid, signal.SIGKILL)
    units.wait_for_state(("inactive", "failed"), 30)

    assert running_names(docker)[name].startswith("Up")
    assert units.main_pid() not in (0, pid)
    assert started_at(docker, name) == before


def containerd_pid(units: Units) -> int:
    for pid in unit_processes("finch-engine.service"):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command and command[0].endswith(b"/containerd"):
            return pid
    raise AssertionError("no containerd process in finch-engine.service")


def test_kill_containerd_keeps_records(units: Units, docker: DockerCLI,
                                       container: Callable[[str], str]) -> None:
    name = container("records")
    container_id = docker.ok("inspect", "--format", "{{.Id}}", name).stdout.strip()
    old = containerd_pid(units)

    os.kill(old, signal.SIGKILL)

    deadline = time.monotonic() + 90
    new = None
    while time.monotonic() < deadline:
        try:
            new = containerd_pid(units)
        except AssertionError:
            new = None
        if new not in (None, old) and docker("ps").returncode == 0:
            break
        time.sleep(0.5)
    assert new not in (None, old), "containerd did not come back within 90 s"
    assert docker.ok("inspect", "--format", "{{.Id}}", name).stdout.strip() == container_id
    assert running_names(docker)[name].startswith("Up")
    assert units.active_state("finch-engine.service") == "active"


def test_container_environment_has_no_activation(docker: DockerCLI, busybox: str) -> None:
    output = docker.ok("run", "--rm", busybox, "env").stdout
    for variable in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
        assert variable not in output


@pytest.fixture
def follower(docker: DockerCLI, container: Callable[[str], str]) -> Iterator[None]:
    """An open `docker logs -f`, so that finchd has a nerdctl child while the test looks."""
    name = container("followed")
    logs = docker.popen("logs", "-f", name, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    yield
    logs.kill()
    logs.wait(timeout=10)


def test_children_inherit_no_activation(units: Units, follower: None) -> None:
    pid = units.main_pid()
    listening = os.readlink(f"/proc/{pid}/fd/3")
    assert listening.startswith("socket:")
    descendants = children(pid)
    assert descendants, "finchd has no child process while docker logs -f runs"
    # The engine's supervisor is the main process of its own unit and so gets
    # NOTIFY_SOCKET from systemd; every process it starts must not.
    engine_main = int(units.show("finch-engine.service", "MainPID"))
    engine = [pid for pid in unit_processes("finch-engine.service") if pid != engine_main]
    assert engine, "finch-engine.service runs no engine processes"

    for child in descendants + engine:
        assert listening not in socket_links(child), f"process {child} holds the API socket"
        try:
            environment = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environment:
            assert not entry.startswith(ACTIVATION_VARIABLES), (child, entry)

    environment = Path(f"/proc/{pid}/environ").read_bytes()
    # /proc/PID/environ shows the environment at exec; finchd removes the variables
    # from its own copy, which the children above show.
    assert b"LISTEN_FDS=1" in environment


def test_socket_restarts_while_finchd_runs(units: Units) -> None:
    assert ping(units) == 200

    restarted = systemctl("restart", "finch.socket")

    assert restarted.returncode == 0, restarted.stderr
    assert units.active_state("finch.socket") == "active"
    assert ping(units) == 200


def test_units_verify(units: Units) -> None:
    paths = [str(units.unit_dir / name) for name in UNITS]

    result = subprocess.run(["systemd-analyze", "--user", "verify", *paths],
                            capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == ""
