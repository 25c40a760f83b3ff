"""Handlers for `/containers/{id}/archive`, `/containers/{id}/export` and `/containers/{id}/changes`."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from finchd.api.app import SERVICES, json_response, route
from finchd.api.params import flag
from finchd.api.streams import send_headers_now
from finchd.errors import InvalidParameterError
from finchd.services.archive import ArchiveService

log = logging.getLogger(__name__)

TAR = "application/x-tar"
STAT_HEADER = "X-Docker-Container-Path-Stat"
BODY_CHUNK = 1 << 16


def _service(request: web.Request) -> ArchiveService:
    service: ArchiveService = request.app[SERVICES]["archive"]
    return service


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidParameterError("bad parameter: path cannot be empty")
    return path


def _stat_header(stat: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(stat).encode()).decode()


async def _send_stream(request: web.Request, response: web.StreamResponse,
                       chunks: AsyncIterator[bytes]) -> web.StreamResponse:
    """Stream chunks as the body. A failure after the headers went out cuts the
    connection, so the client sees a truncated body rather than a complete one."""
    await response.prepare(request)
    send_headers_now(response)
    try:
        async for chunk in chunks:
            await response.write(chunk)
    except ConnectionError:
        raise
    except Exception:
        log.exception("%s %s failed after the response started", request.method, request.path)
        if request.transport is not None:
            request.transport.abort()
        return response
    finally:
        # Closing the stream stops the helper at once if the client left mid-stream.
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    await response.write_eof()
    return response


async def stat_path(request: web.Request) -> web.Response:
    """HEAD /containers/{id}/archive"""
    stat = await _service(request).stat(request.match_info["id"], _path(request))
    return web.Response(status=200, headers={STAT_HEADER: _stat_header(stat)})


async def get_archive(request: web.Request) -> web.StreamResponse:
    """GET /containers/{id}/archive"""
    stat, chunks = await _service(request).get(request.match_info["id"], _path(request))
    response = web.StreamResponse(headers={"Content-Type": TAR, STAT_HEADER: _stat_header(stat)})
    return await _send_stream(request, response, chunks)


async def put_archive(request: web.Request) -> web.Response:
    """PUT /containers/{id}/archive"""
    await _service(request).put(
        request.match_info["id"], _path(request),
        request.content.iter_chunked(BODY_CHUNK),
        no_overwrite_dir_non_dir=flag(request, "noOverwriteDirNonDir"),
        copy_uid_gid=flag(request, "copyUIDGID"),
    )
    return web.Response(status=200)


async def export(request: web.Request) -> web.StreamResponse:
    """GET /containers/{id}/export"""
    chunks = await _service(request).export(request.match_info["id"])
    response = web.StreamResponse(headers={"Content-Type": TAR})
    return await _send_stream(request, response, chunks)


async def changes(request: web.Request) -> web.Response:
    """GET /containers/{id}/changes"""
    return json_response(await _service(request).changes(request.match_info["id"]))


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "HEAD", "/containers/{id}/archive", stat_path)
    route(router, "GET", "/containers/{id}/archive", get_archive)
    route(router, "PUT", "/containers/{id}/archive", put_archive)
    route(router, "GET", "/containers/{id}/export", export)
    route(router, "GET", "/containers/{id}/changes", changes)
