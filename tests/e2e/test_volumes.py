"""The /volumes endpoints through the docker CLI and raw HTTP."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Cleanup, DockerCLI, unique_name
from tests.e2e.test_bad_input import assert_client_error, assert_serving
from tests.e2e.unixhttp import ApiClient

pytestmark = pytest.mark.engine

CREATE = "/v1.43/volumes/create"
HEX64 = re.compile(r"[0-9a-f]{64}")


class VolumeNames:
    """Unique volume names for one test. Every tracked volume is removed at teardown."""

    def __init__(self, docker: DockerCLI):
        self.docker = docker
        self.created: list[str] = []

    def __call__(self, prefix: str = "vol") -> str:
        return self.track(unique_name(prefix))

    def track(self, name: str) -> str:
        self.created.append(name)
        return name

    def remove_all(self) -> None:
        if self.created:
            self.docker("volume", "rm", "-f", *self.created, timeout=60)


@pytest.fixture
def volume_name(docker: DockerCLI, cleanup: Cleanup) -> Iterator[VolumeNames]:
    """Make unique volume names and remove those volumes after the test's containers."""
    names = VolumeNames(docker)
    yield names
    cleanup.remove_all()
    names.remove_all()


def inspect(docker: DockerCLI, name: str) -> dict[str, Any]:
    volumes = json.loads(docker.ok("volume", "inspect", name).stdout)
    assert len(volumes) == 1
    volume: dict[str, Any] = volumes[0]
    return volume


def listed(docker: DockerCLI, *filters: str) -> set[str]:
    args = [item for value in filters for item in ("--filter", value)]
    return set(docker.ok("volume", "ls", "--quiet", *args).stdout.split())


def filters_query(filters: dict[str, list[str]]) -> str:
    return urllib.parse.quote(json.dumps(filters))


def test_create_and_inspect(docker: DockerCLI, volume_name: VolumeNames) -> None:
    name = volume_name("vol")
    assert docker.ok("volume", "create", "--label", "env=test", "--label", "tier",
                     name).stdout.strip() == name
    volume = inspect(docker, name)
    assert volume["Name"] == name
    assert volume["Driver"] == "local"
    assert volume["Scope"] == "local"
    assert volume["Labels"] == {"env": "test", "tier": ""}
    assert volume["Mountpoint"].endswith(f"/{name}/_data")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", volume["CreatedAt"])
    assert "UsageData" not in volume
    assert "Status" not in volume
    assert name in listed(docker)


def test_create_existing_returns_it(docker: DockerCLI, api: ApiClient,
                                    volume_name: VolumeNames) -> None:
    name = volume_name("vol")
    first = api.request("POST", CREATE, body={"Name": name, "Labels": {"a": "1"}})
    assert first.status == 201, first.body
    again = api.request("POST", CREATE, body={"Name": name, "Labels": {"a": "2"},
                                              "Driver": "local"})
    assert again.status == 201, again.body
    assert again.json()["Labels"] == {"a": "1"}
    assert again.json()["CreatedAt"] == first.json()["CreatedAt"]


def test_create_anonymous(docker: DockerCLI, api: ApiClient, volume_name: VolumeNames) -> None:
    name = volume_name.track(docker.ok("volume", "create").stdout.strip())
    assert HEX64.fullmatch(name)
    assert inspect(docker, name)["Labels"] == {"com.docker.volume.anonymous": ""}
    response = api.request("POST", CREATE)
    assert response.status == 201, response.body
    body = response.json()
    volume_name.track(body["Name"])
    assert HEX64.fullmatch(body["Name"])
    assert body["Labels"] == {"com.docker.volume.anonymous": ""}


def test_list_filters(docker: DockerCLI, busybox: str, name: Callable[[str], str],
                      volume_name: VolumeNames) -> None:
    used = volume_name("used")
    unused = volume_name("unused")
    docker.ok("volume", "create", "--label", "role=db", "--label", "tier", used)
    docker.ok("volume", "create", "--label", "role=cache", unused)
    docker.ok("create", "--name", name("holder"), "-v", f"{used}:/data", busybox, "true")

    ours = {used, unused}
    assert listed(docker, f"name={used}") == {used}
    assert listed(docker, f"name={used[:-3]}") & ours == {used}
    assert listed(docker, "label=role") >= ours
    assert listed(docker, "label=role=db") & ours == {used}
    assert listed(docker, "label=role", "label=tier") & ours == {used}
    assert listed(docker, "driver=local") >= ours
    assert listed(docker, "driver=nfs") == set()
    assert listed(docker, "dangling=true") & ours == {unused}
    assert listed(docker, "dangling=false") & ours == {used}


