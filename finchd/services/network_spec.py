"""Checks of a network create request, with dockerd's messages and statuses."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from finchd.errors import ForbiddenError, InvalidParameterError, NotFoundError, UnsupportedError
from finchd.nerdctl.networks import NetworkCreateSpec
from finchd.services.validation import describe, expect, string_map

# The names dockerd reserves: its predefined networks and the alias of the default one.
PREDEFINED_NAMES = ("bridge", "host", "none", "default")
CREATE_FIELDS = {"Name", "CheckDuplicate", "Driver", "Scope", "EnableIPv6", "IPAM", "Internal",
                 "Attachable", "Ingress", "ConfigOnly", "ConfigFrom", "Options", "Labels"}
IPAM_FIELDS = {"Driver", "Config", "Options"}
IPAM_CONFIG_FIELDS = {"Subnet", "IPRange", "Gateway", "AuxiliaryAddresses"}
# nerdctl 2.0.3 takes network names of two or more of these characters.
NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
# nerdctl writes nerdctl-NAME.conflist, and a file name has at most 255 bytes (NAME_MAX).
MAX_NAME_LENGTH = 255 - len("nerdctl-.conflist")
MTU_OPTIONS = ("com.docker.network.driver.mtu", "mtu")
# The driver options that nerdctl 2.0.3 applies, per driver.
DRIVER_OPTIONS = {
    "bridge": (*MTU_OPTIONS, "com.docker.network.bridge.enable_ip_masquerade", "ip-masq"),
    "macvlan": (*MTU_OPTIONS, "parent", "macvlan_mode", "mode"),
    "ipvlan": (*MTU_OPTIONS, "parent", "ipvlan_mode", "mode"),
}
BOOLEAN_OPTIONS = ("com.docker.network.bridge.enable_ip_masquerade", "ip-masq")
MODE_VALUES = {"macvlan": ("bridge",), "ipvlan": ("l2", "l3")}


@dataclass
class NetworkRequest:
    """A checked create request: what nerdctl creates, and what finchd keeps beside it."""

    spec: NetworkCreateSpec
    attachable: bool = False
    ipam_options: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)


def parse_network_create(body: Any) -> NetworkRequest:
    """Check a NetworkCreateRequest body. Raise 400, 403, 404 or 501 as dockerd would."""
    if not isinstance(body, dict):
        raise InvalidParameterError(
            f"invalid network config: expected a JSON object, got {describe(body)}")
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        raise InvalidParameterError(f"unknown field {unknown[0]} in network config")

    name = check_network_name(body.get("Name"))
    for key in ("CheckDuplicate", "EnableIPv6", "Internal", "Attachable", "Ingress", "ConfigOnly"):
        expect(body.get(key), bool, key)
    driver = expect(body.get("Driver"), str, "Driver") or "bridge"
    options = string_map(body.get("Options"), "Options") or {}
    labels = check_labels(body.get("Labels"))
    ipv6 = bool(body.get("EnableIPv6"))

    _check_unsupported(body)
    check_driver(driver)
    check_options(driver, options)
    ipam = body.get("IPAM")
    configs, ipam_options = check_ipam(ipam, ipv6)

    spec = NetworkCreateSpec(name=name, driver=driver, ipv6=ipv6, options=options, labels=labels)
    spec.subnets = [config["Subnet"] for config in configs]
    gateways = [config["Gateway"] for config in configs if config.get("Gateway")]
    ip_ranges = [config["IPRange"] for config in configs if config.get("IPRange")]
    if (gateways or ip_ranges) and len(configs) > 1:
        raise UnsupportedError(
            "a Gateway or IPRange is supported only in a network with one IPAM config: "
            "nerdctl 2.0.3 applies one gateway and one IP range to every subnet")

    spec.gateway = gateways[0] if gateways else ""
    spec.ip_range = ip_ranges[0] if ip_ranges else ""
    return NetworkRequest(spec=spec, attachable=bool(body.get("Attachable")),
                          ipam_options=ipam_options, options=options)


def check_network_name(value: Any) -> str:
    name: str = expect(value, str, "Name") or ""
    if not name:
        raise InvalidParameterError("invalid network config: Name is missing")
    if name in PREDEFINED_NAMES:
        raise ForbiddenError(f"operation is not permitted on predefined {name} network")
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidParameterError(
            f"invalid network name {name!r}: a name has two or more characters of "
            "[a-zA-Z0-9_.-] and starts with a letter or digit")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidParameterError(
            f"invalid network name: it is {len(name)} characters long, the maximum is "
            f"{MAX_NAME_LENGTH}")
    return name


def check_labels(value: Any) -> dict[str, str]:
    labels = string_map(value, "Labels") or {}
    for key in labels:
        if not key or "=" in key:
            raise InvalidParameterError(f"invalid label key {key!r}: it must be non-empty and "
                                        "must not contain '='")
    return labels


def _check_unsupported(body: dict[str, Any]) -> None:
    """Reject the swarm and configuration-only features, which nerdctl has no equivalent of."""
    scope = expect(body.get("Scope"), str, "Scope") or "local"
    if scope not in ("local", "swarm", "global"):
        raise InvalidParameterError(
            f"invalid scope {scope!r}: expected local, swarm or global")
    if scope != "local":
        raise UnsupportedError(f"networks of scope {scope} need swarm mode, which finchd does "
                               "not support")
    if body.get("Ingress"):
        raise UnsupportedError("ingress networks need swarm mode, which finchd does not support")
    if body.get("ConfigOnly"):
        raise UnsupportedError("configuration-only networks are not supported by finchd")
    config_from = expect(body.get("ConfigFrom"), dict, "ConfigFrom")
    if config_from:
        source = expect(config_from.get("Network"), str, "ConfigFrom.Network")
        if source:
            raise UnsupportedError("ConfigFrom is not supported by finchd")
    if body.get("Internal"):
        raise UnsupportedError(
            "internal networks are not supported: nerdctl 2.0.3 cannot create a network "
            "without external access")


def check_driver(driver: str) -> None:
    """Raise dockerd's error for a driver other than the ones nerdctl runs."""
    if driver in DRIVER_OPTIONS:
        return
    if driver in ("host", "null"):
        raise ForbiddenError(f'only one instance of "{driver}" network is allowed')
    if driver == "overlay":
        raise ForbiddenError(
            'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
            "to connect this node to swarm and try again.")
    raise NotFoundError(f'plugin "{driver}" not found')


