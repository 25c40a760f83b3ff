"""Docker's network semantics on top of nerdctl's CNI networks."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

from finchd.errors import (
    ConflictError,
    FinchdError,
    ForbiddenError,
    InvalidParameterError,
    NoSuchContainerError,
    NotFoundError,
)
from finchd.nerdctl.networks import DEFAULT_NETWORK_LABEL, NativeNetwork, Networks
from finchd.services import container_networks
from finchd.services.containers import ContainerService
from finchd.services.filters import (
    Filters,
    label_matches,
    name_matches,
    parse_filters,
    until_cutoff,
)
from finchd.services.network_ids import endpoint_id, pseudo_network_id
from finchd.services.network_spec import parse_network_create
from finchd.services.records import RecordStore
from finchd.services.timefmt import ZERO_TIME, now_rfc3339, parse_time, rfc3339
from finchd.services.validation import describe, expect

log = logging.getLogger(__name__)

LIST_FILTERS = {"dangling", "driver", "id", "label", "name", "scope", "type"}
PRUNE_FILTERS = {"until", "label", "label!"}
SCOPES = ("local", "swarm", "global")
# Docker's predefined networks, which can be neither created nor removed.
BUILTIN_NETWORKS = ("bridge", "host", "none")
# nerdctl's pseudo-networks have no CNI configuration, so finchd shows them with Docker's drivers.
PSEUDO_DRIVERS = {"host": "host", "none": "null"}
NERDCTL_LABEL_PREFIX = "nerdctl/"
# Network references: names, IDs and ID prefixes. nerdctl would read other characters as syntax.
REFERENCE_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def visible_labels(labels: dict[str, str]) -> dict[str, str]:
    """Drop nerdctl's own labels, such as the one that marks its default network."""
    return {key: value for key, value in labels.items() if not key.startswith(NERDCTL_LABEL_PREFIX)}


def is_builtin(network: NativeNetwork) -> bool:
    return network.name in BUILTIN_NETWORKS or DEFAULT_NETWORK_LABEL in network.labels


def derived_options(network: NativeNetwork) -> dict[str, str]:
    """Describe a network that finchd did not create with Docker's driver option names."""
    options: dict[str, str] = {}
    if network.driver == "bridge":
        if DEFAULT_NETWORK_LABEL in network.labels or network.name == "bridge":
            options["com.docker.network.bridge.default_bridge"] = "true"
        if network.bridge:
            options["com.docker.network.bridge.name"] = network.bridge
        if network.ip_masquerade is not None:
            options["com.docker.network.bridge.enable_ip_masquerade"] = str(
                network.ip_masquerade).lower()
    if network.parent:
        options["parent"] = network.parent
    if network.mode:
        options[f"{network.driver}_mode"] = network.mode
    if network.mtu:
        options["com.docker.network.driver.mtu"] = str(network.mtu)
    return options


def network_view(network: NativeNetwork, record: dict[str, Any],
                 containers: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Build Docker's Network object from nerdctl's network and finchd's create record."""
    pseudo = network.name in PSEUDO_DRIVERS
    if record.get("Created"):
        created = str(record["Created"])
    elif network.created is not None:
        created = rfc3339(datetime.fromtimestamp(network.created, timezone.utc))
    else:
        created = ZERO_TIME
    config = []
    for ipam_range in network.ranges:
        entry = {"Subnet": ipam_range.subnet}
        if ipam_range.ip_range:
            entry["IPRange"] = ipam_range.ip_range
        if ipam_range.gateway:
            entry["Gateway"] = ipam_range.gateway
        config.append(entry)
    ipv6 = network.ipv6 or any(":" in entry["Subnet"] for entry in config)
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": created,
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv6": bool(record.get("EnableIPv6", ipv6)),
        "IPAM": {
            "Driver": "default",
            "Options": record.get("IPAMOptions") if record else None,
            "Config": config,
        },
        "Internal": False,
        "Attachable": bool(record.get("Attachable")),
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": record["Options"] if "Options" in record else
        ({} if pseudo else derived_options(network)),
        "Labels": visible_labels(network.labels),
    }


