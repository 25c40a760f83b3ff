"""Handlers for `/containers/...`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from finchd.api.app import SERVICES, json_response, at_least, route
from finchd.api.params import flag, integer, json_body, terminal_size
from finchd.api.streams import (
    MULTIPLEXED,
    RAW,
    frame,
    hijack,
    json_lines,
    send_headers_now,
    write_json,
)
from finchd.errors import InvalidParameterError
from finchd.services.container_admin import ContainerAdmin
from finchd.services.container_io import AttachSession
from finchd.services.container_spec import check_platform
from finchd.services.containers import ContainerService


def _service(request: web.Request) -> ContainerService:
    service: ContainerService = request.app[SERVICES]["containers"]
    return service


def _id(request: web.Request) -> str:
    return request.match_info["id"]


async def create(request: web.Request) -> web.Response:
    """POST /containers/create"""
    body = await json_body(request)
    name = request.query.get("name")
    check_platform(request.query.get("platform"))
    result = await _service(request).create(body, name)
    return json_response(result, status=201)


async def inspect(request: web.Request) -> web.Response:
    """GET /containers/{id}/json"""
    view = await _service(request).find(_id(request))
    if flag(request, "size"):
        view["SizeRw"] = 0
        view["SizeRootFs"] = 0
    return json_response(view)


async def list_containers(request: web.Request) -> web.Response:
    """GET /containers/json"""
    result = await _service(request).list_containers(
        all=flag(request, "all"), limit=integer(request, "limit"),
        size=flag(request, "size"), filters_raw=request.query.get("filters"),
    )
    return json_response(result)


async def start(request: web.Request) -> web.Response:
    """POST /containers/{id}/start"""
    if request.query.get("checkpoint"):
        raise InvalidParameterError("checkpoints are not supported by finchd")
    await _service(request).start(_id(request))
    return web.Response(status=204)


def _stop_options(request: web.Request) -> tuple[int | None, str | None]:
    timeout = integer(request, "t")
    if timeout is not None and timeout < -1:
        raise InvalidParameterError(f"invalid value for t: {timeout}")
    return timeout, request.query.get("signal") or None


async def stop(request: web.Request) -> web.Response:
    """POST /containers/{id}/stop"""
    timeout, signal = _stop_options(request)
    await _service(request).stop(_id(request), timeout, signal)
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    """POST /containers/{id}/restart"""
    timeout, signal = _stop_options(request)
    await _service(request).restart(_id(request), timeout, signal)
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    """POST /containers/{id}/kill"""
    await _service(request).kill(_id(request), request.query.get("signal") or "SIGKILL")
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    """DELETE /containers/{id}"""
    if flag(request, "link"):
        raise InvalidParameterError("links are not supported by finchd")
    await _service(request).remove(_id(request), force=flag(request, "force"),
                                   volumes=flag(request, "v"))
    return web.Response(status=204)


async def wait(request: web.Request) -> web.StreamResponse:
    """POST /containers/{id}/wait. Headers go out at once; the body when the wait ends."""
    service = _service(request)
    condition = request.query.get("condition") or "not-running"
    await service.find(_id(request))
    waiter = asyncio.ensure_future(service.wait(_id(request), condition))
    try:
        await asyncio.wait_for(asyncio.shield(waiter), timeout=0.05)
    except TimeoutError:
        pass
    if waiter.done():
        return json_response({"StatusCode": waiter.result(), "Error": None})
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    send_headers_now(response)
    try:
        code = await waiter
        body: dict[str, Any] = {"StatusCode": code, "Error": None}
    except Exception as exc:  # noqa: BLE001 - reported inside the started response
        message = getattr(exc, "message", None) or str(exc)
        body = {"StatusCode": -1, "Error": {"Message": message}}
    await response.write(json.dumps(body).encode() + b"\n")
    await response.write_eof()
    return response


async def logs(request: web.Request) -> web.StreamResponse:
    """GET /containers/{id}/logs"""
    service = _service(request)
    view = await service.find(_id(request))
    tty = bool(view["Config"].get("Tty"))
    chunks = service.io.logs(
        view["Id"], follow=flag(request, "follow"), timestamps=flag(request, "timestamps"),
        since=request.query.get("since"), until=request.query.get("until"),
        tail=request.query.get("tail"), stdout=flag(request, "stdout"),
        stderr=flag(request, "stderr"),
    )
    first = await anext(chunks, None)
    multiplexed = not tty and at_least(request, "1.42")
    response = web.StreamResponse(headers={"Content-Type": MULTIPLEXED if multiplexed else RAW})
    await response.prepare(request)
    send_headers_now(response)
    if first is None:
        await response.write_eof()
        return response
    await response.write(frame(*first) if not tty else first[1])
    async for stream, data in chunks:
        await response.write(frame(stream, data) if not tty else data)
    await response.write_eof()
    return response


async def attach(request: web.Request) -> web.StreamResponse:
    """POST /containers/{id}/attach: switches protocols (101) and streams over the raw socket."""
    service = _service(request)
    # Read every query flag first: after the 101 response no error can reach the client.
    want_stdin, want_stdout, want_stderr = (flag(request, "stdin"), flag(request, "stdout"),
                                            flag(request, "stderr"))
    want_logs, want_stream = flag(request, "logs"), flag(request, "stream")
    view = await service.find(_id(request))
    tty = bool(view["Config"].get("Tty"))
    # Non-TTY output is framed at every version; only the declared type changed in 1.42.
    multiplexed = not tty and at_least(request, "1.42")
    use_frames = not tty
    response, connection = await hijack(request, MULTIPLEXED if multiplexed else RAW)

    async def write(stream: int, data: bytes) -> None:
        await connection.write(frame(stream, data) if use_frames else data)

    session = AttachSession(
        write=write,
        stdin=connection.reader if want_stdin else None,
        stdout=want_stdout, stderr=want_stderr,
    )
    try:
        await service.attach(view, session, logs=want_logs, stream=want_stream)
        closed = asyncio.ensure_future(connection.closed.wait())
        done = asyncio.ensure_future(session.done.wait())
        await asyncio.wait({closed, done}, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        done.cancel()
    finally:
        # Marks the session finished, so whatever feeds it stops too.
        session.done.set()
        connection.close()
    return response


async def resize(request: web.Request) -> web.Response:
    """POST /containers/{id}/resize"""
    height, width = terminal_size(request)
    view = await _service(request).find(_id(request))
    _service(request).io.resize(view["Id"], height, width)
    return web.Response(status=200)


def _admin(request: web.Request) -> ContainerAdmin:
    service: ContainerAdmin = request.app[SERVICES]["container_admin"]
    return service


async def stats(request: web.Request) -> web.StreamResponse:
    """GET /containers/{id}/stats. Measured from /proc; see finchd/services/procfs.py."""
    stream = flag(request, "stream", default=True)
    samples = await _admin(request).stats(_id(request), stream=stream,
                                          one_shot=flag(request, "one-shot"))
    if not stream:
        sample = await anext(samples)
        return json_response(sample)
    response = await json_lines(request)
    async for sample in samples:
        await write_json(response, sample)
    return response


async def top(request: web.Request) -> web.Response:
    """GET /containers/{id}/top"""
    return json_response(await _admin(request).top(_id(request), request.query.get("ps_args")))


async def rename(request: web.Request) -> web.Response:
    """POST /containers/{id}/rename"""
    await _admin(request).rename(_id(request), request.query.get("name"))
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    """POST /containers/{id}/pause"""
    await _admin(request).pause(_id(request))
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    """POST /containers/{id}/unpause"""
    await _admin(request).unpause(_id(request))
    return web.Response(status=204)


async def update(request: web.Request) -> web.Response:
    """POST /containers/{id}/update"""
    warnings = await _admin(request).update(_id(request), await json_body(request))
    return json_response({"Warnings": warnings})


async def prune(request: web.Request) -> web.Response:
    """POST /containers/prune"""
    return json_response(await _admin(request).prune(request.query.get("filters")))


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "POST", "/containers/create", create)
    route(router, "GET", "/containers/json", list_containers)
    route(router, "GET", "/containers/{id}/json", inspect)
    route(router, "POST", "/containers/{id}/start", start)
    route(router, "POST", "/containers/{id}/stop", stop)
    route(router, "POST", "/containers/{id}/restart", restart)
    route(router, "POST", "/containers/{id}/kill", kill)
    route(router, "POST", "/containers/{id}/wait", wait)
    route(router, "DELETE", "/containers/{id}", remove)
    route(router, "GET", "/containers/{id}/logs", logs)
    route(router, "POST", "/containers/{id}/attach", attach)
    route(router, "POST", "/containers/{id}/resize", resize)
    route(router, "GET", "/containers/{id}/stats", stats)
    route(router, "GET", "/containers/{id}/top", top)
    route(router, "POST", "/containers/{id}/rename", rename)
    route(router, "POST", "/containers/{id}/pause", pause)
    route(router, "POST", "/containers/{id}/unpause", unpause)
    route(router, "POST", "/containers/{id}/update", update)
    route(router, "POST", "/containers/prune", prune)
