"""Docker's volume semantics on top of nerdctl's local volumes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from finchd.errors import (
    ConflictError,
    EngineError,
    InvalidParameterError,
    NotFoundError,
    UnavailableError,
)
from finchd.nerdctl.containers import Containers
from finchd.nerdctl.volumes import (
    ANONYMOUS_VOLUMES_LABEL,
    NativeVolume,
    Volumes,
    anonymous_volume_names,
)
from finchd.services.filters import Filters, label_matches, name_matches, parse_filters
from finchd.services.records import RecordStore
from finchd.services.timefmt import rfc3339
from finchd.services.volume_spec import (
    LOCAL_DRIVER,
    NAME_PATTERN,
    check_driver,
    check_driver_options,
    check_volume_name,
    parse_volume_create,
)

log = logging.getLogger(__name__)

LIST_FILTERS = {"dangling", "driver", "label", "name"}
PRUNE_FILTERS = {"label", "label!", "all"}
# dockerd's label on volumes made without a name; prune removes only these unless all=true.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
NERDCTL_LABEL_PREFIX = "nerdctl/"
# API versions before this one prune every unused volume, named ones included.
PRUNE_ANONYMOUS_ONLY_VERSION = (1, 42)
# Since this API version a ClusterVolumeSpec requests a swarm cluster volume.
CLUSTER_VOLUMES_VERSION = (1, 42)
TRUE_WORDS = ("1", "t", "T", "TRUE", "true", "True")
FALSE_WORDS = ("0", "f", "F", "FALSE", "false", "False")
SWARM_UNAVAILABLE = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm '
                     'join" to connect this node to swarm and try again.')


@dataclass
class VolumeUsage:
    """Volume facts read from containers: who mounts each volume, and which are anonymous."""

    users: dict[str, list[str]] = field(default_factory=dict)
    anonymous: set[str] = field(default_factory=set)


def container_usage(natives: list[dict[str, Any]]) -> VolumeUsage:
    """Collect, from `nerdctl container inspect` output, each volume's containers.

    A volume is in use while any container, running or not, has it in Mounts.
    """
    usage = VolumeUsage()
    for native in natives:
        container_id = str(native.get("Id") or "")
        for mount in native.get("Mounts") or []:
            if isinstance(mount, dict) and mount.get("Type") == "volume" and mount.get("Name"):
                users = usage.users.setdefault(str(mount["Name"]), [])
                if container_id not in users:
                    users.append(container_id)
        labels = (native.get("Config") or {}).get("Labels") or {}
        if isinstance(labels, dict):
            usage.anonymous.update(anonymous_volume_names(labels))
    return usage


def is_anonymous(volume: NativeVolume, record: dict[str, Any], usage: VolumeUsage) -> bool:
    """Tell whether a volume was made without a name, by dockerd's, nerdctl's or finchd's marks."""
    return (ANONYMOUS_LABEL in volume.labels or ANONYMOUS_VOLUMES_LABEL in volume.labels
            or bool(record.get("Anonymous")) or volume.name in usage.anonymous)


def volume_view(volume: NativeVolume, record: dict[str, Any], anonymous: bool) -> dict[str, Any]:
    """Build Docker's Volume object from nerdctl's volume and finchd's create record.

    dockerd keeps Labels and Options as the create request sent them. So they are
    null unless the volume was created through the API with an object for them.
    """
    labels = {key: value for key, value in volume.labels.items()
              if not key.startswith(NERDCTL_LABEL_PREFIX)}
    if anonymous:
        labels.setdefault(ANONYMOUS_LABEL, "")
    view: dict[str, Any] = {}
    if volume.created is not None:
        moment = datetime.fromtimestamp(int(volume.created), timezone.utc)
        view["CreatedAt"] = rfc3339(moment)
    view.update({
        "Driver": LOCAL_DRIVER,
        "Labels": labels if labels or record.get("Labels") is not None else None,
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Options": record.get("Options"),
        "Scope": "local",
    })
    return view