def endpoint_view(network_id: str, container_id: str, name: str,
                  settings: dict[str, Any]) -> dict[str, str]:
    """Build a network's entry for one container from the container's endpoint settings."""
    ipv4 = settings.get("IPAddress") or ""
    ipv6 = settings.get("GlobalIPv6Address") or ""
    return {
        "Name": name,
        "EndpointID": endpoint_id(network_id, container_id),
        "MacAddress": settings.get("MacAddress") or "",
        "IPv4Address": f"{ipv4}/{settings.get('IPPrefixLen') or 32}" if ipv4 else "",
        "IPv6Address": f"{ipv6}/{settings.get('GlobalIPv6PrefixLen') or 128}" if ipv6 else "",
    }


def find_network(networks: list[NativeNetwork], reference: str) -> NativeNetwork:
    """Resolve a full ID, a name or an unambiguous ID prefix, in dockerd's order."""
    if REFERENCE_PATTERN.fullmatch(reference):
        for network in networks:
            if network.id == reference:
                return network
        for network in networks:
            if network.name == reference:
                return network
        by_prefix = [network for network in networks if network.id.startswith(reference)]
        if len(by_prefix) > 1:
            raise InvalidParameterError(
                f"network {reference} is ambiguous ({len(by_prefix)} matches found based on ID "
                "prefix)")
        if by_prefix:
            return by_prefix[0]
    raise NotFoundError(f"network {reference} not found")


def match_list_filters(view: dict[str, Any], in_use: bool, filters: Filters) -> bool:
    """Apply GET /networks filters to one network, as dockerd's filterNetworks does."""
    for key, field in (("name", "Name"), ("id", "Id")):
        values = filters.get(key)
        if values and not any(name_matches(value, view[field]) for value in values):
            return False
    if filters.get("driver") and view["Driver"] not in filters["driver"]:
        return False
    if filters.get("label") and not label_matches(view["Labels"], filters["label"]):
        return False
    if filters.get("scope") and view["Scope"] not in filters["scope"]:
        return False
    builtin = view["Name"] in BUILTIN_NETWORKS
    kinds = filters.get("type") or []
    if kinds and not (("builtin" in kinds and builtin) or ("custom" in kinds and not builtin)):
        return False
    dangling = filters.get("dangling")
    if dangling:
        if dangling[0] in ("1", "true"):
            return not builtin and not in_use
        return builtin or in_use
    return True


def check_list_filters(filters: Filters) -> None:
    for kind in filters.get("type", []):
        if kind not in ("custom", "builtin"):
            raise InvalidParameterError(f"invalid filter: 'type'='{kind}'")
    dangling = filters.get("dangling", [])
    if len(dangling) > 1:
        raise InvalidParameterError('got more than one value for filter key "dangling"')
    if dangling and dangling[0] not in ("0", "1", "true", "false"):
        raise InvalidParameterError(
            "invalid value for filter 'dangling', must be \"true\" (or \"1\"), or \"false\" "
            "(or \"0\")")


