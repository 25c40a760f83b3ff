"""Config files of containerd, buildkitd and nerdctl, generated from Settings and Paths."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from finchd.config import Settings
from finchd.engine.environment import CNI_PLUGIN_DIR
from finchd.paths import Paths

log = logging.getLogger(__name__)

SNAPSHOTTER = "overlayfs"

# CRI and the sandbox controllers that depend on it serve Kubernetes only. The
# opt plugin wants to create /opt/containerd, which the user cannot write.
CONTAINERD_DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.cri.v1.runtime",
    "io.containerd.cri.v1.images",
    "io.containerd.podsandbox.controller.v1.podsandbox",
    "io.containerd.grpc.v1.sandbox-controllers",
    "io.containerd.internal.v1.opt",
)


def toml_value(value: object) -> str:
    """Format a str, bool, int, float or list of those as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string literal is also a valid TOML basic string.
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot format {value!r} as TOML")


def toml_key(key: str) -> str:
    """Quote a TOML key unless it is a bare key."""
    if key and all(char.isalnum() or char in "-_" for char in key):
        return key
    return json.dumps(key)


def cgroup_manager() -> str:
    """Return nerdctl's cgroup manager: "none" unless cgroup v2 is mounted at /sys/fs/cgroup.

    Rootless runc cannot create cgroup v1 groups, so on a v1 or hybrid host
    containers run without cgroups and resource limits are not enforced.
    """
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return "systemd" if Path("/run/systemd/system").is_dir() else "cgroupfs"
    return "none"


def containerd_config(settings: Settings, paths: Paths) -> str:
    # The runc shim keeps runc's state under /run/containerd/runc, which the
    # engine child links to the folder of paths.containerd_socket.
    lines = [
        "version = 3",
        f"root = {toml_value(str(paths.containerd_root))}",
        f"state = {toml_value(str(paths.containerd_state))}",
        f"disabled_plugins = {toml_value(list(CONTAINERD_DISABLED_PLUGINS))}",
        "",
        "[grpc]",
        f"  address = {toml_value(str(paths.containerd_socket))}",
        "",
        "[debug]",
        f"  level = {toml_value(_engine_log_level(settings))}",
        "",
    ]
    return "\n".join(lines)


def buildkitd_config(settings: Settings, paths: Paths) -> str:
    lines = [
        f"root = {toml_value(str(paths.buildkit_root))}",
        f"debug = {toml_value(settings.log_level == 'debug')}",
        "",
        "[grpc]",
        f"  address = {toml_value(['unix://' + str(paths.buildkit_socket)])}",
        "",
        # finchd injects no CDI devices, and buildkitd warns at every start
        # about missing CDI spec folders unless CDI is disabled.
        "[cdi]",
        "  disabled = true",
        "",
        "[worker.oci]",
        "  enabled = false",
        "",
        "[worker.containerd]",
        "  enabled = true",
        f"  address = {toml_value(str(paths.containerd_socket))}",
        # Building straight into nerdctl's namespace lets `nerdctl build` skip
        # exporting a tar and loading it again.
        f"  namespace = {toml_value(settings.namespace)}",
        f"  snapshotter = {toml_value(SNAPSHOTTER)}",
        "  rootless = true",
        # RUN steps share the rootlesskit child's network namespace, which with
        # --detach-netns is the host's, so builds reach registries on loopback.
        '  networkMode = "host"',
        "  gc = true",
        "",
    ]
    for registry in settings.insecure_registries:
        lines += [
            f"[registry.{toml_key(registry)}]",
            "  http = true",
            "  insecure = true",
            "",
        ]
    return "\n".join(lines)


def nerdctl_config(settings: Settings, paths: Paths) -> str:
    lines = [
        f"address = {toml_value('unix://' + str(paths.containerd_socket))}",
        f"namespace = {toml_value(settings.namespace)}",
        f"snapshotter = {toml_value(SNAPSHOTTER)}",
        f"data_root = {toml_value(str(paths.nerdctl_data_root))}",
        f"cni_path = {toml_value(CNI_PLUGIN_DIR)}",
        f"cni_netconfpath = {toml_value(str(paths.cni_conf_dir))}",
        f"cgroup_manager = {toml_value(cgroup_manager())}",
        f"hosts_dir = {toml_value([str(paths.certs_dir)])}",
        f"debug = {toml_value(settings.log_level == 'debug')}",
        "",
    ]
    return "\n".join(lines)


def registry_hosts_config(registry: str) -> str:
    """Return a containerd hosts.toml that reaches `registry` over plain HTTP."""
    url = f"http://{registry}"
    return "\n".join(
        [
            f"server = {toml_value(url)}",
            "",
            f"[host.{toml_key(url)}]",
            '  capabilities = ["pull", "resolve", "push"]',
            "  skip_verify = true",
            "",
        ]
    )


def write_file(path: Path, content: str) -> None:
    """Replace `path` with `content` in one rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_engine_configs(settings: Settings, paths: Paths) -> None:
    """Write containerd's, buildkitd's and nerdctl's config files and create their folders.

    A hosts.toml for each insecure registry is written only when that registry
    has none yet, so hand-written registry settings in paths.certs_dir win.
    """
    for folder in (
        paths.runtime,
        paths.containerd_socket.parent,
        paths.containerd_state,
        paths.containerd_root,
        paths.buildkit_socket.parent,
        paths.buildkit_root,
        paths.nerdctl_data_root,
        paths.cni_conf_dir,
        paths.cni_state_dir,
        paths.certs_dir,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    paths.runtime.chmod(0o700)

    write_file(paths.containerd_config, containerd_config(settings, paths))
    write_file(paths.buildkitd_config, buildkitd_config(settings, paths))
    write_file(paths.nerdctl_toml, nerdctl_config(settings, paths))

    for registry in settings.insecure_registries:
        hosts_file = paths.certs_dir / registry / "hosts.toml"
        if hosts_file.exists():
            continue
        write_file(hosts_file, registry_hosts_config(registry))
        log.info("wrote %s for insecure registry %s", hosts_file, registry)


def _engine_log_level(settings: Settings) -> str:
    return settings.log_level if settings.log_level != "warning" else "warn"
