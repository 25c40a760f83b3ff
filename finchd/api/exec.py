"""Handlers for `/containers/{id}/exec` and `/exec/...`."""

from __future__ import annotations

import asyncio

from aiohttp import web

from finchd.api.app import SERVICES, at_least, json_response, route
from finchd.api.params import json_body, terminal_size
from finchd.api.streams import MULTIPLEXED, RAW, frame, hijack
from finchd.errors import InvalidParameterError
from finchd.services.container_io import AttachSession
from finchd.services.exec import ExecService
from finchd.services.validation import check_console_size, expect


def _service(request: web.Request) -> ExecService:
    service: ExecService = request.app[SERVICES]["exec"]
    return service


async def create(request: web.Request) -> web.Response:
    """POST /containers/{id}/exec"""
    body = await json_body(request)
    exec_id = await _service(request).create(request.match_info["id"], body)
    return json_response({"Id": exec_id}, status=201)


async def start(request: web.Request) -> web.StreamResponse:
    """POST /exec/{id}/start. The body is read before the hijack, so it never reaches stdin."""
    service = _service(request)
    body = await json_body(request, required=False)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidParameterError("invalid exec start config: expected a JSON object")
    detach = bool(expect(body.get("Detach"), bool, "Detach"))
    tty = bool(expect(body.get("Tty"), bool, "Tty"))
    check_console_size(body.get("ConsoleSize"))
    instance = await service.check_startable(request.match_info["id"])
    if body.get("ConsoleSize"):
        height, width = body["ConsoleSize"]
        service.resize(instance.id, height, width)
    if detach:
        await service.start(instance.id, detach=True, tty=tty, session=None)
        return web.Response(status=200)
    tty = tty or bool(instance.config.get("Tty"))
    multiplexed = not tty and at_least(request, "1.42")
    response, connection = await hijack(request, MULTIPLEXED if multiplexed else RAW)

    async def write(stream: int, data: bytes) -> None:
        await connection.write(data if tty else frame(stream, data))

    session = AttachSession(
        write=write,
        stdin=connection.reader if instance.config.get("AttachStdin") else None,
        stdout=bool(instance.config.get("AttachStdout", True)),
        stderr=bool(instance.config.get("AttachStderr", True)),
    )
    # A client that goes away leaves the process running, as with dockerd; its exit
    # code is still recorded for /exec/{id}/json.
    started = asyncio.ensure_future(
        service.start(instance.id, detach=False, tty=tty, session=session))
    closed = asyncio.ensure_future(connection.closed.wait())
    try:
        await asyncio.wait({started, closed}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            started.result()
            await asyncio.wait_for(session.done.wait(), timeout=5)
    except TimeoutError:
        pass
    finally:
        closed.cancel()
        session.done.set()
        connection.close()
    return response


async def resize(request: web.Request) -> web.Response:
    """POST /exec/{id}/resize"""
    height, width = terminal_size(request)
    _service(request).resize(request.match_info["id"], height, width)
    return web.Response(status=200)


async def inspect(request: web.Request) -> web.Response:
    """GET /exec/{id}/json"""
    return json_response(_service(request).inspect(request.match_info["id"]))


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "POST", "/containers/{id}/exec", create)
    route(router, "POST", "/exec/{id}/start", start)
    route(router, "POST", "/exec/{id}/resize", resize)
    route(router, "GET", "/exec/{id}/json", inspect)
