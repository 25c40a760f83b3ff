"""Skip engine tests on machines that cannot run the rootless engine.

Tests marked `engine` need the real rootless engine, the docker CLI and an
unprivileged user. Everywhere else they are skipped with the list of missing
pieces, so `pytest tests/unit` works on a developer machine.
"""

from __future__ import annotations

import os
import pwd
import shutil
from functools import cache
from pathlib import Path

import pytest

DOCKER_CLI = Path(os.environ.get("FINCHD_TEST_DOCKER", "/usr/local/bin/docker"))
ENGINE_PROGRAMS = ("nerdctl", "containerd", "rootlesskit", "runc", "slirp4netns")
TEST_PROGRAMS = (Path("/usr/bin/docker-registry"), Path("/bin/busybox"))


def _has_subordinate_ids(path: Path, user: str, uid: int) -> bool:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return False
    owners = {line.partition(":")[0] for line in lines if line.strip()}
    return user in owners or str(uid) in owners


@cache
def missing_engine_prerequisites() -> tuple[str, ...]:
    """Return what this machine lacks to run engine tests; empty when nothing."""
    uid = os.geteuid()
    if uid == 0:
        reason = (
            "running as root, but the engine is rootless: run the engine tests as "
            "an unprivileged user (scripts/test does this as user finchtest)"
        )
        return (reason,)

    missing = []
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime_dir:
        missing.append(f"XDG_RUNTIME_DIR is not set (export it as /run/user/{uid})")
    elif not os.access(runtime_dir, os.W_OK | os.X_OK):
        missing.append(f"XDG_RUNTIME_DIR {runtime_dir} is not a writable directory")

    if not os.access(DOCKER_CLI, os.X_OK):
        missing.append(f"docker CLI {DOCKER_CLI} is missing")
    for program in ENGINE_PROGRAMS:
        if shutil.which(program) is None:
            missing.append(f"{program} is not on PATH")
    if shutil.which("newuidmap") is None and not Path("/usr/bin/newuidmap").exists():
        missing.append("newuidmap is missing (install uidmap)")
    for path in TEST_PROGRAMS:
        if not path.is_file():
            missing.append(f"{path} is missing (run scripts/install-deps)")

    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        missing.append("/dev/net/tun is not readable and writable (chmod 0666)")

    user = pwd.getpwuid(uid).pw_name
    for path in (Path("/etc/subuid"), Path("/etc/subgid")):
        if not _has_subordinate_ids(path, user, uid):
            missing.append(f"{path} has no range for user {user}")
    return tuple(missing)


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    engine_items = [item for item in items if item.get_closest_marker("engine")]
    if not engine_items:
        return
    missing = missing_engine_prerequisites()
    if not missing:
        return
    skip = pytest.mark.skip(
        reason="engine prerequisites missing: " + "; ".join(missing)
    )
    for item in engine_items:
        item.add_marker(skip)
