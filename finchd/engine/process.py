"""Process helpers shared by the engine supervisor and the engine child."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def terminate_with_parent() -> None:
    """Ask the kernel to send SIGTERM to this process when its parent dies.

    Passed as preexec_fn, so it runs in the forked child before exec.
    """
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def socket_accepts(path: Path) -> bool:
    """Return whether a Unix socket at `path` accepts a connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
