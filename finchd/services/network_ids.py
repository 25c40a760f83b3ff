"""IDs that nerdctl does not give: of the pseudo-networks and of endpoints."""

from __future__ import annotations

import hashlib


def pseudo_network_id(name: str) -> str:
    """Return a stable 64-hex ID for a pseudo-network, which nerdctl gives no ID."""
    return hashlib.sha256(f"finchd network {name}".encode()).hexdigest()


def endpoint_id(network_id: str, container_id: str) -> str:
    """Return a stable 64-hex ID for a container's endpoint on a network."""
    return hashlib.sha256(f"{network_id}/{container_id}".encode()).hexdigest()