def check_options(driver: str, options: dict[str, str]) -> None:
    """Reject driver options that nerdctl does not apply, and invalid values of the rest."""
    allowed = DRIVER_OPTIONS[driver]
    for key, value in options.items():
        if key not in allowed:
            raise UnsupportedError(
                f"network option {key} is not supported for the {driver} driver; finchd "
                f"supports {', '.join(allowed)}")
        if key in MTU_OPTIONS:
            if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= 65535:
                raise InvalidParameterError(f"invalid value for {key}: {value!r}, expected an "
                                            "MTU of 1 to 65535")
        elif key in BOOLEAN_OPTIONS:
            if value.lower() not in ("1", "0", "t", "f", "true", "false"):
                raise InvalidParameterError(
                    f"invalid value for {key}: {value!r}, expected a boolean")
        elif key.endswith("mode") and value not in MODE_VALUES[driver]:
            raise InvalidParameterError(
                f"invalid value for {key}: {value!r}, expected one of "
                f"{', '.join(MODE_VALUES[driver])}")


def check_ipam(value: Any, ipv6: bool) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Check IPAM and return its configs and options. Errors name the field, as dockerd's do."""
    ipam = expect(value, dict, "IPAM")
    if not ipam:
        return [], {}
    unknown = sorted(set(ipam) - IPAM_FIELDS)
    if unknown:
        raise InvalidParameterError(f"unknown field IPAM.{unknown[0]} in network config")
    driver = expect(ipam.get("Driver"), str, "IPAM.Driver") or "default"
    if driver == "null":
        raise UnsupportedError("the null IPAM driver is not supported by finchd")
    if driver != "default":
        raise NotFoundError(f'plugin "{driver}" not found')

    options = string_map(ipam.get("Options"), "IPAM.Options") or {}
    raw_configs = expect(ipam.get("Config"), list, "IPAM.Config") or []
    configs = []
    errors: list[str] = []
    has_auxiliary = False

    for index, raw in enumerate(raw_configs):
        field_name = f"IPAM.Config[{index}]"
        config = expect(raw, dict, field_name)
        if config is None:
            continue
        unknown = sorted(set(config) - IPAM_CONFIG_FIELDS)
        if unknown:
            raise InvalidParameterError(f"unknown field {field_name}.{unknown[0]} in network config")
        checked = {key: expect(config.get(key), str, f"{field_name}.{key}") or ""
                   for key in ("Subnet", "IPRange", "Gateway")}
        auxiliary = string_map(config.get("AuxiliaryAddresses"),
                               f"{field_name}.AuxiliaryAddresses") or {}
        errors += ipam_config_errors(checked, auxiliary, ipv6)
        has_auxiliary = has_auxiliary or bool(auxiliary)
        configs.append(checked)

    if errors:
        raise InvalidParameterError("invalid network config:\n" + "\n".join(errors))
    if has_auxiliary:
        raise UnsupportedError("AuxiliaryAddresses are not supported: nerdctl 2.0.3 cannot "
                               "reserve addresses in a network")
    return configs, options