class NetworkService:
    """Docker's /networks endpoints: list, inspect, create, remove, prune."""

    def __init__(self, networks: Networks, containers: ContainerService, records: RecordStore):
        self.networks = networks
        self.containers = containers
        self.records = records

    async def _all(self) -> list[NativeNetwork]:
        """Return nerdctl's networks followed by the pseudo-networks host and none."""
        networks = await self.networks.list()
        pseudo = [NativeNetwork(name=name, id=pseudo_network_id(name), driver=driver, labels={},
                                ranges=[]) for name, driver in PSEUDO_DRIVERS.items()]
        return [*networks, *pseudo]

    async def _endpoints(self, networks: list[NativeNetwork]) -> dict[str, dict[str, Any]]:
        """Return, per network ID, the running containers on it keyed by container ID."""
        endpoints: dict[str, dict[str, Any]] = {network.id: {} for network in networks}
        summaries = await self.containers.list_containers(all=False, limit=None, size=False,
                                                          filters_raw=None)
        for summary in summaries:
            if summary["State"] not in ("running", "paused"):
                continue
            container_id = summary["Id"]
            name = summary["Names"][0].lstrip("/") if summary["Names"] else ""
            for reference, settings in summary["NetworkSettings"]["Networks"].items():
                try:
                    network = find_network(networks, reference)
                except FinchdError:
                    continue
                endpoints[network.id][container_id] = endpoint_view(
                    network.id, container_id, name, settings or {})
        return endpoints

    async def list_networks(self, filters_raw: str | None) -> list[dict[str, Any]]:
        filters = parse_filters(filters_raw, LIST_FILTERS)
        check_list_filters(filters)
        networks = await self._all()
        endpoints = await self._endpoints(networks) if filters.get("dangling") else {}
        views = []
        for network in networks:
            # Since API 1.28 the list leaves Containers empty, as dockerd does.
            view = network_view(network, self.records.load(network.id), {})
            if match_list_filters(view, bool(endpoints.get(network.id)), filters):
                views.append(view)
        return views

    async def inspect(self, reference: str, scope: str | None = None) -> dict[str, Any]:
        if scope and scope not in SCOPES:
            raise InvalidParameterError(
                f"invalid scope {scope!r}: expected local, swarm or global")
        networks = await self._all()
        network = find_network(networks, reference)
        if scope and scope != "local":
            raise NotFoundError(f"network {reference} not found")
        endpoints = await self._endpoints(networks)
        return network_view(network, self.records.load(network.id), endpoints[network.id])

    async def create(self, body: Any) -> dict[str, Any]:
        request = parse_network_create(body)
        name = request.spec.name
        if any(network.name == name for network in await self.networks.list()):
            raise ConflictError(f"network with name {name} already exists")
        network_id = await self.networks.create(request.spec)
        self.records.save(network_id, {
            "Created": now_rfc3339(), "Attachable": request.attachable,
            "EnableIPv6": request.spec.ipv6, "Options": request.options,
            "IPAMOptions": request.ipam_options,
        })
        log.info("created network %s (%s)", name, network_id)
        return {"Id": network_id, "Warning": ""}

    async def remove(self, reference: str) -> None:
        networks = await self._all()
        network = find_network(networks, reference)
        if is_builtin(network):
            raise ForbiddenError(f"{network.name} is a pre-defined network and cannot be removed")
        endpoints = await self._endpoints(networks)
        if endpoints[network.id]:
            raise _active_endpoints(network)
        try:
            await self.networks.remove(network.name)
        except ForbiddenError:
            raise _active_endpoints(network) from None
        self.records.delete(network.id)
        log.info("removed network %s (%s)", network.name, network.id)

    async def prune(self, filters_raw: str | None) -> dict[str, Any]:
        """Remove the custom networks that no running container uses, as `docker network prune`."""
        filters = parse_filters(filters_raw, PRUNE_FILTERS)
        cutoff = until_cutoff(filters.get("until", []))
        networks = await self._all()
        endpoints = await self._endpoints(networks)
        deleted = []
        for network in networks:
            if is_builtin(network) or endpoints[network.id]:
                continue
            view = network_view(network, self.records.load(network.id), {})
            labels = view["Labels"]
            if filters.get("label") and not label_matches(labels, filters["label"]):
                continue
            if filters.get("label!") and any(label_matches(labels, [item])
                                             for item in filters["label!"]):
                continue
            created = parse_time(view["Created"])
            if cutoff is not None and (created is None or created.timestamp() >= cutoff):
                continue
            try:
                await self.networks.remove(network.name)
            except (ForbiddenError, NotFoundError) as exc:
                # A container started on it, or it went away, since the list was read.
                log.info("not pruning network %s: %s", network.name, exc.message)
                continue
            self.records.delete(network.id)
            deleted.append(network.name)
        return {"NetworksDeleted": deleted or None}

    async def connect(self, reference: str, body: Any) -> None:
        """Connect a container that is not running to a network (see container_networks)."""
        container = _container_reference(body, ("Container", "EndpointConfig"))
        network = find_network(await self._all(), reference)
        view = await self.containers.find(container)
        await container_networks.connect(self.containers, view, network.name,
                                         body.get("EndpointConfig"))

    async def disconnect(self, reference: str, body: Any) -> None:
        """Disconnect a container that is not running from a network."""
        container = _container_reference(body, ("Container", "Force"))
        expect(body.get("Force"), bool, "Force")
        network = find_network(await self._all(), reference)
        view = await self.containers.find(container)
        await container_networks.disconnect(self.containers, view, network.name)


def _active_endpoints(network: NativeNetwork) -> ForbiddenError:
    return ForbiddenError(f"error while removing network: network {network.name} id "
                          f"{network.id} has active endpoints")


def _container_reference(body: Any, fields: tuple[str, ...]) -> str:
    if not isinstance(body, dict):
        raise InvalidParameterError(
            f"invalid request body: expected a JSON object, got {describe(body)}")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise InvalidParameterError(f"unknown field {unknown[0]} in request body")
    container = expect(body.get("Container"), str, "Container")
    if not container:
        raise NoSuchContainerError("")
    return str(container)