def test_list_shape_raw(api: ApiClient, docker: DockerCLI, volume_name: VolumeNames) -> None:
    volume = volume_name("vol")
    docker.ok("volume", "create", volume)
    query = filters_query({"name": [volume]})
    response = api.request("GET", f"/v1.43/volumes?filters={query}")
    assert response.status == 200, response.body
    body = response.json()
    assert body["Warnings"] == []
    assert [item["Name"] for item in body["Volumes"]] == [volume]
    legacy = api.request("GET", f"/v1.43/volumes?filters={filters_query({'name': {volume: True}})}")
    assert [item["Name"] for item in legacy.json()["Volumes"]] == [volume]


def test_remove(docker: DockerCLI, api: ApiClient, busybox: str, name: Callable[[str], str],
                volume_name: VolumeNames) -> None:
    volume = volume_name("vol")
    docker.ok("volume", "create", volume)
    container = name("user")
    container_id = docker.ok("create", "--name", container, "-v", f"{volume}:/data", busybox,
                             "true").stdout.strip()

    busy = docker("volume", "rm", volume)
    assert busy.returncode != 0
    assert f"remove {volume}: volume is in use - [{container_id}]" in busy.stderr
    forced = api.request("DELETE", f"/v1.43/volumes/{volume}?force=1")
    assert_client_error(forced, 409, f"remove {volume}: volume is in use - [{container_id}]")

    docker.ok("rm", container)
    docker.ok("volume", "rm", volume)
    assert volume not in listed(docker)

    missing = docker("volume", "rm", volume)
    assert missing.returncode != 0
    assert f"get {volume}: no such volume" in missing.stderr
    assert_client_error(api.request("DELETE", f"/v1.43/volumes/{volume}"), 404,
                        f"get {volume}: no such volume")
    docker.ok("volume", "rm", "-f", volume)
    assert api.request("DELETE", f"/v1.43/volumes/{volume}?force=true").status == 204


def test_inspect_missing(api: ApiClient, docker: DockerCLI) -> None:
    missing = unique_name("missing")
    result = docker("volume", "inspect", missing)
    assert result.returncode != 0
    assert f"get {missing}: no such volume" in result.stderr
    assert_client_error(api.request("GET", f"/v1.43/volumes/{missing}"), 404,
                        f"get {missing}: no such volume")
    assert_client_error(api.request("GET", "/v1.43/volumes/a/b"), 404, "get a/b: no such volume")


def test_data_shared_between_containers(docker: DockerCLI, busybox: str,
                                        name: Callable[[str], str],
                                        volume_name: VolumeNames) -> None:
    volume = volume_name("shared")
    writer = name("writer")
    docker.ok("run", "--name", writer, "-v", f"{volume}:/data", busybox,
              "sh", "-c", "echo kept > /data/file")
    docker.ok("rm", writer)
    assert volume in listed(docker)
    reader = docker.ok("run", "--rm", "-v", f"{volume}:/data:ro", busybox, "cat", "/data/file")
    assert reader.stdout == "kept\n"


def test_prune_anonymous_only(docker: DockerCLI, busybox: str, name: Callable[[str], str],
                              volume_name: VolumeNames) -> None:
    named = volume_name("named")
    docker.ok("volume", "create", named)
    created = volume_name.track(docker.ok("volume", "create").stdout.strip())
    container = name("anon")
    docker.ok("run", "--name", container, "-v", "/data", busybox,
              "sh", "-c", "head -c 1000 /dev/zero > /data/zeros")
    mounts = json.loads(docker.ok("inspect", "--format", "{{json .Mounts}}", container).stdout)
    from_container = volume_name.track(mounts[0]["Name"])
    assert HEX64.fullmatch(from_container)
    assert inspect(docker, from_container)["Labels"] == {"com.docker.volume.anonymous": ""}
    # Without -v the container's anonymous volume stays, and must still count as anonymous.
    docker.ok("rm", container)

    result = docker.ok("volume", "prune", "--force")
    assert created in result.stdout
    assert from_container in result.stdout
    assert named not in result.stdout
    remaining = listed(docker)
    assert named in remaining
    assert created not in remaining
    assert from_container not in remaining
    assert re.search(r"Total reclaimed space: \d", result.stdout)


