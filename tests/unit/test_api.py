"""API plumbing and request checks, with an adapter whose nerdctl always fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from finchd.api.app import make_app
from finchd.nerdctl.containers import Containers
from finchd.nerdctl.images import Images
from finchd.nerdctl.runner import Runner, clean_error
from finchd.services.containers import ContainerService
from finchd.services.images import ImageService
from finchd.services.records import RecordStore
from finchd.services.system import SystemService


async def no_gateways() -> dict[str, str]:
    return {}


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    runner = Runner(str(tmp_path / "missing-nerdctl"), dict)
    containers, images = Containers(runner), Images(runner)
    services = {
        "containers": ContainerService(containers, images, RecordStore(tmp_path / "records"),
                                       lambda: False, no_gateways),
        "images": ImageService(images),
        "system": SystemService(containers, images, "default", tmp_path, dict),
    }
    result: TestClient = await aiohttp_client(make_app(services))
    return result


@pytest.mark.parametrize("prefix", ["", "/v1.35", "/v1.43"])
async def test_ping_with_and_without_prefix(client: TestClient, prefix: str) -> None:
    response = await client.get(f"{prefix}/_ping")
    assert response.status == 200
    assert await response.text() == "OK"
    assert response.headers["API-Version"] == "1.43"
    assert response.headers["OSType"] == "linux"
    assert response.headers["Docker-Experimental"] == "false"
    assert response.headers["Builder-Version"] == "1"
    assert "Server" in response.headers


async def test_head_ping(client: TestClient) -> None:
    response = await client.head("/_ping")
    assert response.status == 200


@pytest.mark.parametrize("version", ["v1.99", "v1.44", "v1.12", "vx"])
async def test_version_out_of_range_is_400(client: TestClient, version: str) -> None:
    response = await client.get(f"/{version}/version")
    assert response.status == 400
    assert response.headers["Content-Type"] == "application/json"
    assert "message" in await response.json()


async def test_too_new_version_wording(client: TestClient) -> None:
    response = await client.get("/v1.99/version")
    body = await response.json()
    assert body["message"] == (
        "client version 1.99 is too new. Maximum supported API version is 1.43"
    )


async def test_unknown_path_is_404_json(client: TestClient) -> None:
    response = await client.get("/v1.43/nothing/here")
    assert response.status == 404
    assert await response.json() == {"message": "page not found"}


async def test_create_cmd_number_is_400(client: TestClient) -> None:
    response = await client.post("/containers/create", json={"Image": "busybox", "Cmd": 5})
    assert response.status == 400
    assert "Cmd" in (await response.json())["message"]


async def test_create_truncated_body_is_400(client: TestClient) -> None:
    response = await client.post(
        "/containers/create", data=b'{"Image": "busybox", "Cmd": ["ec',
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400
    assert "invalid JSON" in (await response.json())["message"]


async def test_create_flag_like_name_is_400(client: TestClient) -> None:
    response = await client.post("/containers/create?name=--privileged", json={"Image": "busybox"})
    assert response.status == 400
    assert (await response.json())["message"] == (
        "Invalid container name (--privileged), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    )


@pytest.mark.parametrize("body, field", [
    ({"Image": "busybox", "Env": "A=1"}, "Env"),
    ({"Image": "busybox", "Tty": "yes"}, "Tty"),
    ({"Image": "busybox", "HostConfig": {"Binds": "x"}}, "HostConfig.Binds"),
    ({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, "restart policy"),
    ({"Image": "busybox", "HostConfig": {"PortBindings": {"http": []}}}, "port"),
    ({"Image": "busybox", "HostConfig": {"Links": ["other:alias"]}}, "Links"),
    ({"Image": "busybox", "HostConfig": {"Mounts": [{"Type": "npipe", "Target": "/x"}]}}, "mount type"),
    ({"Image": "busybox", "HostConfig": {"Bogus": 1}}, "HostConfig.Bogus"),
    ({"Image": 7}, "Image"),
    ({"Image": "busybox", "HostConfig": {"Dns": ["notip"]}}, "not an ip address"),
    ({"Image": "busybox", "HostConfig": {"CapAdd": ["--x"]}}, "capability"),
    ({"Image": "busybox", "HostConfig": {"Tmpfs": {"app": ""}}}, "must be absolute"),
])
async def test_create_bad_field_is_400(client: TestClient, body: dict[str, Any], field: str) -> None:
    response = await client.post("/containers/create", json=body)
    assert response.status == 400
    assert field in (await response.json())["message"]


async def test_list_bad_filter_is_400(client: TestClient) -> None:
    response = await client.get("/containers/json", params={"filters": '{"colour": ["red"]}'})
    assert response.status == 400
    assert (await response.json())["message"] == "invalid filter 'colour'"


async def test_bad_boolean_is_400(client: TestClient) -> None:
    response = await client.get("/containers/json", params={"all": "maybe"})
    assert response.status == 400


async def test_flag_like_container_reference_is_404(client: TestClient) -> None:
    response = await client.get("/containers/--help/json")
    assert response.status == 404
    assert (await response.json())["message"] == "No such container: --help"


async def test_create_bad_platform_is_400(client: TestClient) -> None:
    response = await client.post("/containers/create?platform=bogus", json={"Image": "busybox"})
    assert response.status == 400
    assert "platform" in (await response.json())["message"]


async def test_create_text_body_is_400(client: TestClient) -> None:
    response = await client.post("/containers/create", data=b'{"Image": "busybox"}',
                                 headers={"Content-Type": "text/plain"})
    assert response.status == 400
    assert "Content-Type" in (await response.json())["message"]


@pytest.mark.parametrize("filters", ['{"exited": ["abc"]}', '{"health": ["bogus"]}',
                                     '{"status": ["sleeping"]}'])
async def test_list_bad_filter_value_is_400(client: TestClient, filters: str) -> None:
    response = await client.get("/containers/json", params={"filters": filters})
    assert response.status == 400
    assert "invalid filter" in (await response.json())["message"]


async def test_filter_given_as_string_is_400(client: TestClient) -> None:
    response = await client.get("/containers/json", params={"filters": '{"label": "a=b"}'})
    assert response.status == 400
    assert "label" in (await response.json())["message"]


async def test_create_bad_tmpfs_size_is_400(client: TestClient) -> None:
    body = {"Image": "busybox", "HostConfig": {"Tmpfs": {"/app": "size=abc"}}}
    response = await client.post("/containers/create", json=body)
    assert response.status == 400
    assert "size=abc" in (await response.json())["message"]


async def test_create_memory_out_of_range_is_400(client: TestClient) -> None:
    body = {"Image": "busybox", "HostConfig": {"Memory": 1e30}}
    response = await client.post("/containers/create", json=body)
    assert response.status == 400
    assert "Memory" in (await response.json())["message"]


def test_clean_error_drops_joined_errors_header() -> None:
    stderr = ('time="2026-01-01T00:00:00Z" level=fatal msg="1 errors:\\nfailed to create '
              'shim task: exec: \\"x\\": executable file not found in $PATH"')
    assert clean_error(stderr) == 'failed to create shim task: exec: "x": executable file not found in $PATH'
