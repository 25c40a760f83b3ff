"""Shape nerdctl's dockercompat inspect output into Docker's container schemas."""

from __future__ import annotations

import json
from typing import Any

from finchd.services.health import effective_healthcheck
from finchd.services.network_ids import endpoint_id, pseudo_network_id
from finchd.services.timefmt import ZERO_TIME, human_duration, since, unix_seconds
from finchd.specs import is_user_network

NETWORKS_LABEL = "nerdctl/networks"
NERDCTL_LABEL_PREFIXES = ("nerdctl/", "io.containerd.", "containerd.io/")

HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0],
    "CapAdd": None, "CapDrop": None, "CgroupnsMode": "host", "Dns": [], "DnsOptions": [],
    "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private",
    "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
    "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "",
    "UsernsMode": "", "ShmSize": 67108864, "Runtime": "runc", "Isolation": "",
    "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
    "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
    "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0,
    "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
    "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0,
    "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None,
    "Ulimits": None, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None, "Init": None,
}


def container_name(native: dict[str, Any]) -> str:
    return "/" + str(native.get("Name") or "").lstrip("/")


def state_of(native: dict[str, Any]) -> dict[str, Any]:
    state = dict(native.get("State") or {})
    status = state.get("Status") or "created"
    if status in ("stopped", "unknown"):
        status = "exited" if state.get("FinishedAt") or state.get("StartedAt") else "created"
    return {
        "Status": status,
        "Running": status == "running",
        "Paused": status == "paused",
        "Restarting": status == "restarting",
        "OOMKilled": False,
        "Dead": status == "dead",
        "Pid": state.get("Pid") or 0 if status == "running" else 0,
        "ExitCode": state.get("ExitCode") or 0,
        "Error": state.get("Error") or "",
        "StartedAt": state.get("StartedAt") or ZERO_TIME,
        "FinishedAt": state.get("FinishedAt") or ZERO_TIME,
    }


def network_names(native: dict[str, Any]) -> list[str]:
    labels = (native.get("Config") or {}).get("Labels") or {}
    try:
        names = json.loads(labels.get(NETWORKS_LABEL) or "[]")
    except json.JSONDecodeError:
        names = []
    return [str(name) for name in names] or ["bridge"]


def _endpoint(native_endpoint: dict[str, Any] | None, gateway: str,
              sent: dict[str, Any] | None = None, network_id: str = "",
              container_id: str = "") -> dict[str, Any]:
    endpoint = native_endpoint or {}
    running = bool(endpoint.get("IPAddress"))
    sent = sent or {}
    return {
        "IPAMConfig": sent.get("IPAMConfig") or None, "Links": None,
        "Aliases": sent.get("Aliases") or None, "NetworkID": network_id,
        "EndpointID": endpoint_id(network_id, container_id) if running and network_id else "",
        "Gateway": gateway if running else "",
        "IPAddress": endpoint.get("IPAddress") or "",
        "IPPrefixLen": endpoint.get("IPPrefixLen") or 0,
        "IPv6Gateway": "", "GlobalIPv6Address": endpoint.get("GlobalIPv6Address") or "",
        "GlobalIPv6PrefixLen": endpoint.get("GlobalIPv6PrefixLen") or 0,
        "MacAddress": endpoint.get("MacAddress") or "", "DriverOpts": None,
    }


def _sent_endpoint(native: dict[str, Any], name: str,
                   networking_config: dict[str, Any]) -> dict[str, Any]:
    """Return the request's EndpointsConfig entry for a network, with Docker's short ID alias."""
    endpoints = networking_config.get("EndpointsConfig") or {}
    sent = dict(endpoints.get(name) or (endpoints.get("default") if name == "bridge" else None)
                or {})
    if is_user_network(name):
        short_id = str(native.get("Id") or "")[:12]
        aliases = list(sent.get("Aliases") or [])
        sent["Aliases"] = aliases if short_id in aliases else [*aliases, short_id]
    return sent


