"""nerdctl argv and output parsing for containers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from finchd.errors import (
    ConflictError,
    EngineError,
    InvalidParameterError,
    NoSuchContainerError,
)
from finchd.nerdctl.containerd import Containerd
from finchd.nerdctl.runner import Result, Runner
from finchd.specs import CreateSpec, Mount

log = logging.getLogger(__name__)

NOT_FOUND_MARKERS = ("no such container", "not found")
# dockerd's default seconds between the stop signal and SIGKILL.
STOP_TIMEOUT = 10
STOP_POLL_SECONDS = 0.2
# The OCI annotation that nerdctl's OCI hook reads as the container's host name.
HOSTNAME_ANNOTATION = "nerdctl/hostname"
NAME_ANNOTATION = "nerdctl/name"
# containerd's restart manager labels, which `nerdctl start` sets before each start.
RESTART_POLICY_LABEL = "containerd.io/restart.policy"
RESTART_STATUS_LABEL = "containerd.io/restart.status"
EXPLICITLY_STOPPED_LABEL = "containerd.io/restart.explicitly-stopped"
# The JSON list of network names, both a container label (read by inspect and
# `nerdctl network rm`) and an OCI annotation (read by the OCI hook at start).
NETWORKS_KEY = "nerdctl/networks"


def raise_for_container(result: Result, reference: str) -> None:
    """Translate a failed nerdctl container command into finchd's errors."""
    if result.returncode == 0:
        return
    text = result.error_text
    lowered = text.lower()
    if any(marker in lowered for marker in NOT_FOUND_MARKERS):
        raise NoSuchContainerError(reference)
    if "already used" in lowered or "already exists" in lowered:
        raise ConflictError(text)
    raise EngineError(text or "nerdctl failed")


def hosts_names(container_id: str, spec: CreateSpec) -> list[str]:
    """Return the names of a container in hosts files, or [] where nerdctl's default will do.

    Docker resolves a container's aliases and its short ID on user-defined
    networks, and lists `HOSTNAME.DOMAINNAME` first when a domain name is set.
    nerdctl has no option for either, but its OCI hook writes the words of each
    container's `nerdctl/hostname` annotation into the hosts file of every
    container on the same network (nerdctl 2.0's hostsstore). It appends
    `.NETWORK` to the last word only, so the host name stays first.
    """
    hostname = spec.config.get("Hostname") or container_id[:12]
    domainname = spec.config.get("Domainname") or ""
    extra = [*spec.aliases, container_id[:12]] if spec.on_user_network else []
    extra = [name for name in dict.fromkeys(extra) if name != hostname]
    if not extra and not domainname:
        return []
    first = [f"{hostname}.{domainname}"] if domainname else []
    return [*first, hostname, *extra]


def create_args(spec: CreateSpec, *, log_opts: dict[str, str] | None = None) -> list[str]:
    """Build `nerdctl container create` argv. Every value is bound to its flag with `=`."""
    host = spec.host_config
    config = spec.config
    args = ["container", "create", "--pull=never"]
    if spec.name:
        args.append(f"--name={spec.name}")
    args += _flag_values(config, host)
    args += [f"--env={entry}" for entry in spec.env]
    args += [f"--label={key}={value}" for key, value in spec.labels.items()]
    args += [f"--volume={volume}" for volume in spec.volumes]
    args += [f"--volume={bind}" for bind in spec.binds]
    for port in spec.ports:
        host_part = f"{port.host_ip}:{port.host_port}:" if port.host_ip else (
            f"{port.host_port}:" if port.host_port else ""
        )
        args.append(f"--publish={host_part}{port.container_port}/{port.protocol}")
    args += [f"--publish={port}" for port in spec.publish_all]
    args += [f"--mount={mount_option(mount)}" for mount in spec.mounts]
    args += [f"--{flag}={value}" if value is not True else f"--{flag}"
             for flag, value in spec.resources.items()]
    if spec.ipv4_address:
        args.append(f"--ip={spec.ipv4_address}")
    if spec.ipv6_address:
        args.append(f"--ip6={spec.ipv6_address}")
    args.append(f"--network={spec.network}")
    args.append(f"--restart={spec.restart}")
    for key, value in (log_opts or {}).items():
        args.append(f"--log-opt={key}={value}")
    command = list(spec.cmd or [])
    if spec.entrypoint is not None:
        entry = spec.entrypoint
        args.append(f"--entrypoint={entry[0] if entry else ''}")
        command = entry[1:] + command
    args += ["--", spec.image, *command]
    return args