def bool_filter(filters: Filters, key: str) -> bool | None:
    """Read a boolean list filter (dangling) as dockerd's GetBoolOrDefault does."""
    if key not in filters:
        return None
    values = filters[key]
    if not values:
        raise InvalidParameterError(f"invalid filter '{key}'")
    false = any(value in ("0", "false") for value in values)
    true = any(value in ("1", "true") for value in values)
    # dockerd ignores other values beside one consistent boolean.
    if true == false:
        raise InvalidParameterError(f"invalid filter '{key}=[{' '.join(values)}]'")
    return true


def prune_all(filters: Filters) -> bool:
    """Read prune's `all` filter: one boolean, false when absent."""
    values = filters.get("all", [])
    if len(values) > 1:
        raise InvalidParameterError(
            f"invalid filter 'all=[{' '.join(values)}]': only one value is expected")
    if not values:
        return False
    if values[0] in TRUE_WORDS:
        return True
    if values[0] in FALSE_WORDS:
        return False
    raise InvalidParameterError(
        f"invalid filter 'all': strconv.ParseBool: parsing \"{values[0]}\": invalid syntax")


def match_list_filters(view: dict[str, Any], in_use: bool, filters: Filters,
                       dangling: bool | None) -> bool:
    """Apply GET /volumes filters to one volume, as dockerd's volume store does."""
    names = filters.get("name")
    if names and not any(name_matches(pattern, view["Name"]) for pattern in names):
        return False
    drivers = filters.get("driver")
    if drivers and view["Driver"] not in drivers:
        return False
    if filters.get("label") and not label_matches(view["Labels"] or {}, filters["label"]):
        return False
    if dangling is not None and in_use == dangling:
        return False
    return True


def match_prune_filters(view: dict[str, Any], filters: Filters, everything: bool) -> bool:
    """Apply POST /volumes/prune filters to one unused volume, as dockerd does.

    `label!` excludes a volume that has every label it lists.
    """
    labels = view["Labels"] or {}
    if not everything and ANONYMOUS_LABEL not in labels:
        return False
    if filters.get("label") and not label_matches(labels, filters["label"]):
        return False
    if filters.get("label!") and label_matches(labels, filters["label!"]):
        return False
    # dockerd never prunes a volume that was created with driver options.
    return not view["Options"]


