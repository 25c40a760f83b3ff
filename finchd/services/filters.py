"""Docker's `filters` query parameter, in its map and legacy list encodings."""

from __future__ import annotations

import json
import re
import time

from finchd.errors import InvalidParameterError
from finchd.services.timefmt import parse_time

Filters = dict[str, list[str]]
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$", re.ASCII)
DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_filters(raw: str | None, allowed: set[str]) -> Filters:
    """Decode `{"key": {"value": true}}` or `{"key": ["value"]}` into key → values."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidParameterError(f"invalid filter: {exc}") from exc
    if data is None:
        # dockerd reads `null` as no filter at all.
        return {}
    if not isinstance(data, dict):
        raise InvalidParameterError("invalid filter: expected a JSON object")
    result: Filters = {}
    for key, values in data.items():
        if key not in allowed:
            raise InvalidParameterError(f"invalid filter '{key}'")
        if isinstance(values, dict):
            result[key] = [value for value, enabled in values.items() if enabled]
        elif isinstance(values, list) and all(isinstance(value, str) for value in values):
            result[key] = list(values)
        else:
            raise InvalidParameterError(f"invalid filter '{key}': expected a list or an object")
    return result


def label_matches(labels: dict[str, str], expected: list[str]) -> bool:
    """Return whether labels satisfy every `key` or `key=value` in expected."""
    for item in expected:
        key, has_value, value = item.partition("=")
        if key not in labels:
            return False
        if has_value and labels[key] != value:
            return False
    return True


def until_cutoff(values: list[str]) -> float | None:
    """Parse prune's `until`: a Unix time, an RFC 3339 time or a Go duration before now."""
    if not values:
        return None
    value = values[-1]
    match = DURATION.match(value)
    if match:
        return time.time() - float(match.group(1)) * DURATION_SECONDS[match.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    parsed = parse_time(value)
    if parsed is None:
        raise InvalidParameterError(f"invalid filter 'until={value}'")
    return parsed.timestamp()


def name_matches(pattern: str, name: str) -> bool:
    """Match as dockerd's name filters do: the exact name, else a regular expression search."""
    if pattern == name:
        return True
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False
