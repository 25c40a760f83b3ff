"""The engine supervisor: rootlesskit with containerd and buildkitd inside, one per user.

`run_engine` runs in the foreground, restarts the engine whenever rootlesskit
exits, and stops it on SIGTERM or SIGINT. `ensure_engine` starts such a
supervisor in the background, detached from the calling process, so that the
engine outlives the API server.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

import finchd
from finchd.activation import Notifier
from finchd.config import Settings
from finchd.engine.process import socket_accepts, terminate_with_parent
from finchd.engine.configs import toml_value, write_engine_configs, write_file
from finchd.engine.environment import clean_environment, resolve_executable
from finchd.errors import EngineError
from finchd.paths import Paths

log = logging.getLogger(__name__)

# Exit code of `run_engine` when another supervisor holds the user's engine lock.
EXIT_ALREADY_RUNNING = 3

POLL_INTERVAL = 0.2
CHILD_PID_TIMEOUT = 30.0
# The child gives containerd 20 s to stop, so rootlesskit gets more than that.
STOP_TIMEOUT = 40.0
MAX_BACKOFF = 60.0
# An engine that ran this long before exiting restarts without delay.
HEALTHY_RUNTIME = 120.0


class EngineStartError(EngineError):
    """The engine failed to start, or containerd accepted no connection in time."""


def engine_running(paths: Paths) -> bool:
    """Return whether the engine's rootlesskit child is alive and containerd accepts connections."""
    try:
        child_pid = int((paths.rootlesskit_state / "child_pid").read_text().strip())
        os.kill(child_pid, 0)
    except (OSError, ValueError):
        return False
    return socket_accepts(paths.containerd_socket)


