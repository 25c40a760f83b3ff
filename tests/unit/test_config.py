"""Settings checks for values from finchd.toml and flags."""

from __future__ import annotations

import pytest

from finchd.config import ConfigError, _coerce


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("nan"), float("inf"), True])
def test_idle_timeout_rejects_non_finite(value: object) -> None:
    with pytest.raises(ConfigError, match="idle_timeout"):
        _coerce({"idle_timeout": value})


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), ("30", 30.0), (1.5, 1.5)])
def test_idle_timeout_accepts_seconds(value: object, expected: float) -> None:
    assert _coerce({"idle_timeout": value}).idle_timeout == expected
