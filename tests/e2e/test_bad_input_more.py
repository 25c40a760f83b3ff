"""More malformed requests to exec, archive, top, rename, resize and events.

Each bad request must get Docker's JSON error with a 4xx status, never a 500,
and the daemon must keep serving afterwards.
"""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Cleanup, DockerCLI
from tests.e2e.test_bad_input import assert_client_error, assert_serving
from tests.e2e.unixhttp import ApiClient

pytestmark = pytest.mark.engine

V = "/v1.43"


@pytest.fixture
def sleeper(docker: DockerCLI, busybox: str, name: Callable[[str], str]) -> str:
    container = name("bad-more")
    docker.ok("run", "-d", "--name", container, busybox, "sleep", "600")
    return container


def create_exec(api: ApiClient, container: str, config: dict[str, object]) -> str:
    response = api.request("POST", f"{V}/containers/{container}/exec", body=config)
    assert response.status == 201, response.body
    exec_id: str = response.json()["Id"]
    return exec_id


def tar_bytes(members: list[tarfile.TarInfo]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member in members:
            archive.addfile(member, io.BytesIO(b"x" * member.size))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "config",
    [
        {"Cmd": ["echo\x00x"]},
        {"Cmd": ["echo"], "Env": ["A\x00B=1"]},
        {"Cmd": ["echo"], "WorkingDir": "/\x00"},
    ],
)
def test_exec_start_nul_byte(api: ApiClient, sleeper: str, config: dict[str, object]) -> None:
    exec_id = create_exec(api, sleeper, config)
    response = api.request("POST", f"{V}/exec/{exec_id}/start", body={"Detach": True})
    assert_client_error(response, 400, "NUL byte")
    inspected = api.request("GET", f"{V}/exec/{exec_id}/json").json()
    assert inspected["Running"] is False
    assert inspected["ExitCode"] == 126
    assert_serving(api)


def test_exec_start_too_long_not_running(api: ApiClient, sleeper: str) -> None:
    exec_id = create_exec(api, sleeper, {"Cmd": ["echo", "x" * 200000]})
    response = api.request("POST", f"{V}/exec/{exec_id}/start", body={"Detach": True})
    assert_client_error(response, 400, "bytes long")
    inspected = api.request("GET", f"{V}/exec/{exec_id}/json").json()
    assert inspected["Running"] is False
    assert inspected["ExitCode"] == 126


def test_exec_concurrent_starts_run_once(api: ApiClient, sleeper: str) -> None:
    exec_id = create_exec(api, sleeper, {"Cmd": ["sh", "-c", "echo run >> /tmp/runs"]})
    statuses: list[int] = []

    def start() -> None:
        response = api.request("POST", f"{V}/exec/{exec_id}/start", body={"Detach": True})
        statuses.append(response.status)

    threads = [threading.Thread(target=start) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409, 409, 409, 409]


def test_exec_start_body_not_object(api: ApiClient, sleeper: str) -> None:
    exec_id = create_exec(api, sleeper, {"Cmd": ["echo", "hi"], "AttachStdout": True})
    response = api.request("POST", f"{V}/exec/{exec_id}/start", body="[]")
    assert_client_error(response, 400, "expected a JSON object")
    assert_serving(api)


def test_create_nul_byte_in_command(api: ApiClient, busybox: str, cleanup: Cleanup) -> None:
    response = api.request(
        "POST", f"{V}/containers/create", body={"Image": busybox, "Cmd": ["a\x00b"]}
    )
    if response.status == 201:
        cleanup.container(response.json()["Id"])
    assert_client_error(response, 400, "NUL byte")
    assert_serving(api)


def test_top_ps_args_nul_byte(api: ApiClient, sleeper: str) -> None:
    response = api.request("GET", f"{V}/containers/{sleeper}/top?ps_args=aux%00")
    assert_client_error(response, 400, "NUL byte")
    assert_serving(api)


