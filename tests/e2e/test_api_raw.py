"""Engine API requests over the raw Unix socket, checked against dockerd's wire format."""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import Cleanup, DockerCLI, unique_name
from tests.e2e.unixhttp import STDOUT, ApiClient, demultiplex, stream_text

pytestmark = pytest.mark.engine

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"
MAC_ADDRESS = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def container_ids(docker: DockerCLI) -> set[str]:
    return set(docker.ok("ps", "-a", "-q", "--no-trunc").stdout.split())


def create_container(
    api: ApiClient, cleanup: Cleanup, body: dict[str, object], name: str = ""
) -> str:
    path = "/v1.43/containers/create"
    if name:
        path += "?" + urllib.parse.urlencode({"name": name})
    response = api.request("POST", path, body=body)
    assert response.status == 201, response.body
    container_id = response.json()["Id"]
    cleanup.container(container_id)
    return str(container_id)


def test_inspect_running_networks(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("net")
    docker.ok("run", "-d", "--name", container, busybox, "sleep", "300")

    response = api.request("GET", f"/v1.43/containers/{container}/json")

    assert response.status == 200
    networks = response.json()["NetworkSettings"]["Networks"]
    assert isinstance(networks, dict)
    # `docker run` without --network joins the network named "bridge".
    assert list(networks) == ["bridge"]
    for endpoint in networks.values():
        ipaddress.ip_address(endpoint["IPAddress"])
        ipaddress.ip_address(endpoint["Gateway"])
        assert MAC_ADDRESS.fullmatch(endpoint["MacAddress"]), endpoint["MacAddress"]


def test_inspect_created_network_settings(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("created")
    docker.ok("create", "--name", container, busybox, "true")

    response = api.request("GET", f"/v1.43/containers/{container}/json")

    assert response.status == 200
    details = response.json()
    assert details["State"]["Status"] == "created"
    assert isinstance(details["NetworkSettings"], dict)
    assert isinstance(details["NetworkSettings"]["Networks"], dict)


@pytest.mark.parametrize(
    "form", ["list", "map"], ids=["filters-list-form", "filters-map-form"]
)
def test_list_filters_by_label(
    api: ApiClient,
    docker: DockerCLI,
    busybox: str,
    name: Callable[[str], str],
    form: str,
) -> None:
    wanted_label = f"app={unique_name('label')}"
    matching = name("matching")
    other = name("other")
    docker.ok("create", "--name", matching, "--label", wanted_label, busybox, "true")
    docker.ok("create", "--name", other, "--label", "app=other", busybox, "true")
    filters: dict[str, object]
    if form == "list":
        filters = {"label": [wanted_label]}
    else:
        filters = {"label": {wanted_label: True}}
    query = urllib.parse.urlencode({"all": "1", "filters": json.dumps(filters)})

    response = api.request("GET", f"/v1.43/containers/json?{query}")

    assert response.status == 200
    listed = response.json()
    names = [entry["Names"] for entry in listed]
    assert names == [[f"/{matching}"]]
    assert listed[0]["Labels"]["app"] == wanted_label.removeprefix("app=")


def test_logs_follow_exited_container_ends(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("exited")
    docker.ok("run", "--name", container, busybox, "echo", "done")

    response = api.request(
        "GET",
        f"/v1.43/containers/{container}/logs?stdout=1&stderr=1&follow=1",
        timeout=30,
    )

    assert response.status == 200
    assert response.header("Content-Type") == MULTIPLEXED
    frames = demultiplex(response.body)
    assert stream_text(frames, STDOUT) == "done\n"


def test_attach_upgrade_then_raw_stream(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("attach")
    docker.ok("create", "--name", container, busybox, "sh", "-c", "echo attached")

    stream = api.upgrade(
        "POST", f"/v1.43/containers/{container}/attach?stream=1&stdout=1"
    )
    try:
        assert stream.status == 101
        assert stream.header("Connection") == "Upgrade"
        assert stream.header("Upgrade") == "tcp"
        assert "content-length" not in stream.header_names()
        assert "transfer-encoding" not in stream.header_names()
        assert stream.header("Content-Type") == MULTIPLEXED

        started = api.request("POST", f"/v1.43/containers/{container}/start")
        assert started.status == 204, started.body
        output = stream.read_until_closed(timeout=60)
    finally:
        stream.close()

    assert stream_text(demultiplex(output), STDOUT) == "attached\n"


@pytest.mark.parametrize(
    ("version", "tty", "expected"),
    [
        ("v1.43", False, MULTIPLEXED),
        ("v1.43", True, RAW),
        ("v1.41", False, RAW),
        ("v1.41", True, RAW),
    ],
)
def test_stream_content_type(
    api: ApiClient,
    docker: DockerCLI,
    busybox: str,
    name: Callable[[str], str],
    version: str,
    tty: bool,
    expected: str,
) -> None:
    exited = name("logs")
    created = name("attach")
    tty_flags = ["-t"] if tty else []
    docker.ok("run", *tty_flags, "--name", exited, busybox, "echo", "out")
    docker.ok("create", *tty_flags, "--name", created, busybox, "true")

    logs = api.request("GET", f"/{version}/containers/{exited}/logs?stdout=1")
    stream = api.upgrade(
        "POST", f"/{version}/containers/{created}/attach?stream=1&stdout=1"
    )
    stream.close()

    assert logs.status == 200
    assert logs.header("Content-Type") == expected
    assert stream.status == 101
    assert stream.header("Content-Type") == expected


def test_wait_next_exit_returns_exit_code(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str]
) -> None:
    container = name("wait")
    docker.ok("create", "--name", container, busybox, "sh", "-c", "sleep 2; exit 7")

    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(
            api.request,
            "POST",
            f"/v1.43/containers/{container}/wait?condition=next-exit",
            timeout=60,
        )
        docker.ok("start", container)
        response = waiting.result(timeout=90)

    assert response.status == 200
    assert response.json()["StatusCode"] == 7


def test_wait_removed_with_auto_remove(
    api: ApiClient, busybox: str, cleanup: Cleanup
) -> None:
    body = {
        "Image": busybox,
        "Cmd": ["sh", "-c", "sleep 2; exit 5"],
        "HostConfig": {"AutoRemove": True},
    }
    container_id = create_container(api, cleanup, body)

    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(
            api.request,
            "POST",
            f"/v1.43/containers/{container_id}/wait?condition=removed",
            timeout=60,
        )
        started = api.request("POST", f"/v1.43/containers/{container_id}/start")
        assert started.status == 204, started.body
        response = waiting.result(timeout=90)

    assert response.status == 200
    assert response.json()["StatusCode"] == 5
    gone = api.request("GET", f"/v1.43/containers/{container_id}/json")
    assert gone.status == 404


def test_ping_with_old_version(api: ApiClient) -> None:
    response = api.request("GET", "/v1.35/_ping")

    assert response.status == 200
    assert response.body == b"OK"


def test_version_too_new_rejected(api: ApiClient) -> None:
    response = api.request("GET", "/v1.99/version")

    assert response.status == 400
    assert "1.99" in response.json()["message"]


def test_inspect_missing_container_404(api: ApiClient) -> None:
    response = api.request("GET", "/containers/nope/json")

    assert response.status == 404
    assert response.json() == {"message": "No such container: nope"}


def test_create_cmd_string_accepted(
    api: ApiClient, busybox: str, cleanup: Cleanup
) -> None:
    container_id = create_container(api, cleanup, {"Image": busybox, "Cmd": "echo hi"})

    response = api.request("GET", f"/v1.43/containers/{container_id}/json")

    assert response.status == 200
    assert response.json()["Config"]["Cmd"] == ["echo hi"]


@pytest.mark.parametrize(
    ("body", "expected_words"),
    [
        ('{"Image":"busybox","Cmd":5}', ("cmd", "number")),
        ('{"Image":"busybox","Cmd":["echo"', ("eof", "json")),
    ],
    ids=["cmd-number", "truncated-json"],
)
def test_create_invalid_body_rejected(
    api: ApiClient,
    docker: DockerCLI,
    busybox: str,
    body: str,
    expected_words: tuple[str, ...],
) -> None:
    before = container_ids(docker)

    response = api.request("POST", "/v1.43/containers/create", body=body)

    assert response.status == 400
    message = response.json()["message"]
    assert any(word in message.lower() for word in expected_words), message
    assert container_ids(docker) == before


def test_create_invalid_name_rejected(
    api: ApiClient, docker: DockerCLI, busybox: str
) -> None:
    before = container_ids(docker)

    response = api.request(
        "POST", "/v1.43/containers/create?name=--privileged", body={"Image": busybox}
    )

    assert response.status == 400
    assert response.json()["message"] == (
        "Invalid container name (--privileged), only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
        "allowed"
    )
    assert container_ids(docker) == before
    names = docker.ok("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "--privileged" not in names
