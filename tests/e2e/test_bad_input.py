"""Malformed and hostile requests: each must get Docker's JSON error with a 4xx.

Every test also checks that the daemon still responds afterwards and, where a
request could touch the user's files, that nothing changed.
"""

from __future__ import annotations

import subprocess
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Cleanup, DockerCLI, unique_name
from tests.e2e.unixhttp import ApiClient, ApiResponse

pytestmark = pytest.mark.engine

CREATE = "/v1.43/containers/create"


def assert_client_error(response: ApiResponse, status: int, words: str = "") -> None:
    """Check for a JSON `{"message": ...}` body with `status` that contains `words`."""
    assert response.status == status, response.body
    assert response.header("Content-Type") == "application/json"
    message = response.json()["message"]
    assert isinstance(message, str)
    assert words in message, message


def assert_serving(api: ApiClient) -> None:
    response = api.request("GET", "/_ping")
    assert response.status == 200
    assert response.body == b"OK"


def create_body(busybox: str, **fields: object) -> dict[str, object]:
    return {"Image": busybox, "Cmd": ["true"], **fields}


def create(api: ApiClient, cleanup: Cleanup, body: dict[str, object]) -> ApiResponse:
    """POST a create body and record any container it makes for removal."""
    response = api.request("POST", CREATE, body=body)
    if response.status == 201:
        cleanup.container(response.json()["Id"])
    return response


@pytest.mark.parametrize(
    ("host_config", "words"),
    [
        ({"Binds": ["relative/dir:/data"]}, "invalid characters for a local volume name"),
        ({"Binds": ["../../escape:/data"]}, "invalid characters for a local volume name"),
        ({"Binds": ["/tmp:/data:bogus"]}, "invalid mode: bogus"),
        ({"Ulimits": [{"Name": "nofile", "Soft": "many"}]}, "Ulimits[0].Soft"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 10}]}, "soft limit 10 is greater"),
        ({"Ulimits": ["nofile=1:2"]}, "Ulimits[0]"),
        ({"ExtraHosts": ["no-address"]}, "bad format for add-host"),
        ({"ExtraHosts": [":10.0.0.1"]}, "bad format for add-host"),
    ],
)
def test_create_bad_host_config(
    api: ApiClient,
    busybox: str,
    cleanup: Cleanup,
    host_config: dict[str, object],
    words: str,
) -> None:
    response = create(api, cleanup, create_body(busybox, HostConfig=host_config))

    assert_client_error(response, 400, words)
    assert_serving(api)


def test_create_relative_bind_makes_no_directory(
    api: ApiClient, busybox: str, cleanup: Cleanup
) -> None:
    directory = unique_name("reldir")

    response = create(
        api, cleanup, create_body(busybox, HostConfig={"Binds": [f"{directory}/sub:/data"]})
    )

    assert_client_error(response, 400)
    assert not Path(directory).exists()
    assert not (Path.home() / directory).exists()


def test_create_named_volume_bind_accepted(
    api: ApiClient, busybox: str, docker: DockerCLI
) -> None:
    volume = unique_name("vol")
    body = create_body(busybox, HostConfig={"Binds": [f"{volume}:/data:ro,z"]})

    response = api.request("POST", CREATE, body=body)
    try:
        assert response.status == 201, response.body
    finally:
        if response.status == 201:
            docker("rm", "-f", response.json()["Id"])
        docker("volume", "rm", volume)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"WorkingDir": "relative"}, "needs to be an absolute path"),
        ({"StopSignal": "FOO"}, "Invalid signal: FOO"),
        ({"StopSignal": "0"}, "Invalid signal: 0"),
        ({"MacAddress": "zz"}, "invalid MAC address"),
    ],
)
def test_create_bad_config(
    api: ApiClient, busybox: str, cleanup: Cleanup, fields: dict[str, object], words: str
) -> None:
    response = create(api, cleanup, create_body(busybox, **fields))

    assert_client_error(response, 400, words)
    assert_serving(api)


