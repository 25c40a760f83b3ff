"""Contents, metadata and lint results of the built deb and rpm."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.packaging.conftest import (
    DBUS_INTERFACE,
    DBUS_SERVICE,
    ENGINE_BINARIES,
    REPO,
    USER_UNITS,
)

ENABLE_COMMAND = "systemctl --user enable --now finch.socket"
# Every packaged file lives under one of these folders: nothing in /etc, /var or
# /usr/local.
TOP_LEVELS = ("usr/bin", "usr/lib", "usr/libexec", "usr/share")
DEBIAN_DEPENDS = (
    "python3",
    "python3-dbus-next",
    "python3-grpcio",
    "python3-systemd",
    "runc",
    "slirp4netns",
    "uidmap",
    "containernetworking-plugins",
    "iptables",
)
# Debian 12 lacks these or ships versions finchd cannot use, so the package
# carries them instead of depending on them.
CARRIED = ("nerdctl", "containerd", "buildkit", "rootlesskit", "python3-aiohttp")


def common_files(subcommands: list[str]) -> set[str]:
    """Return the files, relative to /, that both packages must contain."""
    files = {
        "usr/bin/finchd",
        "usr/lib/finchd/python/finchd/__init__.py",
        "usr/lib/finchd/python/finchd/cli.py",
        "usr/lib/finchd/python/finchd/engine/runc.sh",
        "usr/lib/finchd/python/aiohttp/__init__.py",
        "usr/lib/finchd/python/xdg_base_dirs/__init__.py",
        DBUS_SERVICE,
        DBUS_INTERFACE,
    }
    files |= {f"usr/libexec/finchd/bin/{name}" for name in ENGINE_BINARIES}
    files |= {f"usr/lib/systemd/user/{unit}" for unit in USER_UNITS}
    files.add("usr/share/man/man1/finchd.1.gz")
    files |= {f"usr/share/man/man1/finchd-{name}.1.gz" for name in subcommands}
    return files


def rpm_query(rpm_path: Path, *args: str) -> str:
    return subprocess.run(
        ["rpm", "-qp", *args, str(rpm_path)], capture_output=True, text=True, check=True
    ).stdout


def deb_field(deb_path: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb_path), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_packaged_subcommands_found(subcommands: list[str]) -> None:
    for name in ("serve", "engine", "check"):
        assert name in subcommands


def test_deb_lists_expected_files(deb_files: set[str], subcommands: list[str]) -> None:
    missing = sorted(common_files(subcommands) - deb_files)
    assert not missing, f"dpkg -c lacks {missing}"
    for name in ("usr/share/doc/finchd/copyright", "usr/share/doc/finchd/changelog.gz"):
        assert name in deb_files
    # dh_compress compresses documents larger than 4 KiB.
    readme = {"usr/share/doc/finchd/README.md", "usr/share/doc/finchd/README.md.gz"}
    assert readme & deb_files, "the deb has no README"


def test_deb_files_stay_in_usr(deb_files: set[str]) -> None:
    outside = sorted(
        name for name in deb_files
        if name not in ("usr", *TOP_LEVELS) and not name.startswith(tuple(f"{top}/" for top in TOP_LEVELS))
    )
    assert not outside, f"files outside {TOP_LEVELS}: {outside}"


def test_deb_ships_no_bytecode(deb_files: set[str]) -> None:
    compiled = sorted(name for name in deb_files if "__pycache__" in name or name.endswith(".pyc"))
    assert not compiled, f"bytecode belongs to postinst's py3compile, not the deb: {compiled[:5]}"


def test_units_not_enabled_by_package(deb_files: set[str], rpm_path: Path) -> None:
    links = sorted(name for name in deb_files if ".wants" in name or name.startswith("etc/"))
    assert not links, f"the deb enables units: {links}"
    rpm_files = rpm_query(rpm_path, "-l").split()
    assert not [name for name in rpm_files if ".wants" in name or name.startswith("/etc/")]


def test_deb_postinst_prints_enable_command(deb_path: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-e", str(deb_path), str(tmp_path / "control")], check=True)
    postinst = (tmp_path / "control" / "postinst").read_text()
    assert ENABLE_COMMAND in postinst
    assert "deb-systemd-helper" not in postinst
    assert "systemctl --global enable" not in postinst


def test_deb_depends_on_debian_packages(deb_path: Path) -> None:
    depends = deb_field(deb_path, "Depends")
    names = {re.split(r"[\s(]", item.strip())[0] for item in depends.split(",")}
    for name in DEBIAN_DEPENDS:
        assert name in names, f"Depends lacks {name}: {depends}"
    for name in CARRIED:
        assert name not in names, f"Depends names {name}, which the package carries: {depends}"
    assert "dbus-user-session" in deb_field(deb_path, "Recommends")


def test_rpm_lists_expected_files(rpm_path: Path, subcommands: list[str]) -> None:
    rpm_files = {name.lstrip("/") for name in rpm_query(rpm_path, "-l").split()}
    missing = sorted(common_files(subcommands) - rpm_files)
    assert not missing, f"rpm -qlp lacks {missing}"
    assert "usr/share/licenses/finchd/copyright" in rpm_files
    assert "usr/share/doc/finchd/README.md" in rpm_files


def test_rpm_matches_deb_contents(rpm_path: Path, deb_files: set[str]) -> None:
    """Compare program files. Docs, bytecode and rpm's /usr/lib/.build-id links may differ."""

    def program_files(names: set[str]) -> set[str]:
        folders = {str(Path(name).parent) for name in names}
        return {
            name for name in names
            if name.startswith(("usr/bin/", "usr/lib/", "usr/libexec/", "usr/share/dbus-1/"))
            and "__pycache__" not in name
            and not name.startswith("usr/lib/.build-id")
            and name not in folders
        }

    rpm_files = {name.lstrip("/") for name in rpm_query(rpm_path, "-l").split()}
    deb_only = sorted(program_files(deb_files) - rpm_files)
    rpm_only = sorted(program_files(rpm_files) - deb_files)
    assert not deb_only, f"only in the deb: {deb_only[:20]}"
    assert not rpm_only, f"only in the rpm: {rpm_only[:20]}"


def test_rpm_scripts_print_enable_command(rpm_path: Path) -> None:
    scripts = rpm_query(rpm_path, "--scripts")
    assert ENABLE_COMMAND in scripts
    assert "systemctl --global enable" not in scripts


@pytest.mark.timeout(600)
def test_lintian_reports_no_errors(deb_path: Path) -> None:
    result = subprocess.run(
        ["lintian", "--tag-display-limit", "0", str(deb_path)],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("E:")]
    assert not errors, "lintian errors:\n" + "\n".join(errors)
    assert result.returncode == 0, f"lintian exited with {result.returncode}:\n{output}"


def test_rpmlint_reports_no_errors(rpm_path: Path) -> None:
    result = subprocess.run(
        ["rpmlint", "-r", str(REPO / "packaging/rpm/finchd.rpmlintrc"), str(rpm_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if ": E: " in line]
    assert not errors, "rpmlint errors:\n" + "\n".join(errors)
    assert re.search(r"\b0 errors\b", output), output
