"""Turn a `POST /containers/create` body into a checked CreateSpec."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from finchd.errors import InvalidParameterError
from finchd.services.health import check_healthcheck
from finchd.specs import CreateSpec, Mount, PortBinding, is_user_network
from finchd.services.validation import (
    check_console_size,
    check_signal,
    console_size,
    describe,
    expect,
    is_empty,
    set_object,
    strict_string_list,
    string_list,
    string_map,
)

# The kernel's HOST_NAME_MAX: sethostname fails for anything longer.
MAX_HOSTNAME = 64
NAME_PATTERN = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
# setdomainname takes at most 64 bytes, and the name also goes into hosts files.
DOMAINNAME_PATTERN = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,63}")
# Linux limits one environment string to 128 KiB (MAX_ARG_STRLEN), and nerdctl
# passes the aliases to the CNI plugins in CNI_ARGS along with other values.
MAX_ALIASES_BYTES = 65536
# An alias becomes a name in the hosts files of the containers on its network.
ALIAS_PATTERN = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,254}")
# nerdctl's name store writes a file named `.temp.NAME`, and a file name has at
# most 255 bytes (NAME_MAX), so longer names fail there.
MAX_NAME_LENGTH = 249
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
VOLUME_NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
MAC_ADDRESS_PATTERN = re.compile(r"[0-9a-fA-F]{2}(?:[:-][0-9a-fA-F]{2}){5}")
# Options after the second colon of a bind, comma-separated, as dockerd accepts them.
BIND_OPTIONS = frozenset({"rw", "ro", "z", "Z", "nocopy", "shared", "rshared", "slave",
                          "rslave", "private", "rprivate"})
PORT_PATTERN = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$", re.ASCII)

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
    "LogConfig", "PublishAllPorts", "ConsoleSize", "Annotations", "Mounts",
    "VolumesFrom", "CgroupnsMode", "OomScoreAdj", "ContainerIDFile", "Isolation",
    "VolumeDriver",
)

# Fields finchd accepts only with their zero value, because nerdctl has no way to
# express them: a non-empty value is a 400 naming the field.
UNSUPPORTED_HOST_FIELDS = ("MaskedPaths", "ReadonlyPaths", "Cgroup", "UsernsMode",
                           "StorageOpt", "Links", "DeviceRequests")

# Resource fields that nerdctl takes as flags where cgroup controllers are delegated.
RESOURCE_FLAGS = {
    "Memory": "memory", "MemoryReservation": "memory-reservation",
    "MemorySwap": "memory-swap", "MemorySwappiness": "memory-swappiness",
    "CpuShares": "cpu-shares", "CpuPeriod": "cpu-period", "CpuQuota": "cpu-quota",
    "CpusetCpus": "cpuset-cpus", "CpusetMems": "cpuset-mems", "PidsLimit": "pids-limit",
    "BlkioWeight": "blkio-weight", "OomKillDisable": "oom-kill-disable",
    "CgroupParent": "cgroup-parent",
}

CONFIG_FIELDS = (
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
    "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled",
    "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell",
)


def check_name(name: str) -> str:
    """Return the name without its leading slash, or raise dockerd's 400."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidParameterError(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    if len(name.lstrip("/")) > MAX_NAME_LENGTH:
        raise InvalidParameterError(
            f"Invalid container name ({name[:40]}...): it has {len(name.lstrip('/'))} "
            f"characters, at most {MAX_NAME_LENGTH} are allowed"
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
    hostname = config.get("Hostname") or ""
    if len(hostname) > MAX_HOSTNAME:
        raise InvalidParameterError(
            f"invalid hostname {hostname[:20]}...: longer than {MAX_HOSTNAME} characters")
    domainname = config.get("Domainname") or ""
    if domainname and not DOMAINNAME_PATTERN.fullmatch(domainname):
        raise InvalidParameterError(
            f"invalid Domainname {domainname[:80]!r}: expected at most {MAX_HOSTNAME} "
            "letters, digits, '.', '-' and '_'")
    for key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
                "StdinOnce", "NetworkDisabled", "ArgsEscaped"):
        expect(config.get(key), bool, key)
    _check_process_settings(config)
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
    for key in spec.labels:
        if key.startswith("nerdctl/"):
            # nerdctl rejects these, because it keeps its own state in them.
            raise InvalidParameterError(
                f"invalid label {key!r}: keys starting with nerdctl/ are reserved for the engine")
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
    """Check HostConfig and fill the spec's binds, ports, network, restart and mounts."""
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
    _check_host_values(host)
    check_console_size(host.get("ConsoleSize"))
    if spec.config.get("Tty"):
        spec.console_size = console_size(host.get("ConsoleSize"))
    for key in ("Runtime", "PidMode", "IpcMode", "UTSMode"):
        expect(host.get(key), str, f"HostConfig.{key}")
    for extra_host in host.get("ExtraHosts") or []:
        _check_extra_host(extra_host)
    _check_ulimits(host.get("Ulimits"))
    shm_size = expect(host.get("ShmSize"), int, "HostConfig.ShmSize")
    if shm_size is not None and shm_size < 0:
        raise InvalidParameterError("SHM size can not be less than 0")
    _check_log_config(host.get("LogConfig"))
    _check_resources(spec, cgroup_limits)
    _check_namespaces(host)

    spec.mounts = _parse_mounts(host.get("Mounts"))
    strict_string_list(host.get("VolumesFrom"), "HostConfig.VolumesFrom")
    if host.get("PublishAllPorts"):
        spec.publish_all = [port for port in spec.exposed_ports
                            if not any(f"{binding.container_port}/{binding.protocol}" == port
                                       for binding in spec.ports)]
    _parse_networking(spec)
    if spec.config.get("Domainname") and host.get("UTSMode") == "host":
        raise InvalidParameterError("conflicting options: Domainname and the UTS mode host")

    for key in sorted(set(host) - set(HOST_FIELDS) - set(RESOURCE_FIELDS)):
        if is_empty(host[key]):
            continue
        if key in UNSUPPORTED_HOST_FIELDS:
            raise InvalidParameterError(f"HostConfig.{key} is not supported by finchd")
        raise InvalidParameterError(f"unknown field HostConfig.{key}")


