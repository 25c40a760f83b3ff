"""Checked request shapes passed from the services to the nerdctl adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    warnings: list[str] = field(default_factory=list)
