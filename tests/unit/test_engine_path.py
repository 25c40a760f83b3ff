"""Where engine executables are found, and what `finchd check` suggests when they are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from finchd import check
from finchd.config import Settings
from finchd.engine import environment


def test_base_path_includes_packaged_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = tmp_path / "libexec" / "bin"
    packaged.mkdir(parents=True)
    monkeypatch.setattr(environment, "PACKAGED_ENGINE_DIR", str(packaged))
    folders = environment.base_path(Settings()).split(":")
    assert folders[0] == str(packaged)
    assert folders[1:] == list(environment.SYSTEM_PATH)


def test_base_path_skips_missing_packaged_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(environment, "PACKAGED_ENGINE_DIR", str(tmp_path / "missing"))
    folders = environment.base_path(Settings()).split(":")
    assert folders == list(environment.SYSTEM_PATH)


def test_base_path_configured_folder_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = tmp_path / "packaged"
    packaged.mkdir()
    monkeypatch.setattr(environment, "PACKAGED_ENGINE_DIR", str(packaged))
    settings = Settings(nerdctl=str(tmp_path / "custom" / "nerdctl"))
    folders = environment.base_path(settings).split(":")
    assert folders[0] == str(tmp_path / "custom")
    assert folders[1] == str(packaged)


def test_check_fix_names_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "PACKAGED_ENGINE_DIR", str(tmp_path))
    assert "--reinstall finchd" in check.install_fix()
    monkeypatch.setattr(check, "PACKAGED_ENGINE_DIR", str(tmp_path / "missing"))
    assert check.install_fix() == "sudo scripts/install-deps"