def network_settings(native: dict[str, Any], gateways: dict[str, str],
                     networking_config: dict[str, Any] | None = None,
                     network_ids: dict[str, str] | None = None) -> dict[str, Any]:
    """Build NetworkSettings. It is an object even before the container starts."""
    settings = native.get("NetworkSettings") or {}
    native_networks = list((settings.get("Networks") or {}).values())
    networks: dict[str, Any] = {}
    for index, name in enumerate(network_names(native)):
        if name in ("host", "none"):
            networks[name] = _endpoint(None, "", network_id=pseudo_network_id(name))
            continue
        if name.startswith("container:"):
            networks[name] = _endpoint(None, "")
            continue
        endpoint = native_networks[index] if index < len(native_networks) else None
        sent = _sent_endpoint(native, name, networking_config or {})
        networks[name] = _endpoint(endpoint, gateways.get(name, ""), sent,
                                   (network_ids or {}).get(name, ""), str(native.get("Id") or ""))
    first = next(iter(networks.values()), _endpoint(None, ""))
    return {
        "Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0, "Ports": settings.get("Ports") or {},
        "SandboxKey": "", "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": first["EndpointID"], "Gateway": first["Gateway"],
        "GlobalIPv6Address": first["GlobalIPv6Address"],
        "GlobalIPv6PrefixLen": first["GlobalIPv6PrefixLen"], "IPAddress": first["IPAddress"],
        "IPPrefixLen": first["IPPrefixLen"], "IPv6Gateway": first["IPv6Gateway"],
        "MacAddress": first["MacAddress"], "Networks": networks,
    }


def user_labels(labels: dict[str, str] | None) -> dict[str, str]:
    return {
        key: value for key, value in (labels or {}).items()
        if not key.startswith(NERDCTL_LABEL_PREFIXES)
    }


def _merge_env(image_env: list[str], sent_env: list[str]) -> list[str]:
    """Docker's rule: the image's variables, each replaced or extended by the request's."""
    merged = {entry.split("=", 1)[0]: entry for entry in image_env}
    for entry in sent_env:
        merged[entry.split("=", 1)[0]] = entry
    return list(merged.values())


