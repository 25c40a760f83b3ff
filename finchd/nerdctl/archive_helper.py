"""Read and write a container's files from inside the engine's namespaces.

finchd runs this file as `python3 -I archive_helper.py OPERATION CONFIG_JSON`
in the user and mount namespaces of the rootlesskit child (see
finchd/nerdctl/archive.py), where it is uid 0 and can read and write files
owned by the subordinate uids. It imports only the standard library, and
everything before it calls chroot(2), because the host's Python library is out
of reach after that.

Every operation but `changes` first changes its root to the container's root
filesystem:

- a running container: the root of its init process, `/proc/PID/root`, which
  also shows its volumes, bind mounts and tmpfs mounts;
- any other container (and `export`): an overlay mount of the container's
  snapshot in a private mount namespace, plus its bind mounts and volumes
  except for `export`.

So every path, `..` and symlink, also one that an archive member creates,
resolves inside the container's root, and the kernel enforces that.

Operations (OPERATION):
    stat    print the path's stat as one JSON line
    get     print the stat line, then a tar archive of the path
    export  print an empty JSON line, then a tar archive of the whole root
    put     extract the tar archive on stdin (plain, gzip, bzip2 or xz) into
            the path, then print one JSON line
    changes print an empty JSON line, then a JSON list of [kind, path] pairs
            that compares the snapshot's upper layer with its lower layers

A failure is one JSON line `{"error": {"kind": KIND, "message": TEXT}}` and
exit status 1; KIND is not_found, invalid, forbidden, conflict or failed. Once
an archive has started, a failure goes to stderr and the exit status is 1.
"""

from __future__ import annotations

import bz2  # noqa: F401 - tarfile needs it after chroot
import ctypes
import errno
import gzip  # noqa: F401 - tarfile needs it after chroot
import io
import json
import lzma  # noqa: F401 - tarfile needs it after chroot
import os
import posixpath
import select
import shutil
import stat
import sys
import tarfile
import zlib  # noqa: F401 - tarfile needs it after chroot
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, BinaryIO, cast

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

MAX_SYMLINKS = 40
COPY_CHUNK = 1 << 20

# Go's os.FileMode type bits, which Docker clients read from the stat header.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20

# Filesystems of a running container whose contents are kernel state, not
# files: a `get` lists their mount points but does not descend into them.
VIRTUAL_FILESYSTEMS = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue",
                       "debugfs", "tracefs", "securityfs", "fusectl", "configfs"}


class HelperError(Exception):
    """A failure reported to finchd with its kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise HelperError("failed", f"{what}: {os.strerror(code)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            ctypes.c_ulong(flags),
            data.encode() if data is not None else None,
        ),
        f"mount {source or fstype} on {target}",
    )


# Root setup


def enter_process_root(pid: int, upperdir: str | None) -> set[str]:
    """Change root to a running container's root. Return its virtual mount points.

    The process must still be the container's init process after its root is
    opened: its pidfd must not report an exit, and its root mount must be the
    overlay whose upper directory is the container's snapshot.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise HelperError("failed", f"container process {pid} is not running") from None
    try:
        root_fd = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
            mountinfo = file.read()
        if select.select([pidfd], [], [], 0)[0]:
            raise HelperError("failed", f"container process {pid} exited")
    finally:
        os.close(pidfd)
    virtual: set[str] = set()
    root_options = ""
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        parts = fields.split()
        extra = tail.split()
        if len(parts) < 5 or len(extra) < 3:
            continue
        mount_point = _unescape_mountinfo(parts[4])
        if mount_point == "/":
            root_options = extra[2]
        elif extra[0] in VIRTUAL_FILESYSTEMS:
            virtual.add(mount_point)
    if upperdir and f"upperdir={upperdir}" not in root_options.split(","):
        raise HelperError("failed", f"process {pid} is not the container's process")
    os.fchdir(root_fd)
    os.chroot(".")
    os.chdir("/")
    os.close(root_fd)
    return virtual


