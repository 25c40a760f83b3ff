"""Handlers for `/volumes/...`."""

from __future__ import annotations

from aiohttp import web

from finchd.api.app import SERVICES, json_response, request_version, route, version_tuple
from finchd.api.params import flag, json_body
from finchd.services.volumes import VolumeService


def _service(request: web.Request) -> VolumeService:
    service: VolumeService = request.app[SERVICES]["volumes"]
    return service


async def list_volumes(request: web.Request) -> web.Response:
    """GET /volumes"""
    return json_response(await _service(request).list_volumes(request.query.get("filters")))


async def inspect(request: web.Request) -> web.Response:
    """GET /volumes/{name}"""
    return json_response(await _service(request).inspect(request.match_info["name"]))


async def create(request: web.Request) -> web.Response:
    """POST /volumes/create: an empty body, as dockerd allows, creates an anonymous volume."""
    body = await json_body(request, required=False)
    version = version_tuple(request_version(request))
    return json_response(await _service(request).create(body, version), status=201)


async def remove(request: web.Request) -> web.Response:
    """DELETE /volumes/{name}"""
    await _service(request).remove(request.match_info["name"], flag(request, "force"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    """POST /volumes/prune"""
    version = version_tuple(request_version(request))
    return json_response(await _service(request).prune(request.query.get("filters"), version))


async def update(request: web.Request) -> web.Response:
    """PUT /volumes/{name}"""
    await _service(request).update(request.match_info["name"])
    return web.Response(status=200)


def add_routes(router: web.UrlDispatcher) -> None:
    # Names may contain "/" here, as in dockerd's routes, so that such a name gets
    # dockerd's "no such volume" and not "page not found".
    route(router, "GET", "/volumes", list_volumes)
    route(router, "POST", "/volumes/create", create)
    route(router, "POST", "/volumes/prune", prune)
    route(router, "GET", "/volumes/{name:.+}", inspect)
    route(router, "PUT", "/volumes/{name:.+}", update)
    route(router, "DELETE", "/volumes/{name:.+}", remove)
