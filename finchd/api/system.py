"""Handlers for `/_ping`, `/version` and `/info`."""

from __future__ import annotations

from aiohttp import web

from finchd.api.app import SERVICES, json_response, route
from finchd.services.system import SystemService


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


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/_ping", ping)
    route(router, "HEAD", "/_ping", ping)
    route(router, "GET", "/version", version)
    route(router, "GET", "/info", info)