@pytest.mark.parametrize("signal", ["SIGRTMIN+3", "usr1", "9", "SIGIOT"])
def test_create_valid_stop_signal(
    api: ApiClient, busybox: str, cleanup: Cleanup, signal: str
) -> None:
    response = create(api, cleanup, create_body(busybox, StopSignal=signal))

    assert response.status == 201, response.body


@pytest.mark.parametrize("name", ["name\n", "x" * 2 + "\n"])
def test_create_name_with_newline(
    api: ApiClient, busybox: str, cleanup: Cleanup, name: str
) -> None:
    path = CREATE + "?" + urllib.parse.urlencode({"name": name})

    response = api.request("POST", path, body=create_body(busybox))
    if response.status == 201:
        cleanup.container(response.json()["Id"])

    assert_client_error(response, 400, "Invalid container name")


@pytest.mark.parametrize("signal", ["FOO", "0", "-9", "99999", "SIG"])
def test_kill_bad_signal(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str], signal: str
) -> None:
    container = name("badsig")
    docker.ok("run", "-d", "--name", container, busybox, "sleep", "300")

    response = api.request(
        "POST", f"/v1.43/containers/{container}/kill?signal={urllib.parse.quote(signal)}"
    )

    assert_client_error(response, 400, f"Invalid signal: {signal}")
    state = docker.ok("inspect", "-f", "{{.State.Running}}", container).stdout.strip()
    assert state == "true"