def acquire_engine_lock(paths: Paths) -> int | None:
    """Lock the engine's pid file and write this pid into it.

    Return the locked file descriptor, or None when another supervisor holds
    the lock. The file is never removed, because a process that removes a lock
    file races another one that has just opened it.
    """
    paths.engine_pid_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(paths.engine_pid_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(descriptor)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    return descriptor


def read_engine_pid(paths: Paths) -> int | None:
    try:
        return int(paths.engine_pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def processes_in_user_namespace(namespace: str) -> list[int]:
    """Return the pids whose user namespace link (`user:[inode]`) is `namespace`."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/user") == namespace:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def read_command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def belongs_to_engine(pids: list[int], paths: Paths) -> bool:
    """Return whether one of `pids` is this user's engine child or one of its shims.

    The kernel can reuse a namespace inode once every process of the old
    namespace has exited, so a matching inode alone could name an unrelated
    namespace of this user. The engine child and containerd's shims carry
    finchd's module name or containerd socket path on their command lines.
    """
    markers = ("finchd.engine.child", str(paths.containerd_socket))
    return any(
        marker in read_command_line(pid) for pid in pids for marker in markers
    )


def kill_leftover_processes(paths: Paths) -> None:
    """SIGKILL what is left in the user namespace of the engine that ran last.

    containerd's shims start their own sessions and outlive rootlesskit, and
    with them the containers. Their network namespace and port forwarding died
    with rootlesskit, so they are useless and would only hold locks and IP
    leases. The user namespace is read from paths.engine_userns_file, so the
    sweep also works after the previous supervisor was killed.
    """
    try:
        namespace = paths.engine_userns_file.read_text().strip()
    except FileNotFoundError:
        return
    pids = processes_in_user_namespace(namespace) if namespace else []
    if pids and belongs_to_engine(pids, paths):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.warning(
            "killed %d processes left in the user namespace %s of the last engine: %s",
            len(pids),
            namespace,
            " ".join(str(pid) for pid in pids),
        )
    paths.engine_userns_file.unlink(missing_ok=True)


def reset_engine_state(paths: Paths) -> None:
    """Remove state that belongs to one engine run: rootlesskit's state folder and CNI leases.

    Every container's network namespace lives inside the engine's detached
    network namespace, so no IP lease or CNI result outlives the engine.
    Container and image records stay in containerd's root folder.
    """
    shutil.rmtree(paths.rootlesskit_state, ignore_errors=True)
    shutil.rmtree(paths.cni_state_dir, ignore_errors=True)
    paths.cni_state_dir.mkdir(parents=True, exist_ok=True)


def package_parent() -> str:
    """Return the folder that contains the finchd package, for PYTHONPATH."""
    return str(Path(finchd.__file__).resolve().parent.parent)


def rootlesskit_command(settings: Settings, paths: Paths) -> list[str]:
    """Return the rootlesskit command line that starts the engine child.

    --detach-netns keeps the child, and so containerd and buildkitd, in the
    host's network namespace and gives containers a separate namespace at
    `<state-dir>/netns` behind slirp4netns. Pulls therefore reach registries on
    the host's loopback. --disable-host-loopback stops containers from reaching
    the host's loopback through slirp4netns's gateway address 10.0.2.2.
    """
    return [
        resolve_executable(settings, settings.rootlesskit),
        f"--state-dir={paths.rootlesskit_state}",
        "--net=slirp4netns",
        "--mtu=65520",
        "--slirp4netns-sandbox=auto",
        "--slirp4netns-seccomp=auto",
        "--disable-host-loopback",
        "--port-driver=builtin",
        "--detach-netns",
        "--copy-up=/etc",
        "--copy-up=/run",
        "--copy-up=/var/lib",
        "--propagation=rslave",
        sys.executable,
        "-m",
        "finchd.engine.child",
        resolve_executable(settings, settings.containerd),
        resolve_executable(settings, settings.buildkitd),
    ]


def child_environment(settings: Settings, paths: Paths) -> dict[str, str]:
    env = clean_environment(settings, paths)
    env["PYTHONPATH"] = package_parent()
    env["FINCHD_LOG_LEVEL"] = settings.log_level
    return env


def describe_exit(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


class Supervisor:
    """Runs rootlesskit, restarts it with backoff when it exits, and stops it on a signal."""

    def __init__(self, settings: Settings, paths: Paths,
                 notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.paths = paths
        self.process: subprocess.Popen[bytes] | None = None
        self.stop_signal: int | None = None
        # READY=1 for finch-engine.service goes out once, when containerd first
        # accepts connections; later restarts only change the status line.
        self.notifier = notifier or Notifier(None)
        self.ready_sent = False

    def handle_signal(self, signum: int, _frame: object) -> None:
        if self.stop_signal is None:
            log.info("received %s, stopping the engine", signal.Signals(signum).name)
        self.stop_signal = signum
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def run(self) -> int:
        previous = {
            signum: signal.signal(signum, self.handle_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            return self.loop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def loop(self) -> int:
        failures = 0
        while self.stop_signal is None:
            kill_leftover_processes(self.paths)
            reset_engine_state(self.paths)
            started = time.monotonic()
            code = self.run_once()
            runtime = time.monotonic() - started
            kill_leftover_processes(self.paths)
            if self.stop_signal is not None:
                log.info("engine stopped (%s)", describe_exit(code))
                break
            failures = 0 if runtime >= HEALTHY_RUNTIME else failures + 1
            delay = min(MAX_BACKOFF, 2.0 ** (failures - 1)) if failures else 0.0
            log.error(
                "engine (rootlesskit) exited with %s after %.1f s; restarting in %.0f s",
                describe_exit(code),
                runtime,
                delay,
            )
            self.notifier.status(
                f"engine exited with {describe_exit(code)}; restarting in {delay:.0f} s"
            )
            self.sleep(delay)
        return 0

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.stop_signal is None and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)

    def run_once(self) -> int:
        """Run rootlesskit until it exits and return its exit code."""
        command = rootlesskit_command(self.settings, self.paths)
        log.info("starting the engine: %s", " ".join(command))
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            env=child_environment(self.settings, self.paths),
            cwd="/",
            start_new_session=True,
            # A supervisor killed with SIGKILL takes its engine along instead
            # of leaving it running without the lock.
            preexec_fn=terminate_with_parent,
        )
        log.info("rootlesskit started (pid %d)", self.process.pid)
        self.record_user_namespace()
        stop_deadline: float | None = None
        engine_up = False
        while self.process.poll() is None:
            if self.stop_signal is not None and stop_deadline is None:
                stop_deadline = time.monotonic() + STOP_TIMEOUT
                self.notifier.stopping("stopping buildkitd, containerd and rootlesskit")
            if not engine_up and stop_deadline is None and engine_running(self.paths):
                engine_up = True
                self.announce_running(self.process.pid)
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                log.warning("rootlesskit (pid %d) still runs; killing it", self.process.pid)
                self.process.kill()
                self.process.wait()
                break
            time.sleep(POLL_INTERVAL)
        code = self.process.returncode
        self.process = None
        return code

    def announce_running(self, rootlesskit_pid: int) -> None:
        status = f"engine running (rootlesskit pid {rootlesskit_pid})"
        log.info("containerd accepts connections on %s", self.paths.containerd_socket)
        if self.ready_sent:
            self.notifier.status(status)
        else:
            self.notifier.ready(status)
            self.ready_sent = True

    def record_user_namespace(self) -> None:
        """Store the user namespace of rootlesskit's child once it writes child_pid."""
        assert self.process is not None
        child_pid_file = self.paths.rootlesskit_state / "child_pid"
        deadline = time.monotonic() + CHILD_PID_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                child_pid = int(child_pid_file.read_text().strip())
                namespace = os.readlink(f"/proc/{child_pid}/ns/user")
            except (OSError, ValueError):
                time.sleep(POLL_INTERVAL)
                continue
            write_file(self.paths.engine_userns_file, namespace + "\n")
            log.info("engine child pid %d runs in %s", child_pid, namespace)
            return
        if self.process.poll() is None:
            log.error("rootlesskit did not write %s within %.0f s", child_pid_file, CHILD_PID_TIMEOUT)


def run_engine(settings: Settings, paths: Paths) -> int:
    """Run the user's engine in the foreground until SIGTERM or SIGINT.

    Return 0 after a clean stop and EXIT_ALREADY_RUNNING when another
    supervisor already runs the engine of this user.
    """
    # Taken out of the environment before any child starts, see finchd.activation.
    notifier = Notifier.from_environment()
    lock = acquire_engine_lock(paths)
    if lock is None:
        owner = read_engine_pid(paths) or "unknown"
        log.error(
            "the engine already runs (supervisor pid %s, lock %s)", owner, paths.engine_pid_file
        )
        # A unit whose engine already runs elsewhere is started and then done,
        # which finch-engine.service's SuccessExitStatus=3 accepts.
        notifier.ready(f"the engine already runs under supervisor pid {owner}")
        return EXIT_ALREADY_RUNNING
    try:
        write_engine_configs(settings, paths)
        return Supervisor(settings, paths, notifier).run()
    finally:
        os.close(lock)


def settings_file_content(settings: Settings) -> str:
    """Format `settings` as finchd.toml, so that a spawned process loads the same values."""
    lines = []
    for item in fields(Settings):
        value = getattr(settings, item.name)
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value)
        lines.append(f"{item.name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def spawn_engine(settings: Settings, paths: Paths) -> subprocess.Popen[bytes]:
    """Start `python -m finchd engine` in a new session, with output to paths.engine_log."""
    settings_file = paths.runtime / "engine-settings.toml"
    write_file(settings_file, settings_file_content(settings))
    env = clean_environment(settings, paths)
    env["PYTHONPATH"] = package_parent()
    command = [sys.executable, "-m", "finchd", "engine", "--config", str(settings_file)]
    with open(paths.engine_log, "ab") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )
    log.info("started the engine supervisor (pid %d), log %s", process.pid, paths.engine_log)
    return process


def ensure_engine(settings: Settings, paths: Paths, timeout: float = 90) -> None:
    """Start the user's engine unless it runs, and wait until containerd accepts connections.

    Raise EngineStartError, naming the engine's log file, when the supervisor
    exits early or containerd accepts no connection within `timeout` seconds.
    """
    if engine_running(paths):
        return
    paths.runtime.mkdir(parents=True, exist_ok=True)
    # Spawned even when a supervisor may be running: a second one exits with
    # EXIT_ALREADY_RUNNING at once, and both cases end in the same wait.
    process = spawn_engine(settings, paths)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine_running(paths):
            # Reap the supervisor whenever it exits, without blocking the caller.
            threading.Thread(target=process.wait, name="engine-reaper", daemon=True).start()
            return
        code = process.poll()
        if code is not None and code != EXIT_ALREADY_RUNNING:
            raise EngineStartError(
                f"the engine supervisor exited with {describe_exit(code)} before containerd "
                f"started; see {paths.engine_log}"
            )
        time.sleep(POLL_INTERVAL)
    raise EngineStartError(
        f"timed out after {timeout:.0f} s waiting for containerd on {paths.containerd_socket}; "
        f"see {paths.engine_log}"
    )