def _unescape_mountinfo(text: str) -> str:
    """Decode the octal escapes (`\\040` for a space) of a mountinfo field."""
    return text.encode().decode("unicode_escape").encode("latin-1").decode(
        errors="surrogateescape")


def enter_snapshot_root(config: dict[str, Any]) -> None:
    """Mount the container's snapshot and bind mounts privately, then change root to it.

    The "layers" view (export) stacks the snapshot's upper directory on its
    lower directories as plain lower layers, read-only, so it needs no work
    directory and never writes to the snapshot, even while the container runs.
    Otherwise the snapshot is mounted as containerd returns it, and missing
    bind mount points are created in it as runc and dockerd do. Then the root
    is made read-only unless the operation writes and the container's root
    file system is writable.
    """
    target = config["mountpoint"]
    writable = bool(config.get("writable"))
    layers_only = config.get("view") == "layers"
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    mounts = config["mounts"]
    if len(mounts) != 1:
        raise HelperError("failed", f"unsupported snapshot with {len(mounts)} mounts")
    mount = mounts[0]
    options = list(mount.get("options") or [])
    if mount["type"] == "overlay":
        if layers_only:
            options = _read_only_overlay_options(options)
        _mount("overlay", target, "overlay", MS_RDONLY if layers_only else 0, ",".join(options))
    elif mount["type"] == "bind" or "bind" in options or "rbind" in options:
        _mount(mount["source"], target, None, MS_BIND | MS_REC)
    else:
        raise HelperError("failed", f"unsupported snapshot mount type {mount['type']!r}")
    if not layers_only:
        for bind in config.get("binds") or []:
            _mount_bind(target, bind, writable)
    if not writable or config.get("readonly") or "ro" in options:
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    os.chdir(target)
    os.chroot(".")
    os.chdir("/")


def _read_only_overlay_options(options: list[str]) -> list[str]:
    upper = ""
    lower = ""
    kept = []
    for option in options:
        key, _, value = option.partition("=")
        if key == "upperdir":
            upper = value
        elif key == "lowerdir":
            lower = value
        elif key != "workdir":
            kept.append(option)
    layers = [layer for layer in (upper, lower) if layer]
    return [f"lowerdir={':'.join(layers)}", *kept]


