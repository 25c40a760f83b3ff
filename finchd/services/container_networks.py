"""Connecting and disconnecting containers and networks, as far as nerdctl allows.

nerdctl 2.0.3 cannot change the networks of a running container, but a
container that is not running joins the networks listed in its spec when it
next starts, so finchd edits that list for created and stopped containers.
"""

from __future__ import annotations

from typing import Any

from finchd.errors import ForbiddenError, InvalidParameterError, UnsupportedError
from finchd.services.container_spec import parse_endpoint
from finchd.services.containers import ContainerService
from finchd.specs import is_user_network

HOST_NETWORK_CONFLICT = "container cannot be disconnected from host network or connected to host network"
NONE_NETWORK_CONFLICT = ("container cannot be connected to multiple networks with one of the "
                         "networks in private (none) mode")
SHARED_NAMESPACE_CONFLICT = ("container sharing network namespace with another container or host "
                             "cannot be connected to any other network")


def _check_not_running(view: dict[str, Any], action: str, network: str) -> None:
    state = view["State"]
    if state["Running"] or state["Paused"] or state["Restarting"]:
        name = view["Name"].lstrip("/")
        raise UnsupportedError(
            f"cannot {action} running container {name} and network {network}: nerdctl 2.0.3 "
            "cannot change the networks of a running container; stop the container first")


def _network_mode(view: dict[str, Any]) -> str:
    return str(view["HostConfig"].get("NetworkMode") or "default")


async def connect(containers: ContainerService, view: dict[str, Any], network: str,
                  endpoint: Any) -> None:
    """Add a network to a container that is not running, with the endpoint's aliases."""
    aliases, ipv4, ipv6 = parse_endpoint(endpoint, "EndpointConfig", is_user_network(network))
    current = list(view["NetworkSettings"]["Networks"])
    mode = _network_mode(view)
    if current == ["none"] and mode != "none":
        # Disconnected from its last network, which nerdctl records as "none".
        current = []
    if network == "host" or mode == "host":
        raise InvalidParameterError(HOST_NETWORK_CONFLICT)
    if mode.startswith("container:"):
        raise InvalidParameterError(SHARED_NAMESPACE_CONFLICT)
    if network == "none" or mode == "none" or "none" in current:
        raise InvalidParameterError(NONE_NETWORK_CONFLICT)
    if network in current:
        raise ForbiddenError(
            f"endpoint with name {view['Name'].lstrip('/')} already exists in network {network}")
    _check_not_running(view, "connect", network)
    if ipv4 or ipv6:
        raise UnsupportedError(
            "a static IP address on an added network is not supported: nerdctl 2.0.3 "
            "assigns a requested address only through the container's first network")
    container_id = view["Id"]
    names = [*aliases, container_id[:12]] if is_user_network(network) else []
    await containers.containers.set_networks(container_id, [*current, network],
                                             add_names=names, remove_names=[])
    record = containers.records.load(container_id)
    networking = dict(record.get("NetworkingConfig") or {})
    endpoints = dict(networking.get("EndpointsConfig") or {})
    endpoints[network] = endpoint or {}
    networking["EndpointsConfig"] = endpoints
    record["NetworkingConfig"] = networking
    containers.records.save(container_id, record)


async def disconnect(containers: ContainerService, view: dict[str, Any], network: str) -> None:
    """Remove a network from a container that is not running, with its aliases there."""
    current = list(view["NetworkSettings"]["Networks"])
    if network == "host" or _network_mode(view) == "host":
        raise InvalidParameterError(HOST_NETWORK_CONFLICT)
    if network not in current:
        raise ForbiddenError(
            f"container {view['Id']} is not connected to the network {network}")
    _check_not_running(view, "disconnect", network)
    container_id = view["Id"]
    record = containers.records.load(container_id)
    networking = dict(record.get("NetworkingConfig") or {})
    endpoints = dict(networking.get("EndpointsConfig") or {})
    removed = endpoints.pop(network, None) or {}
    kept_aliases = {alias for other in endpoints.values()
                    for alias in (other or {}).get("Aliases") or []}
    names = [alias for alias in removed.get("Aliases") or [] if alias not in kept_aliases]
    remaining = [name for name in current if name != network] or ["none"]
    await containers.containers.set_networks(container_id, remaining, add_names=[],
                                             remove_names=names)
    networking["EndpointsConfig"] = endpoints
    record["NetworkingConfig"] = networking
    containers.records.save(container_id, record)