def test_prune_all_with_labels(docker: DockerCLI, api: ApiClient, busybox: str,
                               name: Callable[[str], str], volume_name: VolumeNames) -> None:
    scope = unique_name("scope")
    unused = volume_name("unused")
    excluded = volume_name("excluded")
    used = volume_name("used")
    docker.ok("volume", "create", "--label", f"test={scope}", unused)
    docker.ok("volume", "create", "--label", f"test={scope}", "--label", "keep", excluded)
    docker.ok("volume", "create", "--label", f"test={scope}", used)
    docker.ok("create", "--name", name("user"), "-v", f"{used}:/data", busybox, "true")

    result = docker.ok("volume", "prune", "--all", "--force", "--filter", f"label=test={scope}",
                       "--filter", "label!=keep")
    assert unused in result.stdout
    assert excluded not in result.stdout
    assert used not in result.stdout
    assert listed(docker, f"label=test={scope}") == {excluded, used}

    # Clients of API 1.41 prune named volumes too, as dockerd does for them.
    query = filters_query({"label": [f"test={scope}"]})
    old = api.request("POST", f"/v1.41/volumes/prune?filters={query}")
    assert old.status == 200, old.body
    assert old.json() == {"VolumesDeleted": [excluded], "SpaceReclaimed": 0}
    assert listed(docker, f"label=test={scope}") == {used}


@pytest.mark.parametrize("body, status, words", [
    ("{not json", 400, "invalid JSON"),
    ([], 400, "expected a JSON object"),
    ({"Name": 1}, 400, "invalid type for Name"),
    ({"Name": "ab", "Labels": {"a": 1}}, 400, "invalid type for Labels"),
    ({"Name": "ab", "DriverOpts": ["type=tmpfs"]}, 400, "invalid type for DriverOpts"),
    ({"Name": "ab", "Nmae": "x"}, 400, "unknown field Nmae"),
    ({"Name": "a"}, 400, "create a: volume name is too short, names should be at least two "
                         "alphanumeric characters"),
    ({"Name": "a/b"}, 400, 'create a/b: "a/b" includes invalid characters for a local volume '
                           'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed.'),
    ({"Name": "-ab"}, 400, '"-ab" includes invalid characters'),
    ({"Name": "ab", "Driver": "nfs"}, 404,
     'create ab: error looking up volume plugin nfs: plugin "nfs" not found'),
    ({"Name": "ab", "DriverOpts": {"foo": "bar"}}, 400, 'create ab: invalid option: "foo"'),
    ({"Name": "ab", "DriverOpts": {"type": "tmpfs"}}, 400,
     'create ab: missing required option: "device"'),
    ({"Name": "ab", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}}, 400,
     'driver option "type" is not supported'),
    ({"Name": "ab", "DriverOpts": {"size": "10m"}}, 400, "quota size requested but no quota"),
    ({"Name": "ab", "ClusterVolumeSpec": {}}, 503, "This node is not a swarm manager."),
])
def test_create_bad_input(api: ApiClient, docker: DockerCLI, body: Any, status: int,
                          words: str) -> None:
    payload = body if isinstance(body, str) else json.dumps(body)
    response = api.request("POST", CREATE, body=payload,
                           headers={"Content-Type": "application/json"})
    assert_client_error(response, status, words)
    assert "ab" not in listed(docker, "name=^ab$")
    assert_serving(api)


def test_cluster_spec_ignored_before_1_42(api: ApiClient, volume_name: VolumeNames) -> None:
    volume = volume_name("vol")
    response = api.request("POST", "/v1.41/volumes/create",
                           body={"Name": volume, "ClusterVolumeSpec": {"Group": "g"}})
    assert response.status == 201, response.body
    assert response.json()["Name"] == volume


@pytest.mark.parametrize("method, path, status, words", [
    ("GET", "/v1.43/volumes?filters=" + filters_query({"foo": ["x"]}), 400,
     "invalid filter 'foo'"),
    ("GET", "/v1.43/volumes?filters=" + filters_query({"dangling": ["maybe"]}), 400,
     "invalid filter 'dangling=[maybe]'"),
    ("GET", "/v1.43/volumes?filters=" + filters_query({"dangling": ["true", "false"]}), 400,
     "invalid filter 'dangling="),
    ("GET", "/v1.43/volumes?filters=%7Bnot", 400, "invalid filter"),
    ("POST", "/v1.43/volumes/prune?filters=" + filters_query({"until": ["1h"]}), 400,
     "invalid filter 'until'"),
    ("POST", "/v1.43/volumes/prune?filters=" + filters_query({"all": ["maybe"]}), 400,
     "invalid filter 'all'"),
    ("POST", "/v1.43/volumes/prune?filters=" + filters_query({"all": ["1", "0"]}), 400,
     "only one value is expected"),
    ("DELETE", "/v1.43/volumes/ab?force=maybe", 400, "invalid value for force"),
    ("PUT", "/v1.43/volumes/ab?version=1", 503,
     "volume update only valid for cluster volumes, but swarm is unavailable"),
])
def test_bad_queries(api: ApiClient, method: str, path: str, status: int, words: str) -> None:
    assert_client_error(api.request(method, path), status, words)
    assert_serving(api)
