"""The /networks endpoints through the docker CLI and raw HTTP."""

from __future__ import annotations

import itertools
import json
import random
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Cleanup, DockerCLI, unique_name
from tests.e2e.test_bad_input import assert_client_error, assert_serving
from tests.e2e.unixhttp import ApiClient

pytestmark = pytest.mark.engine

CREATE = "/v1.43/networks/create"


@pytest.fixture
def network_name(docker: DockerCLI, cleanup: Cleanup) -> Iterator[Callable[[str], str]]:
    """Make unique network names and remove those networks at teardown.

    The test's containers go first, because a network with a running container
    cannot be removed.
    """
    names: list[str] = []

    def make(prefix: str) -> str:
        names.append(unique_name(prefix))
        return names[-1]

    yield make
    cleanup.remove_all()
    for created in reversed(names):
        docker("network", "rm", created, timeout=60)


# The third octets of test subnets, distinct within one run and random across runs.
_THIRD_OCTETS = itertools.count(random.randint(0, 255))


def free_subnet() -> tuple[str, str]:
    """Return a /24 subnet and its .1 gateway in 10.231.0.0/16, which other tests do not use."""
    third = next(_THIRD_OCTETS) % 256
    return f"10.231.{third}.0/24", f"10.231.{third}.1"


def inspect(docker: DockerCLI, reference: str) -> dict[str, Any]:
    result = docker.ok("network", "inspect", reference)
    networks = json.loads(result.stdout)
    assert len(networks) == 1
    network: dict[str, Any] = networks[0]
    return network


def container_networks(docker: DockerCLI, container: str) -> dict[str, Any]:
    result = docker.ok("inspect", "--format", "{{json .NetworkSettings.Networks}}", container)
    networks: dict[str, Any] = json.loads(result.stdout)
    return networks


def listed_names(docker: DockerCLI, *filters: str) -> list[str]:
    args = [item for value in filters for item in ("--filter", value)]
    result = docker.ok("network", "ls", "--format", "{{.Name}}", *args)
    return result.stdout.split()


def test_create_inspect_with_subnet_and_label(
    docker: DockerCLI, network_name: Callable[[str], str]
) -> None:
    name = network_name("net")
    subnet, _ = free_subnet()
    gateway = subnet.replace(".0/24", ".254")
    created = docker.ok("network", "create", "--subnet", subnet, "--gateway", gateway,
                        "--label", "team=blue", name)
    network_id = created.stdout.strip()
    assert len(network_id) == 64
    network = inspect(docker, name)
    assert network["Name"] == name
    assert network["Id"] == network_id
    assert network["Driver"] == "bridge"
    assert network["Scope"] == "local"
    assert network["IPAM"]["Driver"] == "default"
    assert network["IPAM"]["Config"] == [{"Subnet": subnet, "Gateway": gateway}]
    assert network["Labels"] == {"team": "blue"}
    assert network["Containers"] == {}
    assert network["Created"].endswith("Z")
    assert inspect(docker, network_id[:12])["Name"] == name


