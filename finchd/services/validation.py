"""Type checks for request bodies, with messages that name the offending field."""

from __future__ import annotations

import re
import signal
from typing import Any

from finchd.errors import InvalidParameterError

# Signal names as dockerd's parser (moby/sys/signal) takes them, without "SIG":
# every Linux signal, and real-time ones as RTMIN+N or RTMAX-N with N up to 15.
SIGNAL_NAMES = frozenset(
    item.name.removeprefix("SIG") for item in signal.Signals
) | {"IOT", "CLD", "POLL"}
REALTIME_SIGNAL = re.compile(r"^RT(?:MIN\+|MAX-)([1-9]|1[0-5])$")
MAX_SIGNAL_NUMBER = 64

JSON_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
}


def expect(value: Any, kind: type, field: str, *, nullable: bool = True) -> Any:
    """Return value if it is of `kind` (or null when allowed), else raise 400."""
    if value is None and nullable:
        return None
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise InvalidParameterError(
        f"invalid type for {field}: expected {JSON_TYPE_NAMES[kind]}, got {describe(value)}"
    )


def describe(value: Any) -> str:
    """Name the JSON type of a decoded value, for error messages."""
    if value is None:
        return "null"
    for kind, name in JSON_TYPE_NAMES.items():
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return name.split(" ", 1)[1]
    return type(value).__name__


def string_list(value: Any, field: str) -> list[str] | None:
    """Accept a string or a list of strings, as Docker's StrSlice does."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise InvalidParameterError(
        f"invalid type for {field}: expected a string or a list of strings, "
        f"got {describe(value)}"
    )


def strict_string_list(value: Any, field: str) -> list[str] | None:
    """Accept only null or a list of strings."""
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise InvalidParameterError(
        f"invalid type for {field}: expected a list of strings, got {describe(value)}"
    )


def string_map(value: Any, field: str) -> dict[str, str] | None:
    """Accept null or an object whose values are all strings."""
    if value is None:
        return None
    if isinstance(value, dict) and all(isinstance(item, str) for item in value.values()):
        return dict(value)
    raise InvalidParameterError(
        f"invalid type for {field}: expected an object of strings, got {describe(value)}"
    )


def set_object(value: Any, field: str) -> list[str]:
    """Accept Docker's `{"key": {}}` sets (ExposedPorts, Volumes) and return the keys."""
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value)
    raise InvalidParameterError(
        f"invalid type for {field}: expected an object, got {describe(value)}"
    )


def is_empty(value: Any) -> bool:
    """Tell whether a field holds only its zero value, as Go's encoder sends it."""
    if value in (None, "", 0, False):
        return True
    if isinstance(value, list):
        return all(is_empty(item) for item in value)
    if isinstance(value, dict):
        return all(is_empty(item) for item in value.values())
    return False


def check_signal(value: str) -> None:
    """Raise dockerd's 400 unless value is a signal name (with or without SIG) or 1-64."""
    if value.isascii() and value.isdigit():
        if 1 <= int(value) <= MAX_SIGNAL_NUMBER:
            return
    else:
        name = value.upper().removeprefix("SIG")
        if name in SIGNAL_NAMES or REALTIME_SIGNAL.match(name):
            return
    raise InvalidParameterError(f"Invalid signal: {value}")


def check_console_size(value: Any) -> None:
    """Accept null or [height, width] of non-negative integers, as ConsoleSize is."""
    console = expect(value, list, "ConsoleSize")
    if console is not None and (len(console) != 2 or not all(
            isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 65535
            for item in console)):
        raise InvalidParameterError("invalid ConsoleSize: expected [height, width]")


def console_size(value: object) -> tuple[int, int] | None:
    """Return a ConsoleSize of [height, width] as a tuple, or None unless both are positive."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    height, width = value
    if not all(isinstance(item, int) and not isinstance(item, bool) and 0 < item <= 65535
               for item in (height, width)):
        return None
    return height, width
