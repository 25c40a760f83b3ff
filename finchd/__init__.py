"""finchd: a rootless Docker Engine API daemon backed by nerdctl."""

__version__ = "0.1.0"
