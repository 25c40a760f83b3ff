"""Query string and body parsing with Docker's rules and 400s for bad input."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from finchd.errors import InvalidParameterError

TRUE_VALUES = {"1", "true", "True", "TRUE", "yes"}
FALSE_VALUES = {"", "0", "false", "False", "FALSE", "no"}


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """Parse a boolean query parameter as dockerd's BoolValue does."""
    value = request.query.get(name)
    if value is None:
        return default
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise InvalidParameterError(f"invalid value for {name}: {value!r}, expected a boolean")


def integer(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidParameterError(f"invalid value for {name}: {value!r}, expected an integer") from None


def terminal_size(request: web.Request) -> tuple[int, int]:
    """Return the (h, w) query values of a resize. Both are required, as with dockerd."""
    height = integer(request, "h")
    width = integer(request, "w")
    if height is None or width is None:
        raise InvalidParameterError("invalid terminal size: h and w are required")
    if not 0 <= height <= 65535 or not 0 <= width <= 65535:
        raise InvalidParameterError("invalid terminal size: h and w must be 0 to 65535")
    return height, width


async def json_body(request: web.Request, *, required: bool = True) -> Any:
    """Read a JSON request body (chunked or not) and return it decoded.

    A Content-Type other than JSON is a 400, as with dockerd. A missing one is
    accepted, because some clients send JSON without saying so.
    """
    content_type = request.headers.get("Content-Type", "")
    if content_type and request.content_type != "application/json":
        raise InvalidParameterError(
            f"unsupported Content-Type header ({content_type}): must be 'application/json'")
    raw = await request.read()
    if not raw.strip():
        if required:
            raise InvalidParameterError("invalid JSON: request body is empty")
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidParameterError(f"invalid JSON in request body: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidParameterError("invalid JSON in request body: not UTF-8") from exc
    except RecursionError as exc:
        raise InvalidParameterError("invalid JSON in request body: nested too deeply") from exc