def test_rename_name_too_long(api: ApiClient, sleeper: str) -> None:
    response = api.request("POST", f"{V}/containers/{sleeper}/rename?name={'a' * 250}")
    assert_client_error(response, 400, "at most 249")
    inspected = api.request("GET", f"{V}/containers/{sleeper}/json").json()
    assert inspected["Name"] == f"/{sleeper}"


def test_create_name_too_long(api: ApiClient, busybox: str, cleanup: Cleanup) -> None:
    name = "a" * 250
    response = api.request(
        "POST", f"{V}/containers/create?name={name}", body={"Image": busybox}
    )
    if response.status == 201:
        cleanup.container(response.json()["Id"])
    assert_client_error(response, 400, "at most 249")


def test_create_name_max_length(api: ApiClient, busybox: str, cleanup: Cleanup) -> None:
    name = "b" * 249
    response = api.request(
        "POST", f"{V}/containers/create?name={name}", body={"Image": busybox}
    )
    assert response.status == 201, response.body
    cleanup.container(response.json()["Id"])


@pytest.mark.parametrize("options", ["bogus", "rw,size=1m,-o"])
def test_create_bad_tmpfs_option(
    api: ApiClient, busybox: str, cleanup: Cleanup, options: str
) -> None:
    body = {"Image": busybox, "HostConfig": {"Tmpfs": {"/app": options}}}
    response = api.request("POST", f"{V}/containers/create", body=body)
    if response.status == 201:
        cleanup.container(response.json()["Id"])
    assert_client_error(response, 400, "invalid tmpfs option")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_archive_path_name_too_long(api: ApiClient, sleeper: str, method: str) -> None:
    response = api.request(method, f"{V}/containers/{sleeper}/archive?path=/{'a' * 300}")
    assert response.status == 400, response.body
    if method == "GET":
        assert_client_error(response, 400, "too long")
    assert_serving(api)


def test_put_archive_truncated_gzip(api: ApiClient, sleeper: str) -> None:
    response = api.request(
        "PUT",
        f"{V}/containers/{sleeper}/archive?path=/tmp",
        body=b"\x1f\x8b\x08garbage",
        headers={"Content-Type": "application/x-tar"},
    )
    assert_client_error(response, 400, "invalid tar archive")
    assert "Traceback" not in response.json()["message"]
    assert_serving(api)


def test_put_archive_member_name_too_long(api: ApiClient, sleeper: str) -> None:
    member = tarfile.TarInfo("x" * 300)
    member.size = 1
    response = api.request(
        "PUT",
        f"{V}/containers/{sleeper}/archive?path=/tmp",
        body=tar_bytes([member]),
        headers={"Content-Type": "application/x-tar"},
    )
    assert_client_error(response, 400, "too long")


def test_put_archive_dangling_hard_link(api: ApiClient, sleeper: str) -> None:
    member = tarfile.TarInfo("h")
    member.type = tarfile.LNKTYPE
    member.linkname = "/etc/passwd"
    response = api.request(
        "PUT",
        f"{V}/containers/{sleeper}/archive?path=/tmp",
        body=tar_bytes([member]),
        headers={"Content-Type": "application/x-tar"},
    )
    assert_client_error(response, 400, "the target does not exist")


@pytest.mark.parametrize("query", ["since=abc", "since=nan", "until=inf"])
def test_events_bad_time(api: ApiClient, query: str) -> None:
    response = api.request("GET", f"{V}/events?{query}", timeout=10)
    assert_client_error(response, 400, "expected Unix seconds")


@pytest.mark.parametrize("query", ["", "?h=10", "?w=10"])
def test_container_resize_missing_size(api: ApiClient, sleeper: str, query: str) -> None:
    response = api.request("POST", f"{V}/containers/{sleeper}/resize{query}")
    assert_client_error(response, 400, "h and w are required")


@pytest.mark.parametrize("query", ["", "?h=10"])
def test_exec_resize_missing_size(api: ApiClient, sleeper: str, query: str) -> None:
    exec_id = create_exec(api, sleeper, {"Cmd": ["true"], "Tty": True})
    response = api.request("POST", f"{V}/exec/{exec_id}/resize{query}")
    assert_client_error(response, 400, "h and w are required")


