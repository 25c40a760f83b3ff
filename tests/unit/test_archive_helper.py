"""The archive helper's path rules, extraction checks and change listing, on plain folders."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from finchd.nerdctl import archive_helper as helper
from finchd.nerdctl.containerd import decode_mounts, protobuf_string


@pytest.mark.parametrize(
    ("requested", "cleaned"),
    [
        ("etc", "/etc"),
        ("/etc/", "/etc/"),
        ("/etc/.", "/etc/."),
        ("/etc/./", "/etc/./"),
        ("//etc//passwd", "/etc/passwd"),
        ("/a/../../etc", "/etc"),
        ("/", "/"),
        (".", "/."),
    ],
)
def test_clean_path_keeps_trailing_marks(requested: str, cleaned: str) -> None:
    assert helper.clean_path(requested) == cleaned


@pytest.mark.parametrize(
    ("path", "base"),
    [("/etc/passwd", "passwd"), ("/etc/", "etc"), ("/etc/.", "."), ("/", "/")],
)
def test_base_like_go(path: str, base: str) -> None:
    assert helper._base(path) == base


def test_go_file_mode_bits() -> None:
    assert helper.go_file_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert helper.go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert helper.go_file_mode(stat.S_IFREG | 0o4755) == (1 << 23) | 0o755
    assert helper.go_file_mode(stat.S_IFDIR | 0o1777) == (1 << 31) | (1 << 20) | 0o777
    assert helper.go_file_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666


def test_format_mtime_rfc3339(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    os.utime(file, ns=(1_704_067_200_500_000_000, 1_704_067_200_500_000_000))
    assert helper.format_mtime(os.lstat(file)) == "2024-01-01T00:00:00.5Z"
    os.utime(file, ns=(1_704_067_200_000_000_000, 1_704_067_200_000_000_000))
    assert helper.format_mtime(os.lstat(file)) == "2024-01-01T00:00:00Z"


def test_decode_mounts_reply() -> None:
    mount = (protobuf_string(1, "overlay") + protobuf_string(2, "overlay")
             + protobuf_string(4, "upperdir=/u") + protobuf_string(4, "lowerdir=/a:/b"))
    reply = bytes([1 << 3 | 2, len(mount)]) + mount
    assert decode_mounts(reply) == [{
        "type": "overlay", "source": "overlay", "target": "",
        "options": ["upperdir=/u", "lowerdir=/a:/b"],
    }]


def tar_of(*members: tuple[str, str, str]) -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, kind, data in members:
            member = tarfile.TarInfo(name)
            member.uid = os.getuid()
            member.gid = os.getgid()
            if kind == "file":
                member.size = len(data)
                archive.addfile(member, io.BytesIO(data.encode()))
            elif kind == "dir":
                member.type = tarfile.DIRTYPE
                member.mode = 0o755
                archive.addfile(member)
            else:
                member.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                member.linkname = data
                archive.addfile(member)
    buffer.seek(0)
    return tarfile.open(fileobj=buffer, mode="r|")


def extractor(destination: Path, no_overwrite: bool = False) -> helper.Extractor:
    return helper.Extractor(str(destination), no_overwrite_dir_non_dir=no_overwrite,
                            owner=(os.getuid(), os.getgid()))


@pytest.mark.parametrize(
    "name", ["../escape", "a/../../escape", "a/b/../../../x", ".."]
)
def test_member_outside_destination_rejected(tmp_path: Path, name: str) -> None:
    destination = tmp_path / "dest"
    destination.mkdir()
    with pytest.raises(helper.HelperError) as raised:
        extractor(destination).member_path(name)
    assert raised.value.kind == "invalid"


def test_absolute_member_stays_in_destination(tmp_path: Path) -> None:
    destination = tmp_path / "dest"
    destination.mkdir()
    assert extractor(destination).member_path("/etc/x") == f"{destination}/etc/x"
    assert extractor(destination).member_path("/../x") == f"{destination}/x"


def test_extract_files_links_and_directories(tmp_path: Path) -> None:
    destination = tmp_path / "dest"
    destination.mkdir()
    archive = tar_of(("dir", "dir", ""), ("dir/file", "file", "data"),
                     ("dir/link", "symlink", "file"), ("dir/hard", "hardlink", "dir/file"),
                     ("new/parent/file", "file", "deep"))
    extractor(destination).extract(archive)
    assert (destination / "dir" / "file").read_text() == "data"
    assert os.readlink(destination / "dir" / "link") == "file"
    assert os.stat(destination / "dir" / "hard").st_ino == os.stat(destination / "dir" / "file").st_ino
    assert (destination / "new" / "parent" / "file").read_text() == "deep"


def test_extract_replaces_symlink_not_target(tmp_path: Path) -> None:
    destination = tmp_path / "dest"
    destination.mkdir()
    outside = tmp_path / "outside"
    outside.write_text("keep")
    (destination / "name").symlink_to(outside)
    extractor(destination).extract(tar_of(("name", "file", "new")))
    assert outside.read_text() == "keep"
    assert not (destination / "name").is_symlink()
    assert (destination / "name").read_text() == "new"


@pytest.mark.parametrize(
    "members",
    [
        [("up", "symlink", "../../.."), ("up/x", "file", "x")],
        [("hard", "hardlink", "../outside")],
    ],
)
def test_extract_link_escape_rejected(tmp_path: Path, members: list[tuple[str, str, str]]) -> None:
    destination = tmp_path / "dest"
    destination.mkdir()
    (tmp_path / "outside").write_text("keep")
    with pytest.raises(helper.HelperError) as raised:
        extractor(destination).extract(tar_of(*members))
    assert raised.value.kind == "invalid"
    assert not (tmp_path / "x").exists()


def test_no_overwrite_dir_non_dir(tmp_path: Path) -> None:
    destination = tmp_path / "dest"
    (destination / "dir").mkdir(parents=True)
    (destination / "file").write_text("x")
    for member in (("dir", "file", "x"), ("file", "dir", "")):
        with pytest.raises(helper.HelperError) as raised:
            extractor(destination, no_overwrite=True).extract(tar_of(member))
        assert raised.value.kind == "conflict"
    extractor(destination).extract(tar_of(("dir", "file", "replaced")))
    assert (destination / "dir").read_text() == "replaced"


def test_resolve_in_root_confines_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    (root / "abs").symlink_to("/data")
    (root / "up").symlink_to("../../../..")
    assert helper.resolve_in_root(str(root), "/abs/x", create="dir", may_create=True) == f"{root}/data/x"
    assert (root / "data" / "x").is_dir()
    assert helper.resolve_in_root(str(root), "/up/data", create="dir", may_create=False) == f"{root}/data"
    assert helper.resolve_in_root(str(root), "/missing", create="file", may_create=False) is None


def test_layer_changes_rules(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    upper = tmp_path / "upper"
    for layer in (lower, upper):
        (layer / "etc").mkdir(parents=True)
        (layer / "same").mkdir()
    (lower / "etc" / "passwd").write_text("old")
    (upper / "etc" / "passwd").write_text("new")
    (upper / "etc" / "hosts").write_text("")
    (upper / "added").mkdir()
    (upper / "added" / "file").write_text("x")
    for layer in (lower, upper):
        os.utime(layer / "same", (1_704_067_200, 1_704_067_200))
        os.utime(layer / "etc", (1_704_067_200, 1_704_067_200))
    changes = helper.layer_changes(str(upper), [str(lower)], {"/etc/hosts"})
    assert ("C", "/etc/passwd") in changes
    assert ("A", "/added") in changes
    assert ("A", "/added/file") in changes
    assert ("C", "/added") not in changes
    assert not any(path == "/same" for _, path in changes)
    assert not any(path == "/etc/hosts" for _, path in changes)
