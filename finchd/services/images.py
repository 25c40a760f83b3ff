"""Image operations: list, inspect, tag, remove, load, pull."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any

from finchd.errors import ConflictError, InvalidParameterError, NoSuchImageError
from finchd.nerdctl.images import Images
from finchd.services.filters import label_matches, parse_filters
from finchd.services.timefmt import unix_seconds

LIST_FILTERS = {"reference", "dangling", "label", "before", "since"}
TAG_PATTERN = re.compile(r"^[\w][\w.-]{0,127}$")
# A registry host is dot-separated labels that start and end with a letter or digit,
# as in Docker's reference grammar, so "../x" is not read as host "..".
REPOSITORY_PATTERN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::\d+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
IMAGE_ID_PATTERN = re.compile(r"^(?:sha256:)?([0-9a-f]{1,64})$")


def split_reference(reference: str) -> tuple[str, str]:
    """Split `repo[:tag]` into repository and tag (or `@digest`), defaulting to latest."""
    if "@" in reference:
        repository, _, digest = reference.partition("@")
        return repository, "@" + digest
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1:]
    return reference, "latest"


def check_reference(reference: str) -> None:
    """Reject references nerdctl would misread, with Docker's wording."""
    repository, tag = split_reference(reference)
    if not REPOSITORY_PATTERN.fullmatch(repository):
        raise InvalidParameterError(f"invalid reference format: {reference!r}")
    if tag.startswith("@"):
        if not DIGEST_PATTERN.fullmatch(tag[1:]):
            raise InvalidParameterError(f"invalid reference format: {reference!r}")
    elif not TAG_PATTERN.fullmatch(tag):
        raise InvalidParameterError(f"invalid reference format: {reference!r}")


def short_name(name: str) -> str:
    """Drop the `docker.io/library/` prefix that containerd adds to short names."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def repository_path(repository: str) -> str:
    """Return the path of a repository without its registry host, as dockerd prints it."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return short_name(rest) if first == "docker.io" else rest
    return short_name(repository)


def is_loopback_registry(reference: str, insecure: Iterable[str]) -> bool:
    """dockerd treats registries on 127.0.0.0/8 as insecure; so does finchd."""
    first = reference.split("/", 1)[0]
    if "/" not in reference or ("." not in first and ":" not in first and first != "localhost"):
        return False
    if first in insecure:
        return True
    host = first.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def find_image(images: Images, reference: str) -> tuple[str, dict[str, Any]] | None:
    """Find an image by name, or by a unique prefix of its ID as Docker lists it.

    Returns a reference nerdctl can use (a name, since nerdctl names images by the
    digest of their manifest, not of their config) and the image. Names are tried
    first, as dockerd does, except for a full 64-digit ID.
    """
    match = IMAGE_ID_PATTERN.match(reference)
    if match is None or len(match.group(1)) < 64:
        image = await images.find(reference)
        if image is not None:
            return reference, image
    if match is None:
        return None
    prefix = "sha256:" + match.group(1)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for image in await images.inspect(await images.tagged_names()):
        tags = image.get("RepoTags") or []
        if tags and str(image.get("Id", "")).startswith(prefix):
            found.setdefault(image["Id"], (tags[0], image))
    if len(found) > 1:
        raise InvalidParameterError(f"multiple images match the ID prefix {reference!r}")
    return next(iter(found.values()), None)