def test_ls_predefined_networks(docker: DockerCLI) -> None:
    result = docker.ok("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
    rows = set(result.stdout.splitlines())
    assert "bridge bridge local" in rows
    assert "host host local" in rows
    assert "none null local" in rows


def test_ls_filters(docker: DockerCLI, network_name: Callable[[str], str]) -> None:
    labelled = network_name("netlbl")
    plain = network_name("netplain")
    docker.ok("network", "create", "--label", f"suite={labelled}", labelled)
    docker.ok("network", "create", plain)
    assert listed_names(docker, f"label=suite={labelled}") == [labelled]
    assert listed_names(docker, f"name={plain}") == [plain]
    custom = listed_names(docker, "type=custom")
    assert labelled in custom
    assert "bridge" not in custom
    assert sorted(listed_names(docker, "type=builtin")) == ["bridge", "host", "none"]
    assert plain in listed_names(docker, "dangling=true")
    assert "none" in listed_names(docker, "driver=null")
    assert plain not in listed_names(docker, "driver=null")


def test_run_on_network_listed_in_inspect(
    docker: DockerCLI, busybox: str, name: Callable[[str], str],
    network_name: Callable[[str], str]
) -> None:
    net = network_name("netrun")
    subnet, gateway = free_subnet()
    docker.ok("network", "create", "--subnet", subnet, net)
    container = name("onnet")
    container_id = docker.ok("run", "-d", "--network", net, "--name", container, busybox,
                             "sleep", "300").stdout.strip()
    network = inspect(docker, net)
    assert list(network["Containers"]) == [container_id]
    endpoint = network["Containers"][container_id]
    assert endpoint["Name"] == container
    assert endpoint["IPv4Address"].startswith(gateway.rsplit(".", 1)[0] + ".")
    assert endpoint["IPv4Address"].endswith("/24")
    assert endpoint["MacAddress"]
    assert len(endpoint["EndpointID"]) == 64
    assert net not in listed_names(docker, "dangling=true")

    removal = docker("network", "rm", net)
    assert removal.returncode != 0
    assert f"network {net} id {network['Id']} has active endpoints" in removal.stderr

    docker.ok("rm", "-f", container)
    assert inspect(docker, net)["Containers"] == {}


def test_rm_predefined_and_missing(docker: DockerCLI) -> None:
    for predefined in ("bridge", "host", "none"):
        result = docker("network", "rm", predefined)
        assert result.returncode != 0
        assert f"{predefined} is a pre-defined network and cannot be removed" in result.stderr
    missing = unique_name("nonet")
    result = docker("network", "rm", missing)
    assert result.returncode != 0
    assert f"network {missing} not found" in result.stderr


def test_rm_by_id_prefix(docker: DockerCLI, network_name: Callable[[str], str]) -> None:
    net = network_name("netrm")
    network_id = docker.ok("network", "create", net).stdout.strip()
    docker.ok("network", "rm", network_id[:12])
    assert net not in listed_names(docker)


def test_prune_keeps_predefined_and_used(
    docker: DockerCLI, busybox: str, name: Callable[[str], str],
    network_name: Callable[[str], str]
) -> None:
    label = f"prune={unique_name('run')}"
    unused = network_name("netunused")
    used = network_name("netused")
    other = network_name("netother")
    docker.ok("network", "create", "--label", label, unused)
    docker.ok("network", "create", "--label", label, used)
    docker.ok("network", "create", other)
    docker.ok("run", "-d", "--network", used, "--name", name("pruneuser"), busybox,
              "sleep", "300")
    result = docker.ok("network", "prune", "-f", "--filter", f"label={label}")
    assert unused in result.stdout
    assert used not in result.stdout
    names = listed_names(docker)
    assert unused not in names
    assert used in names
    assert other in names
    for predefined in ("bridge", "host", "none"):
        assert predefined in names


def test_api_create_shape_and_conflict(
    api: ApiClient, network_name: Callable[[str], str]
) -> None:
    net = network_name("netapi")
    response = api.request("POST", CREATE, body={"Name": net, "Labels": {"a": "b"},
                                                 "Attachable": True})
    assert response.status == 201, response.body
    body = response.json()
    assert set(body) == {"Id", "Warning"}
    assert body["Warning"] == ""
    again = api.request("POST", CREATE, body={"Name": net, "CheckDuplicate": True})
    assert_client_error(again, 409, f"network with name {net} already exists")
    shown = api.request("GET", f"/v1.43/networks/{net}?verbose=true&scope=local")
    assert shown.status == 200
    assert shown.json()["Attachable"] is True
    assert shown.json()["ConfigFrom"] == {"Network": ""}
    swarm = api.request("GET", f"/v1.43/networks/{net}?scope=swarm")
    assert_client_error(swarm, 404, f"network {net} not found")
    removed = api.request("DELETE", f"/v1.43/networks/{body['Id']}")
    assert removed.status == 204
    assert_client_error(api.request("GET", f"/networks/{net}"), 404, f"network {net} not found")


def test_api_list_shape(api: ApiClient) -> None:
    response = api.request("GET", "/v1.43/networks")
    assert response.status == 200
    networks = response.json()
    by_name = {network["Name"]: network for network in networks}
    assert by_name["none"]["Driver"] == "null"
    assert by_name["host"]["Driver"] == "host"
    for network in networks:
        assert len(network["Id"]) == 64
        assert network["Containers"] == {}


@pytest.mark.parametrize(("body", "status", "words"), [
    ({}, 400, "Name is missing"),
    ({"Name": 5}, 400, "invalid type for Name"),
    ({"Name": "netbad", "Bogus": True}, 400, "unknown field Bogus"),
    ({"Name": "netbad", "Internal": "no"}, 400, "invalid type for Internal"),
    ({"Name": "netbad", "Labels": ["a"]}, 400, "Labels"),
    ({"Name": "bridge"}, 403, "operation is not permitted on predefined bridge network"),
    ({"Name": "netbad", "Driver": "overlay"}, 403, "not a swarm manager"),
    ({"Name": "netbad", "Driver": "nosuchdriver"}, 404, 'plugin "nosuchdriver" not found'),
    ({"Name": "netbad", "IPAM": {"Config": [{"Subnet": "10.0.0.0/33"}]}}, 400,
     "invalid subnet 10.0.0.0/33: invalid CIDR block notation"),
    ({"Name": "netbad", "IPAM": {"Config": [{"Subnet": "10.232.0.0/24", "Gateway": "10.9.9.9"}]}},
     400, "invalid gateway 10.9.9.9"),
    ({"Name": "netbad", "IPAM": {"Config": [{"Subnet": "10.232.0.0/24", "IPRange": "x"}]}}, 400,
     "invalid ip-range x"),
    ({"Name": "netbad", "IPAM": {"Driver": "nosuchipam"}}, 404, 'plugin "nosuchipam" not found'),
    ({"Name": "netbad", "Internal": True}, 501, "internal networks are not supported"),
    ({"Name": "netbad", "Options": {"com.docker.network.bridge.name": "br9"}}, 501,
     "com.docker.network.bridge.name"),
])
def test_api_create_rejected(api: ApiClient, body: dict[str, Any], status: int,
                             words: str) -> None:
    assert_client_error(api.request("POST", CREATE, body=body), status, words)
    assert_serving(api)


@pytest.mark.parametrize("payload", ["{", "[]", '"Name"', "null"])
def test_api_create_bad_json(api: ApiClient, payload: str) -> None:
    assert_client_error(api.request("POST", CREATE, body=payload), 400)


def test_api_create_overlapping_subnet(
    api: ApiClient, network_name: Callable[[str], str]
) -> None:
    subnet, _ = free_subnet()
    first = network_name("netpool")
    created = api.request("POST", CREATE, body={"Name": first,
                                                "IPAM": {"Config": [{"Subnet": subnet}]}})
    assert created.status == 201, created.body
    overlapping = api.request("POST", CREATE, body={
        "Name": network_name("netpool"), "IPAM": {"Config": [{"Subnet": subnet}]}})
    assert_client_error(overlapping, 403, "Pool overlaps with other one on this address space")


@pytest.mark.parametrize(("filters", "words"), [
    ({"bogus": ["x"]}, "invalid filter 'bogus'"),
    ({"type": ["mine"]}, "invalid filter: 'type'='mine'"),
    ({"dangling": ["maybe"]}, "invalid value for filter 'dangling'"),
])
def test_api_list_bad_filters(api: ApiClient, filters: dict[str, list[str]],
                              words: str) -> None:
    query = urllib.parse.quote(json.dumps(filters))
    assert_client_error(api.request("GET", f"/v1.43/networks?filters={query}"), 400, words)


def test_api_prune_bad_filter(api: ApiClient) -> None:
    query = urllib.parse.quote(json.dumps({"until": ["soon"]}))
    assert_client_error(api.request("POST", f"/v1.43/networks/prune?filters={query}"), 400,
                        "until=soon")
    query = urllib.parse.quote(json.dumps({"dangling": ["true"]}))
    assert_client_error(api.request("POST", f"/v1.43/networks/prune?filters={query}"), 400,
                        "invalid filter 'dangling'")


def test_api_prune_empty_result(api: ApiClient) -> None:
    label = urllib.parse.quote(json.dumps({"label": [f"absent={unique_name('x')}"]}))
    response = api.request("POST", f"/v1.43/networks/prune?filters={label}")
    assert response.status == 200
    assert response.json() == {"NetworksDeleted": None}


def test_api_remove_missing_and_predefined(api: ApiClient) -> None:
    assert_client_error(api.request("DELETE", "/v1.43/networks/nosuchnet"), 404,
                        "network nosuchnet not found")
    assert_client_error(api.request("DELETE", "/v1.43/networks/none"), 403,
                        "none is a pre-defined network and cannot be removed")


def test_api_connect_missing_and_bad_body(
    api: ApiClient, docker: DockerCLI, busybox: str, name: Callable[[str], str],
    network_name: Callable[[str], str]
) -> None:
    net = network_name("netconn")
    docker.ok("network", "create", net)
    container = name("conn")
    docker.ok("create", "--name", container, busybox, "true")
    for action in ("connect", "disconnect"):
        path = f"/v1.43/networks/{net}/{action}"
        assert_client_error(api.request("POST", path, body={"Container": "nosuchctr"}), 404,
                            "No such container: nosuchctr")
        assert_client_error(api.request("POST", f"/v1.43/networks/nosuchnet/{action}",
                                        body={"Container": container}), 404,
                            "network nosuchnet not found")
        assert_client_error(api.request("POST", path, body={"Container": container, "X": 1}),
                            400, "unknown field X")
        assert_client_error(api.request("POST", path, body=json.dumps([container])), 400,
                            "expected a JSON object")


def test_connect_created_container_with_alias(
    docker: DockerCLI, busybox: str, network_name: Callable[[str], str],
    name: Callable[[str], str]
) -> None:
    first = network_name("netfirst")
    second = network_name("netsecond")
    docker.ok("network", "create", first)
    docker.ok("network", "create", second)
    container = name("twonets")
    container_id = docker.ok("create", "--name", container, "--network", first, busybox,
                             "sleep", "300").stdout.strip()
    docker.ok("network", "connect", "--alias", "second-name", second, container)
    docker.ok("start", container)
    networks = container_networks(docker, container_id)
    assert sorted(networks) == sorted([first, second])
    assert networks[second]["Aliases"] == ["second-name", container_id[:12]]
    address = networks[second]["IPAddress"]
    assert address
    found = docker("run", "--rm", "--network", second, busybox,
                   "ping", "-c", "1", "-W", "1", "second-name")
    assert f"PING second-name ({address})" in found.stdout
    listed = inspect(docker, second)["Containers"]
    assert container_id in listed


def test_disconnect_stopped_container(
    docker: DockerCLI, busybox: str, network_name: Callable[[str], str],
    name: Callable[[str], str]
) -> None:
    first = network_name("netkeep")
    second = network_name("netdrop")
    docker.ok("network", "create", first)
    docker.ok("network", "create", second)
    container = name("dropper")
    docker.ok("create", "--name", container, "--network", first, busybox, "sleep", "300")
    docker.ok("network", "connect", second, container)
    docker.ok("network", "disconnect", second, container)
    docker.ok("start", container)
    networks = container_networks(docker, container)
    assert list(networks) == [first]
    interfaces = docker.ok("exec", container, "ip", "-o", "-4", "addr").stdout
    assert interfaces.count(" inet ") == 2, interfaces


def test_connect_rejections(
    api: ApiClient, docker: DockerCLI, busybox: str, network_name: Callable[[str], str],
    name: Callable[[str], str]
) -> None:
    net = network_name("netrej")
    docker.ok("network", "create", net)
    running = name("running")
    docker.ok("run", "-d", "--name", running, busybox, "sleep", "300")
    created = name("created")
    docker.ok("create", "--name", created, "--network", net, busybox, "true")
    hosted = name("hosted")
    docker.ok("create", "--name", hosted, "--network", "host", busybox, "true")
    path = f"/v1.43/networks/{net}/connect"
    assert_client_error(api.request("POST", path, body={"Container": running}), 501,
                        "cannot change the networks of a running container")
    assert_client_error(api.request("POST", path, body={"Container": created}), 403,
                        f"endpoint with name {created} already exists in network {net}")
    assert_client_error(api.request("POST", path, body={"Container": hosted}), 400,
                        "connected to host network")
    static = {"Container": created, "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.9.9.9"}}}
    assert_client_error(api.request("POST", "/v1.43/networks/bridge/connect", body=static),
                        400, "user specified IP address is supported on user defined networks only")
    alias = {"Container": running, "EndpointConfig": {"Aliases": ["has space"]}}
    assert_client_error(api.request("POST", path, body=alias), 400, "invalid network alias")
    disconnect = f"/v1.43/networks/{net}/disconnect"
    assert_client_error(api.request("POST", disconnect, body={"Container": running}), 403,
                        "is not connected to the network")
    result = docker("network", "disconnect", "bridge", running)
    assert result.returncode != 0
    assert "cannot change the networks of a running container" in result.stderr


@pytest.mark.parametrize("mtu", ["\u00b2", "\u0661\u0662\u0663", "1e3"])
def test_api_create_non_ascii_mtu(api: ApiClient, mtu: str) -> None:
    body = {"Name": unique_name("mtu"), "Options": {"com.docker.network.driver.mtu": mtu}}
    assert_client_error(api.request("POST", CREATE, body=body), 400, "invalid value")


def test_reconnect_after_last_disconnect(
    docker: DockerCLI, busybox: str, network_name: Callable[[str], str],
    name: Callable[[str], str]
) -> None:
    first = network_name("netonly")
    second = network_name("netnext")
    docker.ok("network", "create", first)
    docker.ok("network", "create", second)
    container = name("moved")
    docker.ok("create", "--name", container, "--network", first, busybox, "sleep", "300")
    docker.ok("network", "disconnect", first, container)
    docker.ok("network", "connect", second, container)
    docker.ok("start", container)
    assert list(container_networks(docker, container)) == [second]
