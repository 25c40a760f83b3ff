"""Run the engine supervisor in the foreground: `python -m finchd.engine [--config FILE]`."""

from __future__ import annotations

import argparse
import logging
import sys

from finchd import config
from finchd.engine.supervisor import run_engine
from finchd.paths import Paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finchd.engine",
        description="Run the rootless engine (rootlesskit, containerd, buildkitd) until SIGTERM.",
    )
    config.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        paths = Paths.from_environment()
        settings = config.load(args, paths)
    except (RuntimeError, config.ConfigError) as exc:
        print(f"finchd engine: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run_engine(settings, paths)


if __name__ == "__main__":
    raise SystemExit(main())