class ImageService:
    """Docker's image semantics on top of nerdctl."""

    def __init__(self, images: Images, insecure_registries: Iterable[str] = ()):
        self.images = images
        self.insecure_registries = tuple(insecure_registries)
        self._details: dict[str, dict[str, Any]] = {}

    async def inspect(self, name: str) -> dict[str, Any]:
        _, image = await self._resolve(name)
        return inspect_view(image)

    async def _resolve(self, name: str) -> tuple[str, dict[str, Any]]:
        if not name or name.startswith("-"):
            raise NoSuchImageError(name)
        found = await find_image(self.images, name)
        if found is None:
            raise NoSuchImageError(name)
        return found

    async def list_images(self, *, all: bool, filters_raw: str | None) -> list[dict[str, Any]]:
        filters = parse_filters(filters_raw, LIST_FILTERS)
        for value in filters.get("dangling", []):
            if value not in ("true", "false", "1", "0"):
                raise InvalidParameterError(f"invalid filter 'dangling={value}'")
        summaries: dict[str, dict[str, Any]] = {}
        for name, image in await self._tagged_images():
            summary = summaries.setdefault(image["Id"], summary_view(image))
            if short_name(name) not in summary["RepoTags"]:
                summary["RepoTags"].append(short_name(name))
        result = list(summaries.values())
        result = [item for item in result if _image_matches(item, filters)]
        result.sort(key=lambda item: item["Created"], reverse=True)
        return result

    async def _tagged_images(self) -> list[tuple[str, dict[str, Any]]]:
        """Return (name, inspect result) for every tagged image, with one `image ls`.

        Inspect results are kept by manifest digest, which names immutable content,
        so only images not seen before are inspected.
        """
        rows = [row for row in await self.images.list_rows()
                if row.get("Repository") not in (None, "", "<none>") and row.get("Digest")]
        names = {f"{row['Repository']}:{row['Tag']}": str(row["Digest"]) for row in rows}
        missing = sorted(name for name, digest in names.items() if digest not in self._details)
        if missing:
            by_name = {short_name(name): digest for name, digest in names.items()}
            for image in await self.images.inspect(missing):
                for tag in image.get("RepoTags") or []:
                    digest = by_name.get(short_name(tag))
                    if digest is not None:
                        self._details[digest] = image
        current = set(names.values())
        for digest in list(self._details):
            if digest not in current:
                del self._details[digest]
        return [(name, self._details[digest]) for name, digest in names.items()
                if digest in self._details]

    async def tag(self, name: str, repo: str | None, tag: str | None) -> None:
        if not repo:
            raise InvalidParameterError("repository name must have at least one component")
        target = f"{repo}:{tag or 'latest'}"
        check_reference(target)
        source, _ = await self._resolve(name)
        await self.images.tag(source, target)

    async def remove(self, name: str, *, force: bool) -> list[dict[str, str]]:
        """Remove a tag, or by ID every tag of the image (more than one needs force)."""
        source, image = await self._resolve(name)
        by_id = source != name
        tags = list(image.get("RepoTags") or [source]) if by_id else [source]
        if by_id and len(tags) > 1 and not force:
            raise ConflictError(
                f"conflict: unable to delete {name} (must be forced) - image is referenced "
                "in multiple repositories")
        try:
            removed: list[dict[str, str]] = []
            # Only the last tag needs force: before it, other tags still name the image.
            for index, tag in enumerate(tags):
                removed += await self.images.remove(tag, force=force and index == len(tags) - 1)
            return _docker_removal_items(removed)
        except ConflictError as exc:
            raise ConflictError(
                f'conflict: unable to remove repository reference "{name}" (must force) - '
                f"{exc.message.split(' - ', 1)[-1]} ({image['Id']})"
            ) from exc

    async def load(self, chunks: AsyncIterator[bytes]) -> list[str]:
        return [short_name(name) for name in await self.images.load(chunks)]

    async def pull(self, from_image: str, tag: str | None) -> AsyncIterator[dict[str, Any]]:
        """Pull an image, yielding Docker's JSON progress messages."""
        reference = _pull_reference(from_image, tag)
        check_reference(reference)
        insecure = is_loopback_registry(reference, self.insecure_registries)
        return self._pull_messages(reference, insecure)

    async def _pull_messages(self, reference: str, insecure: bool) -> AsyncIterator[dict[str, Any]]:
        repository, tag = split_reference(reference)
        yield {"status": f"Pulling from {repository_path(repository)}", "id": tag.lstrip("@")}
        process = await self.images.pull(reference, insecure=insecure)
        assert process.stderr is not None and process.stdout is not None
        seen: dict[str, str] = {}
        errors: list[str] = []
        stdout_task = asyncio.ensure_future(process.stdout.read())
        buffer = b""
        while True:
            chunk = await process.stderr.read(4096)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for raw in lines:
                for message in _progress_messages(raw.decode(errors="replace"), seen, errors):
                    yield message
        await stdout_task
        await process.wait()
        if process.returncode != 0:
            text = errors[-1] if errors else "pull failed"
            yield {"errorDetail": {"message": _pull_error(reference, text)},
                   "error": _pull_error(reference, text)}
            return
        image = await self.images.find(reference)
        layers = ((image or {}).get("RootFS") or {}).get("Layers") or []
        for layer in layers:
            layer_id = layer.split(":", 1)[-1][:12]
            if not seen:
                yield {"status": "Pulling fs layer", "progressDetail": {}, "id": layer_id}
                yield {"status": "Download complete", "progressDetail": {}, "id": layer_id}
                yield {"status": "Pull complete", "progressDetail": {}, "id": layer_id}
        for layer_id in seen:
            if seen[layer_id] != "Pull complete":
                yield {"status": "Pull complete", "progressDetail": {}, "id": layer_id}
        digest = (image or {}).get("RepoDigests") or []
        if digest:
            yield {"status": f"Digest: {digest[0].split('@', 1)[-1]}"}
        yield {"status": f"Status: Downloaded newer image for {short_name(reference)}"}


