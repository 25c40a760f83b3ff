"""Network create checks, nerdctl network output parsing and Docker's Network shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from finchd.errors import (
    ConflictError,
    EngineError,
    FinchdError,
    ForbiddenError,
    InvalidParameterError,
    NotFoundError,
    UnsupportedError,
)
from finchd.nerdctl.networks import (
    NativeNetwork,
    NetworkCreateSpec,
    create_args,
    create_error,
    parse_list,
    parse_native,
)
from finchd.services.networks import (
    check_list_filters,
    find_network,
    match_list_filters,
    network_view,
    pseudo_network_id,
)
from finchd.services.network_spec import parse_network_create

NATIVE_NET1: dict[str, Any] = {
    "CNI": {
        "cniVersion": "1.0.0",
        "name": "net1",
        "nerdctlID": "6c270ef2f251d571f625e6bfc5311959b2d7301e71ff51eb56717b8fd75d374d",
        "nerdctlLabels": {"team": "a"},
        "plugins": [
            {"type": "bridge", "bridge": "br-6c270ef2f251", "isGateway": True, "ipMasq": True,
             "mtu": 1400,
             "ipam": {"type": "host-local",
                      "ranges": [[{"gateway": "10.4.1.1", "subnet": "10.4.1.0/24",
                                   "rangeStart": "10.4.1.128", "rangeEnd": "10.4.1.255",
                                   "ipRange": "10.4.1.128/25"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    },
    "NerdctlID": "6c270ef2f251d571f625e6bfc5311959b2d7301e71ff51eb56717b8fd75d374d",
    "NerdctlLabels": {"team": "a"},
    "File": "/nonexistent/nerdctl-net1.conflist",
}


def network(name: str, network_id: str, **fields: Any) -> NativeNetwork:
    return NativeNetwork(name=name, id=network_id, driver=fields.pop("driver", "bridge"),
                         labels=fields.pop("labels", {}), ranges=[], **fields)


def test_native_bridge_parsed() -> None:
    parsed = parse_native(NATIVE_NET1)
    assert parsed is not None
    assert parsed.name == "net1"
    assert parsed.id.startswith("6c270ef2f251")
    assert parsed.driver == "bridge"
    assert parsed.labels == {"team": "a"}
    assert parsed.bridge == "br-6c270ef2f251"
    assert parsed.ip_masquerade is True
    assert parsed.mtu == 1400
    assert len(parsed.ranges) == 1
    assert parsed.ranges[0].subnet == "10.4.1.0/24"
    assert parsed.ranges[0].gateway == "10.4.1.1"
    assert parsed.ranges[0].ip_range == "10.4.1.128/25"


@pytest.mark.parametrize("item", [None, [], {"CNI": None}, {"CNI": {"plugins": []}}])
def test_native_malformed_skipped(item: Any) -> None:
    assert parse_native(item) is None


def test_list_output_names() -> None:
    stdout = (b'{"ID":"6c270ef2f251","Name":"net1","Labels":""}\n'
              b'not json\n\n{"ID":"","Name":"host","Labels":""}\n')
    assert parse_list(stdout) == ["net1", "host"]


def test_create_args_bind_values() -> None:
    spec = NetworkCreateSpec(name="--net", subnets=["10.5.0.0/16"], gateway="10.5.0.1",
                             ip_range="10.5.1.0/24", ipv6=True, options={"mtu": "1400"},
                             labels={"--a": "b=c"})
    args = create_args(spec)
    assert args[:3] == ["network", "create", "--driver=bridge"]
    assert "--subnet=10.5.0.0/16" in args
    assert "--gateway=10.5.0.1" in args
    assert "--ip-range=10.5.1.0/24" in args
    assert "--ipv6" in args
    assert "--opt=mtu=1400" in args
    assert "--label=--a=b=c" in args
    assert args[-2:] == ["--", "--net"]


@pytest.mark.parametrize(("message", "kind"), [
    ("network with name x already exists", ConflictError),
    ("subnet 10.4.1.0/24 overlaps with other one on this address space", ForbiddenError),
    ('unsupported "bridge" network option "foo"', InvalidParameterError),
    ("could not find free subnet", ForbiddenError),
    ("something else broke", EngineError),
])
def test_create_error_mapped(message: str, kind: type[FinchdError]) -> None:
    assert type(create_error(message, "x")) is kind


def create_body(**fields: Any) -> dict[str, Any]:
    return {"Name": "net-a", **fields}


def test_create_minimal() -> None:
    request = parse_network_create({"Name": "net-a"})
    assert request.spec.name == "net-a"
    assert request.spec.driver == "bridge"
    assert request.spec.subnets == []


def test_create_full() -> None:
    request = parse_network_create(create_body(
        CheckDuplicate=True, Driver="bridge", EnableIPv6=False, Attachable=True,
        Internal=False, Ingress=False, ConfigOnly=False, ConfigFrom={"Network": ""},
        Scope="local",
        IPAM={"Driver": "default", "Options": {"foo": "bar"},
              "Config": [{"Subnet": "10.9.0.0/16", "IPRange": "10.9.1.0/24",
                          "Gateway": "10.9.0.1"}]},
        Options={"com.docker.network.driver.mtu": "1400"}, Labels={"k": "v"}))
    assert request.spec.subnets == ["10.9.0.0/16"]
    assert request.spec.gateway == "10.9.0.1"
    assert request.spec.ip_range == "10.9.1.0/24"
    assert request.spec.labels == {"k": "v"}
    assert request.attachable is True
    assert request.ipam_options == {"foo": "bar"}
    assert request.options == {"com.docker.network.driver.mtu": "1400"}


@pytest.mark.parametrize(("body", "kind", "words"), [
    ([], InvalidParameterError, "expected a JSON object"),
    ({}, InvalidParameterError, "Name is missing"),
    ({"Name": ""}, InvalidParameterError, "Name is missing"),
    ({"Name": 5}, InvalidParameterError, "Name"),
    ({"Name": "a"}, InvalidParameterError, "invalid network name"),
    ({"Name": "a/b"}, InvalidParameterError, "invalid network name"),
    ({"Name": "x" * 300}, InvalidParameterError, "maximum"),
    ({"Name": "bridge"}, ForbiddenError, "predefined bridge network"),
    ({"Name": "host"}, ForbiddenError, "predefined host network"),
    (create_body(Bogus=1), InvalidParameterError, "unknown field Bogus"),
    (create_body(Internal="yes"), InvalidParameterError, "Internal"),
    (create_body(Labels={"a": 1}), InvalidParameterError, "Labels"),
    (create_body(Labels={"": "x"}), InvalidParameterError, "label key"),
    (create_body(Options=[]), InvalidParameterError, "Options"),
    (create_body(Driver=3), InvalidParameterError, "Driver"),
    (create_body(Driver="overlay"), ForbiddenError, "swarm manager"),
    (create_body(Driver="host"), ForbiddenError, 'only one instance of "host"'),
    (create_body(Driver="null"), ForbiddenError, 'only one instance of "null"'),
    (create_body(Driver="weave"), NotFoundError, 'plugin "weave" not found'),
    (create_body(Internal=True), UnsupportedError, "internal networks"),
    (create_body(Ingress=True), UnsupportedError, "ingress"),
    (create_body(ConfigOnly=True), UnsupportedError, "configuration-only"),
    (create_body(ConfigFrom={"Network": "x"}), UnsupportedError, "ConfigFrom"),
    (create_body(Scope="swarm"), UnsupportedError, "swarm"),
    (create_body(Scope="galaxy"), InvalidParameterError, "invalid scope"),
    (create_body(Options={"com.docker.network.bridge.name": "br0"}), UnsupportedError,
     "com.docker.network.bridge.name"),
    (create_body(Options={"mtu": "big"}), InvalidParameterError, "mtu"),
    (create_body(Options={"ip-masq": "maybe"}), InvalidParameterError, "ip-masq"),
    (create_body(Driver="macvlan", Options={"macvlan_mode": "vepa"}), InvalidParameterError,
     "macvlan_mode"),
    (create_body(IPAM=[]), InvalidParameterError, "IPAM"),
    (create_body(IPAM={"Driver": "dhcp"}), NotFoundError, 'plugin "dhcp" not found'),
    (create_body(IPAM={"Driver": "null"}), UnsupportedError, "null IPAM"),
    (create_body(IPAM={"Extra": 1}), InvalidParameterError, "IPAM.Extra"),
    (create_body(IPAM={"Config": {}}), InvalidParameterError, "IPAM.Config"),
    (create_body(IPAM={"Config": [{"Subnet": 10}]}), InvalidParameterError,
     "IPAM.Config[0].Subnet"),
    (create_body(IPAM={"Config": [{"Subnet": "10.0.0.0/8", "Bogus": "x"}]}),
     InvalidParameterError, "IPAM.Config[0].Bogus"),
    (create_body(IPAM={"Config": [{"Subnet": "300.0.0.0/8"}]}), InvalidParameterError,
     "invalid subnet 300.0.0.0/8: invalid CIDR block notation"),
    (create_body(IPAM={"Config": [{"Subnet": "10.0.0.0"}]}), InvalidParameterError,
     "invalid CIDR block notation"),
    (create_body(IPAM={"Config": [{"Subnet": "10.1.2.3/16"}]}), InvalidParameterError,
     "invalid subnet 10.1.2.3/16: it should be 10.1.0.0/16"),
    (create_body(IPAM={"Config": [{"Subnet": "10.1.0.0/16", "Gateway": "10.2.0.1"}]}),
     InvalidParameterError, "invalid gateway 10.2.0.1: parent subnet 10.1.0.0/16 doesn't "
     "contain this address"),
    (create_body(IPAM={"Config": [{"Subnet": "10.1.0.0/16", "Gateway": "gw"}]}),
     InvalidParameterError, "invalid gateway gw: invalid address"),
    (create_body(IPAM={"Config": [{"Subnet": "10.1.0.0/16", "Gateway": "fd00::1"}]}),
     InvalidParameterError, "parent subnet is an IPv4 block"),
    (create_body(IPAM={"Config": [{"Subnet": "10.1.0.0/16", "IPRange": "10.0.0.0/8"}]}),
     InvalidParameterError, "CIDR block is bigger than its parent subnet"),
    (create_body(IPAM={"Config": [{"Subnet": "10.1.0.0/16", "IPRange": "10.1.1.1/24"}]}),
     InvalidParameterError, "invalid ip-range 10.1.1.1/24: it should be 10.1.1.0/24"),
    (create_body(IPAM={"Config": [{"Subnet": "10.1.0.0/16", "IPRange": "10.3.0.0/24"}]}),
     InvalidParameterError, "doesn't contain ip-range"),
    (create_body(IPAM={"Config": [{"Subnet": "10.1.0.0/16", "IPRange": "bad"}]}),
     InvalidParameterError, "invalid ip-range bad: invalid CIDR block notation"),
    (create_body(IPAM={"Config": [{"Subnet": "10.1.0.0/16",
                                   "AuxiliaryAddresses": {"a": "10.9.0.1"}}]}),
     InvalidParameterError, "invalid auxiliary address a"),
    (create_body(IPAM={"Config": [{"Subnet": "10.1.0.0/16",
                                   "AuxiliaryAddresses": {"a": "10.1.0.5"}}]}),
     UnsupportedError, "AuxiliaryAddresses"),
    (create_body(IPAM={"Config": [{"Subnet": "10.1.0.0/16", "Gateway": "10.1.0.1"},
                                  {"Subnet": "10.2.0.0/16"}]}),
     UnsupportedError, "one IPAM config"),
])
def test_create_rejected(body: Any, kind: type[FinchdError], words: str) -> None:
    with pytest.raises(kind) as caught:
        parse_network_create(body)
    assert type(caught.value) is kind
    assert words in caught.value.message


def test_ipv6_subnet_unchecked_without_ipv6() -> None:
    request = parse_network_create(create_body(
        IPAM={"Config": [{"Subnet": "fd00::1/64"}]}))
    assert request.spec.subnets == ["fd00::1/64"]


def test_ipv6_subnet_checked_with_ipv6() -> None:
    with pytest.raises(InvalidParameterError) as caught:
        parse_network_create(create_body(EnableIPv6=True,
                                         IPAM={"Config": [{"Subnet": "fd00::1/64"}]}))
    assert "it should be fd00::/64" in caught.value.message


def test_every_ipam_error_reported() -> None:
    with pytest.raises(InvalidParameterError) as caught:
        parse_network_create(create_body(IPAM={"Config": [
            {"Subnet": "10.1.2.3/16", "Gateway": "10.9.0.1"}]}))
    lines = caught.value.message.splitlines()
    assert lines[0] == "invalid network config:"
    assert len(lines) == 3


NETWORKS = [
    network("bridge", "17f29b073143" + "0" * 52),
    network("net1", "6c270ef2f251" + "1" * 52, labels={"team": "a"}),
    network("net2", "6c27aaaaaaaa" + "2" * 52),
    network("host", pseudo_network_id("host"), driver="host"),
]


@pytest.mark.parametrize(("reference", "expected"), [
    ("net1", "net1"),
    ("6c270e", "net1"),
    ("6c27a", "net2"),
    ("17f29b073143" + "0" * 52, "bridge"),
    ("host", "host"),
])
def test_find_network_resolves(reference: str, expected: str) -> None:
    assert find_network(NETWORKS, reference).name == expected


def test_find_network_ambiguous_prefix() -> None:
    with pytest.raises(InvalidParameterError) as caught:
        find_network(NETWORKS, "6c27")
    assert "ambiguous (2 matches found based on ID prefix)" in caught.value.message


@pytest.mark.parametrize("reference", ["nosuch", "../x", "", "a b"])
def test_find_network_missing(reference: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        find_network(NETWORKS, reference)
    assert caught.value.message == f"network {reference} not found"


def test_network_view_shape() -> None:
    parsed = parse_native(NATIVE_NET1)
    assert parsed is not None
    parsed.created = 0.0
    view = network_view(parsed, {}, {})
    assert list(view) == ["Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM",
                          "Internal", "Attachable", "Ingress", "ConfigFrom", "ConfigOnly",
                          "Containers", "Options", "Labels"]
    assert view["Created"] == "1970-01-01T00:00:00Z"
    assert view["IPAM"]["Config"] == [{"Subnet": "10.4.1.0/24", "IPRange": "10.4.1.128/25",
                                       "Gateway": "10.4.1.1"}]
    assert view["Options"]["com.docker.network.driver.mtu"] == "1400"
    assert view["Labels"] == {"team": "a"}
    json.dumps(view)


def test_network_view_record_wins() -> None:
    parsed = parse_native(NATIVE_NET1)
    assert parsed is not None
    record = {"Created": "2024-01-02T03:04:05.000000006Z", "Attachable": True,
              "Options": {"mtu": "1400"}, "IPAMOptions": {"a": "b"}}
    view = network_view(parsed, record, {})
    assert view["Created"] == record["Created"]
    assert view["Attachable"] is True
    assert view["Options"] == {"mtu": "1400"}
    assert view["IPAM"]["Options"] == {"a": "b"}


def test_pseudo_network_view() -> None:
    view = network_view(network("none", pseudo_network_id("none"), driver="null"), {}, {})
    assert view["Created"] == "0001-01-01T00:00:00Z"
    assert view["Driver"] == "null"
    assert view["Options"] == {}
    assert len(view["Id"]) == 64


def views() -> list[dict[str, Any]]:
    return [network_view(item, {}, {}) for item in NETWORKS]


@pytest.mark.parametrize(("filters", "in_use", "expected"), [
    ({}, set(), ["bridge", "net1", "net2", "host"]),
    ({"name": ["net"]}, set(), ["net1", "net2"]),
    ({"name": ["^net1$"]}, set(), ["net1"]),
    ({"id": ["6c270e"]}, set(), ["net1"]),
    ({"driver": ["host"]}, set(), ["host"]),
    ({"label": ["team=a"]}, set(), ["net1"]),
    ({"label": ["team=b"]}, set(), []),
    ({"type": ["builtin"]}, set(), ["bridge", "host"]),
    ({"type": ["custom"]}, set(), ["net1", "net2"]),
    ({"scope": ["local"]}, set(), ["bridge", "net1", "net2", "host"]),
    ({"scope": ["swarm"]}, set(), []),
    ({"dangling": ["true"]}, {"net1"}, ["net2"]),
    ({"dangling": ["false"]}, {"net1"}, ["bridge", "net1", "host"]),
])
def test_list_filters_match(filters: dict[str, list[str]], in_use: set[str],
                            expected: list[str]) -> None:
    names = [view["Name"] for view in views()
             if match_list_filters(view, view["Name"] in in_use, filters)]
    assert names == expected


@pytest.mark.parametrize(("filters", "words"), [
    ({"type": ["mine"]}, "invalid filter: 'type'='mine'"),
    ({"dangling": ["maybe"]}, "invalid value for filter 'dangling'"),
    ({"dangling": ["true", "false"]}, "more than one value"),
])
def test_list_filters_rejected(filters: dict[str, list[str]], words: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        check_list_filters(filters)
    assert words in caught.value.message