def _mount_bind(root: str, bind: dict[str, Any], writable: bool) -> None:
    source = bind["source"]
    try:
        source_is_dir = stat.S_ISDIR(os.stat(source).st_mode)
    except OSError:
        return
    destination = resolve_in_root(root, bind["destination"],
                                  create="dir" if source_is_dir else "file",
                                  may_create=True)
    assert destination is not None
    options = bind.get("options") or []
    _mount(source, destination, None, MS_BIND | (MS_REC if "rbind" in options else 0))
    if "ro" in options or not writable:
        _mount(None, destination, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def resolve_in_root(root: str, path: str, *, create: str, may_create: bool) -> str | None:
    """Resolve path inside root, following symlinks as if root were `/`.

    Missing components are created as directories, and a missing last
    component as `create` ("dir" or "file"), when may_create is true;
    otherwise a missing component returns None.
    """
    pending = [part for part in path.split("/") if part not in ("", ".")]
    pending.reverse()
    current = ""
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            current = posixpath.dirname(current) if current else ""
            continue
        candidate = f"{current}/{part}"
        full = root + candidate
        try:
            info = os.lstat(full)
        except FileNotFoundError:
            if not may_create:
                return None
            if pending or create == "dir":
                os.mkdir(full, 0o755)
            else:
                os.close(os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
            current = candidate
            continue
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise HelperError("failed", f"too many levels of symbolic links in {path}")
            target = os.readlink(full)
            if target.startswith("/"):
                current = ""
            parts = [item for item in target.split("/") if item not in ("", ".")]
            pending.extend(reversed(parts))
            continue
        current = candidate
    return root + current if current else root


# Paths as Docker cleans them


def clean_path(path: str) -> str:
    """Make path absolute and clean, keeping a trailing `/` or `/.` as Docker does."""
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if _base(path) == "." and _base(cleaned) != ".":
        cleaned = cleaned.rstrip("/") + "/."
    if path.endswith("/") and not cleaned.endswith("/"):
        cleaned += "/"
    return cleaned


def _base(path: str) -> str:
    """Return the last element of path like Go's filepath.Base."""
    if path == "":
        return "."
    stripped = path.rstrip("/")
    if stripped == "":
        return "/"
    return stripped.rsplit("/", 1)[-1]


# Stat


def go_file_mode(mode: int) -> int:
    """Convert st_mode into Go's os.FileMode bits."""
    result = mode & 0o777
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFDIR:
        result |= GO_MODE_DIR
    elif kind == stat.S_IFLNK:
        result |= GO_MODE_SYMLINK
    elif kind == stat.S_IFBLK:
        result |= GO_MODE_DEVICE
    elif kind == stat.S_IFCHR:
        result |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE
    elif kind == stat.S_IFIFO:
        result |= GO_MODE_NAMED_PIPE
    elif kind == stat.S_IFSOCK:
        result |= GO_MODE_SOCKET
    if mode & stat.S_ISUID:
        result |= GO_MODE_SETUID
    if mode & stat.S_ISGID:
        result |= GO_MODE_SETGID
    if mode & stat.S_ISVTX:
        result |= GO_MODE_STICKY
    return result


def format_mtime(info: os.stat_result) -> str:
    """Format a modification time as RFC 3339 with nanoseconds, like Go's time.Time."""
    seconds, nanoseconds = divmod(info.st_mtime_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    fraction = f".{nanoseconds:09d}".rstrip("0").rstrip(".")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def lstat_path(path: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise HelperError("not_found", f"{path}: no such file or directory") from None
    except ValueError as exc:
        raise HelperError("invalid", f"invalid path {path!r}: {exc}") from None


def path_stat(path: str) -> tuple[dict[str, Any], os.stat_result]:
    """Return Docker's ContainerPathStat of path and its lstat result."""
    info = lstat_path(path)
    link_target = ""
    if stat.S_ISLNK(info.st_mode):
        link_target = os.path.realpath(path)
    name = _base(path)
    return {
        "name": name,
        "size": info.st_size,
        "mode": go_file_mode(info.st_mode),
        "mtime": format_mtime(info),
        "linkTarget": link_target,
    }, info


# Archive creation


class _PaddedReader:
    """Read exactly `size` bytes of a file, padding with zeros if it shrank."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._left = size

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        wanted = self._left if size < 0 else min(size, self._left)
        data = self._file.read(wanted) or b"\0" * wanted
        self._left -= len(data)
        return data


class ArchiveWriter:
    """Write files into a tar stream with Docker's naming and link handling."""

    def __init__(self, output: BinaryIO, skip_contents: set[str]) -> None:
        self.tar = tarfile.open(fileobj=output, mode="w|", format=tarfile.PAX_FORMAT)
        self.skip_contents = skip_contents
        self.hard_links: dict[tuple[int, int], str] = {}

    def add_tree(self, source: str, name: str, *, include_root: bool) -> None:
        """Add source and, for a directory, everything below it as name/…"""
        try:
            info = os.lstat(source)
        except OSError as exc:
            raise HelperError("not_found", f"{source}: {exc.strerror}") from None
        if include_root:
            self.add_entry(source, name, info)
        if not stat.S_ISDIR(info.st_mode) or (source in self.skip_contents and source != "/"):
            return
        self._add_children(source, name)

    def _add_children(self, directory: str, name: str) -> None:
        try:
            entries = sorted(os.listdir(directory))
        except OSError as exc:
            log(f"skipping the contents of {directory}: {exc.strerror}")
            return
        for entry in entries:
            path = posixpath.join(directory, entry)
            child_name = f"{name.rstrip('/')}/{entry}" if name else entry
            try:
                info = os.lstat(path)
            except OSError as exc:
                log(f"skipping {path}: {exc.strerror}")
                continue
            self.add_entry(path, child_name, info)
            if stat.S_ISDIR(info.st_mode) and path not in self.skip_contents:
                self._add_children(path, child_name)

    def add_entry(self, path: str, name: str, info: os.stat_result) -> None:
        member = tarfile.TarInfo(name or "/")
        member.mode = stat.S_IMODE(info.st_mode)
        member.uid = info.st_uid
        member.gid = info.st_gid
        member.mtime = int(info.st_mtime)
        kind = stat.S_IFMT(info.st_mode)
        fileobj = None
        if kind == stat.S_IFREG:
            key = (info.st_dev, info.st_ino)
            if info.st_nlink > 1 and key in self.hard_links:
                member.type = tarfile.LNKTYPE
                member.linkname = self.hard_links[key]
            else:
                if info.st_nlink > 1:
                    self.hard_links[key] = member.name
                member.type = tarfile.REGTYPE
                member.size = info.st_size
                # O_NONBLOCK keeps a file that was swapped for a FIFO from
                # blocking the open, and fstat then rejects it.
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError as exc:
                    log(f"skipping {path}: {exc.strerror}")
                    return
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    os.close(fd)
                    log(f"skipping {path}: it is no longer a regular file")
                    return
                fileobj = os.fdopen(fd, "rb")
        elif kind == stat.S_IFDIR:
            member.type = tarfile.DIRTYPE
        elif kind == stat.S_IFLNK:
            member.type = tarfile.SYMTYPE
            member.linkname = os.readlink(path)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            member.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
            member.devmajor = os.major(info.st_rdev)
            member.devminor = os.minor(info.st_rdev)
        elif kind == stat.S_IFIFO:
            member.type = tarfile.FIFOTYPE
        else:
            # Sockets have no tar representation; Docker leaves them out too.
            return
        if fileobj is None:
            self.tar.addfile(member)
            return
        with fileobj:
            self.tar.addfile(member, _PaddedReader(fileobj, member.size))

    def close(self) -> None:
        self.tar.close()


def archive_path(path: str, output: BinaryIO, skip_contents: set[str]) -> None:
    """Write the tar archive that Docker's GET /containers/{id}/archive returns.

    A directory's entries are named after the last element of the requested
    path (`dir/`, `dir/file`, or `./`, `./file` for `dir/.`), and anything
    else is one entry named after that element, a symlink as a symlink.
    """
    info = lstat_path(path)
    base = _base(path)
    writer = ArchiveWriter(output, skip_contents)
    if stat.S_ISDIR(info.st_mode):
        source = os.path.realpath(path)
        writer.add_tree(source, "" if base == "/" else base, include_root=True)
    else:
        writer.add_entry(path, base, info)
    writer.close()


# Extraction


def parse_ids(user: str) -> tuple[int, int] | None:
    """Return the uid and gid of a container's `User` from its /etc/passwd and /etc/group.

    The files are parsed directly, never through the C library's name
    service, which could load libraries from the container.
    """
    if not user:
        return None
    name, _, group = user.partition(":")
    passwd = _read_table("/etc/passwd")
    uid = gid = None
    for fields in passwd:
        if len(fields) >= 4 and (fields[0] == name or fields[2] == name) \
                and _is_number(fields[2]) and _is_number(fields[3]):
            uid, gid = int(fields[2]), int(fields[3])
            break
    if uid is None:
        if not _is_number(name):
            raise HelperError("failed", f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(name), 0
    if group:
        for fields in _read_table("/etc/group"):
            if len(fields) >= 3 and (fields[0] == group or fields[2] == group) \
                    and _is_number(fields[2]):
                gid = int(fields[2])
                break
        else:
            if not _is_number(group):
                raise HelperError("failed", f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
    return uid, gid if gid is not None else 0


def _is_number(text: str) -> bool:
    """Return whether text is a decimal number in ASCII digits, as ids in /etc/passwd are."""
    return text.isascii() and text.isdigit()


def _read_table(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return [line.rstrip("\n").split(":") for line in file if line.strip()]
    except OSError:
        return []


class Extractor:
    """Extract tar members into a destination directory with Docker's rules."""

    def __init__(self, destination: str, *, no_overwrite_dir_non_dir: bool,
                 owner: tuple[int, int] | None) -> None:
        self.destination = destination
        self.no_overwrite_dir_non_dir = no_overwrite_dir_non_dir
        self.owner = owner
        self.directories: list[tuple[str, int]] = []

    def inside(self, path: str) -> bool:
        return path == self.destination or path.startswith(self.destination.rstrip("/") + "/")

    def member_path(self, name: str) -> str:
        """Return where member `name` goes. Reject names that leave the destination."""
        cleaned = posixpath.normpath(name)
        if cleaned.startswith("/"):
            cleaned = cleaned.lstrip("/") or "."
        if cleaned == ".." or cleaned.startswith("../"):
            raise HelperError("invalid", f"archive member {name!r} is outside of the destination")
        if cleaned == ".":
            return self.destination
        return posixpath.join(self.destination, cleaned)

    def extract(self, tar: tarfile.TarFile) -> None:
        for member in tar:
            self.extract_member(tar, member)
        for path, mtime in reversed(self.directories):
            os.utime(path, (mtime, mtime), follow_symlinks=False)

    def extract_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        path = self.member_path(member.name)
        if path != self.destination:
            parent = posixpath.dirname(path)
            if not os.path.lexists(parent):
                os.makedirs(parent, 0o755)
        try:
            existing = os.lstat(path)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            existing_is_dir = stat.S_ISDIR(existing.st_mode)
            if self.no_overwrite_dir_non_dir and existing_is_dir and not member.isdir():
                raise HelperError("conflict", f"cannot overwrite directory {path!r} with non-directory {member.name!r}")
            if self.no_overwrite_dir_non_dir and not existing_is_dir and member.isdir():
                raise HelperError("conflict", f"cannot overwrite non-directory {path!r} with directory {member.name!r}")
            if existing_is_dir and path == self.destination:
                return
            if not (existing_is_dir and member.isdir()):
                if existing_is_dir:
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
        if not self.create(tar, member, path, existing is not None and member.isdir()):
            return
        owner = self.owner or (member.uid, member.gid)
        try:
            os.chown(path, owner[0], owner[1], follow_symlinks=False)
        except OSError as exc:
            hint = ""
            if exc.errno == errno.EINVAL:
                hint = " (try increasing the number of subordinate IDs in /etc/subuid and /etc/subgid)"
            raise HelperError("failed", f"failed to Lchown {path!r} for UID {owner[0]}, GID {owner[1]}: {exc.strerror}{hint}") from None
        if not member.issym():
            os.chmod(path, member.mode & 0o7777)
        if member.isdir():
            self.directories.append((path, int(member.mtime)))
        else:
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def create(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str,
               exists: bool) -> bool:
        """Create the file system object for member. Return False when it is skipped."""
        if member.isdir():
            if not exists:
                os.mkdir(path, 0o700)
        elif member.isreg():
            source = tar.extractfile(member)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as target:
                if source is not None:
                    shutil.copyfileobj(source, target, COPY_CHUNK)
        elif member.issym():
            if not member.linkname.startswith("/"):
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), member.linkname))
                if not self.inside(resolved):
                    raise HelperError("invalid", f"invalid symlink {member.name!r} -> {member.linkname!r}")
            os.symlink(member.linkname, path)
        elif member.islnk():
            link_target = posixpath.normpath(
                posixpath.join(self.destination, member.linkname.lstrip("/")))
            if not self.inside(link_target):
                raise HelperError("invalid", f"invalid hardlink {member.name!r} -> {member.linkname!r}")
            try:
                os.link(link_target, path, follow_symlinks=False)
            except FileNotFoundError:
                raise HelperError("invalid", f"invalid hardlink {member.name!r} -> "
                                  f"{member.linkname!r}: the target does not exist") from None
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        elif member.ischr() or member.isblk():
            # Device nodes cannot be created in a user namespace; Docker
            # skips them there too.
            return False
        else:
            raise HelperError("invalid", f"unsupported type {member.type!r} of archive member {member.name!r}")
        return True


def destination_directory(path: str) -> str:
    """Resolve the extraction directory: symlinks followed, existing, a directory, writable."""
    absolute = clean_path(path)
    try:
        info = os.stat(absolute)
    except (FileNotFoundError, NotADirectoryError):
        raise HelperError("not_found", f"{absolute}: no such file or directory") from None
    except ValueError as exc:
        raise HelperError("invalid", f"invalid path {path!r}: {exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise HelperError("invalid", "extraction point is not a directory")
    resolved = os.path.realpath(absolute)
    if os.statvfs(resolved).f_flag & os.ST_RDONLY:
        if info.st_dev != os.stat("/").st_dev:
            raise HelperError("forbidden", "mounted volume is marked read-only")
        raise HelperError("forbidden", "container rootfs is marked read-only")
    return resolved


def _open_stream(reader: BinaryIO) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=reader, mode="r|*")
    except TypeError:
        # Python 3.11's tarfile raises TypeError when a gzip header ends early.
        raise tarfile.ReadError("truncated gzip header") from None


def extract_archive(config: dict[str, Any], source: BinaryIO) -> None:
    destination = destination_directory(config["path"])
    owner = parse_ids(config.get("user") or "") if config.get("copy_uid_gid") else None
    extractor = Extractor(destination,
                          no_overwrite_dir_non_dir=bool(config.get("no_overwrite_dir_non_dir")),
                          owner=owner)
    reader = source if isinstance(source, io.BufferedReader) else io.BufferedReader(
        cast(Any, source), COPY_CHUNK)
    if not reader.peek(1):
        return
    try:
        with _open_stream(reader) as tar:
            extractor.extract(tar)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise HelperError("invalid", f"invalid tar archive: {exc}") from None
    except OSError as exc:
        # The decompressors raise OSError without an errno for corrupt data
        # (gzip.BadGzipFile, bz2's "Invalid data stream").
        if exc.errno is None:
            raise HelperError("invalid", f"invalid tar archive: {exc}") from None
        # The destination exists, so a missing path here is a failed
        # extraction rather than a missing destination.
        kind = {errno.EROFS: "forbidden", errno.ENAMETOOLONG: "invalid"}.get(exc.errno, "failed")
        where = f"{exc.filename}: " if exc.filename else ""
        raise HelperError(kind, f"extracting the archive failed: {where}{exc.strerror}") from None


# Changes


def _is_deleted_marker(path: str, info: os.stat_result) -> bool:
    """Return whether an upper-layer entry hides a lower one: a whiteout or an opaque directory."""
    if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
        return True
    if stat.S_ISDIR(info.st_mode):
        for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
            try:
                if os.getxattr(path, name, follow_symlinks=False) == b"y":
                    return True
            except OSError:
                continue
    return False


def _find_in_layers(layers: list[str], path: str) -> os.stat_result | None:
    for layer in layers:
        try:
            return os.lstat(layer + path)
        except OSError:
            continue
    return None


def layer_changes(upper: str, lowers: list[str], ignore: set[str]) -> list[tuple[str, str]]:
    """List the changes of an overlay upper layer against its lower layers.

    The rules are those of Docker's overlay driver. A whiteout or an opaque
    directory is a deletion, and an entry missing from every lower layer is an
    addition. A directory whose size, mode and mtime match the lower one is
    left out unless an entry in it was added or deleted. Paths in ignore
    (mount points that the runtime creates) are left out, and so is a
    directory that would be listed only because of them.
    """
    changes: list[tuple[str, str]] = []
    changed_directories: set[str] = set()
    quiet_parents: set[str] = set()

    def visit(relative: str) -> None:
        try:
            names = sorted(os.listdir(upper + relative if relative else upper))
        except OSError as exc:
            log(f"skipping the changes in {relative or '/'}: {exc.strerror}")
            return
        for name in names:
            path = f"{relative}/{name}"
            try:
                info = os.lstat(upper + path)
            except OSError:
                continue
            record(path, info)
            if stat.S_ISDIR(info.st_mode):
                visit(path)

    def record(path: str, info: os.stat_result) -> None:
        is_dir = stat.S_ISDIR(info.st_mode)
        if path in ignore:
            quiet_parents.add(posixpath.dirname(path))
            return
        if _is_deleted_marker(upper + path, info):
            kind = "D"
        else:
            kind = "A"
            lower = _find_in_layers(lowers, path)
            if lower is not None:
                if (is_dir and stat.S_ISDIR(lower.st_mode) and lower.st_size == info.st_size
                        and lower.st_mode == info.st_mode
                        and int(lower.st_mtime) == int(info.st_mtime)):
                    return
                kind = "C"
        if is_dir:
            changed_directories.add(path)
        if kind in ("A", "D"):
            parent = posixpath.dirname(path)
            if parent not in changed_directories and parent != "/":
                changes.append(("C", parent))
                changed_directories.add(parent)
        changes.append((kind, path))

    visit("")
    listed_parents = {posixpath.dirname(path) for _, path in changes}
    return [
        (kind, path) for kind, path in changes
        if not (kind == "C" and path in quiet_parents and path not in listed_parents)
    ]


def overlay_layers(mounts: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """Return the upper directory and the lower directories, top first, of a snapshot."""
    if len(mounts) != 1:
        raise HelperError("failed", f"unsupported snapshot with {len(mounts)} mounts")
    mount = mounts[0]
    if mount["type"] != "overlay":
        return mount["source"], []
    upper = ""
    lowers: list[str] = []
    for option in mount.get("options") or []:
        key, _, value = option.partition("=")
        if key == "upperdir":
            upper = value
        elif key == "lowerdir":
            lowers = value.split(":")
    if not upper:
        raise HelperError("failed", "the snapshot has no upper directory")
    return upper, lowers


# Entry point


def log(message: str) -> None:
    sys.stderr.write(f"archive helper: {message}\n")


def write_line(data: dict[str, Any]) -> None:
    sys.stdout.buffer.write(json.dumps(data, separators=(",", ":")).encode() + b"\n")
    sys.stdout.buffer.flush()


def _os_error_kind(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "forbidden"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "not_found"
    if exc.errno == errno.ENAMETOOLONG:
        return "invalid"
    return "failed"


def enter_root(operation: str, config: dict[str, Any]) -> set[str]:
    root = config["root"]
    if operation == "changes":
        return set()
    if "pid" in root and operation != "export":
        return enter_process_root(int(root["pid"]), root.get("upperdir"))
    enter_snapshot_root(root)
    return set()


def run(operation: str, config: dict[str, Any]) -> Iterator[None]:
    """Carry out operation. Yield once when the first output line is written."""
    skip_contents = enter_root(operation, config)
    if operation == "stat":
        write_line({"stat": path_stat(clean_path(config["path"]))[0]})
        yield
    elif operation == "get":
        path = clean_path(config["path"])
        write_line({"stat": path_stat(path)[0]})
        yield
        archive_path(path, sys.stdout.buffer, skip_contents)
    elif operation == "export":
        write_line({})
        yield
        writer = ArchiveWriter(sys.stdout.buffer, set())
        writer.add_tree("/", "", include_root=False)
        writer.close()
    elif operation == "changes":
        upper, lowers = overlay_layers(config["root"]["mounts"])
        found = layer_changes(upper, lowers, set(config.get("ignore") or []))
        write_line({})
        yield
        sys.stdout.buffer.write(json.dumps(found).encode())
    elif operation == "put":
        extract_archive(config, sys.stdin.buffer)
        write_line({"ok": True})
        yield
    else:
        raise HelperError("invalid", f"unknown operation {operation!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: archive_helper.py OPERATION CONFIG_JSON\n")
        return 2
    started = False
    try:
        for _ in run(argv[1], json.loads(argv[2])):
            started = True
        sys.stdout.buffer.flush()
        return 0
    except HelperError as exc:
        failure = {"kind": exc.kind, "message": exc.message}
    except BrokenPipeError:
        return 1
    except OSError as exc:
        text = exc.strerror or str(exc)
        message = f"{exc.filename}: {text}" if exc.filename else text
        failure = {"kind": _os_error_kind(exc), "message": message}
    if started:
        log(failure["message"])
    else:
        write_line({"error": failure})
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