def _pull_reference(from_image: str, tag: str | None) -> str:
    if not from_image:
        raise InvalidParameterError("fromImage or fromSrc is required")
    if tag and "@" not in from_image:
        repository, current = split_reference(from_image)
        if tag.startswith("sha256:"):
            return f"{repository}@{tag}"
        return f"{repository}:{tag}"
    return from_image


def _progress_messages(line: str, seen: dict[str, str], errors: list[str]) -> list[dict[str, Any]]:
    line = line.strip()
    if not line:
        return []
    if "level=" in line and ("fatal" in line or "error" in line):
        from finchd.nerdctl.runner import clean_error
        errors.append(clean_error(line))
        return []
    progress = Images.parse_progress(line)
    if progress is None or progress["kind"] != "layer":
        return []
    layer_id = progress["id"]
    state = progress["state"]
    messages: list[dict[str, Any]] = []
    if layer_id not in seen:
        seen[layer_id] = "Pulling fs layer"
        messages.append({"status": "Pulling fs layer", "progressDetail": {}, "id": layer_id})
    if state == "downloading" and progress["total"]:
        seen[layer_id] = "Downloading"
        messages.append({
            "status": "Downloading", "id": layer_id,
            "progressDetail": {"current": progress["current"], "total": progress["total"]},
        })
    elif state in ("done", "exists", "complete") and seen[layer_id] != "Pull complete":
        seen[layer_id] = "Pull complete"
        messages.append({"status": "Download complete", "progressDetail": {}, "id": layer_id})
        messages.append({"status": "Pull complete", "progressDetail": {}, "id": layer_id})
    return messages


def _pull_error(reference: str, text: str) -> str:
    if "not found" in text or "manifest unknown" in text:
        repository, tag = split_reference(reference)
        return f"manifest for {short_name(reference)} not found: manifest unknown: {text}"
    return text


def _docker_removal_items(items: list[dict[str, str]]) -> list[dict[str, str]]:
    """Word nerdctl's `Untagged: docker.io/library/x:1@sha256:...` lines as dockerd does.

    dockerd lists the tag and the repository digest separately, in short names, and
    each deleted digest once.
    """
    result: list[dict[str, str]] = []
    for item in items:
        for kind, value in item.items():
            entries = [value]
            if kind == "Untagged" and "@" in value:
                name, digest = value.split("@", 1)
                repository, _ = split_reference(name)
                entries = [name, f"{repository}@{digest}"]
            for entry in entries:
                row = {kind: short_name(entry) if kind == "Untagged" else entry}
                if row not in result:
                    result.append(row)
    return result


def summary_view(image: dict[str, Any]) -> dict[str, Any]:
    config = image.get("Config") or {}
    size = int(image.get("Size") or 0)
    return {
        "Id": image["Id"], "ParentId": image.get("Parent") or "",
        "RepoTags": [], "RepoDigests": [short_name(item) for item in image.get("RepoDigests") or []],
        "Created": unix_seconds(image.get("Created")), "Size": size, "SharedSize": -1,
        "VirtualSize": size, "Labels": config.get("Labels") or {}, "Containers": -1,
    }


def inspect_view(image: dict[str, Any]) -> dict[str, Any]:
    config = dict(image.get("Config") or {})
    size = int(image.get("Size") or 0)
    return {
        "Id": image["Id"],
        "RepoTags": [short_name(tag) for tag in image.get("RepoTags") or []],
        "RepoDigests": [short_name(item) for item in image.get("RepoDigests") or []],
        "Parent": image.get("Parent") or "", "Comment": image.get("Comment") or "",
        "Created": image.get("Created") or "", "Container": "", "ContainerConfig": None,
        "DockerVersion": image.get("DockerVersion") or "", "Author": image.get("Author") or "",
        "Config": config, "Architecture": image.get("Architecture") or "",
        "Variant": image.get("Variant"), "Os": image.get("Os") or "linux",
        "Size": size, "VirtualSize": size,
        "GraphDriver": {"Name": "overlayfs", "Data": None},
        "RootFS": image.get("RootFS") or {"Type": "layers"},
        "Metadata": {"LastTagTime": (image.get("Metadata") or {}).get("LastTagTime") or "0001-01-01T00:00:00Z"},
    }


def _image_matches(summary: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    import fnmatch
    for key, values in filters.items():
        if not values:
            continue
        if key == "reference":
            if not any(fnmatch.fnmatch(tag, value) or fnmatch.fnmatch(tag.rsplit(":", 1)[0], value)
                       for tag in summary["RepoTags"] for value in values):
                return False
        elif key == "dangling":
            dangling = not summary["RepoTags"]
            if (values[0] in ("true", "1")) != dangling:
                return False
        elif key == "label" and not label_matches(summary["Labels"], values):
            return False
    return True
