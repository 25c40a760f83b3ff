"""Settings: built-in defaults, then `finchd.toml`, then command-line flags."""

from __future__ import annotations

import argparse
import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from finchd.paths import Paths

LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """A setting in the config file or on the command line is invalid."""


@dataclass(frozen=True)
class Settings:
    """finchd's settings. Each field is also a `finchd.toml` key and a flag."""

    socket: Path | None = None
    nerdctl: str = "nerdctl"
    namespace: str = "default"
    log_level: str = "info"
    rootlesskit: str = "rootlesskit"
    containerd: str = "containerd"
    buildkitd: str = "buildkitd"
    idle_timeout: float = 0.0
    insecure_registries: tuple[str, ...] = field(default_factory=tuple)

    def socket_path(self, paths: Paths) -> Path:
        return self.socket if self.socket is not None else paths.default_socket


HELP = {
    "socket": "path of the API socket (default: $XDG_RUNTIME_DIR/finch.sock)",
    "nerdctl": "nerdctl executable, a name on PATH or a path",
    "namespace": "containerd namespace that holds finchd's containers and images",
    "log_level": "log level: " + ", ".join(LOG_LEVELS),
    "rootlesskit": "rootlesskit executable",
    "containerd": "containerd executable",
    "buildkitd": "buildkitd executable",
    "idle_timeout": "seconds without requests, streams or attached sessions before finchd "
                    "exits; 0 means never, otherwise at least 1",
    "insecure_registries": "registry host[:port] reached over plain HTTP (repeatable)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting. Flags left unset do not override the file."""
    parser.add_argument("--config", type=Path, help="path of finchd.toml")
    for item in fields(Settings):
        flag = "--" + item.name.replace("_", "-")
        if item.name == "insecure_registries":
            parser.add_argument(
                "--insecure-registry", dest=item.name, action="append", help=HELP[item.name]
            )
        else:
            parser.add_argument(flag, dest=item.name, default=None, help=HELP[item.name])


def load(args: argparse.Namespace, paths: Paths) -> Settings:
    """Build the settings from the config file and the parsed flags."""
    config_file = args.config or paths.config_file
    values: dict[str, Any] = {}
    if config_file.exists():
        values.update(_read_toml(config_file))
    elif args.config is not None:
        raise ConfigError(f"config file {config_file} not found")
    for item in fields(Settings):
        flag_value = getattr(args, item.name, None)
        if flag_value is not None:
            values[item.name] = flag_value
    return _coerce(values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    known = {item.name for item in fields(Settings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting {', '.join(unknown)}")
    return data


def _coerce(values: dict[str, Any]) -> Settings:
    settings = Settings()
    changes: dict[str, Any] = {}
    for name, value in values.items():
        try:
            changes[name] = _convert(name, value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid value {value!r} for {name}: {exc}") from exc
    settings = replace(settings, **changes)
    if settings.log_level not in LOG_LEVELS:
        raise ConfigError(
            f"invalid log_level {settings.log_level!r}; use one of {', '.join(LOG_LEVELS)}"
        )
    # finch.service's start limit assumes at least 1 s between idle exits.
    if settings.idle_timeout < 0 or 0 < settings.idle_timeout < 1:
        raise ConfigError(
            f"invalid idle_timeout {settings.idle_timeout:g}: use 0 (never exit) or 1 or more seconds"
        )
    return settings


def _convert(name: str, value: Any) -> Any:
    if name == "socket":
        return Path(str(value)).expanduser()
    if name == "idle_timeout":
        if isinstance(value, bool):
            raise TypeError("expected a number of seconds")
        seconds = float(value)
        # NaN compares false with everything, so the idle check would stop at once.
        if not math.isfinite(seconds):
            raise ValueError("expected a finite number of seconds")
        return seconds
    if name == "insecure_registries":
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise TypeError("expected a list of host[:port] strings")
        return tuple(str(item) for item in value)
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value