def test_stop_with_signal(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("stopsig")
    # The shell ignores SIGTERM as PID 1 but exits 0 on SIGUSR1 through its trap.
    script = "trap 'exit 0' USR1; while true; do sleep 0.1; done"
    docker.ok("run", "-d", "--name", container, busybox, "sh", "-c", script)

    started = time.monotonic()
    result = docker("stop", "--signal", "USR1", "-t", "20", container, timeout=60)
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert elapsed < 15
    exit_code = docker.ok("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip()
    assert exit_code == "0"


def test_stop_bad_signal(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("stopbad")
    docker.ok("run", "-d", "--name", container, busybox, "sleep", "300")

    response = api.request("POST", f"/v1.43/containers/{container}/stop?signal=FOO&t=1")

    assert_client_error(response, 400, "Invalid signal: FOO")


@pytest.mark.parametrize(
    "reference", ["..%2F..%2Fetc", "a%2Fb", "name%0A", "%20x", "x%3Dy", "x%7Cy"]
)
def test_inspect_odd_container_reference(api: ApiClient, reference: str) -> None:
    response = api.request("GET", f"/v1.43/containers/{reference}/json")

    assert_client_error(response, 404, "No such container")


@pytest.mark.parametrize("repo", ["..%2Fx", "a.%2Fx", "busybox%0A"])
def test_tag_bad_repository(api: ApiClient, busybox: str, repo: str) -> None:
    response = api.request("POST", f"/v1.43/images/{busybox}/tag?repo={repo}&tag=t")

    assert_client_error(response, 400, "invalid reference format")
    assert_serving(api)


@pytest.mark.parametrize("since", ["99999999999999999999", "-99999999999999999999"])
def test_logs_since_out_of_range(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str], since: str
) -> None:
    container = name("since")
    docker.ok("run", "--name", container, busybox, "echo", "hello")

    response = api.request(
        "GET", f"/v1.43/containers/{container}/logs?stdout=1&since={since}"
    )

    assert_client_error(response, 400, "invalid value for since")


def test_logs_tail_zero(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("tail0")
    docker.ok("run", "--name", container, busybox, "sh", "-c", "echo one; echo two")

    response = api.request("GET", f"/v1.43/containers/{container}/logs?stdout=1&tail=0")
    cli = docker.ok("logs", "--tail", "0", container)

    assert response.status == 200
    assert response.body == b""
    assert cli.stdout == ""


def test_logs_follow_tail_zero_new_lines_only(
    docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("tail0f")
    script = "echo old; sleep 3; echo new; sleep 300"
    docker.ok("run", "-d", "--name", container, busybox, "sh", "-c", script)
    time.sleep(1)

    follower = docker.popen(
        "logs", "-f", "--tail", "0", container, stdout=-1, stderr=-1
    )
    try:
        time.sleep(5)
    finally:
        follower.terminate()
    output, _ = follower.communicate(timeout=10)

    assert output == b"new\n"


def test_attach_bad_flag_gets_error(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("attachflag")
    docker.ok("run", "-d", "--name", container, busybox, "sleep", "300")

    response = api.request(
        "POST", f"/v1.43/containers/{container}/attach?stream=abc&stdout=1"
    )

    assert_client_error(response, 400, "stream")
    assert_serving(api)


def test_tty_output_line_endings(docker: DockerCLI, busybox: str) -> None:
    # Bytes, not text: text mode would fold the CRs this test is about.
    result = subprocess.run(
        [str(docker.executable), "run", "-t", "--rm", busybox, "echo", "hi"],
        env=docker.env, capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
    )

    # dockerd sends what the container's terminal wrote: one CR before each LF.
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hi\r\n"


def test_tty_failed_exit_output(docker: DockerCLI, busybox: str) -> None:
    result = docker("run", "-t", "--rm", busybox, "sh", "-c", "echo bye; exit 4")

    assert result.returncode == 4
    assert result.stdout.startswith("bye")
    assert "FATA" not in result.stdout
    assert "errors" not in result.stdout


def test_tty_run_output_in_logs(
    docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("ttylog")
    docker.ok("run", "-t", "--name", container, busybox, "echo", "hi")

    # Bytes, not text: text mode would fold the CR this test is about.
    result = subprocess.run(
        [str(docker.executable), "logs", container],
        env=docker.env, capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hi\r\n"



def test_create_deeply_nested_body(api: ApiClient) -> None:
    depth = 100_000
    body = '{"Image": "busybox", "Labels": ' + "[" * depth + "]" * depth + "}"

    response = api.request("POST", CREATE, body=body)

    assert_client_error(response, 400, "nested too deeply")
    assert_serving(api)


def test_image_inspect_by_listed_id(api: ApiClient, busybox: str) -> None:
    image_id = api.request("GET", f"/v1.43/images/{busybox}/json").json()["Id"]

    full = api.request("GET", f"/v1.43/images/{image_id}/json")
    short = api.request("GET", f"/v1.43/images/{image_id[7:19]}/json")

    assert full.status == 200, full.body
    assert short.status == 200, short.body


def test_create_unknown_network(api: ApiClient, busybox: str, cleanup: Cleanup) -> None:
    network = unique_name("nonet")

    response = create(api, cleanup, create_body(busybox, HostConfig={"NetworkMode": network}))

    assert_client_error(response, 404, network)


def test_update_resource_wrong_type(
    api: ApiClient, busybox: str, cleanup: Cleanup
) -> None:
    container_id = create(api, cleanup, create_body(busybox)).json()["Id"]

    response = api.request(
        "POST", f"/v1.43/containers/{container_id}/update", body={"Memory": "lots"}
    )

    assert_client_error(response, 400, "Memory")


def test_load_not_a_tar(api: ApiClient) -> None:
    response = api.request(
        "POST", "/v1.43/images/load", body=b"not a tar archive",
        headers={"Content-Type": "application/x-tar"},
    )

    assert response.status == 400, response.body
    assert_serving(api)


def test_create_label_too_long(api: ApiClient, busybox: str, cleanup: Cleanup) -> None:
    response = create(api, cleanup, create_body(busybox, Labels={"big": "x" * 200_000}))

    assert 400 <= response.status < 500, response.body
    assert_serving(api)
