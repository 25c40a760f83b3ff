"""The create requests that finchd keeps beside nerdctl's own container and network state.

nerdctl's inspect output lacks parts of Docker's Config and HostConfig (AutoRemove,
ExposedPorts, the attach flags, HostConfig as the client sent it). finchd stores each
create request as `<id>.json` under its data directory and merges it into inspect.
Networks get the same treatment, in a directory of their own, for the parts of
Docker's Network object (Created, Attachable, Options as sent) that nerdctl lacks.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class RecordStore:
    """JSON files, one per container or network ID, written atomically."""

    def __init__(self, directory: Path):
        self.directory = directory

    def save(self, container_id: str, record: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{container_id}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)

    def load(self, container_id: str) -> dict[str, Any]:
        path = self.directory / f"{container_id}.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("ignoring unreadable container record %s: %s", path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def delete(self, container_id: str) -> None:
        (self.directory / f"{container_id}.json").unlink(missing_ok=True)
