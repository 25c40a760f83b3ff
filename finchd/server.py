"""`finchd serve`: bind or adopt the API socket, serve until a stop signal or idle exit."""

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

from finchd.activation import Notifier, adopt_listen_socket
from finchd.api.app import make_app
from finchd.config import Settings
from finchd.dbus import start_status_bus, stop_status_bus
from finchd.engine.environment import engine_env, engine_versions
from finchd.engine.supervisor import engine_running, ensure_engine
from finchd.lifecycle import Acceptor, ActivityMonitor, Lifecycle, StatusReporter
from finchd.nerdctl.archive import ContainerFiles
from finchd.nerdctl.containerd import Containerd
from finchd.nerdctl.containers import Containers
from finchd.nerdctl.events import Events
from finchd.nerdctl.images import Images
from finchd.nerdctl.networks import Networks
from finchd.nerdctl.runner import Runner
from finchd.nerdctl.volumes import Volumes
from finchd.paths import Paths
from finchd.services.archive import ArchiveService
from finchd.services.container_admin import ContainerAdmin
from finchd.services.containers import ContainerService
from finchd.services.events import EventService
from finchd.services.exec import ExecService
from finchd.services.images import ImageService
from finchd.services.networks import NetworkService
from finchd.services.records import RecordStore
from finchd.services.status import StatusMonitor
from finchd.services.system import SystemService, has_cgroup_limits
from finchd.services.volumes import VolumeService
from finchd.units import ENGINE_UNIT, start_engine_unit

log = logging.getLogger(__name__)

# How long requests in flight, streams included, may run on after a stop signal.
SHUTDOWN_TIMEOUT = 15.0

# The max bytes of the request line and of one header line. aiohttp's default of
# 8190 rejected longer ones with a text/plain 400 and logged a traceback. Go's
# net/http, which dockerd uses, allows 1 MiB of request line and headers.
MAX_REQUEST_LINE_BYTES = 1 << 20


# sun_path has room for 108 bytes, including the terminating NUL.
MAX_SOCKET_PATH = 107


class SocketUnusableError(Exception):
    """The API socket path cannot be used: another finchd serves it, or it cannot be bound."""


def build_services(settings: Settings, paths: Paths) -> dict[str, Any]:
    runner = Runner(settings.nerdctl, lambda: engine_env(settings, paths),
                    paths.rootlesskit_state)
    containerd = Containerd(paths.containerd_socket, settings.namespace)
    containers = Containers(runner, containerd)
    images = Images(runner)
    networks = Networks(runner)
    container_service = ContainerService(containers, images,
                                         RecordStore(paths.data / "containers"),
                                         has_cgroup_limits, networks.gateways,
                                         network_exists=networks.exists,
                                         network_ids=networks.ids,
                                         fifo_root=paths.runtime / "fifo",
                                         network_subnets=networks.subnets)
    system = SystemService(containers, images, settings.namespace, paths.data,
                           lambda: engine_versions(settings))
    volumes = VolumeService(Volumes(runner), containers, RecordStore(paths.data / "volumes"))
    container_service.anonymous_volume_hook = volumes.record_container_volumes
    return {
        "containers": container_service,
        "container_admin": ContainerAdmin(container_service),
        "exec": ExecService(container_service),
        "events": EventService(Events(runner), containers, settings.namespace),
        "archive": ArchiveService(container_service,
                                  ContainerFiles(runner, paths, containerd)),
        "images": ImageService(images, settings.insecure_registries),
        "networks": NetworkService(networks, container_service,
                                   RecordStore(paths.data / "networks")),
        "volumes": volumes,
        "system": system,
        "status": StatusMonitor(system, Events(runner), settings.namespace,
                                str(settings.socket_path(paths)), lambda: engine_running(paths)),
    }