# tmpfs sizes: a number with an optional k, m, g suffix, or a percentage of memory.
TMPFS_SIZE = re.compile(r"\d+[kKmMgG]?|\d+%", re.ASCII)
CAPABILITY_PATTERN = re.compile(r"(?i)(CAP_)?[A-Z_]+|ALL")


def _check_host_values(host: dict[str, Any]) -> None:
    """Check the values of list and map fields whose types are already checked."""
    for server in host.get("Dns") or []:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidParameterError(f"{server} is not an ip address") from None
    for key in ("CapAdd", "CapDrop"):
        for capability in host.get(key) or []:
            if not CAPABILITY_PATTERN.fullmatch(capability):
                raise InvalidParameterError(f"unknown capability: {capability!r} in HostConfig.{key}")
    for path, options in (host.get("Tmpfs") or {}).items():
        if not path.startswith("/"):
            raise InvalidParameterError(
                f"invalid mount config for type \"tmpfs\": invalid mount path: '{path}' "
                "mount path must be absolute")
        for option in options.split(","):
            name, _, value = option.partition("=")
            if name in ("size", "nr_blocks", "nr_inodes") and not TMPFS_SIZE.fullmatch(value):
                raise InvalidParameterError(f"invalid tmpfs option {option!r} for {path}")


def check_platform(platform: str | None) -> None:
    """Accept an empty platform or linux[/arch[/variant]]; finchd runs Linux images only."""
    if platform and not re.fullmatch(r"linux(/[a-z0-9_]+){0,2}", platform):
        raise InvalidParameterError(f"invalid platform {platform!r}: expected linux[/arch[/variant]]")


def _check_namespaces(host: dict[str, Any]) -> None:
    cgroupns = expect(host.get("CgroupnsMode"), str, "HostConfig.CgroupnsMode") or ""
    if cgroupns not in ("", "host", "private"):
        raise InvalidParameterError(f"invalid cgroup namespace mode: {cgroupns}")
    isolation = expect(host.get("Isolation"), str, "HostConfig.Isolation") or ""
    if isolation not in ("", "default"):
        raise InvalidParameterError(f"Invalid isolation: {isolation!r} - Linux only supports 'default'")
    driver = expect(host.get("VolumeDriver"), str, "HostConfig.VolumeDriver") or ""
    if driver not in ("", "local"):
        raise InvalidParameterError(f"volume driver {driver!r} is not supported by finchd")
    expect(host.get("ContainerIDFile"), str, "HostConfig.ContainerIDFile")
    score = expect(host.get("OomScoreAdj"), int, "HostConfig.OomScoreAdj")
    if score is not None and not -1000 <= score <= 1000:
        raise InvalidParameterError(
            f"Invalid value {score}, range for oom score adj is [-1000, 1000]")


