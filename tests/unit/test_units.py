"""The shipped systemd units, install-units and the journal handler."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from finchd import units
from finchd.config import ConfigError, add_arguments, load
from finchd.journal import JournalHandler, stderr_is_journal
from finchd.paths import Paths

SHIPPED = Path(__file__).resolve().parents[2] / "systemd"


def unit_settings(name: str) -> dict[str, list[str]]:
    """Parse a unit file into key -> values, in order, over all sections."""
    values: dict[str, list[str]] = {}
    for line in (SHIPPED / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_socket_unit_listens_on_runtime_dir() -> None:
    socket_unit = unit_settings("finch.socket")

    assert socket_unit["ListenStream"] == ["%t/finch.sock"]
    assert socket_unit["SocketMode"] == ["0600"]
    assert "Accept" not in socket_unit
    assert socket_unit["Documentation"]


def test_service_unit_notifies_and_bounds_starts() -> None:
    service = unit_settings("finch.service")

    assert service["Type"] == ["notify"]
    assert service["ExecStart"][0].startswith("/usr/bin/finchd serve ")
    assert service["Documentation"]
    assert "finch-engine.service" in service["Wants"][0]
    assert int(service["StartLimitBurst"][0]) >= 50
    assert service["StartLimitIntervalSec"] == ["10s"]


def test_engine_unit_owns_containers() -> None:
    engine = unit_settings("finch-engine.service")

    assert engine["Type"] == ["notify"]
    assert engine["ExecStart"] == ["/usr/bin/finchd engine"]
    assert engine["KillMode"] == ["mixed"]
    assert engine["Delegate"] == ["yes"]
    assert engine["SuccessExitStatus"] == ["3"]


def test_render_replaces_only_exec_start() -> None:
    for name in units.UNIT_NAMES:
        text = (SHIPPED / name).read_text()
        rendered = units.render_unit(text, "/home/user/.local/bin/finchd")
        changed = [(old, new) for old, new in zip(text.splitlines(), rendered.splitlines())
                   if old != new]
        assert len(rendered.splitlines()) == len(text.splitlines())
        for old, new in changed:
            assert old.startswith("ExecStart=/usr/bin/finchd ")
            assert new == old.replace("/usr/bin/finchd", "/home/user/.local/bin/finchd", 1)


def test_install_and_uninstall_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    entry_point = tmp_path / "finchd venv" / "bin" / "finchd"
    entry_point.parent.mkdir(parents=True)
    entry_point.write_text("#!/bin/sh\n")
    entry_point.chmod(0o755)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr(units, "user_manager_running", lambda: False)
    monkeypatch.setattr(units, "unit_source_dirs", lambda: [SHIPPED])
    monkeypatch.setattr(sys, "argv", [str(entry_point)])

    assert units.install_units() == 0
    service = (tmp_path / "systemd" / "user" / "finch.service").read_text()
    assert f"ExecStart='{entry_point}' serve " in service
    assert "systemctl --user enable --now finch.socket" in capsys.readouterr().out

    assert units.uninstall_units() == 0
    assert sorted((tmp_path / "systemd" / "user").iterdir()) == []


def test_command_for_module_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/src/finchd/__main__.py"])

    assert units.finchd_command() == f"{sys.executable} -m finchd"


def test_journal_handler_sends_structured_fields() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    handler = JournalHandler(lambda message, **fields: sent.append((message, fields)))
    logger = logging.getLogger("finchd.test.journal")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("GET %s", "/containers/json",
                       extra={"REQUEST_ID": 7, "CONTAINER_ID": "a" * 64})
    finally:
        logger.removeHandler(handler)

    message, fields = sent[0]
    assert message == "GET /containers/json"
    assert fields["SYSLOG_IDENTIFIER"] == "finchd"
    assert fields["PRIORITY"] == "4"
    assert fields["REQUEST_ID"] == 7
    assert fields["CONTAINER_ID"] == "a" * 64
    assert "MSG" not in fields
    assert "ARGS" not in fields


def test_stderr_journal_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert not stderr_is_journal()
    monkeypatch.setenv("JOURNAL_STREAM", "not a stream")
    assert not stderr_is_journal()


@pytest.mark.parametrize("value", ["-1", "0.5"])
def test_idle_timeout_rejects_small_values(value: str, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--idle-timeout", value])
    paths = Paths(tmp_path / "config", tmp_path / "data", tmp_path / "run")

    with pytest.raises(ConfigError, match="idle_timeout"):
        load(args, paths)