def bind_socket(path: Path) -> socket.socket:
    """Bind a Unix socket at path with mode 0600, replacing a stale socket file.

    Raises SocketUnusableError with a one-line reason for every path that cannot be used.
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SocketUnusableError(
            f"socket path {path} is longer than the {MAX_SOCKET_PATH} bytes a Unix socket "
            "path may have; choose a shorter --socket")
    try:
        return _bind_socket(path)
    except PermissionError as exc:
        raise SocketUnusableError(f"cannot create the socket {path}: permission denied") from exc
    except OSError as exc:
        raise SocketUnusableError(f"cannot create the socket {path}: {exc.strerror}") from exc


def _bind_socket(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise SocketUnusableError(f"{path} exists and is not a socket; remove it or choose --socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("removing stale socket %s", path)
            path.unlink()
        else:
            raise SocketUnusableError(f"another finchd is already serving {path}")
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
    """Serve the API until a stop signal arrives or, with an idle timeout, until idle.

    Under socket activation the listening socket comes from systemd and stays
    with it after finchd exits. Otherwise finchd binds the configured path and
    removes the socket file at exit.
    """
    notifier = Notifier.from_environment()
    listener = adopt_listen_socket()
    activated = listener is not None
    socket_path = settings.socket_path(paths)
    if listener is None:
        listener = bind_socket(socket_path)
    loop = asyncio.get_running_loop()
    await start_engine(settings, paths, under_systemd=activated or notifier.enabled)
    services = build_services(settings, paths)
    monitor = ActivityMonitor(busy=services["containers"].io.relaying)
    app = make_app(services, outer_middlewares=[monitor.middleware])
    # handler_cancellation ends a handler whose client went away, so that a
    # stream with nothing to send (logs -f, events) does not keep finchd busy.
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=SHUTDOWN_TIMEOUT, handler_cancellation=True,
                           max_line_size=MAX_REQUEST_LINE_BYTES,
                           max_field_size=MAX_REQUEST_LINE_BYTES)
    await runner.setup()
    assert runner.server is not None
    acceptor = Acceptor(listener, runner.server, monitor.touch)
    lifecycle = Lifecycle(acceptor, monitor, notifier, settings.idle_timeout)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lifecycle.stop_requested.set)
    acceptor.start()
    where = "the socket passed by systemd" if activated else str(socket_path)
    log.info("serving the Docker API on %s", where)
    reporter = StatusReporter(notifier, monitor, lambda: engine_running(paths),
                              lambda: count_running(services))
    status_task = None
    if notifier.enabled:
        notifier.ready(await reporter.describe())
        status_task = asyncio.create_task(reporter.run())
    status_bus = await start_status_bus(services)
    reason = await lifecycle.run()
    log.info("stopping (%s)", "idle timeout" if reason == "idle" else "stop signal")
    if status_task is not None:
        status_task.cancel()
    await stop_status_bus(status_bus)
    await runner.cleanup()
    listener.close()
    if not activated:
        try:
            if socket_path.exists():
                socket_path.unlink()
        except OSError:
            pass
    return 0


async def count_running(services: dict[str, Any]) -> int:
    system: SystemService = services["system"]
    states = await system.container_states()
    return sum(1 for state in states if state.status == "running")


async def start_engine(settings: Settings, paths: Paths, *, under_systemd: bool) -> None:
    """Start the engine unless it runs; under systemd, as finch-engine.service.

    An engine started from finch.service would live in that unit's cgroup, and
    stopping the unit would kill every container, so under systemd the user
    manager starts the engine's own unit. Errors are only logged, because the
    API keeps serving and reports the missing engine in each failed request.
    """
    loop = asyncio.get_running_loop()
    try:
        if under_systemd and not engine_running(paths):
            if not await loop.run_in_executor(None, start_engine_unit):
                log.warning("%s is not installed, so the engine runs inside this service and "
                            "stops with it; run `finchd install-units`", ENGINE_UNIT)
        await loop.run_in_executor(None, ensure_engine, settings, paths)
    except Exception as exc:  # noqa: BLE001 - the API still answers and reports engine errors
        log.error("the engine is not running: %s", exc)
