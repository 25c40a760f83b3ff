"""Socket activation and sd_notify without a service manager: systemd-socket-activate and a datagram socket."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finchd.activation import Notifier, adopt_listen_socket

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
needs_socket_activate = pytest.mark.skipif(
    SOCKET_ACTIVATE is None, reason="systemd-socket-activate is not installed (apt install systemd)"
)


def run_activated(tmp_path: Path, *listen: str, datagram: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `finchd serve` under systemd-socket-activate and connect to trigger it."""
    assert SOCKET_ACTIVATE is not None
    command = [SOCKET_ACTIVATE]
    if datagram:
        command.append("--datagram")
    for address in listen:
        command += ["-l", address]
    for name in ("PYTHONPATH", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        command += ["-E", name]
    command += [sys.executable, "-m", "finchd", "serve"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]),
               XDG_RUNTIME_DIR=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        kind = socket.SOCK_DGRAM if datagram else socket.SOCK_STREAM
        deadline = time.monotonic() + 10
        while not Path(listen[0]).exists():
            assert time.monotonic() < deadline, "systemd-socket-activate did not listen"
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX, kind) as client:
            if datagram:
                client.sendto(b"x", listen[0])
            else:
                client.connect(listen[0])
            stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@needs_socket_activate
def test_two_sockets_rejected(tmp_path: Path) -> None:
    result = run_activated(tmp_path, str(tmp_path / "a.sock"), str(tmp_path / "b.sock"))

    assert result.returncode == 1
    assert "systemd passed 2 file descriptors" in result.stderr
    assert "exactly one Unix stream socket" in result.stderr


@needs_socket_activate
def test_datagram_socket_rejected(tmp_path: Path) -> None:
    result = run_activated(tmp_path, str(tmp_path / "d.sock"), datagram=True)

    assert result.returncode == 1
    assert "not a listening Unix stream socket" in result.stderr


def test_without_activation_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    monkeypatch.setenv("LISTEN_FDNAMES", "stale")

    assert adopt_listen_socket() is None
    assert "LISTEN_FDNAMES" not in os.environ


def test_other_process_variables_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))

    assert adopt_listen_socket() is None
    assert "LISTEN_FDS" not in os.environ
    assert "LISTEN_PID" not in os.environ


def test_adopts_listening_socket(tmp_path: Path) -> None:
    """A child whose fd 3 is a listening socket adopts it, unsets the variables, and closes it on exec."""
    script = (
        "import os, sys\n"
        "from finchd.activation import adopt_listen_socket\n"
        "listener = adopt_listen_socket()\n"
        "print(listener.fileno(), os.get_inheritable(listener.fileno()),\n"
        "      sorted(k for k in os.environ if k.startswith('LISTEN_')))\n"
        "connection, _ = listener.accept()\n"
        "connection.sendall(b'adopted')\n"
    )
    path = tmp_path / "api.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    wrapper = (
        "import os, sys\n"
        "os.dup2(int(sys.argv[1]), 3)\n"
        "os.environ['LISTEN_FDS'] = '1'\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        "os.environ['LISTEN_FDNAMES'] = 'finch.socket'\n"
        "os.execv(sys.executable, [sys.executable, '-c', sys.argv[2]])\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    process = subprocess.Popen([sys.executable, "-c", wrapper, str(listener.fileno()), script],
                               pass_fds=(listener.fileno(),), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listener.close()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(30)
            client.connect(str(path))
            assert client.recv(100) == b"adopted"
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, stderr
    assert stdout.split() == ["3", "False", "[]"]


def test_notifier_sends_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        notifier = Notifier.from_environment()
        assert "NOTIFY_SOCKET" not in os.environ

        notifier.ready("API ready")
        notifier.status("API ready")
        notifier.status("API ready; 1 container running")
        notifier.stopping("stopping: idle")
        manager.settimeout(5)
        messages = [manager.recv(4096).decode() for _ in range(3)]

    assert messages == [
        "READY=1\nSTATUS=API ready",
        "STATUS=API ready; 1 container running",
        "STOPPING=1\nSTATUS=stopping: idle",
    ]


def test_notifier_without_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier.from_environment()

    assert not notifier.enabled
    notifier.ready("API ready")
