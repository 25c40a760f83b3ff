"""Logging to the systemd journal with structured fields, or to stderr."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

SYSLOG_IDENTIFIER = "finchd"
STDERR_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# journald priorities (syslog levels) for Python's logging levels.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
               (logging.INFO, 6))


def journal_priority(level: int) -> int:
    for threshold, priority in _PRIORITIES:
        if level >= threshold:
            return priority
    return 7


def stderr_is_journal() -> bool:
    """Return whether stderr is connected to the journal.

    systemd sets JOURNAL_STREAM to the `device:inode` of the stream it connects
    to stdout and stderr. A child whose stderr was redirected inherits the
    variable, so the pair must match stderr itself.
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        status = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return status.st_dev == int(device) and status.st_ino == int(inode)


def structured_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the journal fields passed through `extra=`: attributes in upper case, like REQUEST_ID."""
    return {
        name: value
        for name, value in record.__dict__.items()
        if name.isupper() and value is not None
    }


class JournalHandler(logging.Handler):
    """Sends each record to the journal with MESSAGE, PRIORITY, the code location and extra fields.

    python-systemd's own handler also sends every LogRecord attribute (MSG,
    ARGS, LEVELNO, ...) as a field; this one sends only the upper-case fields
    that callers pass with `extra=`.
    """

    def __init__(self, send: Any) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            fields: dict[str, Any] = {
                "PRIORITY": str(journal_priority(record.levelno)),
                "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
                "LOGGER": record.name,
                "CODE_FILE": record.pathname,
                "CODE_LINE": record.lineno,
                "CODE_FUNC": record.funcName,
            }
            fields.update(structured_fields(record))
            self._send(message, **fields)
        except Exception:  # noqa: BLE001 - logging.Handler reports its own failures
            self.handleError(record)


def setup_logging(level: str) -> None:
    """Log to the journal when systemd connected stderr to it, otherwise to stderr."""
    handler: logging.Handler | None = None
    if stderr_is_journal():
        try:
            from systemd import journal
        except ImportError:
            journal = None
        if journal is not None:
            handler = JournalHandler(journal.send)
            # The journal stamps each entry and the identifier names the program.
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