def config_of(native: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Docker's Config: the image's defaults, overridden by what the client sent."""
    native_config = native.get("Config") or {}
    image = record.get("ImageConfig") or {}
    sent = record.get("Config") or {}
    entrypoint = sent.get("Entrypoint") if "Entrypoint" in sent and sent["Entrypoint"] is not None else image.get("Entrypoint")
    if sent.get("Cmd") is not None:
        cmd = sent["Cmd"]
    elif sent.get("Entrypoint") is not None:
        cmd = None
    else:
        cmd = image.get("Cmd")
    config: dict[str, Any] = {
        "Hostname": native_config.get("Hostname") or "", "Domainname": "",
        "User": sent.get("User") or image.get("User") or "",
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": _merge_env(image.get("Env") or [], sent.get("Env") or []) or native_config.get("Env") or [],
        "Cmd": cmd, "Image": native.get("Image") or "", "Volumes": None,
        "WorkingDir": sent.get("WorkingDir") or image.get("WorkingDir") or "",
        "Entrypoint": entrypoint or None, "OnBuild": None,
        "Labels": {**(image.get("Labels") or {}), **user_labels(native_config.get("Labels"))},
    }
    for key in ("Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
                "OpenStdin", "StdinOnce", "ExposedPorts", "Volumes", "StopSignal",
                "StopTimeout", "Image", "Healthcheck", "MacAddress", "Shell"):
        if sent.get(key) is not None:
            config[key] = sent[key]
    if sent.get("Hostname"):
        config["Hostname"] = sent["Hostname"]
    # dockerd shows no volumes as null and leaves out ExposedPorts when there are none.
    if not config.get("Volumes"):
        config["Volumes"] = None
    if not config.get("ExposedPorts"):
        config.pop("ExposedPorts", None)
    return config


def host_config_of(record: dict[str, Any]) -> dict[str, Any]:
    host = dict(HOST_CONFIG_DEFAULTS)
    host.update(record.get("HostConfig") or {})
    return host


def inspect_view(native: dict[str, Any], record: dict[str, Any],
                 gateways: dict[str, str],
                 network_ids: dict[str, str] | None = None) -> dict[str, Any]:
    """Build a ContainerInspectResponse."""
    state = state_of(native)
    if effective_healthcheck(record) is not None:
        state["Health"] = record.get("Health") or {"Status": "starting", "FailingStreak": 0,
                                                   "Log": []}
        if state["Status"] != "running":
            state["Health"] = {**state["Health"], "Status": "unhealthy"
                               if state["Health"]["Status"] == "unhealthy" else "starting"}
    return {
        "Id": native.get("Id"),
        "Created": native.get("Created") or ZERO_TIME,
        "Path": native.get("Path") or "",
        "Args": native.get("Args") or [],
        "State": state,
        "Image": record.get("ImageID") or native.get("Image") or "",
        "ResolvConfPath": native.get("ResolvConfPath") or "",
        "HostnamePath": native.get("HostnamePath") or "",
        "HostsPath": native.get("HostsPath") or "",
        "LogPath": native.get("LogPath") or "",
        "Name": container_name(native),
        "RestartCount": native.get("RestartCount") or 0,
        "Driver": native.get("Driver") or "overlayfs",
        "Platform": native.get("Platform") or "linux",
        "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": native.get("AppArmorProfile") or "",
        "ExecIDs": None,
        "HostConfig": host_config_of(record),
        "GraphDriver": {"Name": native.get("Driver") or "overlayfs", "Data": None},
        "Mounts": mounts_of(native),
        "Config": config_of(native, record),
        "NetworkSettings": network_settings(native, gateways,
                                            record.get("NetworkingConfig") or {}, network_ids),
    }


def mounts_of(native: dict[str, Any]) -> list[dict[str, Any]]:
    mounts = []
    for mount in native.get("Mounts") or []:
        mounts.append({
            "Type": mount.get("Type") or "bind", "Name": mount.get("Name") or "",
            "Source": mount.get("Source") or "", "Destination": mount.get("Destination") or "",
            "Driver": mount.get("Driver") or "", "Mode": mount.get("Mode") or "",
            "RW": bool(mount.get("RW", True)), "Propagation": mount.get("Propagation") or "",
        })
    return mounts


def status_text(state: dict[str, Any]) -> str:
    """Docker's human status: `Up 3 seconds`, `Exited (0) 5 seconds ago`, `Created`."""
    status = state["Status"]
    if status == "running":
        health = (state.get("Health") or {}).get("Status")
        suffix = {"starting": " (health: starting)", "healthy": " (healthy)",
                  "unhealthy": " (unhealthy)"}.get(health or "", "")
        return f"Up {human_duration(since(state['StartedAt']))}{suffix}"
    if status == "paused":
        return f"Up {human_duration(since(state['StartedAt']))} (Paused)"
    if status == "exited":
        if state["FinishedAt"] == ZERO_TIME:
            return f"Exited ({state['ExitCode']})"
        return f"Exited ({state['ExitCode']}) {human_duration(since(state['FinishedAt']))} ago"
    return str(status).capitalize()


def summary_ports(inspect: dict[str, Any]) -> list[dict[str, Any]]:
    ports = []
    exposed = set((inspect["Config"].get("ExposedPorts") or {}).keys())
    bound = inspect["NetworkSettings"].get("Ports") or {}
    for key, bindings in bound.items():
        exposed.discard(key)
        number, _, protocol = key.partition("/")
        for binding in bindings or []:
            ports.append({"IP": binding.get("HostIp") or "0.0.0.0", "PrivatePort": int(number),
                          "PublicPort": int(binding.get("HostPort") or 0), "Type": protocol or "tcp"})
    for key in exposed:
        number, _, protocol = key.partition("/")
        if number.isascii() and number.isdigit():
            ports.append({"PrivatePort": int(number), "Type": protocol or "tcp"})
    return ports


def summary_view(inspect: dict[str, Any]) -> dict[str, Any]:
    """Build a ContainerSummary from an inspect view."""
    config = inspect["Config"]
    command = [inspect["Path"], *inspect["Args"]] if inspect["Path"] else []
    networks = inspect["NetworkSettings"]["Networks"]
    return {
        "Id": inspect["Id"],
        "Names": [inspect["Name"]],
        "Image": config.get("Image") or "",
        "ImageID": inspect["Image"],
        "Command": " ".join(command),
        "Created": unix_seconds(inspect["Created"]),
        "Ports": summary_ports(inspect),
        "Labels": config.get("Labels") or {},
        "State": inspect["State"]["Status"],
        "Status": status_text(inspect["State"]),
        "HostConfig": {"NetworkMode": inspect["HostConfig"].get("NetworkMode") or "default"},
        "NetworkSettings": {"Networks": networks},
        "Mounts": inspect["Mounts"],
    }
