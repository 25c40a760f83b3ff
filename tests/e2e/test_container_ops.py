"""exec, stats, top, rename, pause, update, prune, health checks and create options."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import DockerCLI
from tests.e2e.unixhttp import ApiClient, demultiplex, stream_text

pytestmark = pytest.mark.engine


@pytest.fixture
def web(docker: DockerCLI, busybox: str, name: Callable[[str], str]) -> str:
    container = name("web")
    docker.ok("run", "-d", "--name", container, busybox, "sleep", "300")
    return container


def test_exec_prints_output(docker: DockerCLI, web: str) -> None:
    result = docker.ok("exec", web, "echo", "hi")
    assert result.stdout == "hi\n"


def test_exec_env_user_workdir(docker: DockerCLI, web: str) -> None:
    result = docker.ok("exec", "-e", "A=1", "-u", "1000", "-w", "/tmp", web,
                       "sh", "-c", "echo $A; id -u; pwd")
    assert result.stdout.split() == ["1", "1000", "/tmp"]


def test_exec_exit_code(docker: DockerCLI, web: str) -> None:
    result = docker("exec", web, "sh", "-c", "exit 5")
    assert result.returncode == 5


def test_exec_stdin(docker: DockerCLI, web: str) -> None:
    result = docker.ok("exec", "-i", web, "cat", input="x\n")
    assert result.stdout == "x\n"


def test_exec_missing_binary(docker: DockerCLI, web: str) -> None:
    result = docker("exec", web, "no-such-binary")
    assert result.returncode == 126
    assert "executable file not found" in result.stderr + result.stdout


def test_exec_on_stopped_container_is_409(api: ApiClient, docker: DockerCLI, busybox: str,
                                          name: Callable[[str], str]) -> None:
    container = name("stopped")
    docker.ok("create", "--name", container, busybox, "true")
    response = api.request("POST", f"/v1.43/containers/{container}/exec", {"Cmd": ["true"]})
    assert response.status == 409
    assert "is not running" in response.json()["message"]


def test_exec_tty_through_pty(docker: DockerCLI, web: str) -> None:
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(str(docker.executable), ["docker", "exec", "-it", web, "sh"], docker.env)
    output = b""
    try:
        os.write(fd, b"tty; echo typed-$((40+2))\r")
        deadline = time.monotonic() + 20
        while b"typed-42" not in output and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                output += os.read(fd, 4096)
        os.write(fd, b"exit 7\r")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert re.search(rb"/dev/pts/\d+", output)
    assert b"typed-42" in output
    assert os.waitstatus_to_exitcode(status) == 7


def test_exec_start_body_not_in_stdin(api: ApiClient, web: str) -> None:
    created = api.request("POST", f"/v1.43/containers/{web}/exec",
                          {"Cmd": ["sh", "-c", "read -t 2 line; echo got:$line"],
                           "AttachStdin": True, "AttachStdout": True, "Tty": True})
    assert created.status == 201
    exec_id = created.json()["Id"]
    assert re.fullmatch(r"[0-9a-f]{64}", exec_id)
    body = json.dumps({"Detach": False, "Tty": True}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(api.socket_path)
        sock.sendall(
            f"POST /v1.43/exec/{exec_id}/start HTTP/1.1\r\nHost: localhost\r\n"
            "Upgrade: tcp\r\nConnection: Upgrade\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"HTTP/1.1 101")
    assert re.search(rb"got:\r+\n", received)
    assert b"Detach" not in received.split(b"\r\n\r\n", 1)[1]
    inspected = api.request("GET", f"/v1.43/exec/{exec_id}/json").json()
    assert inspected["ExitCode"] == 0
    assert inspected["Running"] is False


def test_exec_json_of_missing_is_404(api: ApiClient) -> None:
    response = api.request("GET", "/v1.43/exec/" + "0" * 64 + "/json")
    assert response.status == 404


def test_stats_no_stream(docker: DockerCLI, web: str) -> None:
    result = docker.ok("stats", "--no-stream", "--format", "{{json .}}", web)
    row = json.loads(result.stdout)
    assert row["PIDs"] == "1"
    assert row["MemUsage"].endswith("B") or "iB" in row["MemUsage"]


def test_stats_api_shape(api: ApiClient, web: str) -> None:
    response = api.request("GET", f"/v1.43/containers/{web}/stats?stream=0")
    assert response.status == 200
    stats = response.json()
    for key in ("read", "preread", "cpu_stats", "precpu_stats", "memory_stats",
                "pids_stats", "networks", "blkio_stats", "name", "id"):
        assert key in stats
    assert stats["pids_stats"]["current"] == 1
    assert stats["cpu_stats"]["online_cpus"] >= 1
    assert "eth0" in stats["networks"]


def test_top_lists_process(docker: DockerCLI, web: str) -> None:
    result = docker.ok("top", web)
    assert "PID" in result.stdout.splitlines()[0]
    assert "sleep 300" in result.stdout


def test_rename_and_conflict(docker: DockerCLI, web: str, busybox: str,
                             name: Callable[[str], str]) -> None:
    other = name("other")
    docker.ok("create", "--name", other, busybox, "true")
    taken = docker("rename", web, other)
    assert taken.returncode != 0
    assert "is already in use" in taken.stderr
    renamed = name("renamed")
    docker.ok("rename", web, renamed)
    assert docker.ok("inspect", "--format", "{{.Name}}", renamed).stdout.strip() == "/" + renamed


def test_pause_state_errors(api: ApiClient, docker: DockerCLI, busybox: str,
                            name: Callable[[str], str], web: str) -> None:
    stopped = name("stopped")
    docker.ok("create", "--name", stopped, busybox, "true")
    assert api.request("POST", f"/v1.43/containers/{stopped}/pause").status == 409
    assert api.request("POST", f"/v1.43/containers/{web}/unpause").status == 409
    paused = docker("pause", web)
    if paused.returncode != 0:
        assert "freezer" in paused.stderr


def test_update_restart_policy(docker: DockerCLI, web: str) -> None:
    docker.ok("update", "--restart=always", web)
    result = docker.ok("inspect", "--format", "{{.HostConfig.RestartPolicy.Name}}", web)
    assert result.stdout.strip() == "always"


def test_container_prune(docker: DockerCLI, busybox: str, name: Callable[[str], str],
                         web: str) -> None:
    dead = name("dead")
    docker.ok("create", "--name", dead, busybox, "true")
    result = docker.ok("container", "prune", "-f")
    assert "Total reclaimed space" in result.stdout
    assert docker("inspect", dead).returncode != 0
    assert docker("inspect", web).returncode == 0


def wait_for_health(docker: DockerCLI, container: str, status: str) -> str:
    deadline = time.monotonic() + 30
    current = ""
    while time.monotonic() < deadline:
        current = docker.ok("inspect", "--format", "{{.State.Health.Status}}",
                            container).stdout.strip()
        if current == status:
            break
        time.sleep(0.5)
    return current


def test_health_cmd_becomes_healthy(docker: DockerCLI, busybox: str,
                                    name: Callable[[str], str]) -> None:
    container = name("health")
    docker.ok("run", "--health-cmd", "exit 0", "--health-interval", "1s", "-d",
              "--name", container, busybox, "sleep", "60")
    assert wait_for_health(docker, container, "healthy") == "healthy"
    listed = docker.ok("ps", "--filter", "health=healthy", "--format", "{{.Names}} {{.Status}}")
    assert f"{container} Up" in listed.stdout
    assert "(healthy)" in listed.stdout


def test_health_cmd_shell_stored_exactly(api: ApiClient, busybox: str,
                                         cleanup: object) -> None:
    body = {"Image": busybox, "Cmd": ["sleep", "60"],
            "Healthcheck": {"Test": ["CMD-SHELL", "exit 0"], "Interval": 1_000_000_000}}
    created = api.request("POST", "/v1.43/containers/create", body)
    assert created.status == 201
    container = created.json()["Id"]
    cleanup.container(container)  # type: ignore[attr-defined]
    inspected = api.request("GET", f"/v1.43/containers/{container}/json").json()
    assert inspected["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "exit 0"]
    assert api.request("POST", f"/v1.43/containers/{container}/start").status == 204
    deadline = time.monotonic() + 30
    status = ""
    while time.monotonic() < deadline and status != "healthy":
        time.sleep(0.5)
        status = api.request("GET", f"/v1.43/containers/{container}/json").json()[
            "State"]["Health"]["Status"]
    assert status == "healthy"


def test_healthcheck_timings_without_test(api: ApiClient, busybox: str,
                                          cleanup: object) -> None:
    body = {"Image": busybox, "Cmd": ["true"],
            "Healthcheck": {"Interval": 5_000_000_000, "Timeout": 3_000_000_000,
                            "Retries": 3, "StartPeriod": 0}}
    created = api.request("POST", "/v1.43/containers/create", body)
    assert created.status == 201
    cleanup.container(created.json()["Id"])  # type: ignore[attr-defined]


def run_output(api: ApiClient, body: dict, cleanup: object) -> str:
    created = api.request("POST", "/v1.43/containers/create", body)
    assert created.status == 201, created.body
    container = created.json()["Id"]
    cleanup.container(container)  # type: ignore[attr-defined]
    assert api.request("POST", f"/v1.43/containers/{container}/start").status == 204
    waited = api.request("POST", f"/v1.43/containers/{container}/wait", timeout=60)
    assert waited.json()["StatusCode"] == 0
    logs = api.request("GET", f"/v1.43/containers/{container}/logs?stdout=1&stderr=1")
    return stream_text(demultiplex(logs.body), 1)


def test_tmpfs_map_options(api: ApiClient, busybox: str, cleanup: object) -> None:
    output = run_output(api, {"Image": busybox, "Cmd": ["sh", "-c", "df -k /app | tail -1"],
                              "HostConfig": {"Tmpfs": {"/app": "rw,size=1m"}}}, cleanup)
    fields = output.split()
    assert fields[0] == "tmpfs"
    assert fields[1] == "1024"
    assert fields[-1] == "/app"


def test_tmpfs_mount_size_and_mode(api: ApiClient, busybox: str, cleanup: object) -> None:
    mounts = [{"Type": "tmpfs", "Target": "/t",
               "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 448}}]
    output = run_output(api, {"Image": busybox,
                              "Cmd": ["sh", "-c", "df -k /t | tail -1; stat -c %a /t"],
                              "HostConfig": {"Mounts": mounts}}, cleanup)
    lines = output.splitlines()
    assert lines[0].split()[1] == "1024"
    assert lines[1] == "700"


def test_unsupported_field_is_400(api: ApiClient, busybox: str) -> None:
    response = api.request("POST", "/v1.43/containers/create",
                           {"Image": busybox, "HostConfig": {"Links": ["a:b"]}})
    assert response.status == 400
    assert "Links" in response.json()["message"]