def test_exec_resize_status_ok(api: ApiClient, sleeper: str) -> None:
    exec_id = create_exec(api, sleeper, {"Cmd": ["true"], "Tty": True})
    response = api.request("POST", f"{V}/exec/{exec_id}/resize?h=10&w=20")
    assert response.status == 200


def test_exec_tty_resize_before_start(api: ApiClient, sleeper: str) -> None:
    """The docker CLI resizes as soon as start returns 101, before the terminal exists."""
    exec_id = create_exec(
        api,
        sleeper,
        {"Cmd": ["stty", "size"], "Tty": True, "AttachStdout": True, "AttachStderr": True},
    )
    response = api.request("POST", f"{V}/exec/{exec_id}/resize?h=30&w=100")
    assert response.status == 200
    stream = api.upgrade("POST", f"{V}/exec/{exec_id}/start")
    try:
        assert stream.status == 101
        output = stream.read_until_closed(timeout=30)
    finally:
        stream.close()
    assert b"30 100" in output


def test_exec_tty_console_size(api: ApiClient, sleeper: str) -> None:
    exec_id = create_exec(
        api,
        sleeper,
        {"Cmd": ["stty", "size"], "Tty": True, "AttachStdout": True, "ConsoleSize": [31, 101]},
    )
    stream = api.upgrade("POST", f"{V}/exec/{exec_id}/start")
    try:
        assert stream.status == 101
        output = stream.read_until_closed(timeout=30)
    finally:
        stream.close()
    assert b"31 101" in output


def test_run_tty_console_size(api: ApiClient, busybox: str, cleanup: Cleanup) -> None:
    """The docker CLI sends HostConfig.ConsoleSize at create and resizes only after start."""
    body = {
        "Image": busybox,
        "Cmd": ["stty", "size"],
        "Tty": True,
        "AttachStdout": True,
        "HostConfig": {"ConsoleSize": [32, 102]},
    }
    response = api.request("POST", f"{V}/containers/create", body=body)
    assert response.status == 201, response.body
    container = cleanup.container(response.json()["Id"])
    stream = api.upgrade(
        "POST", f"{V}/containers/{container}/attach?stream=1&stdout=1&stderr=1"
    )
    try:
        assert stream.status == 101
        started = api.request("POST", f"{V}/containers/{container}/start")
        assert started.status == 204, started.body
        output = stream.read_until_closed(timeout=30)
    finally:
        stream.close()
    assert b"32 102" in output


def test_exec_create_cmd_string(api: ApiClient, sleeper: str) -> None:
    response = api.request(
        "POST", f"{V}/containers/{sleeper}/exec", body={"Cmd": "echo hi"}
    )
    assert_client_error(response, 400, "Cmd")


def test_long_request_line_json_error(api: ApiClient) -> None:
    response = api.request("GET", f"{V}/exec/{'a' * 10000}/json")
    assert_client_error(response, 404, "No such exec instance")


def test_long_ps_args_json_error(api: ApiClient, sleeper: str) -> None:
    response = api.request("GET", f"{V}/containers/{sleeper}/top?ps_args={'x' * 10000}")
    assert response.header("Content-Type") == "application/json"
    assert response.status < 500, response.body


def test_exec_start_bad_console_size(api: ApiClient, sleeper: str) -> None:
    exec_id = create_exec(api, sleeper, {"Cmd": ["true"]})
    response = api.request(
        "POST", f"{V}/exec/{exec_id}/start", body={"Detach": True, "ConsoleSize": "x"}
    )
    assert_client_error(response, 400, "ConsoleSize")


def test_exec_unknown_user_message(docker: DockerCLI, sleeper: str) -> None:
    result = docker("exec", "-u", "nosuchuser", sleeper, "id")
    assert result.returncode == 126
    assert "nosuchuser" in result.stderr
    assert "containerd-mount" not in result.stderr
