"""Fixtures for the deb and rpm package tests.

scripts/test builds the packages with packaging/build as root and names their
folders in FINCHD_PACKAGE_DIR (the default version) and
FINCHD_UPGRADE_PACKAGE_DIR (a newer build of the same tree). Without them
every test here is skipped. Tests that install the deb also need root.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

PACKAGE_DIR_VARIABLE = "FINCHD_PACKAGE_DIR"
UPGRADE_DIR_VARIABLE = "FINCHD_UPGRADE_PACKAGE_DIR"
REPO = Path(__file__).resolve().parents[2]

ENGINE_BINARIES = (
    "rootlesskit",
    "rootlessctl",
    "nerdctl",
    "containerd",
    "containerd-shim-runc-v2",
    "buildkitd",
    "buildctl",
)
USER_UNITS = ("finch.socket", "finch.service", "finch-engine.service")
DBUS_SERVICE = "usr/share/dbus-1/services/io.finchd.Finchd1.service"
DBUS_INTERFACE = "usr/share/dbus-1/interfaces/io.finchd.Finchd1.xml"


def package_dir(variable: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{variable} is not set; scripts/test builds the packages with packaging/build")
    path = Path(value)
    assert path.is_dir(), f"{variable}={value} is not a folder"
    return path


def single_file(folder: Path, pattern: str) -> Path:
    matches = sorted(folder.glob(pattern))
    assert len(matches) == 1, f"expected one {pattern} in {folder}, found {matches}"
    return matches[0]


@pytest.fixture(scope="session")
def deb_path() -> Path:
    return single_file(package_dir(PACKAGE_DIR_VARIABLE), "finchd_*.deb")


@pytest.fixture(scope="session")
def rpm_path() -> Path:
    return single_file(package_dir(PACKAGE_DIR_VARIABLE), "finchd-*.rpm")


@pytest.fixture(scope="session")
def upgrade_deb_path() -> Path:
    return single_file(package_dir(UPGRADE_DIR_VARIABLE), "finchd_*.deb")


@pytest.fixture(scope="session")
def deb_files(deb_path: Path) -> set[str]:
    """Return the paths in the deb's data archive, relative, without ./ or a trailing /."""
    listing = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb_path)], capture_output=True, check=True
    ).stdout
    names = subprocess.run(
        ["tar", "-tf", "-"], input=listing, capture_output=True, check=True
    ).stdout.decode()
    return {line.removeprefix("./").rstrip("/") for line in names.splitlines()} - {""}


@pytest.fixture(scope="session")
def extracted_deb(deb_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder holding the deb's files, unpacked with dpkg-deb."""
    root = tmp_path_factory.mktemp("deb-root")
    subprocess.run(["dpkg-deb", "-x", str(deb_path), str(root)], check=True)
    return root


@pytest.fixture(scope="session")
def subcommands(extracted_deb: Path) -> list[str]:
    """Return the subcommands of the packaged finchd, read from its argparse parser."""
    script = (
        "import argparse\n"
        "from finchd.cli import parser\n"
        "for action in parser()._actions:\n"
        "    if isinstance(action, argparse._SubParsersAction):\n"
        "        print('\\n'.join(action.choices))\n"
    )
    result = subprocess.run(
        ["/usr/bin/python3", "-c", script],
        env={"PYTHONPATH": str(extracted_deb / "usr/lib/finchd/python"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"the packaged finchd.cli failed to import:\n{result.stderr}"
    return result.stdout.split()
