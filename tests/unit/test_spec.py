"""Create-request checks and the nerdctl argv they become."""

from __future__ import annotations

import pytest

from finchd.errors import InvalidParameterError
from finchd.nerdctl.containers import create_args, hosts_names
from finchd.services.container_spec import parse_create
from finchd.services.containers import network_name


def test_cmd_string_becomes_list() -> None:
    spec = parse_create({"Image": "busybox", "Cmd": "echo hi"}, None, False)
    assert spec.cmd == ["echo hi"]
    assert spec.config["Cmd"] == ["echo hi"]


def test_values_are_bound_to_flags() -> None:
    spec = parse_create(
        {"Image": "busybox", "Cmd": ["--privileged"], "Env": ["--x=1"],
         "Labels": {"--a": "b"}, "WorkingDir": "/-w"},
        "web", False,
    )
    args = create_args(spec)
    assert "--privileged" not in args[: args.index("--")]
    assert "--env=--x=1" in args
    assert "--label=--a=b" in args
    assert args[args.index("--") + 1] == "busybox"


def test_entrypoint_list_splits_into_flag_and_args() -> None:
    spec = parse_create({"Image": "busybox", "Entrypoint": ["sh", "-c"], "Cmd": ["echo"]}, None, False)
    args = create_args(spec)
    assert "--entrypoint=sh" in args
    assert args[-3:] == ["busybox", "-c", "echo"]


def test_memory_limit_warns_without_cgroups() -> None:
    spec = parse_create({"Image": "busybox", "HostConfig": {"Memory": 64 * 1024 * 1024}}, None, False)
    assert len(spec.warnings) == 1
    assert "Memory" in spec.warnings[0]


def test_auto_remove_with_restart_is_rejected() -> None:
    body = {"Image": "busybox", "HostConfig": {"AutoRemove": True,
                                               "RestartPolicy": {"Name": "always"}}}
    with pytest.raises(InvalidParameterError):
        parse_create(body, None, False)


def test_zero_values_of_unsupported_fields_pass() -> None:
    body = {"Image": "busybox", "HostConfig": {"VolumesFrom": None, "Links": [],
                                               "CgroupnsMode": "", "OomScoreAdj": 0}}
    assert parse_create(body, None, False).warnings == []


CONTAINER_ID = "0123456789ab" + "c" * 52


def test_hosts_names_default_network_unchanged() -> None:
    spec = parse_create({"Image": "busybox"}, None, False)
    assert hosts_names(CONTAINER_ID, spec) == []


def test_hosts_names_aliases_follow_hostname() -> None:
    body = {"Image": "busybox", "HostConfig": {"NetworkMode": "net1"},
            "NetworkingConfig": {"EndpointsConfig": {"net1": {"Aliases": ["db", "db"]}}}}
    spec = parse_create(body, None, False)
    assert hosts_names(CONTAINER_ID, spec) == ["0123456789ab", "db"]


def test_hosts_names_short_id_with_custom_hostname() -> None:
    body = {"Image": "busybox", "Hostname": "web", "HostConfig": {"NetworkMode": "net1"}}
    spec = parse_create(body, None, False)
    assert hosts_names(CONTAINER_ID, spec) == ["web", "0123456789ab"]


def test_hosts_names_domainname_first() -> None:
    body = {"Image": "busybox", "Hostname": "web", "Domainname": "example.org"}
    spec = parse_create(body, None, False)
    assert hosts_names(CONTAINER_ID, spec) == ["web.example.org", "web"]


@pytest.mark.parametrize("network", ["default", "bridge", "host", "none"])
def test_alias_on_predefined_network_rejected(network: str) -> None:
    body = {"Image": "busybox", "HostConfig": {"NetworkMode": network},
            "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": ["a"]}}}}
    with pytest.raises(InvalidParameterError, match="network-scoped alias"):
        parse_create(body, None, False)


def test_alias_for_other_network_key_rejected() -> None:
    body = {"Image": "busybox", "HostConfig": {"NetworkMode": "net1"},
            "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["a"]}}}}
    with pytest.raises(InvalidParameterError, match="network-scoped alias"):
        parse_create(body, None, False)


def test_console_size_kept_only_with_tty() -> None:
    host = {"ConsoleSize": [30, 100]}
    with_tty = parse_create({"Image": "busybox", "Tty": True, "HostConfig": host}, None, False)
    without_tty = parse_create({"Image": "busybox", "HostConfig": host}, None, False)
    assert with_tty.console_size == (30, 100)
    assert without_tty.console_size is None


@pytest.mark.parametrize("domainname", ["two words", "a" * 65, "-x", "a#b"])
def test_invalid_domainname_rejected(domainname: str) -> None:
    with pytest.raises(InvalidParameterError, match="invalid Domainname"):
        parse_create({"Image": "busybox", "Domainname": domainname}, None, False)


def test_many_endpoints_rejected() -> None:
    body = {"Image": "busybox", "HostConfig": {"NetworkMode": "n1"},
            "NetworkingConfig": {"EndpointsConfig": {"n1": {}, "n2": {}}}}
    with pytest.raises(InvalidParameterError, match="cannot be connected to network endpoints"):
        parse_create(body, None, False)


def test_null_endpoint_rejected() -> None:
    body = {"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": {"n1": None}}}
    with pytest.raises(InvalidParameterError, match="no EndpointSettings for n1"):
        parse_create(body, None, False)


def test_endpoint_network_wins_over_mode() -> None:
    body = {"Image": "busybox",
            "NetworkingConfig": {"EndpointsConfig": {"n1": {"Aliases": ["db"]}}}}
    spec = parse_create(body, None, False)
    assert spec.network == "n1"
    assert spec.aliases == ["db"]


@pytest.mark.parametrize("field, address", [("IPv4Address", "fd00::5"),
                                            ("IPv6Address", "10.1.2.3")])
def test_address_of_wrong_family_rejected(field: str, address: str) -> None:
    body = {"Image": "busybox", "HostConfig": {"NetworkMode": "n1"},
            "NetworkingConfig": {"EndpointsConfig": {"n1": {"IPAMConfig": {field: address}}}}}
    with pytest.raises(InvalidParameterError, match="invalid IPv"):
        parse_create(body, None, False)


def test_aliases_too_long_rejected() -> None:
    aliases = [f"{index:03d}" + "a" * 250 for index in range(300)]
    body = {"Image": "busybox", "HostConfig": {"NetworkMode": "n1"},
            "NetworkingConfig": {"EndpointsConfig": {"n1": {"Aliases": aliases}}}}
    with pytest.raises(InvalidParameterError, match="network aliases take"):
        parse_create(body, None, False)


def test_network_name_resolves_id_prefix() -> None:
    ids = {"front": "ab" * 32, "back": "cd" * 32}
    assert network_name("abab", ids) == "front"
    assert network_name("front", ids) == "front"
    assert network_name("bridge", ids) == "bridge"
    assert network_name("ef", ids) == "ef"


def test_reserved_container_label_rejected() -> None:
    body = {"Image": "busybox", "Labels": {"nerdctl/name": "x"}}
    with pytest.raises(InvalidParameterError, match="reserved for the engine"):
        parse_create(body, None, False)
