"""Handlers for `/networks/...`."""

from __future__ import annotations

from aiohttp import web

from finchd.api.app import SERVICES, json_response, route
from finchd.api.params import flag, json_body
from finchd.services.networks import NetworkService


def _service(request: web.Request) -> NetworkService:
    service: NetworkService = request.app[SERVICES]["networks"]
    return service


async def list_networks(request: web.Request) -> web.Response:
    """GET /networks"""
    return json_response(await _service(request).list_networks(request.query.get("filters")))


async def inspect(request: web.Request) -> web.Response:
    """GET /networks/{id}: `verbose` only adds swarm details, so it is checked and not used."""
    flag(request, "verbose")
    result = await _service(request).inspect(request.match_info["id"], request.query.get("scope"))
    return json_response(result)


async def create(request: web.Request) -> web.Response:
    """POST /networks/create"""
    result = await _service(request).create(await json_body(request))
    return json_response(result, status=201)


async def remove(request: web.Request) -> web.Response:
    """DELETE /networks/{id}"""
    await _service(request).remove(request.match_info["id"])
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    """POST /networks/prune"""
    return json_response(await _service(request).prune(request.query.get("filters")))


async def connect(request: web.Request) -> web.Response:
    """POST /networks/{id}/connect"""
    await _service(request).connect(request.match_info["id"], await json_body(request))
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    """POST /networks/{id}/disconnect"""
    await _service(request).disconnect(request.match_info["id"], await json_body(request))
    return web.Response(status=200)


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/networks", list_networks)
    route(router, "POST", "/networks/create", create)
    route(router, "POST", "/networks/prune", prune)
    route(router, "GET", "/networks/{id}", inspect)
    route(router, "DELETE", "/networks/{id}", remove)
    route(router, "POST", "/networks/{id}/connect", connect)
    route(router, "POST", "/networks/{id}/disconnect", disconnect)
