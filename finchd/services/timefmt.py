"""Docker's time formats: RFC 3339 with nanoseconds, and human durations."""

from __future__ import annotations

import re
from datetime import datetime, timezone

ZERO_TIME = "0001-01-01T00:00:00Z"
_FRACTION = re.compile(r"\.(\d+)", re.ASCII)


def rfc3339(moment: datetime) -> str:
    """Format an aware time as RFC 3339 with a `Z` for UTC."""
    return moment.isoformat().replace("+00:00", "Z")


def now_rfc3339() -> str:
    return rfc3339(datetime.now(timezone.utc))


def parse_time(value: str | None) -> datetime | None:
    """Parse an RFC 3339 time with up to nanosecond precision. None if unset."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.replace("Z", "+00:00")
    text = _FRACTION.sub(lambda match: "." + match.group(1)[:6].ljust(6, "0"), text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def unix_seconds(value: str | None) -> int:
    parsed = parse_time(value)
    return int(parsed.timestamp()) if parsed else 0


def human_duration(seconds: float) -> str:
    """Render a duration the way Docker's `Up 3 seconds` status does."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def since(value: str | None, now: datetime | None = None) -> float:
    parsed = parse_time(value)
    if parsed is None:
        return 0.0
    return max(0.0, ((now or datetime.now(timezone.utc)) - parsed).total_seconds())
