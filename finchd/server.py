"""`finchd serve`: bind the API socket, serve until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import stat
from pathlib import Path
from typing import Any

from aiohttp import web

from finchd.api.app import make_app
from finchd.config import Settings
from finchd.dbus import start_status_bus, stop_status_bus
from finchd.engine.environment import engine_env, engine_versions
from finchd.engine.supervisor import engine_running, ensure_engine
from finchd.nerdctl.containers import Containers
from finchd.nerdctl.events import Events
from finchd.nerdctl.images import Images
from finchd.nerdctl.networks import Networks
from finchd.nerdctl.runner import Runner
from finchd.paths import Paths
from finchd.services.container_admin import ContainerAdmin
from finchd.services.containers import ContainerService
from finchd.services.exec import ExecService
from finchd.services.images import ImageService
from finchd.services.records import RecordStore
from finchd.services.status import StatusMonitor
from finchd.services.system import SystemService, has_cgroup_limits

log = logging.getLogger(__name__)


class SocketInUseError(Exception):
    """Another live finchd already serves the socket path."""


def build_services(settings: Settings, paths: Paths) -> dict[str, Any]:
    runner = Runner(settings.nerdctl, lambda: engine_env(settings, paths))
    containers = Containers(runner)
    images = Images(runner)
    networks = Networks(runner)
    container_service = ContainerService(containers, images,
                                         RecordStore(paths.data / "containers"),
                                         has_cgroup_limits, networks.gateways)
    system = SystemService(containers, images, settings.namespace, paths.data,
                           lambda: engine_versions(settings))
    return {
        "containers": container_service,
        "container_admin": ContainerAdmin(container_service),
        "exec": ExecService(container_service),
        "images": ImageService(images, settings.insecure_registries),
        "system": system,
        "status": StatusMonitor(system, Events(runner), settings.namespace,
                                str(settings.socket_path(paths)), lambda: engine_running(paths)),
    }


def bind_socket(path: Path) -> socket.socket:
    """Bind a Unix socket at path with mode 0600, replacing a stale socket file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise SocketInUseError(f"{path} exists and is not a socket; remove it or choose --socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("removing stale socket %s", path)
            path.unlink()
        else:
            raise SocketInUseError(f"another finchd is already serving {path}")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    listener.listen(128)
    listener.setblocking(False)
    return listener


async def serve(settings: Settings, paths: Paths) -> int:
    """Serve the API on the configured socket until a stop signal arrives."""
    socket_path = settings.socket_path(paths)
    listener = bind_socket(socket_path)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, ensure_engine, settings, paths)
    except Exception as exc:  # noqa: BLE001 - the API still answers and reports engine errors
        log.error("the engine is not running: %s", exc)
    services = build_services(settings, paths)
    app = make_app(services)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, listener)
    await site.start()
    log.info("serving the Docker API on %s", socket_path)
    status_bus = await start_status_bus(services)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping")
    await stop_status_bus(status_bus)
    await runner.cleanup()
    try:
        if socket_path.exists():
            socket_path.unlink()
    except OSError:
        pass
    return 0
