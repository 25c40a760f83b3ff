"""Handlers for `/images/...`."""

from __future__ import annotations

import base64
import json

from aiohttp import web

from finchd.api.app import SERVICES, json_response, route
from finchd.api.params import flag
from finchd.api.streams import json_lines, write_json
from finchd.errors import FinchdError, InvalidParameterError, UnsupportedError
from finchd.services.container_spec import check_platform
from finchd.services.images import ImageService


def _service(request: web.Request) -> ImageService:
    service: ImageService = request.app[SERVICES]["images"]
    return service


async def list_images(request: web.Request) -> web.Response:
    """GET /images/json"""
    result = await _service(request).list_images(all=flag(request, "all"),
                                          filters_raw=request.query.get("filters"))
    return json_response(result)


async def inspect(request: web.Request) -> web.Response:
    """GET /images/{name}/json"""
    return json_response(await _service(request).inspect(request.match_info["name"]))


async def tag(request: web.Request) -> web.Response:
    """POST /images/{name}/tag"""
    await _service(request).tag(request.match_info["name"], request.query.get("repo"),
                                request.query.get("tag"))
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    """DELETE /images/{name}"""
    items = await _service(request).remove(request.match_info["name"], force=flag(request, "force"))
    return json_response(items)


async def load(request: web.Request) -> web.StreamResponse:
    """POST /images/load: streams `Loaded image: NAME` messages."""
    flag(request, "quiet")  # Only progress is quiet; the loaded names are always sent.
    names = await _service(request).load(request.content.iter_chunked(1 << 20))
    response = await json_lines(request)
    for name in names:
        await write_json(response, {"stream": f"Loaded image: {name}\n"})
    await response.write_eof()
    return response


async def create(request: web.Request) -> web.StreamResponse:
    """POST /images/create: pull `fromImage`. Importing with `fromSrc` is not supported."""
    if request.query.get("fromSrc"):
        raise UnsupportedError("importing images with fromSrc is not supported by finchd")
    _check_auth_header(request)
    check_platform(request.query.get("platform"))
    messages = await _service(request).pull(request.query.get("fromImage", ""),
                                            request.query.get("tag"))
    first = await anext(messages)
    second = await anext(messages, None)
    if second is not None and "error" in second:
        # The pull failed before anything was written, so the response is a plain error, as with dockerd.
        status = 404 if "not found" in second["error"] else 500
        return json_response({"message": second["error"]}, status=status)
    response = await json_lines(request)
    await write_json(response, first)
    if second is not None:
        await write_json(response, second)
    try:
        async for message in messages:
            await write_json(response, message)
    except FinchdError as exc:
        await write_json(response, {"errorDetail": {"message": exc.message}, "error": exc.message})
    await response.write_eof()
    return response


def _check_auth_header(request: web.Request) -> None:
    header = request.headers.get("X-Registry-Auth")
    if not header:
        return
    try:
        padded = header + "=" * (-len(header) % 4)
        decoded = base64.urlsafe_b64decode(padded)
        if decoded.strip():
            json.loads(decoded)
    except (ValueError, json.JSONDecodeError):
        raise InvalidParameterError("invalid X-Registry-Auth header: not base64-encoded JSON") from None


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/images/json", list_images)
    route(router, "POST", "/images/load", load)
    route(router, "POST", "/images/create", create)
    route(router, "GET", "/images/{name:.+}/json", inspect)
    route(router, "POST", "/images/{name:.+}/tag", tag)
    route(router, "DELETE", "/images/{name:.+}", remove)