def _parse_mounts(value: Any) -> list[Mount]:
    mounts = []
    for index, item in enumerate(expect(value, list, "HostConfig.Mounts") or []):
        where = f"HostConfig.Mounts[{index}]"
        item = expect(item, dict, where, nullable=False)
        kind = expect(item.get("Type"), str, f"{where}.Type") or ""
        target = expect(item.get("Target"), str, f"{where}.Target") or ""
        source = expect(item.get("Source"), str, f"{where}.Source") or ""
        if kind not in ("bind", "volume", "tmpfs"):
            raise InvalidParameterError(f"invalid mount config: mount type unknown: {kind!r}")
        if not target.startswith("/"):
            raise InvalidParameterError(
                f"invalid mount config for type \"{kind}\": invalid mount path: '{target}' "
                "mount path must be absolute")
        mount = Mount(type=kind, target=target, source=source,
                      read_only=bool(expect(item.get("ReadOnly"), bool, f"{where}.ReadOnly")))
        if kind == "bind":
            options = expect(item.get("BindOptions"), dict, f"{where}.BindOptions") or {}
            mount.propagation = expect(options.get("Propagation"), str,
                                       f"{where}.BindOptions.Propagation") or ""
            if not source.startswith("/"):
                raise InvalidParameterError(
                    "invalid mount config for type \"bind\": invalid mount path: "
                    f"'{source}' mount path must be absolute")
        elif kind == "tmpfs":
            if source:
                raise InvalidParameterError(
                    "invalid mount config for type \"tmpfs\": field Source must not be specified")
            options = expect(item.get("TmpfsOptions"), dict, f"{where}.TmpfsOptions") or {}
            mount.tmpfs_size = expect(options.get("SizeBytes"), int,
                                      f"{where}.TmpfsOptions.SizeBytes") or 0
            mount.tmpfs_mode = expect(options.get("Mode"), int, f"{where}.TmpfsOptions.Mode") or 0
            if mount.tmpfs_size < 0:
                raise InvalidParameterError(f"invalid {where}.TmpfsOptions.SizeBytes: negative size")
        elif source.startswith("-"):
            raise InvalidParameterError(f"invalid volume name {source!r}")
        mounts.append(mount)
    return mounts


def _parse_networking(spec: CreateSpec) -> None:
    endpoints = expect(spec.networking_config.get("EndpointsConfig"), dict,
                       "NetworkingConfig.EndpointsConfig") or {}
    if len(endpoints) > 1:
        # API 1.43 connects a new container to one network; the docker CLI and compose
        # connect the others afterwards.
        raise InvalidParameterError(
            f"Container cannot be connected to network endpoints: {', '.join(endpoints)}")
    for name, endpoint in endpoints.items():
        where = f"NetworkingConfig.EndpointsConfig.{name}"
        if endpoint is None:
            raise InvalidParameterError(f"no EndpointSettings for {name}")
        if spec.network not in ("host", "none") and not spec.network.startswith("container:"):
            # dockerd connects the container to the network of its EndpointsConfig entry.
            spec.network = "bridge" if name == "default" else name
        aliases, ipv4, ipv6 = parse_endpoint(endpoint, where,
                                             spec.on_user_network and is_user_network(name))
        spec.ipv4_address = ipv4 or spec.ipv4_address
        spec.ipv6_address = ipv6 or spec.ipv6_address
        spec.aliases += [alias for alias in aliases if alias not in spec.aliases]
    size = sum(len(alias) + 1 for alias in spec.aliases)
    if size > MAX_ALIASES_BYTES:
        raise InvalidParameterError(
            f"network aliases take {size} bytes; at most {MAX_ALIASES_BYTES} fit in the "
            "CNI plugins' environment, where nerdctl passes them")


def parse_endpoint(value: Any, where: str, user_network: bool) -> tuple[list[str], str, str]:
    """Check one EndpointSettings object and return its aliases, IPv4 and IPv6 addresses."""
    endpoint = expect(value, dict, where) or {}
    aliases = strict_string_list(endpoint.get("Aliases"), f"{where}.Aliases") or []
    for alias in aliases:
        if not ALIAS_PATTERN.fullmatch(alias):
            raise InvalidParameterError(
                f"invalid network alias {alias!r} in {where}.Aliases: an alias is a host "
                "name of letters, digits, '.', '-' and '_'")
    ipam = expect(endpoint.get("IPAMConfig"), dict, f"{where}.IPAMConfig") or {}
    ipv4 = expect(ipam.get("IPv4Address"), str, f"{where}.IPAMConfig.IPv4Address") or ""
    ipv6 = expect(ipam.get("IPv6Address"), str, f"{where}.IPAMConfig.IPv6Address") or ""
    for address, version in ((ipv4, 4), (ipv6, 6)):
        if address:
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError:
                raise InvalidParameterError(f"invalid IP address {address!r} in IPAMConfig") from None
            if parsed.version != version:
                raise InvalidParameterError(f"invalid IPv{version} address: {address}")
    # dockerd's rules: the predefined networks have no per-network names or addresses.
    if not user_network:
        if ipv4 or ipv6:
            raise InvalidParameterError(
                "user specified IP address is supported on user defined networks only")
        if aliases:
            raise InvalidParameterError(
                "network-scoped alias is supported only for containers in user defined networks")
    return aliases, ipv4, ipv6


