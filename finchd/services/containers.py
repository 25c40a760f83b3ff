"""Container operations: create, lifecycle, inspect, list, wait."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from finchd.errors import (
    ConflictError,
    EngineError,
    FinchdError,
    ForbiddenError,
    InvalidParameterError,
    NoSuchContainerError,
    NoSuchImageError,
    NotFoundError,
    NotModifiedError,
)
from finchd.nerdctl.containers import Containers, JsonFileLog
from finchd.nerdctl.images import Images
from finchd.services.container_io import AttachSession, ContainerIO
from finchd.services.container_spec import parse_create, parse_restart
from finchd.services.container_view import inspect_view, summary_view
from finchd.services.health import HealthMonitor
from finchd.services.images import find_image
from finchd.services.filters import label_matches, parse_filters
from finchd.services.records import RecordStore
from finchd.services.timefmt import now_rfc3339
from finchd.services.validation import check_signal, console_size
from finchd.specs import CreateSpec, is_user_network

log = logging.getLogger(__name__)

LIST_FILTERS = {"id", "name", "label", "status", "exited", "before", "since", "volume",
                "network", "ancestor", "health", "is-task", "publish", "expose"}
STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
# Container IDs, ID prefixes and names. Anything else cannot name a container, and
# nerdctl would read characters such as "/" as filter syntax.
REFERENCE_PATTERN = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]*")
POLL_SECONDS = 0.2
# How long the exit code of a removed container stays known to late waiters.
EXIT_CODE_KEEP_SECONDS = 60.0


class ContainerService:
    """Docker's container semantics on top of nerdctl."""

    def __init__(self, containers: Containers, images: Images, records: RecordStore,
                 cgroup_limits: Callable[[], bool],
                 gateways: Callable[[], Awaitable[dict[str, str]]],
                 network_exists: Callable[[str], Awaitable[bool]] | None = None,
                 network_ids: Callable[[], Awaitable[dict[str, str]]] | None = None,
                 fifo_root: Path | None = None,
                 network_subnets: Callable[[str], Awaitable[Sequence[str] | None]] | None = None):
        self.containers = containers
        self.io = ContainerIO(containers, fifo_root)
        self.health = HealthMonitor(containers, records)
        self.images = images
        self.records = records
        self._cgroup_limits = cgroup_limits
        self._gateways = gateways
        self._network_exists = network_exists
        self._network_ids = network_ids
        self._network_subnets = network_subnets
        self._started: dict[str, asyncio.Event] = {}
        self._removed: dict[str, asyncio.Event] = {}
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._exits: dict[str, asyncio.Future[int]] = {}
        self._aliases: dict[str, str] = {}
        # Exit codes of auto-remove containers that were removed after a failed start.
        self._failed_starts: dict[str, int] = {}
        # Containers being re-created for stdin: lookups of the old id wait for the new one.
        self._replacing: dict[str, asyncio.Future[str]] = {}
        # Called with the ID of a new container that may have anonymous volumes, so that
        # the volume service can mark them before the container, and nerdctl's list of
        # them in its labels, is removed.
        self.anonymous_volume_hook: Callable[[str], Awaitable[None]] | None = None

    async def create(self, body: Any, name: str | None) -> dict[str, Any]:
        spec = parse_create(await self._with_network_names(body), name, self._cgroup_limits())
        await self._check_network(spec.network)
        await self._check_addresses(spec)
        found = await find_image(self.images, spec.image)
        if found is None:
            raise NoSuchImageError(spec.image)
        # Config.Image keeps what the client sent, and nerdctl gets a name in its image store.
        spec.image, image = found
        if spec.name and await self.containers.inspect([spec.name]):
            existing = await self.find(spec.name)
            if existing["Name"].lstrip("/") == spec.name:
                raise ConflictError(
                    f'Conflict. The container name "/{spec.name}" is already in use by '
                    f'container "{existing["Id"]}". You have to remove (or rename) that '
                    "container to be able to reuse that name."
                )
        container_id = await self.containers.create(spec)
        self.records.save(container_id, {
            "Config": spec.config, "HostConfig": spec.host_config,
            "NetworkingConfig": spec.networking_config, "ImageID": image.get("Id") or "",
            "ImageConfig": image.get("Config") or {},
        })
        anonymous_volumes = (spec.volumes or (image.get("Config") or {}).get("Volumes")
                             or any(mount.type == "volume" and not mount.source
                                    for mount in spec.mounts))
        if anonymous_volumes and self.anonymous_volume_hook is not None:
            await self.anonymous_volume_hook(container_id)
        return {"Id": container_id, "Warnings": spec.warnings}

    async def resume(self) -> None:
        """Pick up the work of an earlier finchd: output relays, then health checks."""
        await self.resume_relays()
        await self.resume_health_checks()

    async def resume_relays(self) -> None:
        """Read the output of running containers whose FIFOs an earlier finchd owned."""
        folders = self.io.relay_folders()
        for container_id, folder in folders.items():
            try:
                view = await self.find(container_id)
            except FinchdError:
                view = None
            if view is None or not view["State"]["Running"] or self.io.relay_of(container_id):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            try:
                self.io.resume_relay(container_id, folder, view.get("LogPath") or "",
                                     bool(view["Config"].get("StdinOnce")))
            except OSError as exc:
                log.warning("cannot read the output of container %s again: %s",
                            container_id, exc)

    async def resume_health_checks(self) -> None:
        """Watch the running containers that have health checks, after finchd starts."""
        try:
            natives = await self.containers.inspect(await self.containers.list_ids())
        except EngineError as exc:
            log.warning("cannot resume health checks: %s", exc.message)
            return
        for native in natives:
            if (native.get("State") or {}).get("Running"):
                self.health.watch(str(native.get("Id")))

    def restart_policy(self, policy: dict[str, Any]) -> str:
        """Check a RestartPolicy object and return nerdctl's `--restart` value."""
        return parse_restart(policy)

    def update_record(self, container_id: str, host_config: dict[str, Any]) -> None:
        """Merge changed HostConfig fields into the stored create request."""
        record = self.records.load(container_id)
        record["HostConfig"] = {**(record.get("HostConfig") or {}), **host_config}
        self.records.save(container_id, record)

    async def _with_network_names(self, body: Any) -> Any:
        """Return the create body with network IDs and ID prefixes replaced by names.

        nerdctl groups containers for name resolution by the network reference it
        was given, so a container that joined by ID would not find the containers
        that joined by name.
        """
        if not isinstance(body, dict) or self._network_ids is None:
            return body
        host = body.get("HostConfig")
        networking = body.get("NetworkingConfig")
        endpoints = networking.get("EndpointsConfig") if isinstance(networking, dict) else None
        mode = host.get("NetworkMode") if isinstance(host, dict) else None
        references = [mode] if isinstance(mode, str) else []
        if isinstance(endpoints, dict):
            references += list(endpoints)
        if not any(is_user_network(reference) for reference in references):
            return body
        ids = await self._network_ids()
        body = dict(body)
        if isinstance(mode, str) and isinstance(host, dict):
            body["HostConfig"] = {**host, "NetworkMode": network_name(mode, ids)}
        if isinstance(endpoints, dict) and isinstance(networking, dict):
            body["NetworkingConfig"] = {**networking, "EndpointsConfig": {
                network_name(key, ids): value for key, value in endpoints.items()}}
        return body

    async def _check_addresses(self, spec: CreateSpec) -> None:
        """Raise dockerd's 400 for a requested address that no subnet of the network contains."""
        addresses = [address for address in (spec.ipv4_address, spec.ipv6_address) if address]
        if not addresses or self._network_subnets is None:
            return
        subnets = await self._network_subnets(spec.network)
        if subnets is None:
            return
        networks = [ipaddress.ip_network(subnet, strict=False) for subnet in subnets]
        for address in addresses:
            parsed = ipaddress.ip_address(address)
            family = [network for network in networks if network.version == parsed.version]
            if not family:
                raise InvalidParameterError(
                    f"user specified IP address {address} is supported only when connecting "
                    f"to networks with an IPv{parsed.version} subnet, and {spec.network} has none")
            if not any(parsed in network for network in family):
                raise InvalidParameterError(
                    f"no configured subnet or ip-range contain the IP address {address}")

    async def _check_network(self, network: str) -> None:
        """Raise dockerd's 404 for a network that does not exist, before creating anything."""
        if network in ("bridge", "host", "none") or network.startswith("container:"):
            return
        if self._network_exists is not None and not await self._network_exists(network):
            raise NotFoundError(f"network {network} not found")

    async def find(self, reference: str) -> dict[str, Any]:
        """Resolve an ID, unique ID prefix or name into its inspect view."""
        if not REFERENCE_PATTERN.fullmatch(reference):
            raise NoSuchContainerError(reference)
        if reference in self._replacing:
            reference = await asyncio.shield(self._replacing[reference])
        natives = await self.containers.inspect([self._aliases.get(reference, reference)])
        if not natives:
            raise NoSuchContainerError(reference)
        return await self._view(natives[0])

    async def _view(self, native: dict[str, Any]) -> dict[str, Any]:
        record = self.records.load(str(native.get("Id")))
        network_ids = await self._network_ids() if self._network_ids is not None else {}
        return inspect_view(native, record, await self._gateways(), network_ids)

    async def list_containers(self, *, all: bool, limit: int | None, size: bool,
                   filters_raw: str | None) -> list[dict[str, Any]]:
        filters = parse_filters(filters_raw, LIST_FILTERS)
        _check_filter_values(filters)
        natives = await self.containers.inspect(await self.containers.list_ids())
        views = [await self._view(native) for native in natives]
        views.sort(key=lambda view: view["Created"], reverse=True)
        views = await self._apply_filters(views, filters)
        if not all and not filters.get("status") and not filters.get("exited"):
            views = [view for view in views if view["State"]["Running"] or view["State"]["Paused"]]
        if limit is not None and limit > 0:
            views = views[:limit]
        summaries = [summary_view(view) for view in views]
        if size:
            for summary in summaries:
                summary["SizeRw"] = 0
                summary["SizeRootFs"] = 0
        return summaries

    async def _apply_filters(self, views: list[dict[str, Any]],
                             filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        for key in ("before", "since"):
            for reference in filters.get(key, []):
                pivot = await self.find(reference)
                if key == "before":
                    views = [view for view in views if view["Created"] < pivot["Created"]]
                else:
                    views = [view for view in views if view["Created"] > pivot["Created"]]
        return [view for view in views if _matches(view, filters)]

    async def start(self, reference: str) -> dict[str, Any]:
        view = await self.find(reference)
        if view["State"]["Running"]:
            raise NotModifiedError("container already started")
        sessions = self.io.take_pending(view["Id"])
        try:
            await self._start(view, sessions)
        except FinchdError as exc:
            for session in sessions:
                session.done.set()
            error = start_error(exc)
            if view["HostConfig"].get("AutoRemove"):
                # As dockerd does, so that a client waiting for the removal returns.
                self._failed_starts[view["Id"]] = start_exit_code(error)
                asyncio.get_running_loop().call_later(
                    EXIT_CODE_KEEP_SECONDS, self._failed_starts.pop, view["Id"], None)
                await self._remove_after_failed_start(view["Id"])
            raise error from exc
        self._after_start(view)
        return view

    async def _remove_after_failed_start(self, container_id: str) -> None:
        try:
            await self.remove(container_id, force=True, volumes=True)
        except FinchdError as exc:
            log.error("removal of container %s after its failed start failed: %s",
                      container_id, exc.message)

    async def _start(self, view: dict[str, Any], sessions: list[AttachSession]) -> None:
        config = view["Config"]
        if not config.get("OpenStdin"):
            # dockerd ignores a client's input to a container without OpenStdin.
            for session in sessions:
                session.stdin = None
        owns_stdio = bool(config.get("OpenStdin")) and not config.get("Tty")
        # `nerdctl start` points a container that joins another container's namespaces
        # at that container's current namespaces, which a task made by finchd would not do.
        shares_namespaces = _joins_other_namespaces(view["HostConfig"])
        if owns_stdio and shares_namespaces and any(session.stdin for session in sessions):
            await self._recreate_with_stdin(view, sessions)
        elif owns_stdio and not shares_namespaces:
            await self.io.start_with_stdin(view["Id"], sessions, view.get("LogPath") or "",
                                           bool(config.get("StdinOnce")))
        elif sessions and view["Config"].get("Tty"):
            args = self.containers.attach_start_args(view["Id"])
            # nerdctl's own errors go to a pipe, not onto the container's terminal.
            log_path = view.get("LogPath") or ""
            # HostConfig.ConsoleSize sizes finchd's terminal, and nerdctl passes that size
            # to the container's terminal once the task has started.
            await self.io.start_on_terminal(
                args, sessions, key=view["Id"], diagnostics=[],
                log=JsonFileLog(Path(log_path)) if log_path else None,
                size=console_size(view["HostConfig"].get("ConsoleSize")))
            await self._wait_running(view["Id"])
        else:
            started_at = now_rfc3339()
            await self.containers.start(view["Id"])
            if sessions:
                asyncio.ensure_future(self.io.follow_output(view["Id"], sessions, started_at))

    async def _recreate_with_stdin(self, view: dict[str, Any],
                                   sessions: list[AttachSession]) -> None:
        """Replace a created container by `nerdctl run --interactive` of the same spec.

        The new container gets a new id; the old id stays resolvable in this process.
        """
        old_id = view["Id"]
        record = self.records.load(old_id)
        body = {**(record.get("Config") or {}), "HostConfig": record.get("HostConfig") or {},
                "NetworkingConfig": record.get("NetworkingConfig") or {}}
        spec = parse_create(body, view["Name"], self._cgroup_limits())
        replacement: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._replacing[old_id] = replacement
        try:
            await self.containers.remove(old_id, force=True, volumes=False)
            with tempfile.TemporaryDirectory(prefix="finchd-run-") as folder:
                cidfile = Path(folder) / "cid"
                args = self.containers.run_interactive_args(spec, str(cidfile))
                new_id = await self.io.run_with_stdin(args, cidfile, sessions)
            # nerdctl writes the cidfile before containerd has created the container.
            await self._wait_running(new_id)
            self.records.save(new_id, record)
            self.records.delete(old_id)
            self._aliases[old_id] = new_id
            replacement.set_result(new_id)
        except BaseException:
            replacement.set_result(old_id)
            raise
        finally:
            del self._replacing[old_id]
        view["Id"] = new_id

    def resolve_alias(self, container_id: str) -> str:
        return self._aliases.get(container_id, container_id)

    async def _wait_running(self, container_id: str, timeout: float = 30.0) -> None:
        """Wait until an attached start has started the task, or has failed."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            natives = await self.containers.inspect([container_id])
            state = (natives[0].get("State") or {}) if natives else {}
            if state.get("Running") or state.get("FinishedAt") or state.get("Error"):
                if state.get("Error"):
                    raise EngineError(str(state["Error"]))
                return
            await asyncio.sleep(POLL_SECONDS)
        raise EngineError(f"container {container_id} did not start within {timeout:.0f} seconds")

    async def attach(self, view: dict[str, Any], session: AttachSession, *,
                     logs: bool, stream: bool) -> None:
        """Connect a client: replay the log if asked, then stream until exit."""
        container_id = view["Id"]
        if logs:
            chunks = self.io.logs(container_id, follow=False, timestamps=False, since=None,
                                  until=None, tail=None, stdout=session.stdout,
                                  stderr=session.stderr)
            async for stream_type, data in chunks:
                await session.write(stream_type, data)
        if not stream:
            session.done.set()
            return
        relay = self.io.relay_of(container_id)
        if view["State"]["Running"] and relay is not None:
            if not view["Config"].get("OpenStdin"):
                session.stdin = None
            relay.add(session)
        elif view["State"]["Running"]:
            asyncio.ensure_future(self.io.follow_output(container_id, [session], now_rfc3339()))
        else:
            self.io.add_pending(container_id, session)

    def _after_start(self, view: dict[str, Any]) -> None:
        container_id = view["Id"]
        for started_id in (container_id, *[old for old, new in self._aliases.items() if new == container_id]):
            self._started.setdefault(started_id, asyncio.Event()).set()
            self._started.pop(started_id, None)
        self.health.watch(container_id)
        self._exits.pop(container_id, None)
        self._exit_future(container_id)
        if view["HostConfig"].get("AutoRemove") and container_id not in self._monitors:
            self._monitors[container_id] = asyncio.ensure_future(self._auto_remove(container_id))

    def _exit_future(self, container_id: str) -> asyncio.Future[int]:
        """Return the one `nerdctl wait` of the container's current run, shared by all waiters.

        It is kept after the container is removed, so that a waiter that comes late to
        an auto-removed container still gets the exit code.
        """
        future = self._exits.get(container_id)
        if future is None:
            future = asyncio.ensure_future(self.containers.wait(container_id))
            self._exits[container_id] = future
            future.add_done_callback(lambda done: done.exception() if not done.cancelled() else None)
        return future

    async def _auto_remove(self, container_id: str) -> None:
        try:
            await asyncio.shield(self._exit_future(container_id))
            await self.remove(container_id, force=True, volumes=True)
        except NoSuchContainerError:
            pass
        except EngineError as exc:
            log.error("automatic removal of container %s failed: %s", container_id, exc.message)
        finally:
            self._monitors.pop(container_id, None)

    async def stop(self, reference: str, timeout: int | None, signal: str | None) -> None:
        view = await self.find(reference)
        if not view["State"]["Running"]:
            raise NotModifiedError("container already stopped")
        if signal:
            check_signal(signal)
        if timeout is None:
            timeout = view["Config"].get("StopTimeout")
        await self.containers.stop(view["Id"], timeout, signal)

    async def restart(self, reference: str, timeout: int | None, signal: str | None) -> None:
        view = await self.find(reference)
        if view["State"]["Running"]:
            await self.containers.stop(view["Id"], timeout, signal)
        await self.containers.start(view["Id"])
        self._after_start(view)

    async def kill(self, reference: str, signal: str) -> None:
        check_signal(signal)
        view = await self.find(reference)
        if not view["State"]["Running"]:
            raise ConflictError(f"Cannot kill container: {reference}: Container {view['Id']} is not running")
        await self.containers.kill(view["Id"], signal)

    async def remove(self, reference: str, *, force: bool, volumes: bool) -> None:
        view = await self.find(reference)
        if view["State"]["Running"] and not force:
            raise ConflictError(
                f"cannot remove container \"{view['Name']}\": container is running: "
                "stop the container before removing or force remove"
            )
        await self.containers.remove(view["Id"], force=force, volumes=volumes)
        self.health.forget(view["Id"])
        self.records.delete(view["Id"])
        asyncio.get_running_loop().call_later(EXIT_CODE_KEEP_SECONDS, self._exits.pop, view["Id"], None)
        event = self._removed.pop(view["Id"], None)
        if event is not None:
            event.set()

    async def wait(self, reference: str, condition: str) -> int:
        """Block until the condition holds and return the exit code."""
        if condition not in WAIT_CONDITIONS:
            raise InvalidParameterError(
                f"invalid condition: \"{condition}\": must be one of {', '.join(WAIT_CONDITIONS)}"
            )
        view = await self.find(reference)
        container_id = view["Id"]
        running = view["State"]["Running"]
        if condition == "not-running" and not running:
            return int(view["State"]["ExitCode"])
        removed = self._removed.setdefault(container_id, asyncio.Event()) if condition == "removed" else None
        if not running:
            if not await self._wait_started(container_id, removed):
                # Removed without running: an auto-remove container whose start failed.
                return self._failed_starts.pop(container_id, 0)
            container_id = self.resolve_alias(container_id)
            if removed is not None:
                removed = self._removed.setdefault(container_id, removed)
        code = await self._wait_exit(container_id)
        if removed is not None:
            await self._wait_removed(container_id, removed)
        return code

    async def _wait_started(self, container_id: str, removed: asyncio.Event | None) -> bool:
        """Wait until the container runs, and return False if it is removed first."""
        event = self._started.setdefault(container_id, asyncio.Event())
        while not event.is_set():
            if removed is not None and removed.is_set():
                return False
            try:
                await asyncio.wait_for(event.wait(), timeout=1.0)
            except TimeoutError:
                natives = await self.containers.inspect([container_id])
                if not natives:
                    if removed is not None:
                        return False
                    raise NoSuchContainerError(container_id)
                if (natives[0].get("State") or {}).get("Running"):
                    return True
        return True

    async def _wait_exit(self, container_id: str) -> int:
        future = self._exits.get(container_id)
        if future is not None and future.done() and not future.cancelled() \
                and future.exception() is None and await self.containers.inspect([container_id]):
            # A finished wait of an earlier run: the container exists again, so wait anew.
            self._exits.pop(container_id, None)
        try:
            return await asyncio.shield(self._exit_future(container_id))
        except NoSuchContainerError:
            raise
        except EngineError:
            natives = await self.containers.inspect([container_id])
            if not natives:
                raise NoSuchContainerError(container_id)
            return int((natives[0].get("State") or {}).get("ExitCode") or 0)

    async def _wait_removed(self, container_id: str, event: asyncio.Event) -> None:
        while not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), timeout=1.0)
            except TimeoutError:
                if not await self.containers.inspect([container_id]):
                    return


# Start failures that dockerd reports as the client's error (400) rather than its own.
INVALID_COMMAND_MARKERS = ("executable file not found", "no such file or directory",
                           "permission denied")


def start_error(exc: FinchdError) -> FinchdError:
    """Map a failed start to dockerd's status: 400 for a command that cannot run,
    403 for a requested IP address that is taken or outside the network."""
    if not isinstance(exc, EngineError):
        return exc
    lowered = exc.message.lower()
    if any(marker in lowered for marker in INVALID_COMMAND_MARKERS):
        return InvalidParameterError(exc.message)
    if "failed to allocate all requested ips" in lowered:
        return ForbiddenError(f"Address already in use or out of range: {exc.message}")
    return exc


def network_name(reference: str, ids: dict[str, str]) -> str:
    """Return the name of the network a reference names: a name, an ID or an unambiguous ID prefix."""
    if reference in ids or not is_user_network(reference):
        return reference
    matches = [name for name, network_id in ids.items() if network_id.startswith(reference)]
    return matches[0] if len(matches) == 1 else reference


def start_exit_code(error: FinchdError) -> int:
    """Return the exit code dockerd records for a failed start: 127, 126 or 128."""
    lowered = error.message.lower()
    if "not found" in lowered or "no such file or directory" in lowered:
        return 127
    if "permission denied" in lowered:
        return 126
    return 128


def _joins_other_namespaces(host_config: dict[str, Any]) -> bool:
    """Return whether a container shares another container's network, PID or IPC namespace."""
    return any(str(host_config.get(key) or "").startswith("container:")
               for key in ("NetworkMode", "PidMode", "IpcMode"))


def _matches(view: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    state = view["State"]
    checks: dict[str, Callable[[list[str]], bool]] = {
        "id": lambda values: any(view["Id"].startswith(value) for value in values),
        "name": lambda values: any(_search(value, view["Name"].lstrip("/")) for value in values),
        "label": lambda values: label_matches(view["Config"].get("Labels") or {}, values),
        "status": lambda values: state["Status"] in values,
        "exited": lambda values: state["Status"] == "exited" and str(state["ExitCode"]) in values,
        "ancestor": lambda values: view["Config"].get("Image") in values or view["Image"] in values,
        "volume": lambda values: any(
            mount["Destination"] in values or mount["Source"] in values or mount["Name"] in values
            for mount in view["Mounts"]),
        "network": lambda values: any(name in values for name in view["NetworkSettings"]["Networks"]),
        "health": lambda values: (state.get("Health") or {}).get("Status", "none") in values,
        "publish": lambda values: any(_port_matches(view, value, published=True) for value in values),
        "expose": lambda values: any(_port_matches(view, value, published=False) for value in values),
        "is-task": lambda values: "true" not in values,
    }
    for key, values in filters.items():
        check = checks.get(key)
        if check is not None and values and not check(values):
            return False
    return True


HEALTH_STATES = {"starting", "healthy", "unhealthy", "none"}


def _check_filter_values(filters: dict[str, list[str]]) -> None:
    """Reject filter values dockerd rejects, naming the filter."""
    for key, allowed in (("status", STATUSES), ("health", HEALTH_STATES),
                         ("is-task", {"true", "false"})):
        for value in filters.get(key, []):
            if value not in allowed:
                raise InvalidParameterError(f"invalid filter '{key}={value}'")
    for value in filters.get("exited", []):
        if not re.fullmatch(r"-?\d+", value):
            raise InvalidParameterError(f"invalid filter 'exited={value}'")


def _port_matches(view: dict[str, Any], value: str, *, published: bool) -> bool:
    """Match `port[/proto]` against published host ports or exposed container ports."""
    port, _, protocol = value.partition("/")
    protocol = protocol or "tcp"
    if published:
        for key, bindings in (view["NetworkSettings"].get("Ports") or {}).items():
            if key.endswith("/" + protocol) and any(
                    (binding or {}).get("HostPort") == port for binding in bindings or []):
                return True
        return False
    exposed = set((view["Config"].get("ExposedPorts") or {}).keys())
    exposed |= set((view["NetworkSettings"].get("Ports") or {}).keys())
    return f"{port}/{protocol}" in exposed


def _search(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name
