"""nerdctl argv and output parsing for volumes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finchd.errors import ConflictError, EngineError, NotFoundError
from finchd.nerdctl.runner import Runner

# nerdctl 2.0.3 labels a volume that `nerdctl volume create` made without a name with
# this key and an empty value. On a container, the same key contains a JSON list of the
# names of the anonymous volumes that nerdctl made for the container's mounts. Those
# volumes themselves get no label.
ANONYMOUS_VOLUMES_LABEL = "nerdctl/anonymous-volumes"
# nerdctl writes each volume's labels to this file beside the volume's `_data` folder.
VOLUME_FILE = "volume.json"


@dataclass
class NativeVolume:
    """A volume as `nerdctl volume inspect` prints it."""

    name: str
    mountpoint: str
    labels: dict[str, str]
    size: int = 0
    created: float | None = None


def parse_inspect(stdout: bytes) -> list[NativeVolume]:
    """Parse the JSON array of `nerdctl volume inspect`, skipping entries without a name."""
    try:
        items = json.loads(stdout or b"[]")
    except json.JSONDecodeError as exc:
        raise EngineError(f"cannot parse nerdctl volume inspect output: {exc}") from exc
    if not isinstance(items, list):
        raise EngineError("cannot parse nerdctl volume inspect output: expected a JSON array")
    volumes = []
    for item in items:
        volume = parse_volume(item)
        if volume is not None:
            volumes.append(volume)
    return volumes


def parse_volume(item: Any) -> NativeVolume | None:
    if not isinstance(item, dict) or not isinstance(item.get("Name"), str):
        return None
    labels = item.get("Labels")
    size = item.get("Size")
    return NativeVolume(
        name=item["Name"],
        mountpoint=str(item.get("Mountpoint") or ""),
        labels={str(key): str(value) for key, value in labels.items()}
        if isinstance(labels, dict) else {},
        size=size if isinstance(size, int) and not isinstance(size, bool) else 0,
    )


def parse_names(stdout: bytes) -> list[str]:
    """Return the names that `nerdctl volume ls --quiet` or `volume rm` print, one a line."""
    return [line.strip() for line in stdout.decode(errors="replace").splitlines() if line.strip()]


def anonymous_volume_names(labels: dict[str, str]) -> list[str]:
    """Return the anonymous volumes that a container's labels name, or [] if unreadable."""
    raw = labels.get(ANONYMOUS_VOLUMES_LABEL)
    if not raw:
        return []
    try:
        names = json.loads(raw)
    except json.JSONDecodeError:
        return []
    if not isinstance(names, list):
        return []
    return [name for name in names if isinstance(name, str)]


def create_args(name: str, labels: dict[str, str], *, anonymous: bool = False) -> list[str]:
    """Build the argv of `nerdctl volume create` for a checked name and labels."""
    args = ["volume", "create"]
    args += [f"--label={key}={value}" for key, value in labels.items()]
    if anonymous:
        args.append(f"--label={ANONYMOUS_VOLUMES_LABEL}=")
    return [*args, "--", name]


def created_time(mountpoint: str) -> float | None:
    """Return the modification time of a volume's `volume.json`, or None if unreadable.

    nerdctl writes that file once, when it creates the volume, and records no
    creation time of its own, so the file's time is the volume's creation time.
    """
    if not mountpoint:
        return None
    try:
        return os.stat(Path(mountpoint).parent / VOLUME_FILE).st_mtime
    except OSError:
        return None


class Volumes:
    """nerdctl's volume commands."""

    def __init__(self, runner: Runner):
        self.runner = runner

    async def names(self) -> list[str]:
        result = await self.runner.run(["volume", "ls", "--quiet"])
        return parse_names(result.stdout)

    async def inspect(self, names: list[str], *, size: bool = False) -> list[NativeVolume]:
        """Return the volumes among names that exist, with their sizes in bytes if size."""
        if not names:
            return []
        args = ["volume", "inspect", *(["--size"] if size else []), "--", *names]
        # nerdctl exits 1 when any name is missing but still prints the others.
        result = await self.runner.run(args, check=False)
        volumes = parse_inspect(result.stdout)
        missing_only = "not found" in result.stderr.decode(errors="replace")
        if result.returncode != 0 and not volumes and not missing_only:
            raise EngineError(result.error_text or "nerdctl volume inspect failed")
        for volume in volumes:
            volume.created = created_time(volume.mountpoint)
        return volumes

    async def list_all(self) -> list[NativeVolume]:
        return await self.inspect(await self.names())

    async def get(self, name: str) -> NativeVolume | None:
        volumes = await self.inspect([name])
        return next((volume for volume in volumes if volume.name == name), None)

    async def create(self, name: str, labels: dict[str, str], *, anonymous: bool = False) -> None:
        """Create a volume, or leave an existing one of that name as it is, as nerdctl does."""
        await self.runner.run(create_args(name, labels, anonymous=anonymous))

    async def remove(self, names: list[str]) -> list[str]:
        """Remove volumes by exact name and return the names that nerdctl removed.

        Raises ConflictError for a single volume in use and NotFoundError for a
        single missing one. With several names, the ones nerdctl could not
        remove are left out of the result.
        """
        if not names:
            return []
        result = await self.runner.run(["volume", "rm", "--", *names], check=False)
        removed = parse_names(result.stdout)
        if result.returncode == 0 or len(names) > 1:
            return removed
        text = result.stderr.decode(errors="replace")
        if "is in use" in text:
            raise ConflictError(f"remove {names[0]}: volume is in use")
        if "not found" in text:
            raise NotFoundError(f"get {names[0]}: no such volume")
        raise EngineError(result.error_text or f"nerdctl volume rm {names[0]} failed")
