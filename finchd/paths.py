"""Locations of finchd's state, all under the user's XDG base directories."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import xdg_base_dirs

APP = "finchd"


def runtime_home() -> Path:
    """Return `$XDG_RUNTIME_DIR`, which rootless containers cannot work without."""
    runtime = xdg_base_dirs.xdg_runtime_dir()
    if runtime is None:
        raise RuntimeError(
            "XDG_RUNTIME_DIR is not set; log in through a session manager or export "
            f"XDG_RUNTIME_DIR=/run/user/{os.getuid()}"
        )
    return runtime


@dataclass(frozen=True)
class Paths:
    """Every directory and socket that finchd and its engine use."""

    config: Path
    data: Path
    runtime: Path

    @classmethod
    def from_environment(cls) -> Paths:
        return cls(
            config=xdg_base_dirs.xdg_config_home() / APP,
            data=xdg_base_dirs.xdg_data_home() / APP,
            runtime=runtime_home() / APP,
        )

    @property
    def config_file(self) -> Path:
        return self.config / "finchd.toml"

    @property
    def default_socket(self) -> Path:
        return self.runtime.parent / "finch.sock"

    @property
    def rootlesskit_state(self) -> Path:
        return self.runtime / "rootlesskit"

    @property
    def containerd_socket(self) -> Path:
        return self.runtime / "containerd" / "containerd.sock"

    @property
    def containerd_state(self) -> Path:
        return self.runtime / "containerd" / "state"

    @property
    def containerd_root(self) -> Path:
        return self.data / "containerd"

    @property
    def buildkit_socket(self) -> Path:
        return self.runtime / "buildkit" / "buildkitd.sock"

    @property
    def buildkit_root(self) -> Path:
        return self.data / "buildkit"

    @property
    def nerdctl_data_root(self) -> Path:
        return self.data / "nerdctl"

    @property
    def nerdctl_toml(self) -> Path:
        return self.runtime / "nerdctl.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.data / "cni" / "net.d"

    @property
    def cni_state_dir(self) -> Path:
        return self.data / "cni" / "state"

    @property
    def certs_dir(self) -> Path:
        """containerd's registry host configuration (`certs.d`)."""
        return self.config / "certs.d"

    @property
    def engine_pid_file(self) -> Path:
        return self.runtime / "engine.pid"

    @property
    def engine_log(self) -> Path:
        return self.runtime / "engine.log"

    @property
    def containerd_config(self) -> Path:
        """containerd's config.toml, rewritten by the engine supervisor at each start."""
        return self.runtime / "containerd-config.toml"

    @property
    def buildkitd_config(self) -> Path:
        """buildkitd.toml, rewritten by the engine supervisor at each start."""
        return self.runtime / "buildkitd.toml"

    @property
    def engine_userns_file(self) -> Path:
        """The user namespace (`user:[inode]`) of the running engine's rootlesskit child."""
        return self.runtime / "engine.userns"

    @property
    def engine_bin_dir(self) -> Path:
        """Executables that the engine child puts first on containerd's PATH."""
        return self.runtime / "bin"