class VolumeService:
    """Docker's /volumes endpoints: list, inspect, create, remove, prune, update."""

    def __init__(self, volumes: Volumes, containers: Containers, records: RecordStore):
        self.volumes = volumes
        self.containers = containers
        self.records = records
        self._pruning = False

    async def _usage(self) -> VolumeUsage:
        """Read every container's volumes and record the anonymous ones that nerdctl made."""
        natives = await self.containers.inspect(await self.containers.list_ids())
        usage = container_usage(natives)
        self._record_anonymous(usage.anonymous)
        return usage

    def _record_anonymous(self, names: set[str]) -> None:
        """Mark volumes as anonymous in finchd's records, so the mark outlives the container.

        nerdctl names a container's anonymous volumes only in the container's labels,
        so without this record they would look named once the container is removed.
        """
        for name in names:
            record = self.records.load(name)
            if not record.get("Anonymous"):
                self.records.save(name, {**record, "Anonymous": True})

    async def record_container_volumes(self, container_id: str) -> None:
        """Record the anonymous volumes that nerdctl made for a new container."""
        try:
            natives = await self.containers.inspect([container_id])
        except EngineError as exc:
            log.warning("cannot read the anonymous volumes of container %s: %s",
                        container_id, exc.message)
            return
        self._record_anonymous(container_usage(natives).anonymous)

    def _view(self, volume: NativeVolume, usage: VolumeUsage) -> dict[str, Any]:
        record = self.records.load(volume.name)
        return volume_view(volume, record, is_anonymous(volume, record, usage))

    async def list_volumes(self, filters_raw: str | None) -> dict[str, Any]:
        filters = parse_filters(filters_raw, LIST_FILTERS)
        dangling = bool_filter(filters, "dangling")
        volumes, usage = await asyncio.gather(self.volumes.list_all(), self._usage())
        views = []
        for volume in sorted(volumes, key=lambda item: item.name):
            view = self._view(volume, usage)
            if match_list_filters(view, volume.name in usage.users, filters, dangling):
                views.append(view)
        return {"Volumes": views, "Warnings": []}

    async def inspect(self, name: str) -> dict[str, Any]:
        volume, usage = await asyncio.gather(self._find(name), self._usage())
        return self._view(volume, usage)

    async def _find(self, name: str) -> NativeVolume:
        volume = await self.volumes.get(name) if _valid_reference(name) else None
        if volume is None:
            raise NotFoundError(f"get {name}: no such volume")
        return volume

    async def create(self, body: Any, version: tuple[int, ...]) -> dict[str, Any]:
        """Create a volume, or return the existing one of that name, as dockerd does."""
        request = parse_volume_create(body)
        if request.cluster and version >= CLUSTER_VOLUMES_VERSION:
            raise UnavailableError(SWARM_UNAVAILABLE)
        name = request.name
        check_driver(name, request.driver)
        if not request.anonymous and _valid_reference(name):
            existing = await self.volumes.get(name)
            if existing is not None:
                return self._view(existing, await self._usage())
        check_volume_name(name)
        check_driver_options(name, request.options or {})
        await self.volumes.create(name, request.labels or {}, anonymous=request.anonymous)
        record: dict[str, Any] = {"Labels": request.labels, "Options": request.options}
        if request.anonymous:
            record["Anonymous"] = True
        self.records.save(name, record)
        log.info("created volume %s", name)
        volume = await self.volumes.get(name)
        if volume is None:
            raise EngineError(f"volume {name} is missing right after nerdctl created it")
        return volume_view(volume, record, request.anonymous)

    async def remove(self, name: str, force: bool) -> None:
        """Remove a volume that no container uses. With force, a missing volume is no error."""
        try:
            volume = await self._find(name)
        except NotFoundError:
            if force:
                return
            raise
        async with self.containers.volume_guard.removing():
            usage = await self._usage()
            users = usage.users.get(volume.name)
            if users:
                raise _in_use(volume.name, users)
            try:
                await self.volumes.remove([volume.name])
            except ConflictError:
                # A container started using it since the containers were read.
                users = (await self._usage()).users.get(volume.name, [])
                raise _in_use(volume.name, users) from None
            except NotFoundError:
                if not force:
                    raise
        self.records.delete(volume.name)
        log.info("removed volume %s", volume.name)

    async def prune(self, filters_raw: str | None, version: tuple[int, ...]) -> dict[str, Any]:
        """Remove unused volumes: anonymous ones, or all of them with all=true or API < 1.42."""
        filters = parse_filters(filters_raw, PRUNE_FILTERS)
        if version < PRUNE_ANONYMOUS_ONLY_VERSION and "true" not in filters.get("all", []):
            filters["all"] = [*filters.get("all", []), "true"]
        everything = prune_all(filters)
        if self._pruning:
            raise ConflictError("a prune operation is already running")
        self._pruning = True
        try:
            async with self.containers.volume_guard.removing():
                return await self._prune(filters, everything)
        finally:
            self._pruning = False

    async def _prune(self, filters: Filters, everything: bool) -> dict[str, Any]:
        volumes, usage = await asyncio.gather(self.volumes.list_all(), self._usage())
        candidates = [volume.name for volume in volumes if volume.name not in usage.users
                      and match_prune_filters(self._view(volume, usage), filters, everything)]
        sizes = {volume.name: volume.size
                 for volume in await self.volumes.inspect(candidates, size=True)}
        try:
            removed = await self.volumes.remove(candidates)
        except (ConflictError, NotFoundError):
            # A container took the one candidate, or it went, since the list was read;
            # dockerd's prune skips such volumes as well.
            removed = []
        for name in removed:
            self.records.delete(name)
        if removed:
            log.info("pruned volumes %s", ", ".join(removed))
        return {"VolumesDeleted": removed,
                "SpaceReclaimed": sum(sizes.get(name, 0) for name in removed)}

    async def update(self, name: str) -> None:
        """Reject PUT /volumes/{name}: it updates only swarm cluster volumes."""
        raise UnavailableError(
            "volume update only valid for cluster volumes, but swarm is unavailable")


def _valid_reference(name: str) -> bool:
    """Tell whether a name matches the volume name pattern, which every volume's name does."""
    return NAME_PATTERN.fullmatch(name) is not None


def _in_use(name: str, users: list[str]) -> ConflictError:
    return ConflictError(f"remove {name}: volume is in use - [{', '.join(users)}]")
