"""nerdctl argv and output parsing for networks."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

from finchd.errors import (
    ConflictError,
    EngineError,
    ForbiddenError,
    InvalidParameterError,
    NotFoundError,
)
from finchd.nerdctl.runner import Runner

# nerdctl marks the network it creates as its default one with this label.
DEFAULT_NETWORK_LABEL = "nerdctl/default-network"


@dataclass
class NetworkCreateSpec:
    """A checked network create request, in nerdctl's terms."""

    name: str
    driver: str = "bridge"
    subnets: list[str] = field(default_factory=list)
    gateway: str = ""
    ip_range: str = ""
    ipv6: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class IPAMRange:
    """One range of a CNI host-local IPAM configuration."""

    subnet: str
    gateway: str = ""
    ip_range: str = ""


@dataclass
class NativeNetwork:
    """A CNI network as nerdctl stores it, reduced to what Docker's Network object shows."""

    name: str
    id: str
    driver: str
    labels: dict[str, str]
    ranges: list[IPAMRange]
    file: str = ""
    created: float | None = None
    ipv6: bool = False
    bridge: str = ""
    ip_masquerade: bool | None = None
    mtu: int = 0
    parent: str = ""
    mode: str = ""


def parse_native(item: Any) -> NativeNetwork | None:
    """Parse one entry of `nerdctl network inspect --mode=native`, or None if it is not one."""
    if not isinstance(item, dict):
        return None
    cni = item.get("CNI")
    if not isinstance(cni, dict) or not isinstance(cni.get("name"), str):
        return None
    plugins = [plugin for plugin in cni.get("plugins") or [] if isinstance(plugin, dict)]
    main = plugins[0] if plugins else {}
    labels = item.get("NerdctlLabels") or cni.get("nerdctlLabels") or {}
    network = NativeNetwork(
        name=cni["name"],
        id=str(item.get("NerdctlID") or cni.get("nerdctlID") or ""),
        driver=str(main.get("type") or ""),
        labels={str(key): str(value) for key, value in labels.items()} if isinstance(labels, dict) else {},
        ranges=_ranges(main.get("ipam")),
        file=str(item.get("File") or ""),
        ipv6=bool((main.get("capabilities") or {}).get("ips")),
        bridge=str(main.get("bridge") or ""),
        mtu=int(main.get("mtu") or 0),
        parent=str(main.get("master") or ""),
        mode=str(main.get("mode") or ""),
    )
    if network.driver == "bridge":
        network.ip_masquerade = bool(main.get("ipMasq"))
    return network


def _ranges(ipam: Any) -> list[IPAMRange]:
    """Return the first range of each range set of a host-local IPAM configuration."""
    if not isinstance(ipam, dict):
        return []
    ranges = []
    for range_set in ipam.get("ranges") or []:
        if not isinstance(range_set, list) or not range_set or not isinstance(range_set[0], dict):
            continue
        first = range_set[0]
        ranges.append(IPAMRange(subnet=str(first.get("subnet") or ""),
                                gateway=str(first.get("gateway") or ""),
                                ip_range=str(first.get("ipRange") or "")))
    return ranges


def parse_list(stdout: bytes) -> list[str]:
    """Return the names in `nerdctl network ls --format '{{json .}}'` output."""
    names = []
    for line in stdout.decode(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("Name"), str):
            names.append(row["Name"])
    return names


def create_args(spec: NetworkCreateSpec) -> list[str]:
    """Build the argv of `nerdctl network create` for a checked spec."""
    args = ["network", "create", f"--driver={spec.driver}"]
    args += [f"--subnet={subnet}" for subnet in spec.subnets]
    if spec.gateway:
        args.append(f"--gateway={spec.gateway}")
    if spec.ip_range:
        args.append(f"--ip-range={spec.ip_range}")
    if spec.ipv6:
        args.append("--ipv6")
    args += [f"--opt={key}={value}" for key, value in spec.options.items()]
    args += [f"--label={key}={value}" for key, value in spec.labels.items()]
    return [*args, "--", spec.name]


