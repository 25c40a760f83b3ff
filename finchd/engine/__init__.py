"""The rootless engine: rootlesskit, containerd and buildkitd, supervised per user."""

from finchd.engine.environment import engine_env, engine_versions
from finchd.engine.supervisor import EngineStartError, ensure_engine, run_engine

__all__ = ["EngineStartError", "engine_env", "engine_versions", "ensure_engine", "run_engine"]
