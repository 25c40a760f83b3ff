"""Container file system access: archive stat, get and put, export and changes."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from finchd.errors import (
    ConflictError,
    EngineError,
    FinchdError,
    ForbiddenError,
    InvalidParameterError,
    NotFoundError,
)
from finchd.nerdctl.archive import ContainerFiles, HelperProcess
from finchd.services.containers import ContainerService

log = logging.getLogger(__name__)

CHANGE_KINDS = {"C": 0, "A": 1, "D": 2}

# Files that nerdctl bind-mounts into every container, so runc creates their
# mount points in the container's layer. Docker keeps them in an init layer
# below the container's layer, so `docker diff` does not list them.
RUNTIME_FILES = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]


@dataclass
class Target:
    """The root that the helper enters, and the scratch folders to remove afterwards."""

    root: dict[str, Any]
    scratch: list[str] = field(default_factory=list)

    def remove_scratch(self) -> None:
        for folder in self.scratch:
            try:
                os.rmdir(folder)
            except OSError as exc:
                log.warning("cannot remove the mount point %s: %s", folder, exc)


class ArchiveService:
    """Docker's archive, export and changes semantics on top of the archive helper."""

    def __init__(self, containers: ContainerService, files: ContainerFiles):
        self.containers = containers
        self.files = files

    async def _target(self, reference: str, operation: str) -> Target:
        view = await self.containers.find(reference)
        container_id = view["Id"]
        native = await self.files.inspect_native(container_id)
        snapshotter = native.get("Snapshotter") or ""
        key = native.get("SnapshotKey") or ""
        if not snapshotter or not key:
            raise EngineError(f"container {reference} has no snapshot")
        mounts = await self.files.snapshot_mounts(snapshotter, key)
        state = view.get("State") or {}
        pid = int(state.get("Pid") or 0)
        if operation == "changes":
            return Target({"mounts": mounts})
        if state.get("Running") and pid > 0 and operation != "export":
            return Target({"pid": pid, "upperdir": _upperdir(mounts)})
        spec = native.get("Spec") or {}
        scratch = tempfile.mkdtemp(prefix="root-", dir=self.files.scratch_directory())
        root = {
            "mounts": mounts,
            "view": "layers" if operation == "export" else "container",
            "binds": _binds(spec),
            "readonly": bool((spec.get("root") or {}).get("readonly")),
            "writable": operation == "put",
            "mountpoint": scratch,
        }
        return Target(root, [scratch])

    async def _start(self, reference: str, operation: str, config: dict[str, Any], *,
                     stdin: bool = False) -> tuple[Target, HelperProcess]:
        target = await self._target(reference, operation)
        try:
            helper = await self.files.start_helper(
                operation, {**config, "root": target.root}, stdin=stdin
            )
        except BaseException:
            target.remove_scratch()
            raise
        return target, helper

    async def stat(self, reference: str, path: str) -> dict[str, Any]:
        """Return the ContainerPathStat of path, for HEAD /containers/{id}/archive."""
        _check_path(path)
        target, helper = await self._start(reference, "stat", {"path": path})
        try:
            stat: dict[str, Any] = _result(await helper.first_line(), reference, path)["stat"]
            return stat
        finally:
            await helper.close()
            target.remove_scratch()

    async def get(self, reference: str, path: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """Return the stat of path and a stream of its tar archive."""
        _check_path(path)
        target, helper = await self._start(reference, "get", {"path": path})
        try:
            stat = _result(await helper.first_line(), reference, path)["stat"]
        except BaseException:
            await helper.close()
            target.remove_scratch()
            raise
        return stat, _stream(helper, target)

    async def put(self, reference: str, path: str, body: AsyncIterator[bytes], *,
                  no_overwrite_dir_non_dir: bool, copy_uid_gid: bool) -> None:
        """Extract the tar archive in body into the directory path."""
        _check_path(path)
        view = await self.containers.find(reference)
        config = {
            "path": path,
            "no_overwrite_dir_non_dir": no_overwrite_dir_non_dir,
            "copy_uid_gid": copy_uid_gid,
            "user": (view.get("Config") or {}).get("User") or "",
        }
        target, helper = await self._start(reference, "put", config, stdin=True)
        try:
            await helper.feed(body)
            _result(await helper.first_line(), reference, path)
        finally:
            await helper.close()
            target.remove_scratch()

    async def export(self, reference: str) -> AsyncIterator[bytes]:
        """Return a stream of the tar archive of the container's root file system."""
        target, helper = await self._start(reference, "export", {})
        try:
            _result(await helper.first_line(), reference, "/")
        except BaseException:
            await helper.close()
            target.remove_scratch()
            raise
        return _stream(helper, target)

    async def changes(self, reference: str) -> list[dict[str, Any]]:
        """Return the container's changes relative to its image, as Docker's FilesystemChange."""
        target, helper = await self._start(reference, "changes", {"ignore": RUNTIME_FILES})
        try:
            _result(await helper.first_line(), reference, "/")
            body = b"".join([chunk async for chunk in helper.stream()])
        finally:
            await helper.close()
            target.remove_scratch()
        try:
            found = json.loads(body)
        except json.JSONDecodeError as exc:
            raise EngineError(f"cannot parse the archive helper's changes: {exc}") from exc
        return [{"Path": path, "Kind": CHANGE_KINDS[kind]} for kind, path in found]


async def _stream(helper: HelperProcess, target: Target) -> AsyncIterator[bytes]:
    try:
        async for chunk in helper.stream():
            yield chunk
    finally:
        await helper.close()
        target.remove_scratch()


def _check_path(path: str) -> None:
    if not path:
        raise InvalidParameterError("bad parameter: path cannot be empty")
    if "\0" in path:
        raise InvalidParameterError(f"invalid path {path!r}: it contains a NUL byte")


def _result(line: dict[str, Any], reference: str, path: str) -> dict[str, Any]:
    """Return the helper's result line, or raise its error as Docker's error."""
    error = line.get("error")
    if not error:
        return line
    kind = error.get("kind")
    message = error.get("message") or "the archive helper failed"
    exception: FinchdError
    if kind == "not_found":
        exception = NotFoundError(f"Could not find the file {path} in container {reference}")
    elif kind == "invalid":
        exception = InvalidParameterError(message)
    elif kind == "forbidden":
        exception = ForbiddenError(message)
    elif kind == "conflict":
        exception = ConflictError(message)
    else:
        exception = EngineError(message)
    raise exception


def _upperdir(mounts: list[dict[str, Any]]) -> str | None:
    for mount in mounts:
        for option in mount.get("options") or []:
            if option.startswith("upperdir="):
                return str(option.partition("=")[2])
    return None


def _binds(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the bind mounts (volumes, binds, nerdctl's /etc files) of an OCI spec."""
    binds = []
    for mount in spec.get("mounts") or []:
        options = mount.get("options") or []
        if mount.get("type") == "bind" or "bind" in options or "rbind" in options:
            binds.append({
                "source": mount.get("source") or "",
                "destination": mount.get("destination") or "",
                "options": options,
            })
    return binds
