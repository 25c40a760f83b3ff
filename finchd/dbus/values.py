"""Conversion of `/info` into the D-Bus `a{sv}` that GetInfo returns."""

from __future__ import annotations

import json
from typing import Any

from dbus_next.signature import Variant


def flatten_info(info: dict[str, Any], prefix: str = "") -> dict[str, Variant]:
    """Flatten a `/info` document into `a{sv}`.

    Nested objects become dotted keys (`Swarm.LocalNodeState`). Strings map to
    `s`, booleans to `b`, integers to `x`, floats to `d`, lists of strings to
    `as` and lists of string lists to `aas`. Other lists are sent as their JSON
    text (`s`). Nulls have no D-Bus type and are left out, as are empty objects.
    """
    flat: dict[str, Variant] = {}
    for key, value in info.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_info(value, name + "."))
            continue
        variant = to_variant(value)
        if variant is not None:
            flat[name] = variant
    return flat


def to_variant(value: Any) -> Variant | None:
    """Return `value` as a Variant, or None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int):
        return Variant("x", value)
    if isinstance(value, float):
        return Variant("d", value)
    if isinstance(value, str):
        return Variant("s", value)
    if isinstance(value, (list, tuple)):
        return _list_variant(list(value))
    return Variant("s", json.dumps(value, default=str))


def _list_variant(items: list[Any]) -> Variant:
    if all(isinstance(item, str) for item in items):
        return Variant("as", items)
    if all(
        isinstance(item, (list, tuple)) and all(isinstance(part, str) for part in item)
        for item in items
    ):
        return Variant("aas", [list(item) for item in items])
    return Variant("s", json.dumps(items, default=str))
