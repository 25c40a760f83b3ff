"""The process that rootlesskit starts inside the engine's namespaces.

It runs as uid 0 of the new user namespace, in a mount namespace where
rootlesskit replaced /etc, /run and /var/lib with tmpfs copies whose entries
are symlinks to the host's originals. It points the engine's well-known folders
at the user's own directories, then runs containerd and buildkitd and restarts
either one when it dies, until SIGTERM or SIGINT.

Usage: python -m finchd.engine.child CONTAINERD BUILDKITD
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from finchd.engine.process import (
    PR_SET_CHILD_SUBREAPER,
    prctl,
    socket_accepts,
    terminate_with_parent,
)
from finchd.paths import Paths

log = logging.getLogger("finchd.engine.child")

POLL_INTERVAL = 0.2
STOP_TIMEOUT = 20.0
SOCKET_TIMEOUT = 60.0
MAX_BACKOFF = 30.0
# A daemon that ran this long before dying restarts without delay.
HEALTHY_RUNTIME = 60.0


COPIED_UP = (Path("/etc"), Path("/run"), Path("/var/lib"))


def restore_host_folders(paths: Paths) -> None:
    """Bind-mount the host folders that hold the user's directories over their symlinks.

    After copy-up, /run/user is a symlink into a mount whose name rootlesskit
    picks at random (/run/.ro<digits>/user). nerdctl names its data folder
    after the containerd socket path with symlinks resolved, so a symlink would
    give every engine start a new nerdctl data folder, and containers would
    lose their volumes, logs and hosts files.
    """
    for directory in (paths.runtime, paths.data, paths.config):
        for top in COPIED_UP:
            if not directory.is_relative_to(top) or directory == top:
                continue
            entry = top / directory.relative_to(top).parts[0]
            if not entry.is_symlink():
                continue
            target = entry.resolve()
            entry.unlink()
            entry.mkdir()
            subprocess.run(["mount", "--rbind", str(target), str(entry)], check=True)
            log.debug("bind-mounted %s over the symlink %s", target, entry)


def link_engine_folders(paths: Paths) -> None:
    """Point the engine's default folders under /run and /var/lib at the user's directories.

    In the copied-up /run and /var/lib these names are symlinks to the host's
    root-owned folders, or missing. Defaults that nothing configures still use
    them: the runc shim keeps runc's state in /run/containerd/runc and its
    sockets in /run/containerd/s, and the CNI plugins keep IP leases and results
    in /var/lib/cni.
    """
    links = {
        Path("/run/containerd"): paths.containerd_socket.parent,
        Path("/run/buildkit"): paths.buildkit_socket.parent,
        Path("/var/lib/containerd"): paths.containerd_root,
        Path("/var/lib/buildkit"): paths.buildkit_root,
        Path("/var/lib/nerdctl"): paths.nerdctl_data_root,
        Path("/var/lib/cni"): paths.cni_state_dir,
    }
    for link, target in links.items():
        target.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            # Only a host folder that is a mount point of its own stays a real
            # folder after copy-up. Shadow it with the user's folder.
            subprocess.run(["mount", "--bind", str(target), str(link)], check=True)
            continue
        link.symlink_to(target)


def install_runc_wrapper(paths: Paths, env: dict[str, str]) -> None:
    """Put runc.sh first on PATH as `runc`, with FINCHD_RUNC naming the real runc.

    containerd's runc shim inherits containerd's environment and runs `runc`
    from PATH unless the container's runtime options name another binary.
    """
    real_runc = shutil.which("runc", path=env.get("PATH"))
    if real_runc is None:
        raise FileNotFoundError(f"runc not found on PATH {env.get('PATH')}")
    paths.engine_bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = paths.engine_bin_dir / "runc"
    temporary = wrapper.with_name(".runc.new")
    temporary.write_bytes((Path(__file__).parent / "runc.sh").read_bytes())
    temporary.chmod(0o755)
    os.replace(temporary, wrapper)
    env["FINCHD_RUNC"] = real_runc
    env["PATH"] = f"{paths.engine_bin_dir}{os.pathsep}{env.get('PATH', '')}"


@dataclass
class Daemon:
    """One daemon that the child keeps running, and its restart state."""

    name: str
    argv: list[str]
    socket_path: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    failures: int = 0
    stopping: bool = field(default=False)

    def start(self, env: dict[str, str]) -> None:
        self.socket_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, env=env, preexec_fn=terminate_with_parent
        )
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)

    def wait_for_socket(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            if socket_accepts(self.socket_path):
                return True
            time.sleep(POLL_INTERVAL)
        return False

    def exited(self, code: int) -> None:
        """Record the exit of this daemon with `code` (negative: the killing signal)."""
        assert self.process is not None
        self.process.returncode = code
        reason = f"signal {-code}" if code < 0 else f"exit code {code}"
        runtime = time.monotonic() - self.started_at
        pid = self.process.pid
        self.process = None
        if self.stopping:
            log.info("%s (pid %d) stopped with %s", self.name, pid, reason)
            return
        self.failures = 0 if runtime >= HEALTHY_RUNTIME else self.failures + 1
        delay = min(MAX_BACKOFF, 2.0 ** max(self.failures - 1, 0)) if self.failures else 0.0
        self.restart_at = time.monotonic() + delay
        log.error(
            "%s (pid %d) died with %s after %.1f s; restarting in %.0f s",
            self.name,
            pid,
            reason,
            runtime,
            delay,
        )


class Child:
    """containerd and buildkitd, kept running until a stop signal arrives."""

    def __init__(self, containerd: Daemon, buildkitd: Daemon, env: dict[str, str]) -> None:
        self.containerd = containerd
        self.buildkitd = buildkitd
        self.env = env
        self.stop_signal: int | None = None

    def request_stop(self, signum: int, _frame: object) -> None:
        self.stop_signal = signum

    def reap(self) -> None:
        """Reap every exited child: the daemons and the shims reparented to this subreaper."""
        for daemon in (self.containerd, self.buildkitd):
            if daemon.process is not None:
                code = daemon.process.poll()
                if code is not None:
                    daemon.exited(code)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for daemon in (self.containerd, self.buildkitd):
                if daemon.process is not None and daemon.process.pid == pid:
                    daemon.exited(os.waitstatus_to_exitcode(status))

    def start_containerd(self) -> None:
        self.containerd.start(self.env)
        if not self.containerd.wait_for_socket(SOCKET_TIMEOUT):
            log.error("containerd did not open %s", self.containerd.socket_path)

    def run(self) -> int:
        self.start_containerd()
        self.buildkitd.start(self.env)
        while self.stop_signal is None:
            time.sleep(POLL_INTERVAL)
            self.reap()
            now = time.monotonic()
            if self.containerd.process is None and now >= self.containerd.restart_at:
                self.start_containerd()
            if self.buildkitd.process is None and now >= self.buildkitd.restart_at:
                self.buildkitd.start(self.env)
        log.info("received signal %d, stopping buildkitd and containerd", self.stop_signal)
        self.buildkitd.stopping = True
        self.containerd.stopping = True
        self.stop(self.buildkitd)
        self.stop(self.containerd)
        return 0

    def stop(self, daemon: Daemon) -> None:
        process = daemon.process
        if process is None:
            return
        daemon.stopping = True
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and daemon.process is not None:
            time.sleep(POLL_INTERVAL)
            self.reap()
        if daemon.process is not None:
            log.warning("%s (pid %d) ignored SIGTERM; killing it", daemon.name, process.pid)
            process.kill()
            process.wait()


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=os.environ.get("FINCHD_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    containerd_path, buildkitd_path = argv
    paths = Paths.from_environment()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    restore_host_folders(paths)
    link_engine_folders(paths)

    env = dict(os.environ)
    install_runc_wrapper(paths, env)
    containerd = Daemon(
        "containerd",
        [containerd_path, "--config", str(paths.containerd_config)],
        paths.containerd_socket,
    )
    buildkitd = Daemon(
        "buildkitd",
        [buildkitd_path, "--config", str(paths.buildkitd_config)],
        paths.buildkit_socket,
    )
    child = Child(containerd, buildkitd, env)
    signal.signal(signal.SIGTERM, child.request_stop)
    signal.signal(signal.SIGINT, child.request_stop)
    return child.run()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