def ipam_config_errors(config: dict[str, str], auxiliary: dict[str, str],
                       ipv6: bool) -> list[str]:
    """Return dockerd's messages for each invalid part of one IPAM config."""
    try:
        subnet = ipaddress.ip_network(config["Subnet"], strict=False)
        if "/" not in config["Subnet"]:
            raise ValueError(config["Subnet"])
    except ValueError:
        return [f"invalid subnet {config['Subnet']}: invalid CIDR block notation"]
    if subnet.version == 6 and not ipv6:
        return []
    errors = []
    given = ipaddress.ip_interface(config["Subnet"])
    if given.ip != subnet.network_address:
        errors.append(f"invalid subnet {config['Subnet']}: it should be {subnet}")
    errors += _ip_range_errors(config["IPRange"], subnet)
    gateway_error = _address_error(config["Gateway"], subnet)
    if gateway_error:
        errors.append(f"invalid gateway {config['Gateway']}: {gateway_error}")
    for name, address in sorted(auxiliary.items()):
        address_error = _address_error(address, subnet)
        if address_error:
            errors.append(f"invalid auxiliary address {name}: {address_error}")
    return errors


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _family(version: int) -> str:
    return "IPv4" if version == 4 else "IPv6"


def _ip_range_errors(ip_range: str, subnet: Network) -> list[str]:
    if not ip_range:
        return []
    try:
        if "/" not in ip_range:
            raise ValueError(ip_range)
        given = ipaddress.ip_interface(ip_range)
    except ValueError:
        return [f"invalid ip-range {ip_range}: invalid CIDR block notation"]
    prefix = given.network
    if prefix.version != subnet.version:
        return [f"invalid ip-range {ip_range}: parent subnet is an {_family(subnet.version)} block"]
    errors = []
    if prefix.prefixlen < subnet.prefixlen:
        errors.append(f"invalid ip-range {ip_range}: CIDR block is bigger than its parent "
                      f"subnet {subnet}")
    if given.ip != prefix.network_address:
        errors.append(f"invalid ip-range {ip_range}: it should be {prefix}")
    if not subnet.overlaps(prefix):
        errors.append(f"invalid ip-range {ip_range}: parent subnet {subnet} doesn't contain "
                      "ip-range")
    return errors


def _address_error(address: str, subnet: Network) -> str:
    if not address:
        return ""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "invalid address"
    if parsed.version != subnet.version:
        return f"parent subnet is an {_family(subnet.version)} block"
    if parsed not in subnet:
        return f"parent subnet {subnet} doesn't contain this address"
    return ""
