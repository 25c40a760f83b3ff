"""systemd integration of `finchd serve`: the inherited listening socket and sd_notify.

systemd passes the socket of finch.socket as file descriptor 3 and describes it
in LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES. The readiness channel is named by
NOTIFY_SOCKET. finchd takes all four out of its environment before it starts any
child process, and marks the socket close-on-exec, so that nerdctl and the engine
never inherit them: a child that keeps the listening socket open stops systemd
from restarting finch.socket, and a child that reads NOTIFY_SOCKET can send
messages about finchd's service.
"""

from __future__ import annotations

import logging
import os
import socket
import stat

log = logging.getLogger(__name__)

LISTEN_VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
NOTIFY_VARIABLE = "NOTIFY_SOCKET"
# The first file descriptor that systemd passes (SD_LISTEN_FDS_START).
FIRST_LISTEN_FD = 3


class ActivationError(Exception):
    """The file descriptors that systemd passed cannot serve the API."""


def remove_listen_variables() -> None:
    """Remove LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES from os.environ.

    sd_listen_fds(3) unsets them with unsetenv(3), which does not update
    Python's os.environ, and subprocess passes os.environ to children that are
    started without an explicit environment.
    """
    for name in LISTEN_VARIABLES:
        os.environ.pop(name, None)


def adopt_listen_socket() -> socket.socket | None:
    """Return the listening Unix stream socket passed by systemd, or None without one.

    Raise ActivationError unless systemd passed exactly one socket and it is a
    listening Unix stream socket. The returned socket is non-blocking and
    close-on-exec.
    """
    if "LISTEN_FDS" not in os.environ:
        remove_listen_variables()
        return None
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        # Variables left by a parent that was itself socket-activated.
        remove_listen_variables()
        return None
    try:
        from systemd import daemon
    except ImportError as exc:
        remove_listen_variables()
        raise ActivationError(
            "socket activation needs the systemd Python module: install python3-systemd "
            "and make finchd's virtual environment with --system-site-packages "
            "(scripts/install-user does)"
        ) from exc
    names = os.environ.get("LISTEN_FDNAMES", "")
    # listen_fds also sets FD_CLOEXEC on every descriptor it returns.
    descriptors = daemon.listen_fds(unset_environment=True)
    remove_listen_variables()
    if len(descriptors) != 1:
        for descriptor in descriptors:
            os.close(descriptor)
        raise ActivationError(
            f"systemd passed {len(descriptors)} file descriptors (names: {names or 'none'}), "
            "but finchd serves exactly one Unix stream socket; give finch.socket a single "
            "ListenStream= line with a path"
        )
    descriptor = descriptors[0]
    if not daemon.is_socket_unix(descriptor, socket.SOCK_STREAM, 1):
        kind = describe_descriptor(descriptor)
        os.close(descriptor)
        raise ActivationError(
            f"file descriptor {descriptor} from systemd is {kind}, not a listening Unix "
            "stream socket; finch.socket needs ListenStream= with a path and no Accept=yes"
        )
    os.set_inheritable(descriptor, False)
    listener = socket.socket(fileno=descriptor)
    listener.setblocking(False)
    return listener


def describe_descriptor(descriptor: int) -> str:
    try:
        mode = os.fstat(descriptor).st_mode
    except OSError as exc:
        return f"unusable ({exc.strerror})"
    if not stat.S_ISSOCK(mode):
        return "not a socket"
    probe = socket.socket(fileno=os.dup(descriptor))
    try:
        family = socket.AddressFamily(probe.family).name
        kind = socket.SocketKind(probe.type).name
    finally:
        probe.close()
    return f"a {family} {kind} socket"


class Notifier:
    """Sends sd_notify(3) messages (READY=1, STATUS=, STOPPING=1) to the service manager.

    sd_notify reads NOTIFY_SOCKET from the environment at each call, but finchd
    removes the variable at start so that no child inherits it. The address is
    therefore kept here and the datagram is sent directly. Without a service
    manager every method does nothing.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.last_status: str | None = None
        self._failed = False

    @classmethod
    def from_environment(cls) -> Notifier:
        """Take NOTIFY_SOCKET out of os.environ and return a notifier for it."""
        return cls(os.environ.pop(NOTIFY_VARIABLE, None) or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")
        self.last_status = status

    def status(self, status: str) -> None:
        if status != self.last_status:
            self.send(f"STATUS={status}")
            self.last_status = status

    def stopping(self, status: str) -> None:
        self.send(f"STOPPING=1\nSTATUS={status}")
        self.last_status = status

    def send(self, message: str) -> None:
        if self.address is None:
            return
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sender:
                sender.sendto(message.encode(), address)
        except OSError as exc:
            # Logged once: the manager is gone or the socket is unusable, and a
            # status line is sent after every container change.
            if not self._failed:
                log.warning("cannot send %r to the service manager at %s: %s",
                            message.splitlines()[0], self.address, exc)
            self._failed = True
