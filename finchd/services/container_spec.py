"""Turn a `POST /containers/create` body into a checked CreateSpec."""

from __future__ import annotations

import re
from typing import Any

from finchd.errors import InvalidParameterError
from finchd.services.health import check_healthcheck
from finchd.specs import CreateSpec, PortBinding
from finchd.services.validation import (
    describe,
    expect,
    is_empty,
    set_object,
    strict_string_list,
    string_list,
    string_map,
)

NAME_PATTERN = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
PORT_PATTERN = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$")

# Resource limits need cgroup controllers. Without them dockerd accepts the request
# and discards the limit with a warning; finchd does the same.
RESOURCE_FIELDS = (
    "CpuShares", "Memory", "CgroupParent", "BlkioWeight", "BlkioWeightDevice",
    "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod",
    "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "DeviceCgroupRules",
    "KernelMemoryTCP", "MemoryReservation", "MemorySwap", "MemorySwappiness",
    "NanoCpus", "OomKillDisable", "PidsLimit", "CpuCount", "CpuPercent",
    "IOMaximumIOps", "IOMaximumBandwidth",
)

# HostConfig fields that finchd passes to nerdctl.
HOST_FIELDS = (
    "Binds", "PortBindings", "NetworkMode", "RestartPolicy", "AutoRemove", "Init",
    "Privileged", "ReadonlyRootfs", "CapAdd", "CapDrop", "Dns", "DnsOptions",
    "DnsSearch", "ExtraHosts", "GroupAdd", "SecurityOpt", "Tmpfs", "ShmSize",
    "Sysctls", "Runtime", "PidMode", "IpcMode", "UTSMode", "Ulimits", "Devices",
    "LogConfig", "PublishAllPorts", "ConsoleSize", "Annotations",
)

# Fields whose zero value Docker clients send on every request and that finchd
# ignores: they describe nothing that a rootless nerdctl container could differ in.
IGNORED_HOST_FIELDS = ("ContainerIDFile", "Isolation", "MaskedPaths", "ReadonlyPaths",
                       "CgroupnsMode", "Cgroup", "UsernsMode", "VolumeDriver",
                       "OomScoreAdj", "StorageOpt", "Links", "VolumesFrom", "Mounts",
                       "DeviceRequests")

CONFIG_FIELDS = (
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
    "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled",
    "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell",
)


def check_name(name: str) -> str:
    """Return the name without its leading slash, or raise dockerd's 400."""
    if not NAME_PATTERN.match(name):
        raise InvalidParameterError(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name.lstrip("/")


def parse_create(body: Any, name: str | None, cgroup_limits: bool) -> CreateSpec:
    """Check a create body and return the spec, or raise InvalidParameterError."""
    if not isinstance(body, dict):
        raise InvalidParameterError(f"invalid container config: expected an object, got {describe(body)}")
    if name:
        name = check_name(name)
    host_config = expect(body.get("HostConfig"), dict, "HostConfig") or {}
    networking = expect(body.get("NetworkingConfig"), dict, "NetworkingConfig") or {}
    config = {key: value for key, value in body.items() if key not in ("HostConfig", "NetworkingConfig")}
    image = expect(config.get("Image"), str, "Image")
    if not image:
        raise InvalidParameterError("config cannot be empty in order to create a container")
    spec = CreateSpec(name=name, image=image, config=config, host_config=host_config,
                      networking_config=networking)
    _parse_config(spec)
    _parse_host_config(spec, cgroup_limits)
    return spec


def _parse_config(spec: CreateSpec) -> None:
    config = spec.config
    for key in ("Hostname", "Domainname", "User", "WorkingDir", "StopSignal", "MacAddress"):
        expect(config.get(key), str, key)
    for key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
                "StdinOnce", "NetworkDisabled", "ArgsEscaped"):
        expect(config.get(key), bool, key)
    stop_timeout = expect(config.get("StopTimeout"), int, "StopTimeout")
    if stop_timeout is not None and stop_timeout < -1:
        raise InvalidParameterError(f"invalid StopTimeout {stop_timeout}: must be -1 or more")
    spec.cmd = string_list(config.get("Cmd"), "Cmd")
    spec.entrypoint = string_list(config.get("Entrypoint"), "Entrypoint")
    if spec.cmd is not None:
        config["Cmd"] = spec.cmd
    if spec.entrypoint is not None:
        config["Entrypoint"] = spec.entrypoint
    spec.env = strict_string_list(config.get("Env"), "Env") or []
    for entry in spec.env:
        if not entry or entry.startswith("="):
            raise InvalidParameterError(f"invalid environment variable: {entry!r}")
    spec.labels = string_map(config.get("Labels"), "Labels") or {}
    spec.exposed_ports = set_object(config.get("ExposedPorts"), "ExposedPorts")
    for port in spec.exposed_ports:
        _parse_port(port, "ExposedPorts")
    spec.volumes = set_object(config.get("Volumes"), "Volumes")
    for volume in spec.volumes:
        if not volume.startswith("/"):
            raise InvalidParameterError(f"invalid volume {volume!r}: the path must be absolute")
    strict_string_list(config.get("Shell"), "Shell")
    strict_string_list(config.get("OnBuild"), "OnBuild")
    check_healthcheck(config.get("Healthcheck"))
    unknown = sorted(set(config) - set(CONFIG_FIELDS))
    for key in unknown:
        if not is_empty(config[key]):
            raise InvalidParameterError(f"unknown field {key} in container config")