def mount_option(mount: Mount) -> str:
    """Render a Mount as nerdctl's `--mount` value."""
    parts = [f"type={mount.type}"]
    if mount.source:
        parts.append(f"source={mount.source}")
    parts.append(f"target={mount.target}")
    if mount.read_only:
        parts.append("readonly")
    if mount.propagation:
        parts.append(f"bind-propagation={mount.propagation}")
    if mount.tmpfs_size:
        parts.append(f"tmpfs-size={mount.tmpfs_size}")
    if mount.tmpfs_mode:
        parts.append(f"tmpfs-mode={mount.tmpfs_mode:o}")
    return ",".join(parts)


def _flag_values(config: dict[str, Any], host: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, flag in (("Hostname", "hostname"), ("User", "user"), ("WorkingDir", "workdir"),
                      ("StopSignal", "stop-signal"), ("MacAddress", "mac-address")):
        if config.get(key):
            args.append(f"--{flag}={config[key]}")
    if config.get("StopTimeout") is not None:
        args.append(f"--stop-timeout={config['StopTimeout']}")
    if config.get("Tty"):
        args.append("--tty")
    if config.get("OpenStdin"):
        args.append("--interactive")
    for key, flag in (("Init", "init"), ("Privileged", "privileged"),
                      ("ReadonlyRootfs", "read-only")):
        if host.get(key):
            args.append(f"--{flag}")
    for key, flag in (("CapAdd", "cap-add"), ("CapDrop", "cap-drop"), ("Dns", "dns"),
                      ("DnsOptions", "dns-option"), ("DnsSearch", "dns-search"),
                      ("ExtraHosts", "add-host"), ("GroupAdd", "group-add"),
                      ("SecurityOpt", "security-opt")):
        args += [f"--{flag}={value}" for value in host.get(key) or []]
    for key, value in (host.get("Tmpfs") or {}).items():
        args.append(f"--tmpfs={key}:{value}" if value else f"--tmpfs={key}")
    for key, value in (host.get("Sysctls") or {}).items():
        args.append(f"--sysctl={key}={value}")
    for key, value in (host.get("Annotations") or {}).items():
        args.append(f"--annotation={key}={value}")
    for source in host.get("VolumesFrom") or []:
        args.append(f"--volumes-from={source}")
    if host.get("OomScoreAdj"):
        args.append(f"--oom-score-adj={host['OomScoreAdj']}")
    for key, flag in (("Runtime", "runtime"), ("PidMode", "pid"), ("IpcMode", "ipc"),
                      ("UTSMode", "uts"), ("CgroupnsMode", "cgroupns")):
        if host.get(key):
            args.append(f"--{flag}={host[key]}")
    if host.get("ShmSize"):
        args.append(f"--shm-size={host['ShmSize']}")
    for ulimit in host.get("Ulimits") or []:
        args.append(f"--ulimit={ulimit['Name']}={ulimit['Soft']}:{ulimit['Hard']}")
    for device in host.get("Devices") or []:
        args.append(
            f"--device={device['PathOnHost']}:{device.get('PathInContainer') or device['PathOnHost']}"
            f":{device.get('CgroupPermissions') or 'rwm'}"
        )
    return args


class JsonFileLog:
    """Append output to a container's json-file log in the format nerdctl reads.

    `nerdctl start --attach` sends a TTY container's output to its caller and not to
    the logger, so finchd writes what it relays here, and `docker logs` shows it.
    """

    def __init__(self, path: Path):
        self.path = path
        self._partial = b""

    def write(self, stream: str, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        self._append(stream, [line + b"\n" for line in lines])

    def close(self, stream: str = "stdout") -> None:
        if self._partial:
            self._append(stream, [self._partial])
            self._partial = b""

    def _append(self, stream: str, lines: list[bytes]) -> None:
        if not lines:
            return
        now = datetime.now(timezone.utc)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"
        records = "".join(
            json.dumps({"log": line.decode(errors="replace"), "stream": stream, "time": stamp})
            + "\n" for line in lines)
        try:
            with self.path.open("a") as file:
                file.write(records)
        except OSError as exc:
            log.warning("cannot append to the container log %s: %s", self.path, exc)


class VolumeGuard:
    """Lets container creates run together, but never alongside a volume removal.

    nerdctl checks neither side against the other, so a volume removed while a
    container that names it is created would leave a container that cannot start.
    """

    def __init__(self) -> None:
        self._creates = 0
        self._removing = False
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def creating(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._removing)
            self._creates += 1
        try:
            yield
        finally:
            async with self._changed:
                self._creates -= 1
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def removing(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._removing and not self._creates)
            self._removing = True
        try:
            yield
        finally:
            async with self._changed:
                self._removing = False
                self._changed.notify_all()


class Containers:
    """nerdctl's container commands."""

    def __init__(self, runner: Runner, containerd: Containerd | None = None):
        self.runner = runner
        self.containerd = containerd
        self.volume_guard = VolumeGuard()

    async def create(self, spec: CreateSpec) -> str:
        async with self.volume_guard.creating():
            result = await self.runner.run(create_args(spec), check=False)
        if result.returncode != 0:
            text = result.error_text
            if "already used" in text or "name-store" in text or "already exists" in text:
                raise ConflictError(
                    f'Conflict. The container name "/{spec.name}" is already in use. '
                    "You have to remove (or rename) that container to be able to reuse that name."
                )
            if "no users found" in text or "no matching entries in passwd" in text:
                user = spec.config.get("User") or ""
                raise InvalidParameterError(
                    f"unable to find user {user}: no matching entries in passwd file")
            if "invalid tmpfs option" in text:
                raise InvalidParameterError(text)
            raise EngineError(text or "nerdctl create failed")
        container_id = result.stdout.decode().strip().splitlines()[-1]
        try:
            await self._write_runtime_options(container_id, spec)
        except BaseException:
            await self.runner.run(["container", "rm", "--force", "--", container_id], check=False)
            raise
        return container_id

    async def _write_runtime_options(self, container_id: str, spec: CreateSpec) -> None:
        """Store the create options that nerdctl has no flag for in the OCI runtime spec.

        containerd writes the stored spec into the bundle of every task it creates,
        so the options hold for each start of the container.
        """
        names = hosts_names(container_id, spec)
        domainname = spec.config.get("Domainname") or ""
        if spec.console_size is None and not names and not domainname:
            return
        hook = self._domainname_hook(domainname) if domainname else None

        def edit(runtime_spec: dict[str, Any]) -> None:
            if spec.console_size is not None:
                height, width = spec.console_size
                # runc sizes the terminal before the process starts, which a resize
                # after `nerdctl start` cannot do.
                process = runtime_spec.setdefault("process", {})
                process["consoleSize"] = {"height": height, "width": width}
            if names:
                annotations = runtime_spec.setdefault("annotations", {})
                annotations[HOSTNAME_ANNOTATION] = " ".join(names)
            if hook is not None:
                hooks = runtime_spec.setdefault("hooks", {})
                hooks.setdefault("createContainer", []).append(hook)

        await self._edit_spec(container_id, edit)

    def _engine_api(self, purpose: str) -> Containerd:
        """Return the containerd client, or raise for a purpose that needs it."""
        if self.containerd is None:
            raise EngineError(f"{purpose} needs containerd's API")
        return self.containerd

    async def _edit_spec(self, container_id: str, edit: Callable[[dict[str, Any]], None],
                         labels: dict[str, str] | None = None) -> None:
        """Apply edit to a container's stored OCI runtime spec, and set labels with it."""
        containerd = self._engine_api("changing a container's runtime spec")
        type_url, runtime_spec = await containerd.container_spec(container_id)
        edit(runtime_spec)
        await containerd.replace_container_spec(container_id, type_url, runtime_spec, labels)

    async def create_task_with_stdio(self, container_id: str, stdin: str, stdout: str,
                                     stderr: str) -> None:
        """Create a container's task with stdin, stdout and stderr on the named FIFOs.

        `nerdctl start` connects only stdout and stderr, to its log driver, so finchd
        does what it does otherwise through containerd's API: it sets the restart
        labels, deletes the task of an earlier run and creates a task. The caller
        reads the output FIFOs, writes the container's log and calls start_task.
        """
        containerd = self._engine_api("starting a container with stdin")
        record = await containerd.container(container_id)
        labels = {EXPLICITLY_STOPPED_LABEL: "false"}
        if RESTART_POLICY_LABEL in record.labels:
            labels[RESTART_STATUS_LABEL] = "running"
        await containerd.set_labels(container_id, labels)
        await containerd.delete_task(container_id)
        rootfs: list[dict[str, Any]] = []
        if record.snapshot_key:
            rootfs = await containerd.snapshot_mounts(record.snapshotter, record.snapshot_key)
        await containerd.create_task(container_id, rootfs, stdin, stdout, stderr)

    async def start_task(self, container_id: str) -> None:
        """Start a task made by create_task_with_stdio, or delete it if it cannot start."""
        containerd = self._engine_api("starting a container with stdin")
        try:
            await containerd.start_task(container_id)
        except BaseException:
            await containerd.delete_task(container_id)
            raise

    async def close_task_stdin(self, container_id: str) -> None:
        """Close the stdin of a task made by create_task_with_stdio."""
        await self._engine_api("closing a container's stdin").close_task_stdin(container_id)

    async def set_networks(self, container_id: str, networks: list[str], *,
                           add_names: list[str], remove_names: list[str]) -> None:
        """Change the networks a container that is not running joins at its next start.

        add_names and remove_names change the names under which the container
        resolves on its networks (see hosts_names).
        """
        value = json.dumps(networks)

        def edit(runtime_spec: dict[str, Any]) -> None:
            annotations = runtime_spec.setdefault("annotations", {})
            annotations[NETWORKS_KEY] = value
            words = (annotations.get(HOSTNAME_ANNOTATION) or container_id[:12]).split()
            kept = [word for word in words[1:] if word not in remove_names]
            added = [name for name in add_names if name not in words[:1] + kept]
            annotations[HOSTNAME_ANNOTATION] = " ".join([*words[:1], *kept, *added])

        await self._edit_spec(container_id, edit, {NETWORKS_KEY: value})

    def _domainname_hook(self, domainname: str) -> dict[str, Any]:
        """Return an OCI createContainer hook that sets the container's NIS domain name.

        runc 1.1 ignores the spec's `domainname`, and a rootless container may not
        write /proc/sys/kernel/domainname, which the host's root owns. runc runs
        createContainer hooks in the container's namespaces before it drops
        capabilities, where setdomainname(2) is allowed.
        """
        program = shutil.which("domainname", path=self.runner.env.get("PATH"))
        if program is None:
            raise InvalidParameterError(
                "Domainname needs the domainname program on the host; install the "
                "hostname package")
        return {"path": program, "args": ["domainname", domainname]}

    async def list_ids(self) -> list[str]:
        result = await self.runner.run(["container", "ls", "--all", "--quiet", "--no-trunc"])
        return [line for line in result.stdout.decode().split() if line]

    async def inspect(self, references: list[str]) -> list[dict[str, Any]]:
        """Inspect containers in dockercompat mode. Missing ones are left out."""
        if not references:
            return []
        result = await self.runner.run(
            ["container", "inspect", "--mode=dockercompat", "--", *references], check=False
        )
        text = result.stdout.decode().strip()
        if not text:
            if result.returncode != 0 and not any(
                marker in result.error_text.lower() for marker in NOT_FOUND_MARKERS
            ):
                raise EngineError(result.error_text)
            return []
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EngineError(f"cannot parse nerdctl inspect output: {exc}") from exc
        return list(data)

    async def start(self, container_id: str) -> None:
        result = await self.runner.run(["container", "start", "--", container_id], check=False)
        if result.returncode != 0 and "executable file not found" in result.error_text:
            # Checked first, because the generic "not found" would read as a missing container.
            raise EngineError(result.error_text)
        raise_for_container(result, container_id)

    async def stop(self, container_id: str, timeout: int | None, signal: str | None) -> None:
        """Stop a container as `docker stop` does: signal, wait `timeout` s, SIGKILL.

        nerdctl 2.0's `stop` has no --signal flag, so a signal from the request is
        sent with `kill`, and `stop --time=0` follows once the container exits or
        the timeout passes: it marks the container as stopped on purpose, which
        keeps restart policies from starting it again, and kills what is left.
        """
        args = ["container", "stop"]
        if signal:
            await self.kill(container_id, signal)
            await self._wait_not_running(container_id, STOP_TIMEOUT if timeout is None else timeout)
            timeout = 0
        if timeout is not None:
            args.append(f"--time={timeout}")
        result = await self.runner.run([*args, "--", container_id], check=False)
        raise_for_container(result, container_id)

    async def _wait_not_running(self, container_id: str, timeout: int) -> None:
        """Poll until the container stops running; a negative timeout waits forever."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout < 0 else loop.time() + timeout
        while deadline is None or loop.time() < deadline:
            natives = await self.inspect([container_id])
            if not natives or not (natives[0].get("State") or {}).get("Running"):
                return
            await asyncio.sleep(STOP_POLL_SECONDS)

    async def kill(self, container_id: str, signal: str) -> None:
        result = await self.runner.run(
            ["container", "kill", f"--signal={signal}", "--", container_id], check=False
        )
        raise_for_container(result, container_id)

    async def remove(self, container_id: str, *, force: bool, volumes: bool) -> None:
        args = ["container", "rm"]
        if force:
            args.append("--force")
        if volumes:
            args.append("--volumes")
        result = await self.runner.run([*args, "--", container_id], check=False)
        raise_for_container(result, container_id)

    async def rename(self, container_id: str, new_name: str) -> None:
        result = await self.runner.run(["container", "rename", "--", container_id, new_name],
                                       check=False)
        raise_for_container(result, container_id)
        if self.containerd is None:
            return
        # nerdctl's OCI hook takes the name for the name store and the hosts files from
        # this annotation at each start, and `nerdctl rename` leaves it unchanged.
        def edit(runtime_spec: dict[str, Any]) -> None:
            runtime_spec.setdefault("annotations", {})[NAME_ANNOTATION] = new_name

        await self._edit_spec(container_id, edit)

    async def pause(self, container_id: str) -> None:
        result = await self.runner.run(["container", "pause", "--", container_id], check=False)
        raise_for_container(result, container_id)

    async def unpause(self, container_id: str) -> None:
        result = await self.runner.run(["container", "unpause", "--", container_id], check=False)
        raise_for_container(result, container_id)

    async def update_restart(self, container_id: str, restart: str) -> None:
        result = await self.runner.run(
            ["container", "update", f"--restart={restart}", "--", container_id], check=False
        )
        raise_for_container(result, container_id)

    async def wait(self, container_id: str) -> int:
        result = await self.runner.run(["container", "wait", "--", container_id], check=False)
        raise_for_container(result, container_id)
        try:
            return int(result.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise EngineError(f"cannot parse nerdctl wait output {result.stdout!r}") from exc

    def logs_args(self, container_id: str, *, follow: bool, timestamps: bool,
                  since: str | None, until: str | None, tail: str | None) -> list[str]:
        args = ["container", "logs"]
        if follow:
            args.append("--follow")
        if timestamps:
            args.append("--timestamps")
        if since:
            args.append(f"--since={since}")
        if until:
            args.append(f"--until={until}")
        if tail is not None:
            args.append(f"--tail={tail}")
        return [*args, "--", container_id]

    def run_interactive_args(self, spec: CreateSpec, cidfile: str) -> list[str]:
        """Build `nerdctl container run --interactive` argv for a create spec.

        finchd starts a non-TTY container with stdin through containerd's API
        (create_task_with_stdio), except where the container joins another
        container's namespaces, which `nerdctl start` has to resolve first. Such
        containers are re-created with `nerdctl run --interactive`.

        NOTE: the re-created container lacks the spec edits of `create` (aliases,
        domain name), because `nerdctl run` starts its task at once.
        """
        args = create_args(spec)
        args[1:3] = ["run", "--pull=never", f"--cidfile={cidfile}"]
        if "--interactive" not in args:
            args.insert(3, "--interactive")
        return args

    def exec_args(self, container_id: str, config: dict[str, Any]) -> list[str]:
        """Build `nerdctl container exec` argv from a checked ExecConfig."""
        args = ["container", "exec"]
        if config.get("AttachStdin"):
            args.append("--interactive")
        if config.get("Tty"):
            args.append("--tty")
        if config.get("Privileged"):
            args.append("--privileged")
        args += [f"--env={entry}" for entry in config.get("Env") or []]
        if config.get("User"):
            args.append(f"--user={config['User']}")
        if config.get("WorkingDir"):
            args.append(f"--workdir={config['WorkingDir']}")
        return [*args, "--", container_id, *config["Cmd"]]

    def attach_start_args(self, container_id: str) -> list[str]:
        return ["container", "start", "--attach", "--detach-keys=", "--", container_id]
