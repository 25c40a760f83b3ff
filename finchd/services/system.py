"""`/version` and `/info`: what finchd and its engine are, and what they hold."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from finchd import __version__
from finchd.nerdctl.containers import Containers
from finchd.nerdctl.images import Images
from finchd.services.container_view import state_of

API_VERSION = "1.43"
MIN_API_VERSION = "1.35"
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}
CGROUP_V1_WARNING = (
    "WARNING: Running in rootless-mode without cgroups. Systemd is required to enable "
    "cgroups in rootless-mode. Memory, CPU and pids limits are not enforced, and "
    "container stats are read from /proc without cgroup accounting."
)


@dataclass(frozen=True)
class ContainerState:
    """A container's id, name (without the leading slash) and Docker status."""

    id: str
    name: str
    status: str


@dataclass(frozen=True)
class ContainerCounts:
    """The container counts of `/info`."""

    running: int
    paused: int
    stopped: int

    @classmethod
    def of(cls, statuses: list[str]) -> ContainerCounts:
        running = statuses.count("running")
        paused = statuses.count("paused")
        return cls(running, paused, len(statuses) - running - paused)


def info_warnings() -> list[str]:
    """Return the `Warnings` of `/info`."""
    return [] if has_cgroup_limits() else [CGROUP_V1_WARNING]


def go_arch() -> str:
    machine = platform.machine()
    return GO_ARCH.get(machine, machine)


def cgroup_version() -> str:
    return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"


def delegated_controllers() -> set[str]:
    """Return the cgroup v2 controllers delegated to this user's service, if any."""
    if cgroup_version() != "2":
        return set()
    path = Path(f"/sys/fs/cgroup/user.slice/user-{os.getuid()}.slice/user@{os.getuid()}.service/cgroup.controllers")
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def has_cgroup_limits() -> bool:
    return {"memory", "pids"} <= delegated_controllers()


def mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


class SystemService:
    """System-wide facts for `/version` and `/info`."""

    def __init__(self, containers: Containers, images: Images, namespace: str,
                 root_dir: Path, versions: Callable[[], dict[str, str]]):
        self.containers = containers
        self.images = images
        self.namespace = namespace
        self.root_dir = root_dir
        self._versions = versions

    async def engine_versions(self) -> dict[str, str]:
        return await asyncio.get_running_loop().run_in_executor(None, self._versions)

    async def version(self) -> dict[str, Any]:
        versions = await self.engine_versions()
        components = [{"Name": "Engine", "Version": __version__, "Details": {
            "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Arch": go_arch(),
            "Os": "linux", "KernelVersion": platform.release(), "Experimental": "false",
            "GitCommit": "", "GoVersion": "", "BuildTime": ""}}]
        for name, key in (("containerd", "containerd"), ("runc", "runc"),
                          ("rootlesskit", "rootlesskit"), ("slirp4netns", "slirp4netns"),
                          ("buildkit", "buildkitd"), ("nerdctl", "nerdctl")):
            components.append({"Name": name, "Version": versions.get(key, "unknown"),
                               "Details": {"GitCommit": ""}})
        return {
            "Platform": {"Name": f"finchd {__version__}"}, "Components": components,
            "Version": __version__, "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION, "GitCommit": "", "GoVersion": "",
            "Os": "linux", "Arch": go_arch(), "KernelVersion": platform.release(),
            "Experimental": False, "BuildTime": "",
        }

    async def container_states(self) -> list[ContainerState]:
        """Return the id, name and status of every container, as `/info` counts them."""
        natives = await self.containers.inspect(await self.containers.list_ids())
        return [
            ContainerState(
                str(native.get("Id") or ""),
                str(native.get("Name") or "").lstrip("/"),
                state_of(native)["Status"],
            )
            for native in natives
        ]

    async def image_count(self) -> int:
        """Return the number of distinct image IDs, as `/info` counts them."""
        return len({row.get("ID") for row in await self.images.list_rows()})

    async def info(self) -> dict[str, Any]:
        # Each of these runs nerdctl or reads binaries' versions, so they run side by side.
        containers, images, versions = await asyncio.gather(
            self.container_states(), self.image_count(), self.engine_versions())
        states = [container.status for container in containers]
        counts = ContainerCounts.of(states)
        limits = has_cgroup_limits()
        warnings = info_warnings()
        return {
            "ID": _engine_id(self.root_dir), "Containers": len(states),
            "ContainersRunning": counts.running,
            "ContainersPaused": counts.paused,
            "ContainersStopped": counts.stopped,
            "Images": images, "Driver": "overlayfs",
            "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none", "macvlan", "ipvlan"],
                        "Authorization": None, "Log": ["json-file", "journald", "none"]},
            "MemoryLimit": limits, "SwapLimit": limits, "KernelMemoryTCP": False,
            "CpuCfsPeriod": limits, "CpuCfsQuota": limits, "CPUShares": limits, "CPUSet": limits,
            "PidsLimit": limits, "IPv4Forwarding": True, "BridgeNfIptables": False,
            "BridgeNfIp6tables": False, "Debug": False, "NFd": _count_fds(),
            "OomKillDisable": False, "NGoroutines": 0,
            "SystemTime": datetime.now(timezone.utc).astimezone().isoformat(),
            "LoggingDriver": "json-file", "CgroupDriver": "none" if not limits else "systemd",
            "CgroupVersion": cgroup_version(), "NEventsListener": 0,
            "KernelVersion": platform.release(), "OperatingSystem": os_release(),
            "OSVersion": "", "OSType": "linux", "Architecture": platform.machine(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [],
                               "AllowNondistributableArtifactsHostnames": [],
                               "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {},
                               "Mirrors": []},
            "NCPU": os.cpu_count() or 1, "MemTotal": mem_total(), "GenericResources": None,
            "DockerRootDir": str(self.root_dir), "HttpProxy": os.environ.get("HTTP_PROXY", ""),
            "HttpsProxy": os.environ.get("HTTPS_PROXY", ""), "NoProxy": os.environ.get("NO_PROXY", ""),
            "Name": socket.gethostname(), "Labels": [], "ExperimentalBuild": False,
            "ServerVersion": __version__, "Runtimes": {"runc": {"path": "runc"}},
            "DefaultRuntime": "runc", "Swarm": {"NodeID": "", "NodeAddr": "",
                                                "LocalNodeState": "inactive", "ControlAvailable": False,
                                                "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "tini",
            "ContainerdCommit": {"ID": versions.get("containerd", ""), "Expected": ""},
            "RuncCommit": {"ID": versions.get("runc", ""), "Expected": ""},
            "InitCommit": {"ID": "", "Expected": ""},
            "SecurityOptions": ["name=seccomp,profile=builtin", "name=rootless"]
            + (["name=cgroupns"] if cgroup_version() == "2" else []),
            "Warnings": warnings,
        }


def _count_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _engine_id(root: Path) -> str:
    """Return the engine id, created once and then read from the data directory."""
    path = root / "engine-id"
    try:
        return path.read_text().strip()
    except OSError:
        import uuid
        value = str(uuid.uuid4()).upper()
        try:
            root.mkdir(parents=True, exist_ok=True)
            path.write_text(value)
        except OSError:
            pass
        return value
