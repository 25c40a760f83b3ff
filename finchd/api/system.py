"""Handlers for `/_ping`, `/version`, `/info` and `/events`."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from finchd.api.app import SERVICES, json_response, route
from finchd.api.streams import json_lines, write_json
from finchd.errors import EngineError
from finchd.services.events import EventFilters, EventService, parse_timestamp
from finchd.services.system import SystemService

log = logging.getLogger(__name__)


def _service(request: web.Request) -> SystemService:
    service: SystemService = request.app[SERVICES]["system"]
    return service


async def ping(request: web.Request) -> web.Response:
    """GET and HEAD /_ping"""
    headers = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}
    if request.method == "HEAD":
        return web.Response(headers={**headers, "Content-Type": "text/plain; charset=utf-8",
                                     "Content-Length": "0"})
    return web.Response(text="OK", headers=headers)


async def version(request: web.Request) -> web.Response:
    """GET /version"""
    return json_response(await _service(request).version())


async def info(request: web.Request) -> web.Response:
    """GET /info"""
    return json_response(await _service(request).info())


async def events(request: web.Request) -> web.StreamResponse:
    """GET /events: container events from now on, until `until` or until the client leaves."""
    service: EventService = request.app[SERVICES]["events"]
    filters = EventFilters.parse(request.query.get("filters"))
    # `since` only needs to be valid: containerd keeps no history to replay.
    parse_timestamp(request.query.get("since"), "since")
    until = parse_timestamp(request.query.get("until"), "until")
    response = await json_lines(request)
    # The client leaving cancels this handler (handler_cancellation in finchd.server),
    # which closes the stream and stops `nerdctl events`.
    timeout = None if until is None else max(0.0, until - time.time())
    try:
        async with asyncio.timeout(timeout):
            async for message in service.stream(filters, until):
                await write_json(response, message)
    except TimeoutError:
        pass
    except EngineError as exc:
        log.warning("the event stream ended: %s", exc)
    await response.write_eof()
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/events", events)
    route(router, "GET", "/_ping", ping)
    route(router, "HEAD", "/_ping", ping)
    route(router, "GET", "/version", version)
    route(router, "GET", "/info", info)
