"""Checked request shapes passed from the services to the nerdctl adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PREDEFINED_NETWORKS = ("default", "bridge", "host", "none")


@dataclass
class PortBinding:
    container_port: str
    protocol: str
    host_ip: str
    host_port: str


@dataclass
class Mount:
    """One entry of HostConfig.Mounts."""

    type: str
    target: str
    source: str = ""
    read_only: bool = False
    propagation: str = ""
    tmpfs_size: int = 0
    tmpfs_mode: int = 0


@dataclass
class CreateSpec:
    """A checked container create request, in Docker's terms."""

    name: str | None
    image: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    networking_config: dict[str, Any]
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    binds: list[str] = field(default_factory=list)
    ports: list[PortBinding] = field(default_factory=list)
    network: str = "bridge"
    restart: str = "no"
    mounts: list[Mount] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    publish_all: list[str] = field(default_factory=list)
    ipv4_address: str = ""
    ipv6_address: str = ""
    aliases: list[str] = field(default_factory=list)
    console_size: tuple[int, int] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def on_user_network(self) -> bool:
        """True when the container joins a user-defined network, where Docker resolves aliases."""
        return is_user_network(self.network)


def is_user_network(name: str) -> bool:
    """Return whether a network name is user-defined, not one of Docker's predefined modes."""
    return name not in PREDEFINED_NETWORKS and not name.startswith("container:")
