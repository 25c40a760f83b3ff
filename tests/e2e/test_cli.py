"""The docker CLI against finchd, expecting what dockerd does for each command."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Cleanup, DockerCLI, unique_name
from tests.fixtures.images import Image, write_image_archive
from tests.fixtures.registry import LocalRegistry

pytestmark = pytest.mark.engine

# dockerd formats `docker logs -t` timestamps as RFC3339Nano with all 9 digits.
TIMESTAMPED_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}(Z|[+-]\d{2}:\d{2}) (?P<text>.*)$"
)


def inspect(docker: DockerCLI, reference: str) -> dict:
    result = docker.ok("inspect", reference)
    documents = json.loads(result.stdout)
    assert len(documents) == 1
    return documents[0]


def container_exists(docker: DockerCLI, reference: str) -> bool:
    return docker("inspect", "--type", "container", reference).returncode == 0


def image_references(docker: DockerCLI) -> list[str]:
    result = docker.ok("images", "--format", "{{.Repository}}:{{.Tag}}")
    return result.stdout.split()


def read_until(fd: int, pattern: re.Pattern[str], timeout: float) -> str:
    """Read from `fd` until the decoded text matches `pattern`."""
    deadline = time.monotonic() + timeout
    text = ""
    while not pattern.search(text):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{pattern.pattern!r} not seen in {text!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            raise EOFError(f"{pattern.pattern!r} not seen before EOF in {text!r}")
        text += chunk.decode(errors="replace")
    return text


def test_version_reports_api_1_43(docker: DockerCLI) -> None:
    result = docker.ok("version", "--format", "{{json .}}")
    version = json.loads(result.stdout)

    assert version["Server"]["ApiVersion"] == "1.43"

    plain = docker.ok("version")
    assert re.search(r"API version:\s+1\.43", plain.stdout)


def test_info_reports_rootless_and_warnings(docker: DockerCLI) -> None:
    info = json.loads(docker.ok("info", "--format", "{{json .}}").stdout)

    assert "name=rootless" in info["SecurityOptions"]
    assert info["Warnings"], "rootless without cgroups must report warnings"
    for warning in info["Warnings"]:
        assert warning.startswith("WARNING:"), warning
    assert any("cgroup" in warning.lower() for warning in info["Warnings"])

    plain = docker.ok("info")
    assert "rootless" in plain.stdout
    assert "WARNING:" in plain.stderr


def test_load_archive_and_list_images(
    docker: DockerCLI,
    busybox_image: Image,
    cleanup: Cleanup,
    tmp_path: Path,
) -> None:
    tag = cleanup.image(f"{unique_name('finchd-load')}:v1")
    archive = write_image_archive(busybox_image, tmp_path / "image.tar", [tag])

    result = docker.ok("load", "-i", str(archive), timeout=120)

    assert f"Loaded image: {tag}" in result.stdout
    assert tag in image_references(docker)
    image = inspect(docker, tag)
    assert image["Id"] == busybox_image.id
    assert image["Config"]["Cmd"] == ["sh"]


def test_busybox_session_image_listed(docker: DockerCLI, busybox: str) -> None:
    listed = docker.ok("images", "--format", "{{.Repository}}:{{.Tag}}", "busybox")

    assert busybox in listed.stdout.split()


def test_run_prints_exact_output(docker: DockerCLI, busybox: str) -> None:
    result = docker.ok("run", "--rm", busybox, "echo", "hello")

    assert result.stdout == "hello\n"


def test_run_exit_code_and_removal(
    docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("exit3")

    result = docker("run", "--rm", "--name", container, busybox, "sh", "-c", "exit 3")

    assert result.returncode == 3, result.stderr
    assert not container_exists(docker, container)
    listed = docker.ok("ps", "-a", "--filter", f"name=^{container}$", "-q")
    assert listed.stdout.strip() == ""


def test_run_interactive_stdin(docker: DockerCLI, busybox: str) -> None:
    result = docker.ok("run", "-i", "--rm", busybox, "cat", input="data\n")

    assert result.stdout == "data\n"


def test_run_tty_gives_terminal(
    docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("tty")
    primary, secondary = pty.openpty()
    rows, columns = 24, 80
    window_size = struct.pack("HHHH", rows, columns, 0, 0)
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, window_size)
    process = docker.popen(
        "run",
        "-it",
        "--rm",
        "--name",
        container,
        busybox,
        "sh",
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    try:
        read_until(primary, re.compile(r"# "), timeout=60)

        os.write(primary, b"tty\r")
        output = read_until(primary, re.compile(r"/dev/pts/\d+"), timeout=30)
        assert re.search(r"/dev/pts/\d+", output)

        os.write(primary, b"echo typed-$((6*7))\r")
        output = read_until(primary, re.compile(r"typed-42"), timeout=30)
        assert "echo typed-$((6*7))" in output, "typed input is not echoed back"

        os.write(primary, b"exit 0\r")
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(primary)


def test_detached_container_lifecycle(
    docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    web = name("web")
    script = "while true; do echo tick; sleep 1; done"
    started = docker.ok("run", "-d", "--name", web, busybox, "sh", "-c", script)
    container_id = started.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", container_id), started.stdout

    status = docker.ok("ps", "--filter", f"name=^{web}$", "--format", "{{.Status}}")
    assert status.stdout.startswith("Up"), status.stdout

    time.sleep(2)
    logs = docker.ok("logs", web)
    lines = logs.stdout.splitlines()
    assert lines, "docker logs printed nothing for a container that echoes every second"
    assert set(lines) == {"tick"}

    tail = docker.ok("logs", "--tail", "1", "-t", web)
    tail_lines = tail.stdout.splitlines()
    assert len(tail_lines) == 1, tail.stdout
    match = TIMESTAMPED_LINE.match(tail_lines[0])
    assert match, tail_lines[0]
    assert match.group("text") == "tick"

    # Lines past the count printed just before `logs -f` started were streamed.
    logged_before = len(docker.ok("logs", web).stdout.splitlines())
    follower = docker.popen(
        "logs", "-f", web, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert follower.stdout is not None
        followed = read_until(
            follower.stdout.fileno(),
            re.compile(rf"(tick\n){{{logged_before + 3}}}"),
            timeout=30,
        )
        assert follower.poll() is None, "docker logs -f ended while the container runs"
    finally:
        follower.kill()
        follower.communicate(timeout=10)
    assert set(followed.splitlines()) == {"tick"}

    # sh ignores SIGTERM as PID 1, so the stop ends in SIGKILL after 10 s.
    stop = docker.ok("stop", web, timeout=60)
    assert stop.stdout.strip() == web
    state = inspect(docker, web)["State"]
    assert state["Status"] == "exited"
    assert state["Running"] is False
    assert state["ExitCode"] == 137

    docker.ok("rm", web)
    assert not container_exists(docker, web)


def test_rm_running_container_rejected(
    docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("running")
    docker.ok("run", "-d", "--name", container, busybox, "sleep", "300")

    result = docker("rm", container)

    assert result.returncode != 0
    assert "cannot remove container" in result.stderr
    assert (
        "container is running: stop the container before removing or force remove"
        in result.stderr
    )
    assert inspect(docker, container)["State"]["Running"] is True


def test_start_running_container_noop(
    docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("running")
    docker.ok("run", "-d", "--name", container, busybox, "sleep", "300")
    before = inspect(docker, container)["State"]

    result = docker("start", container)

    assert result.returncode == 0, result.stderr
    after = inspect(docker, container)["State"]
    assert after["Running"] is True
    assert after["Pid"] == before["Pid"]
    assert after["StartedAt"] == before["StartedAt"]


def test_kill_stopped_container_fails(
    docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("stopped")
    docker.ok("run", "--name", container, busybox, "true")

    result = docker("kill", container)

    assert result.returncode != 0
    assert "is not running" in result.stderr


def test_run_options_take_effect(
    docker: DockerCLI,
    busybox: str,
    name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    # The container user 1000 maps to a subordinate uid, which needs world access.
    host_dir.chmod(0o777)
    (host_dir / "in.txt").write_text("from-host\n")
    (host_dir / "in.txt").chmod(0o644)
    container = name("options")
    script = (
        'cat /data/in.txt; echo "$FOO"; pwd; id -u; id -g; hostname; '
        "echo from-container > /data/out.txt"
    )

    result = docker.ok(
        "run",
        "--name",
        container,
        "-v",
        f"{host_dir}:/data",
        "-e",
        "FOO=bar",
        "-w",
        "/data",
        "-u",
        "1000:1000",
        "--hostname",
        "myhost",
        "--label",
        "app=x",
        "--entrypoint",
        "sh",
        busybox,
        "-c",
        script,
    )

    assert result.stdout.splitlines() == [
        "from-host",
        "bar",
        "/data",
        "1000",
        "1000",
        "myhost",
    ]
    assert (host_dir / "out.txt").read_text() == "from-container\n"

    details = inspect(docker, container)
    config = details["Config"]
    assert "FOO=bar" in config["Env"]
    assert config["WorkingDir"] == "/data"
    assert config["User"] == "1000:1000"
    assert config["Hostname"] == "myhost"
    assert config["Labels"]["app"] == "x"
    assert config["Entrypoint"] == ["sh"]
    assert config["Cmd"] == ["-c", script]
    assert details["HostConfig"]["Binds"] == [f"{host_dir}:/data"]
    mounts = [mount for mount in details["Mounts"] if mount["Destination"] == "/data"]
    assert len(mounts) == 1, details["Mounts"]
    assert mounts[0]["Type"] == "bind"
    assert mounts[0]["Source"] == str(host_dir)
    assert mounts[0]["RW"] is True


def test_pull_from_loopback_registry(
    docker: DockerCLI,
    registry_hosts: LocalRegistry,
    busybox_image: Image,
    cleanup: Cleanup,
) -> None:
    reference = cleanup.image(f"{registry_hosts.host}/busybox:latest")
    docker("rmi", "-f", reference)

    result = docker.ok("pull", reference, timeout=120)

    assert "latest: Pulling from busybox" in result.stdout
    assert "Pull complete" in result.stdout
    assert f"Digest: {busybox_image.manifest.digest}" in result.stdout
    assert f"Status: Downloaded newer image for {reference}" in result.stdout
    assert result.stdout.splitlines()[-1] == reference
    assert reference in image_references(docker)
    assert inspect(docker, reference)["Id"] == busybox_image.id


def test_pull_missing_image_fails(
    docker: DockerCLI, registry_hosts: LocalRegistry, cleanup: Cleanup
) -> None:
    missing = unique_name("does-not-exist")
    reference = cleanup.image(f"{registry_hosts.host}/{missing}:latest")

    result = docker("pull", reference, timeout=120)

    assert result.returncode != 0
    assert "Error response from daemon" in result.stderr
    assert missing in result.stderr
    message = result.stderr.lower()
    assert "not found" in message or "does not exist" in message, result.stderr
    assert reference not in image_references(docker)