def _check_bind(bind: str) -> None:
    parts = bind.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidParameterError(f"invalid volume specification: '{bind}'")
    if not parts[1].startswith("/"):
        raise InvalidParameterError(
            f"invalid volume specification: '{bind}': invalid mount config for type "
            f'"bind": invalid mount path: \'{parts[1]}\' mount path must be absolute'
        )
    source = parts[0]
    if not source.startswith("/") and not VOLUME_NAME_PATTERN.fullmatch(source):
        # nerdctl would take a relative source as a path under finchd's own working
        # directory and create it there.
        raise InvalidParameterError(
            f'create {source}: "{source}" includes invalid characters for a local volume '
            'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass '
            "a host directory, use absolute path"
        )
    if len(parts) == 3:
        for option in parts[2].split(","):
            if option not in BIND_OPTIONS:
                raise InvalidParameterError(
                    f"invalid volume specification: '{bind}': invalid mode: {parts[2]}"
                )


def _check_process_settings(config: dict[str, Any]) -> None:
    working_dir = config.get("WorkingDir")
    if working_dir and not working_dir.startswith("/"):
        raise InvalidParameterError(
            f"the working directory '{working_dir}' is invalid, it needs to be an absolute path"
        )
    if config.get("StopSignal"):
        check_signal(config["StopSignal"])
    mac_address = config.get("MacAddress")
    if mac_address and not MAC_ADDRESS_PATTERN.fullmatch(mac_address):
        raise InvalidParameterError(f"invalid MAC address: '{mac_address}'")


def _check_extra_host(entry: str) -> None:
    """Check one `host:IP` entry; the IP may be `host-gateway`, as with dockerd."""
    name, separator, address = entry.partition(":")
    if separator and name and address == "host-gateway":
        return
    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        raise InvalidParameterError(f'bad format for add-host: "{entry}"') from None
    if not name:
        raise InvalidParameterError(f'bad format for add-host: "{entry}"')


def _check_ulimits(value: Any) -> None:
    """Check Ulimits entries and fill in a missing Soft or Hard with 0, as Go decodes them."""
    for index, item in enumerate(expect(value, list, "HostConfig.Ulimits") or []):
        field_name = f"HostConfig.Ulimits[{index}]"
        ulimit = expect(item, dict, field_name, nullable=False)
        name = expect(ulimit.get("Name"), str, f"{field_name}.Name")
        if not name:
            raise InvalidParameterError(f"invalid ulimit: {field_name}.Name is empty")
        soft = expect(ulimit.get("Soft"), int, f"{field_name}.Soft") or 0
        hard = expect(ulimit.get("Hard"), int, f"{field_name}.Hard") or 0
        if soft > hard:
            raise InvalidParameterError(
                f"invalid ulimit {name}: soft limit {soft} is greater than hard limit {hard}"
            )
        ulimit["Soft"], ulimit["Hard"] = soft, hard


def _parse_port(port: str, field_name: str) -> tuple[str, str]:
    match = PORT_PATTERN.fullmatch(port)
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


RESOURCE_STRINGS = ("CgroupParent", "CpusetCpus", "CpusetMems")
RESOURCE_LISTS = ("BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps",
                  "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "DeviceCgroupRules")


def resource_value(host: dict[str, Any], key: str) -> Any:
    """Return a resource field after checking its JSON type."""
    if key in RESOURCE_STRINGS:
        return expect(host.get(key), str, f"HostConfig.{key}")
    if key in RESOURCE_LISTS:
        return expect(host.get(key), list, f"HostConfig.{key}")
    if key == "OomKillDisable":
        return expect(host.get(key), bool, f"HostConfig.{key}")
    value = expect(host.get(key), int, f"HostConfig.{key}")
    if value is not None and not -(2**63) <= value < 2**63:
        raise InvalidParameterError(f"invalid value for HostConfig.{key}: {value} is out of range")
    return value


def _check_resources(spec: CreateSpec, cgroup_limits: bool) -> None:
    host = spec.host_config
    for key in RESOURCE_FIELDS:
        value = resource_value(host, key)
        if key in ("PidsLimit", "MemorySwappiness") and value in (0, -1):
            continue
        if is_empty(value):
            continue
        if key == "Memory" and isinstance(value, int) and 0 < value < 6 * 1024 * 1024:
            raise InvalidParameterError("Minimum memory limit allowed is 6MB")
        if cgroup_limits and key in RESOURCE_FLAGS:
            spec.resources[RESOURCE_FLAGS[key]] = value
        elif cgroup_limits and key == "NanoCpus":
            spec.resources["cpus"] = value / 1e9
        else:
            spec.warnings.append(
                f"Your kernel does not support {key} limits or the cgroup is not "
                "delegated to this user. Limitation discarded."
            )