def _parse_host_config(spec: CreateSpec, cgroup_limits: bool) -> None:
    host = spec.host_config
    spec.binds = strict_string_list(host.get("Binds"), "HostConfig.Binds") or []
    for bind in spec.binds:
        _check_bind(bind)
    spec.ports = _parse_port_bindings(host.get("PortBindings"))
    mode = expect(host.get("NetworkMode"), str, "HostConfig.NetworkMode") or "default"
    if spec.config.get("NetworkDisabled"):
        mode = "none"
    spec.network = "bridge" if mode == "default" else mode
    spec.restart = parse_restart(host.get("RestartPolicy"))
    for key in ("AutoRemove", "Init", "Privileged", "ReadonlyRootfs", "PublishAllPorts"):
        expect(host.get(key), bool, f"HostConfig.{key}")
    if host.get("AutoRemove") and spec.restart not in ("", "no"):
        raise InvalidParameterError("can't create 'AutoRemove' container with restart policy")
    for key in ("CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts",
                "GroupAdd", "SecurityOpt"):
        strict_string_list(host.get(key), f"HostConfig.{key}")
    for key in ("Tmpfs", "Sysctls", "Annotations"):
        string_map(host.get(key), f"HostConfig.{key}")
    for key in ("Runtime", "PidMode", "IpcMode", "UTSMode"):
        expect(host.get(key), str, f"HostConfig.{key}")
    shm_size = expect(host.get("ShmSize"), int, "HostConfig.ShmSize")
    if shm_size is not None and shm_size < 0:
        raise InvalidParameterError("SHM size can not be less than 0")
    _check_log_config(host.get("LogConfig"))
    _check_resources(spec, cgroup_limits)
    for key in sorted(set(host) - set(HOST_FIELDS) - set(RESOURCE_FIELDS) - {"Ulimits", "Devices"}):
        if key in IGNORED_HOST_FIELDS and is_empty(host[key]):
            continue
        if not is_empty(host[key]):
            raise InvalidParameterError(f"HostConfig.{key} is not supported by finchd")


def _check_bind(bind: str) -> None:
    parts = bind.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidParameterError(f"invalid volume specification: '{bind}'")
    if not parts[1].startswith("/"):
        raise InvalidParameterError(
            f"invalid volume specification: '{bind}': invalid mount config for type "
            f'"bind": invalid mount path: \'{parts[1]}\' mount path must be absolute'
        )
    if parts[0].startswith("-"):
        raise InvalidParameterError(f"invalid volume specification: '{bind}'")


def _parse_port(port: str, field_name: str) -> tuple[str, str]:
    match = PORT_PATTERN.match(port)
    if not match or not 0 < int(match.group(1)) < 65536:
        raise InvalidParameterError(f"invalid port specification in {field_name}: {port!r}")
    return match.group(1) if not match.group(2) else f"{match.group(1)}-{match.group(2)}", match.group(3) or "tcp"


def _parse_port_bindings(value: Any) -> list[PortBinding]:
    bindings = expect(value, dict, "HostConfig.PortBindings") or {}
    result = []
    for port, hosts in bindings.items():
        container_port, protocol = _parse_port(port, "HostConfig.PortBindings")
        for host in expect(hosts, list, f"HostConfig.PortBindings.{port}") or [{}]:
            host = expect(host, dict, f"HostConfig.PortBindings.{port}") or {}
            host_ip = expect(host.get("HostIp"), str, "HostIp") or ""
            host_port = expect(host.get("HostPort"), str, "HostPort") or ""
            if host_port and not re.fullmatch(r"\d{1,5}(-\d{1,5})?", host_port):
                raise InvalidParameterError(f"invalid host port {host_port!r} for {port}")
            if host_ip and not re.fullmatch(r"[0-9a-fA-F:.\[\]]+", host_ip):
                raise InvalidParameterError(f"invalid host IP {host_ip!r} for {port}")
            result.append(PortBinding(container_port, protocol, host_ip, host_port))
    return result


def parse_restart(value: Any) -> str:
    policy = expect(value, dict, "HostConfig.RestartPolicy") or {}
    name = expect(policy.get("Name"), str, "HostConfig.RestartPolicy.Name") or "no"
    retries = expect(policy.get("MaximumRetryCount"), int, "HostConfig.RestartPolicy.MaximumRetryCount") or 0
    if name not in RESTART_POLICIES:
        raise InvalidParameterError(f"invalid restart policy '{name}'")
    if retries < 0:
        raise InvalidParameterError("maximum retry count cannot be negative")
    if retries and name != "on-failure":
        raise InvalidParameterError(f"maximum retry count cannot be used with restart policy '{name}'")
    if name == "on-failure" and retries:
        return f"on-failure:{retries}"
    return name or "no"


def _check_log_config(value: Any) -> None:
    log_config = expect(value, dict, "HostConfig.LogConfig") or {}
    driver = expect(log_config.get("Type"), str, "HostConfig.LogConfig.Type") or ""
    string_map(log_config.get("Config"), "HostConfig.LogConfig.Config")
    if driver not in ("", "json-file", "journald", "none"):
        raise InvalidParameterError(f"logging driver {driver!r} is not supported by finchd")


def _check_resources(spec: CreateSpec, cgroup_limits: bool) -> None:
    host = spec.host_config
    for key in RESOURCE_FIELDS:
        value = host.get(key)
        if key in ("PidsLimit", "MemorySwappiness") and value in (0, -1):
            continue
        if is_empty(value):
            continue
        if key == "Memory" and isinstance(value, int) and 0 < value < 6 * 1024 * 1024:
            raise InvalidParameterError("Minimum memory limit allowed is 6MB")
        if not cgroup_limits:
            spec.warnings.append(
                f"Your kernel does not support {key} limits or the cgroup is not "
                "delegated to this user. Limitation discarded."
            )
