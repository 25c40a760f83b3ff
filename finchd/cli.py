"""The `finchd` command: serve, engine, check, install-units, uninstall-units."""

from __future__ import annotations

import argparse
import asyncio
import sys

from finchd import __version__
from finchd.config import ConfigError, Settings, add_arguments, load
from finchd.journal import setup_logging
from finchd.paths import Paths


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="finchd", description="Rootless Docker Engine API daemon")
    root.add_argument("--version", action="version", version=f"finchd {__version__}")
    commands = root.add_subparsers(dest="command", required=True)
    for name, help_text in (("serve", "serve the Docker API on a Unix socket (foreground)"),
                            ("engine", "run the rootless engine: rootlesskit, containerd, buildkitd"),
                            ("check", "check that this machine and user can run rootless containers")):
        add_arguments(commands.add_parser(name, help=help_text))
    status = commands.add_parser("status", help="print finchd's state, read from the D-Bus session bus")
    status.add_argument("--json", action="store_true", help="print the status as one JSON document")
    commands.add_parser("install-units",
                        help="write finch.socket, finch.service and finch-engine.service "
                             "to $XDG_CONFIG_HOME/systemd/user for this finchd")
    commands.add_parser("uninstall-units",
                        help="stop and disable finch.socket and finch.service and remove "
                             "the units that install-units wrote")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "status":
        from finchd.dbus.client import run_status
        return run_status(args.json)
    if args.command in ("install-units", "uninstall-units"):
        return manage_units(args.command)
    try:
        paths = Paths.from_environment()
        settings: Settings = load(args, paths)
    except (ConfigError, RuntimeError) as exc:
        print(f"finchd: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    if args.command == "check":
        from finchd.check import run_check
        return run_check(settings, paths)
    if args.command == "engine":
        from finchd.engine.supervisor import run_engine
        return run_engine(settings, paths)
    from finchd.activation import ActivationError
    from finchd.server import SocketUnusableError, serve
    try:
        return asyncio.run(serve(settings, paths))
    except (SocketUnusableError, ActivationError) as exc:
        print(f"finchd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def manage_units(command: str) -> int:
    from finchd.units import UnitError, install_units, uninstall_units
    try:
        return install_units() if command == "install-units" else uninstall_units()
    except (UnitError, OSError) as exc:
        print(f"finchd {command}: {exc}", file=sys.stderr)
        return 1
