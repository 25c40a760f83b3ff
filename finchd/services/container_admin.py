"""Container operations beyond the lifecycle: stats, top, rename, pause, update, prune."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator
from typing import Any

from finchd.errors import ConflictError, EngineError, InvalidParameterError
from finchd.services import procfs
from finchd.services.container_spec import RESOURCE_FIELDS, check_name, resource_value
from finchd.services.containers import ContainerService
from finchd.services.filters import label_matches, parse_filters, until_cutoff
from finchd.services.system import has_cgroup_limits, mem_total
from finchd.services.validation import expect

PRUNE_FILTERS = {"until", "label", "label!"}
FREEZER_MESSAGE = (
    "cannot {action} container {id}: the cgroup freezer is not available to rootless "
    "containers without delegated cgroup v2 controllers"
)


class ContainerAdmin:
    """Operations that inspect or change a container without starting or stopping it."""

    def __init__(self, containers: ContainerService):
        self.containers = containers

    async def stats(self, reference: str, *, stream: bool,
                    one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        """Yield StatsResponse samples: one per second, or one (two reads apart) when not streaming."""
        view = await self.containers.find(reference)
        return self._samples(view, stream=stream, one_shot=one_shot)

    async def _samples(self, view: dict[str, Any], *, stream: bool,
                       one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        limit = mem_total()
        previous: dict[str, Any] | None = None
        while True:
            pid = view["State"]["Pid"] if view["State"]["Running"] else 0
            current = await loop.run_in_executor(
                None, procfs.sample, view["Id"], view["Name"], pid, limit)
            if previous is not None:
                current["precpu_stats"] = previous["cpu_stats"]
                current["preread"] = previous["read"]
            if stream or one_shot or previous is not None:
                yield current
                if not stream:
                    return
            previous = current
            await asyncio.sleep(1)
            view = await self.containers.find(view["Id"])

    async def top(self, reference: str, ps_args: str | None) -> dict[str, Any]:
        view = await self.containers.find(reference)
        if not view["State"]["Running"]:
            raise ConflictError(f"Container {view['Id']} is not running")
        try:
            args = shlex.split(ps_args or "-ef")
        except ValueError as exc:
            raise InvalidParameterError(f"invalid ps_args: {exc}") from exc
        if any("\0" in arg for arg in args):
            raise InvalidParameterError("invalid ps_args: it contains a NUL byte")
        pids = set(procfs.container_pids(view["State"]["Pid"]))
        process = await asyncio.create_subprocess_exec(
            "ps", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL)
        stdout, stderr = await process.communicate()
        if process.returncode != 0:
            raise InvalidParameterError(
                f"Error running ps: {stderr.decode(errors='replace').strip()}")
        try:
            return procfs.parse_ps(stdout.decode(errors="replace"), pids)
        except ValueError as exc:
            raise InvalidParameterError(f"Couldn't find PID field in ps output: {exc}") from exc

    async def rename(self, reference: str, name: str | None) -> None:
        if not name:
            raise InvalidParameterError("Neither old nor new names may be empty")
        new_name = check_name(name)
        view = await self.containers.find(reference)
        try:
            existing = await self.containers.find(new_name)
        except Exception:  # noqa: BLE001 - any lookup failure means the name is free
            existing = None
        if existing is not None and existing["Name"].lstrip("/") == new_name:
            if existing["Id"] == view["Id"]:
                raise InvalidParameterError(
                    "Renaming a container with the same name as its current name")
            raise ConflictError(
                f'Conflict. The container name "/{new_name}" is already in use by container '
                f'"{existing["Id"]}". You have to remove (or rename) that container to be '
                "able to reuse that name.")
        await self.containers.containers.rename(view["Id"], new_name)

    async def pause(self, reference: str) -> None:
        view = await self.containers.find(reference)
        if not view["State"]["Running"]:
            raise ConflictError(f"Container {view['Id']} is not running")
        if view["State"]["Paused"]:
            raise ConflictError(f"Container {view['Id']} is already paused")
        await self._freeze(view["Id"], "pause")

    async def unpause(self, reference: str) -> None:
        view = await self.containers.find(reference)
        if not view["State"]["Paused"]:
            raise ConflictError(f"Container {view['Id']} is not paused")
        await self._freeze(view["Id"], "unpause")

    async def _freeze(self, container_id: str, action: str) -> None:
        if not has_cgroup_limits():
            raise EngineError(FREEZER_MESSAGE.format(action=action, id=container_id))
        adapter = self.containers.containers
        await (adapter.pause(container_id) if action == "pause" else adapter.unpause(container_id))

    async def update(self, reference: str, body: Any) -> list[str]:
        """Apply a restart policy and resource changes; return Docker's warnings."""
        if not isinstance(body, dict):
            raise InvalidParameterError("invalid update config: expected a JSON object")
        view = await self.containers.find(reference)
        warnings = []
        for key in RESOURCE_FIELDS:
            resource_value(body, key)
            if key in body and body[key] not in (None, 0, "", [], False, -1):
                warnings.append(
                    f"Your kernel does not support {key} limits or the cgroup is not "
                    "delegated to this user. Limitation discarded.")
        unknown = sorted(set(body) - set(RESOURCE_FIELDS) - {"RestartPolicy", "Devices",
                                                               "Ulimits", "DeviceRequests"})
        if unknown:
            raise InvalidParameterError(f"unknown field {unknown[0]} in update config")
        policy = expect(body.get("RestartPolicy"), dict, "RestartPolicy")
        if policy:
            restart = self.containers.restart_policy(policy)
            if restart != "no" and view["HostConfig"].get("AutoRemove"):
                raise InvalidParameterError(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container")
            await self.containers.containers.update_restart(view["Id"], restart)
            self.containers.update_record(view["Id"], {"RestartPolicy": policy})
        return warnings

    async def prune(self, filters_raw: str | None) -> dict[str, Any]:
        filters = parse_filters(filters_raw, PRUNE_FILTERS)
        cutoff = until_cutoff(filters.get("until", []))
        deleted = []
        for summary in await self.containers.list_containers(all=True, limit=None, size=False,
                                                  filters_raw=None):
            if summary["State"] not in ("exited", "created", "dead"):
                continue
            labels = summary["Labels"]
            if filters.get("label") and not label_matches(labels, filters["label"]):
                continue
            if filters.get("label!") and any(label_matches(labels, [item])
                                             for item in filters["label!"]):
                continue
            if cutoff is not None and summary["Created"] >= cutoff:
                continue
            await self.containers.remove(summary["Id"], force=False, volumes=False)
            deleted.append(summary["Id"])
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": 0}