def create_error(message: str, name: str) -> Exception:
    """Map a failed `nerdctl network create` to the error dockerd returns for the same cause."""
    if "already exists" in message:
        return ConflictError(f"network with name {name} already exists")
    if "overlaps with other one" in message:
        return ForbiddenError("Pool overlaps with other one on this address space")
    if "could not find free subnet" in message or "no more subnets left" in message:
        return ForbiddenError(
            "could not find an available, non-overlapping IPv4 address pool among the defaults "
            "to assign to the network")
    for words in ("failed to parse", "no matching subnet", "unexpected subnet", "unsupported",
                  "unknown", "invalid"):
        if words in message:
            return InvalidParameterError(message)
    return EngineError(message)


class Networks:
    """nerdctl's network commands."""

    def __init__(self, runner: Runner):
        self.runner = runner
        self._gateways: dict[str, str] | None = None
        self._ids: dict[str, str] | None = None

    async def exists(self, name: str) -> bool:
        result = await self.runner.run(["network", "inspect", "--", name], check=False)
        return result.returncode == 0

    async def list(self) -> list[NativeNetwork]:
        """Return every CNI network that nerdctl lists, without the pseudo-networks host and none."""
        listed = await self.runner.run(["network", "ls", "--format={{json .}}"])
        names = [name for name in parse_list(listed.stdout) if name not in ("host", "none")]
        if not names:
            return []
        result = await self.runner.run(["network", "inspect", "--mode=native", "--", *names],
                                       check=False)
        try:
            items = json.loads(result.stdout or b"[]")
        except json.JSONDecodeError as exc:
            raise EngineError(f"cannot parse nerdctl network inspect output: {exc}") from exc
        networks = [network for network in map(parse_native, items or []) if network is not None]
        for network in networks:
            network.created = _modified_time(network.file)
        self._gateways = _gateway_map(networks)
        self._ids = {network.name: network.id for network in networks}
        return networks

    async def create(self, spec: NetworkCreateSpec) -> str:
        """Create a network and return its ID."""
        result = await self.runner.run(create_args(spec), check=False)
        self._gateways = self._ids = None
        if result.returncode != 0:
            raise create_error(result.error_text or "nerdctl network create failed", spec.name)
        lines = result.stdout.decode(errors="replace").split()
        return lines[-1] if lines else ""

    async def remove(self, name: str) -> None:
        """Remove a network by its exact name."""
        result = await self.runner.run(["network", "rm", "--", name], check=False)
        self._gateways = self._ids = None
        if result.returncode == 0:
            return
        text = result.stderr.decode(errors="replace")
        if "is in use by container" in text:
            raise ForbiddenError(f"network {name} is in use by a running container")
        if "no network found" in text:
            raise NotFoundError(f"network {name} not found")
        raise EngineError(result.error_text or f"nerdctl network rm {name} failed")

    async def subnets(self, name: str) -> Sequence[str] | None:
        """Return the subnets of a network, or None when nerdctl lists no such network."""
        for network in await self.list():
            if network.name == name:
                return [ipam_range.subnet for ipam_range in network.ranges]
        return None

    async def gateways(self) -> dict[str, str]:
        """Return each network's IPv4 gateway by name, kept until a network is created or removed."""
        return (await self._address_maps())[0]

    async def ids(self) -> dict[str, str]:
        """Return each network's ID by name, kept until a network is created or removed."""
        return (await self._address_maps())[1]

    async def _address_maps(self) -> tuple[dict[str, str], dict[str, str]]:
        if self._gateways is None or self._ids is None:
            try:
                await self.list()
            except EngineError:
                return {}, {}
        return self._gateways or {}, self._ids or {}


def _gateway_map(networks: list[NativeNetwork]) -> dict[str, str]:
    gateways: dict[str, str] = {}
    for network in networks:
        for ipam_range in network.ranges:
            if "." in ipam_range.gateway:
                gateways.setdefault(network.name, ipam_range.gateway)
    return gateways


def _modified_time(path: str) -> float | None:
    """Return the modification time of a network's CNI configuration file.

    nerdctl writes the file once when it creates the network and records no
    creation time of its own, so the file's time is the network's creation time.
    """
    if not path:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None
