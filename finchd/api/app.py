"""The aiohttp application: routing, version prefixes, headers, errors, logging."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from finchd import __version__
from finchd.errors import FinchdError, InvalidParameterError

log = logging.getLogger("finchd.access")

API_VERSION = "1.43"
MIN_API_VERSION = "1.35"
VERSION_PREFIX = r"{version:(?:v[^/]*/)?}"
SERVICES: web.AppKey[dict[str, Any]] = web.AppKey("services", dict)
HEALTH_TASK: web.AppKey[asyncio.Task[None]] = web.AppKey("health_task", asyncio.Task)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_request_ids = itertools.count(1)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def request_version(request: web.Request) -> str:
    """Return the API version of the request: its `/vX.Y` prefix or the newest."""
    prefix = request.match_info.get("version", "")
    return prefix[1:-1] if prefix else API_VERSION


def at_least(request: web.Request, version: str) -> bool:
    return version_tuple(request_version(request)) >= version_tuple(version)


def json_response(data: Any, status: int = 200) -> web.Response:
    """Return JSON with the bare `application/json` type that Docker clients compare to."""
    return web.Response(body=json.dumps(data).encode() + b"\n", status=status,
                        content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    if status == 304:
        return web.Response(status=304)
    return json_response({"message": message}, status=status)


def _check_version(request: web.Request) -> None:
    prefix = request.match_info.get("version", "")
    if not prefix:
        return
    text = prefix[1:-1]
    if not re.fullmatch(r"\d+\.\d+", text):
        raise InvalidParameterError(f"invalid API version {text!r}")
    if version_tuple(text) > version_tuple(API_VERSION):
        raise InvalidParameterError(
            f"client version {text} is too new. Maximum supported API version is {API_VERSION}"
        )
    if version_tuple(text) < version_tuple(MIN_API_VERSION):
        raise InvalidParameterError(
            f"client version {text} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )


def log_fields(request: web.Request, request_id: int) -> dict[str, Any]:
    """Return the structured log fields of a request: REQUEST_ID, and the container it names.

    A container path names the container by ID or by name as the client sent
    it, so a hexadecimal reference of 12 or more digits becomes CONTAINER_ID
    and anything else CONTAINER_NAME.
    """
    fields: dict[str, Any] = {"REQUEST_ID": request_id}
    reference = request.match_info.get("id")
    if reference and "/containers/" in request.path:
        if len(reference) >= 12 and all(char in "0123456789abcdef" for char in reference):
            fields["CONTAINER_ID"] = reference
        else:
            fields["CONTAINER_NAME"] = reference
    return fields


@web.middleware
async def docker_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the version prefix, map errors to Docker's body and log one line."""
    request_id = next(_request_ids)
    started = time.monotonic()
    status = 500
    try:
        _check_version(request)
        response = await handler(request)
        status = response.status
        return response
    except FinchdError as exc:
        status = exc.status
        if not exc.public:
            log.exception("request %d failed", request_id)
            return error_response(500, "internal server error")
        return error_response(exc.status, exc.message)
    except web.HTTPException as exc:
        status = exc.status
        if exc.status == 404:
            return error_response(404, "page not found")
        if exc.status == 405:
            return error_response(405, f"method {request.method} not allowed for {request.path}")
        return error_response(exc.status, exc.reason)
    except ConnectionError:
        # The client closed the connection mid-stream, so no response can be sent.
        status = 499
        return web.Response(status=499)
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client disconnects, and on shutdown.
        status = 499
        raise
    except Exception:
        log.exception("request %d %s %s failed", request_id, request.method, request.path)
        return error_response(500, "internal server error; see the finchd log")
    finally:
        log.info("%s %s %d %.1fms", request.method, request.path_qs, status,
                 (time.monotonic() - started) * 1000, extra=log_fields(request, request_id))


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["API-Version"] = API_VERSION
    response.headers["Server"] = f"Docker/24.0.9-finchd-{__version__} (linux)"
    response.headers["OSType"] = "linux"
    response.headers["Docker-Experimental"] = "false"
    response.headers["Builder-Version"] = "1"


def make_app(services: dict[str, Any],
             outer_middlewares: Sequence[Middleware] = ()) -> web.Application:
    """Build the application around a dict of services (containers, images, networks, volumes, system).

    `outer_middlewares` run before the Docker middleware and so see every request.
    """
    from finchd.api import archive, containers, exec, images, networks, system, volumes

    app = web.Application(middlewares=[*outer_middlewares, docker_middleware],
                          client_max_size=0)
    app[SERVICES] = services
    app.on_response_prepare.append(add_headers)
    app.on_startup.append(_resume_container_work)
    for module in (system, containers, exec, images, archive, networks, volumes):
        module.add_routes(app.router)
    return app


async def _resume_container_work(app: web.Application) -> None:
    containers = app[SERVICES].get("containers")
    if containers is not None:
        app[HEALTH_TASK] = asyncio.ensure_future(containers.resume())


def route(router: web.UrlDispatcher, method: str, path: str, handler: Handler) -> None:
    """Register a handler for a path with and without a `/vX.Y` prefix."""
    router.add_route(method, "/" + VERSION_PREFIX + path.lstrip("/"), handler)
