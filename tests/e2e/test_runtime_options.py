"""Create and start options beyond nerdctl's flags: aliases, addresses, console size, domain name, stdin."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import DockerCLI, unique_name
from tests.e2e.test_bad_input import assert_client_error
from tests.e2e.unixhttp import ApiClient

pytestmark = pytest.mark.engine

V = "/v1.43"


@pytest.fixture
def user_network(docker: DockerCLI) -> Iterator[str]:
    """Create a user-defined network. Tests request it before `name`, so it outlives their containers."""
    network = unique_name("net")
    docker.ok("network", "create", network)
    yield network
    docker("network", "rm", network)


def resolved_address(docker: DockerCLI, busybox: str, network: str, host: str) -> str:
    """Return the IPv4 address a new container on the network finds for a host name."""
    result = docker("run", "--rm", "--network", network, busybox,
                    "ping", "-c", "1", "-W", "1", host)
    # busybox ping prints `PING HOST (ADDRESS): 56 data bytes` once the name resolves.
    for line in result.stdout.splitlines():
        if line.startswith(f"PING {host} ("):
            return line.split("(", 1)[1].split(")", 1)[0]
    return ""


def container_address(docker: DockerCLI, container: str, network: str) -> str:
    template = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
    return docker.ok("inspect", "--format", template, container).stdout.strip()


def test_alias_resolves_from_other_container(
        docker: DockerCLI, busybox: str, user_network: str,
        name: Callable[[str], str]) -> None:
    container = name("db")
    docker.ok("run", "-d", "--name", container, "--network", user_network,
              "--network-alias", "database", "--network-alias", "cache", busybox, "sleep", "300")
    address = container_address(docker, container, user_network)
    assert address
    assert resolved_address(docker, busybox, user_network, "database") == address
    assert resolved_address(docker, busybox, user_network, "cache") == address
    assert resolved_address(docker, busybox, user_network, container) == address


def test_alias_resolves_inside_container(
        docker: DockerCLI, busybox: str, user_network: str,
        name: Callable[[str], str]) -> None:
    container = name("self")
    docker.ok("run", "-d", "--name", container, "--network", user_network,
              "--network-alias", "myself", busybox, "sleep", "300")
    result = docker("exec", container, "ping", "-c", "1", "-W", "1", "myself")
    address = container_address(docker, container, user_network)
    assert f"PING myself ({address})" in result.stdout


def test_alias_survives_restart(
        docker: DockerCLI, busybox: str, user_network: str,
        name: Callable[[str], str]) -> None:
    container = name("restarted")
    docker.ok("run", "-d", "--name", container, "--network", user_network,
              "--network-alias", "stable", busybox, "sleep", "300")
    docker.ok("restart", "-t", "1", container)
    address = container_address(docker, container, user_network)
    assert resolved_address(docker, busybox, user_network, "stable") == address


def test_short_id_resolves_with_hostname(
        docker: DockerCLI, busybox: str, user_network: str,
        name: Callable[[str], str]) -> None:
    container = name("named-host")
    container_id = docker.ok("run", "-d", "--name", container, "--hostname", "custom",
                             "--network", user_network, busybox, "sleep", "300").stdout.strip()
    address = container_address(docker, container, user_network)
    assert resolved_address(docker, busybox, user_network, container_id[:12]) == address
    assert resolved_address(docker, busybox, user_network, "custom") == address


def test_inspect_lists_aliases(
        docker: DockerCLI, busybox: str, user_network: str,
        name: Callable[[str], str]) -> None:
    container = name("listed")
    container_id = docker.ok("create", "--name", container, "--network", user_network,
                             "--network-alias", "first", busybox, "true").stdout.strip()
    template = f'{{{{json (index .NetworkSettings.Networks "{user_network}").Aliases}}}}'
    aliases = json.loads(docker.ok("inspect", "--format", template, container).stdout)
    assert aliases == ["first", container_id[:12]]


def test_compose_style_endpoint_config(
        api: ApiClient, docker: DockerCLI, busybox: str, user_network: str,
        name: Callable[[str], str]) -> None:
    container = name("svc")
    body = {
        "Image": busybox, "Cmd": ["sleep", "300"],
        "HostConfig": {"NetworkMode": user_network},
        "NetworkingConfig": {"EndpointsConfig": {
            user_network: {"Aliases": ["svc", container], "IPAMConfig": None, "Links": None},
        }},
    }
    response = api.request("POST", f"{V}/containers/create?name={container}", body=body)
    assert response.status == 201, response.body
    assert response.json()["Warnings"] == []
    started = api.request("POST", f"{V}/containers/{container}/start")
    assert started.status == 204, started.body
    address = container_address(docker, container, user_network)
    assert resolved_address(docker, busybox, user_network, "svc") == address


def test_static_address_on_user_network(
        docker: DockerCLI, busybox: str, user_network: str,
        name: Callable[[str], str]) -> None:
    subnet = docker.ok("network", "inspect", "--format", "{{(index .IPAM.Config 0).Subnet}}",
                       user_network).stdout.strip()
    address = str(ipaddress.ip_network(subnet)[200])
    container = name("static")
    docker.ok("run", "-d", "--name", container, "--network", user_network, "--ip", address,
              busybox, "sleep", "300")
    assert container_address(docker, container, user_network) == address
    result = docker.ok("exec", container, "ip", "-4", "-o", "addr", "show", "eth0")
    assert f"inet {address}/" in result.stdout


@pytest.mark.parametrize("network", ["default", "bridge", "host", "none"])
def test_alias_on_predefined_network_is_400(api: ApiClient, busybox: str,
                                            network: str) -> None:
    body = {
        "Image": busybox, "HostConfig": {"NetworkMode": network},
        "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": ["a"]}}},
    }
    response = api.request("POST", f"{V}/containers/create", body=body)
    assert_client_error(response, 400, "network-scoped alias is supported only")


def test_static_address_on_default_network_is_400(api: ApiClient, busybox: str) -> None:
    body = {
        "Image": busybox,
        "NetworkingConfig": {"EndpointsConfig": {
            "bridge": {"IPAMConfig": {"IPv4Address": "10.4.0.200"}}}},
    }
    response = api.request("POST", f"{V}/containers/create", body=body)
    assert_client_error(response, 400, "user specified IP address is supported")


@pytest.mark.parametrize("alias", ["two words", "", "a#b", "-dash", "x" * 300])
def test_invalid_alias_is_400(api: ApiClient, busybox: str, user_network: str,
                              alias: str) -> None:
    body = {
        "Image": busybox, "HostConfig": {"NetworkMode": user_network},
        "NetworkingConfig": {"EndpointsConfig": {user_network: {"Aliases": [alias]}}},
    }
    response = api.request("POST", f"{V}/containers/create", body=body)
    assert_client_error(response, 400, "invalid network alias")


@pytest.mark.parametrize("value", [[24], [-1, 80], ["24", "80"], "24x80", [24, 80, 1]])
def test_invalid_console_size_is_400(api: ApiClient, busybox: str, value: object) -> None:
    body = {"Image": busybox, "Tty": True, "HostConfig": {"ConsoleSize": value}}
    response = api.request("POST", f"{V}/containers/create", body=body)
    assert_client_error(response, 400, "ConsoleSize")


def test_detached_tty_starts_with_console_size(
        api: ApiClient, docker: DockerCLI, busybox: str,
        name: Callable[[str], str]) -> None:
    container = name("sized")
    body = {"Image": busybox, "Cmd": ["stty", "size"], "Tty": True,
            "HostConfig": {"ConsoleSize": [27, 91]}}
    response = api.request("POST", f"{V}/containers/create?name={container}", body=body)
    assert response.status == 201, response.body
    started = api.request("POST", f"{V}/containers/{container}/start")
    assert started.status == 204, started.body
    waited = api.request("POST", f"{V}/containers/{container}/wait", timeout=60)
    assert waited.status == 200, waited.body
    deadline = time.monotonic() + 10
    logs = b""
    while time.monotonic() < deadline and b"27 91" not in logs:
        logs = api.request("GET", f"{V}/containers/{container}/logs?stdout=1").body
        time.sleep(0.2)
    # A TTY container's log is raw, not multiplexed.
    assert b"27 91" in logs


def test_domainname_set_in_container(docker: DockerCLI, busybox: str,
                                     name: Callable[[str], str]) -> None:
    container = name("domain")
    docker.ok("run", "-d", "--name", container, "--hostname", "box", "--domainname",
              "example.org", busybox, "sleep", "300")
    kernel_value = docker.ok("exec", container, "cat", "/proc/sys/kernel/domainname")
    assert kernel_value.stdout.strip() == "example.org"
    fqdn = docker.ok("exec", container, "hostname", "-f")
    assert fqdn.stdout.strip() == "box.example.org"
    inspected = docker.ok("inspect", "--format", "{{.Config.Domainname}}", container)
    assert inspected.stdout.strip() == "example.org"


def test_domainname_survives_restart(docker: DockerCLI, busybox: str,
                                     name: Callable[[str], str]) -> None:
    container = name("domain-restart")
    docker.ok("run", "-d", "--name", container, "--domainname", "example.org",
              busybox, "sleep", "300")
    docker.ok("restart", "-t", "1", container)
    kernel_value = docker.ok("exec", container, "cat", "/proc/sys/kernel/domainname")
    assert kernel_value.stdout.strip() == "example.org"


@pytest.mark.parametrize("domainname", ["two words", "a" * 65, "a#b"])
def test_invalid_domainname_is_400(api: ApiClient, busybox: str, domainname: str) -> None:
    body = {"Image": busybox, "Domainname": domainname}
    response = api.request("POST", f"{V}/containers/create", body=body)
    assert_client_error(response, 400, "invalid Domainname")


def test_domainname_with_host_uts_is_400(api: ApiClient, busybox: str) -> None:
    body = {"Image": busybox, "Domainname": "example.org", "HostConfig": {"UTSMode": "host"}}
    response = api.request("POST", f"{V}/containers/create", body=body)
    assert_client_error(response, 400, "Domainname and the UTS mode")


def test_endpoint_matches_network_inspect(
        docker: DockerCLI, busybox: str, user_network: str,
        name: Callable[[str], str]) -> None:
    container = name("endpoint")
    container_id = docker.ok("run", "-d", "--name", container, "--network", user_network,
                             busybox, "sleep", "300").stdout.strip()
    template = f'{{{{json (index .NetworkSettings.Networks "{user_network}")}}}}'
    endpoint = json.loads(docker.ok("inspect", "--format", template, container).stdout)
    network = json.loads(docker.ok("network", "inspect", "--format", "{{json .}}",
                                   user_network).stdout)
    assert endpoint["NetworkID"] == network["Id"]
    assert endpoint["EndpointID"] == network["Containers"][container_id]["EndpointID"]
    assert network["Containers"][container_id]["IPv4Address"].startswith(
        endpoint["IPAddress"] + "/")


def test_start_with_stdin_keeps_id(docker: DockerCLI, busybox: str,
                                   name: Callable[[str], str]) -> None:
    container = name("stdin")
    container_id = docker.ok("create", "-i", "--name", container, busybox, "cat").stdout.strip()
    result = docker.ok("start", "-ai", container, input="through stdin\n")
    assert result.stdout == "through stdin\n"
    inspected = docker.ok("inspect", "--format", "{{.Id}} {{.State.Status}}", container)
    assert inspected.stdout.split() == [container_id, "exited"]


def test_run_with_stdin_streams_and_log(docker: DockerCLI, busybox: str,
                                        name: Callable[[str], str]) -> None:
    container = name("streams")
    result = docker("run", "-i", "--name", container, busybox,
                    "sh", "-c", "cat; echo to-stderr >&2; exit 3", input="to-stdout\n")
    assert result.returncode == 3
    assert result.stdout == "to-stdout\n"
    assert result.stderr == "to-stderr\n"
    logs = docker.ok("logs", container)
    assert logs.stdout == "to-stdout\n"
    assert logs.stderr == "to-stderr\n"


def test_run_with_stdin_large_input(docker: DockerCLI, busybox: str) -> None:
    lines = "".join(f"{number}\n" for number in range(200_000))
    result = docker.ok("run", "-i", "--rm", busybox, "wc", "-l", input=lines)
    assert result.stdout.strip() == "200000"


def test_run_with_stdin_keeps_alias_and_domain(
        docker: DockerCLI, busybox: str, user_network: str,
        name: Callable[[str], str]) -> None:
    container = name("stdin-alias")
    result = docker.ok("run", "-i", "--name", container, "--network", user_network,
                       "--network-alias", "piped", "--hostname", "box", "--domainname",
                       "example.org", busybox, "sh", "-c",
                       "cat; ping -c 1 -W 1 piped | head -n 1; hostname -f",
                       input="first line\n")
    output = result.stdout.splitlines()
    assert output[0] == "first line"
    assert output[1].startswith("PING piped (")
    assert output[2] == "box.example.org"


def test_failed_start_removes_auto_remove(docker: DockerCLI, busybox: str,
                                          name: Callable[[str], str]) -> None:
    container = name("failing")
    result = docker("run", "--rm", "--name", container, busybox, "/no/such/command",
                    timeout=60)
    assert result.returncode == 127
    assert "no such file or directory" in result.stderr
    listed = docker.ok("ps", "-aq", "--filter", f"name=^{container}$")
    assert listed.stdout.strip() == ""


def test_missing_command_start_is_400(api: ApiClient, busybox: str,
                                      name: Callable[[str], str]) -> None:
    container = name("nocommand")
    body = {"Image": busybox, "Cmd": ["no-such-command"]}
    response = api.request("POST", f"{V}/containers/create?name={container}", body=body)
    assert response.status == 201, response.body
    started = api.request("POST", f"{V}/containers/{container}/start")
    assert_client_error(started, 400, "executable file not found")


def test_network_by_id_resolves_names(
        docker: DockerCLI, busybox: str, user_network: str,
        name: Callable[[str], str]) -> None:
    network_id = docker.ok("network", "inspect", "--format", "{{.Id}}",
                           user_network).stdout.strip()
    container = name("by-id")
    docker.ok("run", "-d", "--name", container, "--network", network_id[:12],
              "--network-alias", "by-id-alias", busybox, "sleep", "300")
    networks = json.loads(docker.ok("inspect", "--format", "{{json .NetworkSettings.Networks}}",
                                    container).stdout)
    assert list(networks) == [user_network]
    assert networks[user_network]["NetworkID"] == network_id
    address = networks[user_network]["IPAddress"]
    assert resolved_address(docker, busybox, user_network, "by-id-alias") == address
    assert resolved_address(docker, busybox, user_network, container) == address


def test_rename_then_restart_resolves_new_name(
        docker: DockerCLI, busybox: str, user_network: str,
        name: Callable[[str], str]) -> None:
    old = name("before")
    new = name("after")
    docker.ok("run", "-d", "--name", old, "--network", user_network, busybox, "sleep", "300")
    docker.ok("rename", old, new)
    docker.ok("restart", "-t", "1", new)
    address = container_address(docker, new, user_network)
    assert resolved_address(docker, busybox, user_network, new) == address
    assert resolved_address(docker, busybox, user_network, old) == ""


def test_detached_open_stdin_keeps_running(docker: DockerCLI, busybox: str,
                                           name: Callable[[str], str]) -> None:
    container = name("open-stdin")
    docker.ok("run", "-di", "--name", container, busybox, "sh")
    time.sleep(2)
    status = docker.ok("inspect", "--format", "{{.State.Status}}", container)
    assert status.stdout.strip() == "running"
    with docker.popen("attach", container, stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE) as attach:
        assert attach.stdin is not None
        assert attach.stdout is not None
        try:
            attach.stdin.write(b"echo through-attach\n")
            attach.stdin.flush()
            line = attach.stdout.readline()
        finally:
            attach.kill()
    assert line == b"through-attach\n"
    logs = docker.ok("logs", container)
    assert logs.stdout == "through-attach\n"


def test_address_outside_subnet_is_400(api: ApiClient, docker: DockerCLI, busybox: str,
                                       user_network: str) -> None:
    subnet = docker.ok("network", "inspect", "--format", "{{(index .IPAM.Config 0).Subnet}}",
                       user_network).stdout.strip()
    outside = str(ipaddress.ip_network(subnet).broadcast_address + 256)
    body = {"Image": busybox, "HostConfig": {"NetworkMode": user_network},
            "NetworkingConfig": {"EndpointsConfig": {
                user_network: {"IPAMConfig": {"IPv4Address": outside}}}}}
    response = api.request("POST", f"{V}/containers/create", body=body)
    assert_client_error(response, 400, f"contain the IP address {outside}")


def test_ipv6_address_without_ipv6_subnet_is_400(api: ApiClient, busybox: str,
                                                 user_network: str) -> None:
    body = {"Image": busybox, "HostConfig": {"NetworkMode": user_network},
            "NetworkingConfig": {"EndpointsConfig": {
                user_network: {"IPAMConfig": {"IPv6Address": "fd00::5"}}}}}
    response = api.request("POST", f"{V}/containers/create", body=body)
    assert_client_error(response, 400, "IPv6 subnet")
