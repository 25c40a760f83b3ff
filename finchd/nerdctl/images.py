"""nerdctl argv and output parsing for images."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from finchd.errors import ConflictError, EngineError, InvalidParameterError, NoSuchImageError
from finchd.nerdctl.runner import Runner, clean_error

# nerdctl's messages for a body that is not a complete image archive.
ARCHIVE_ERRORS = ("unexpected EOF", "no image was built", "archive/tar", "invalid tar",
                  "unrecognized image format", "manifest.json")
LOADED_PATTERN = re.compile(r"^Loaded image: (.+)$")
REMOVED_PATTERN = re.compile(r"^(Untagged|Deleted): (.+)$")
# nerdctl pull progress, one line per blob: `layer-sha256:abcd...: downloading |++| 1.0 MiB/2.0 MiB`
PROGRESS_PATTERN = re.compile(
    r"^(?P<kind>\w+)-sha256:(?P<digest>[0-9a-f]{12,64}):\s+(?P<state>[a-z ]+?)\s*(\|.*\|)?"
    r"\s*(?:(?P<current>[\d.]+)\s*(?P<cunit>[KMGT]?i?B)\s*/\s*(?P<total>[\d.]+)\s*(?P<tunit>[KMGT]?i?B))?"
)
UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
         "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}


def to_bytes(value: str | None, unit: str | None) -> int:
    if not value or not unit:
        return 0
    return int(float(value) * UNITS.get(unit, 1))


class Images:
    """nerdctl's image commands."""

    def __init__(self, runner: Runner):
        self.runner = runner

    async def find(self, reference: str) -> dict[str, Any] | None:
        """Inspect one image in dockercompat mode; None when it does not exist."""
        found = await self.inspect([reference])
        return found[0] if found else None

    async def inspect(self, references: list[str]) -> list[dict[str, Any]]:
        if not references:
            return []
        result = await self.runner.run(
            ["image", "inspect", "--mode=dockercompat", "--", *references], check=False
        )
        text = result.stdout.decode().strip()
        if not text:
            return []
        try:
            return list(json.loads(text))
        except json.JSONDecodeError as exc:
            raise EngineError(f"cannot parse nerdctl image inspect output: {exc}") from exc

    async def list_rows(self) -> list[dict[str, Any]]:
        """Return `nerdctl image ls` rows: Repository, Tag, ID, Digest, CreatedAt, Size."""
        result = await self.runner.run(["image", "ls", "--all", "--no-trunc", "--format={{json .}}"])
        rows = []
        for line in result.stdout.decode().splitlines():
            if line.strip():
                rows.append(json.loads(line))
        return rows

    async def tagged_names(self) -> list[str]:
        """Return every `repository:tag` nerdctl lists, without dangling images."""
        names = {f"{row['Repository']}:{row['Tag']}" for row in await self.list_rows()
                 if row.get("Repository") and row.get("Repository") != "<none>"}
        return sorted(names)

    async def tag(self, source: str, target: str) -> None:
        result = await self.runner.run(["image", "tag", "--", source, target], check=False)
        if result.returncode != 0:
            if "not found" in result.error_text:
                raise NoSuchImageError(source)
            raise EngineError(result.error_text)

    async def remove(self, reference: str, *, force: bool) -> list[dict[str, str]]:
        args = ["image", "rm"] + (["--force"] if force else [])
        result = await self.runner.run([*args, "--", reference], check=False)
        text = result.error_text
        if result.returncode != 0 or ("conflict" in text and not result.stdout):
            if "being used" in text or "conflict" in text:
                raise ConflictError(text)
            if "not found" in text or "no such image" in text.lower():
                raise NoSuchImageError(reference)
            raise EngineError(text)
        items = []
        for line in result.stdout.decode().splitlines():
            match = REMOVED_PATTERN.match(line.strip())
            if match:
                items.append({match.group(1): match.group(2)})
        return items

    async def load(self, chunks: AsyncIterator[bytes]) -> list[str]:
        """Feed an image archive to `nerdctl image load` and return the loaded names."""
        process = await self.runner.spawn(["image", "load"], stdin=asyncio.subprocess.PIPE)
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        stderr_task = asyncio.ensure_future(process.stderr.read())
        stdout_task = asyncio.ensure_future(process.stdout.read())
        try:
            async for chunk in chunks:
                process.stdin.write(chunk)
                await process.stdin.drain()
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass
        stdout, stderr = await stdout_task, await stderr_task
        await process.wait()
        if process.returncode != 0:
            text = clean_error(stderr.decode(errors="replace")) or "image load failed"
            if any(marker in text for marker in ARCHIVE_ERRORS):
                raise InvalidParameterError(f"invalid image archive: {text}")
            raise EngineError(text)
        names = []
        for line in stdout.decode().splitlines():
            match = LOADED_PATTERN.match(line.strip())
            if match:
                names.append(match.group(1))
        return names

    async def pull(self, reference: str, *, insecure: bool) -> asyncio.subprocess.Process:
        """Start `nerdctl image pull`; its stderr carries the progress lines."""
        args = ["image", "pull"]
        if insecure:
            args.append("--insecure-registry")
        return await self.runner.spawn([*args, "--", reference])

    @staticmethod
    def parse_progress(line: str) -> dict[str, Any] | None:
        """Parse one progress line into kind, short id, state, current and total."""
        match = PROGRESS_PATTERN.match(line.strip())
        if not match:
            return None
        return {
            "kind": match.group("kind"),
            "id": match.group("digest")[:12],
            "state": match.group("state").strip(),
            "current": to_bytes(match.group("current"), match.group("cunit")),
            "total": to_bytes(match.group("total"), match.group("tunit")),
        }
