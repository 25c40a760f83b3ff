"""docker cp, export and diff, and the raw archive endpoints, against finchd."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.e2e.conftest import DockerCLI
from tests.e2e.unixhttp import ApiClient, ApiResponse

pytestmark = pytest.mark.engine

GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27

# A running container that prepares files, then waits to be read.
PREPARE_AND_WAIT = (
    "mkdir -p /data/dir/sub && echo top > /data/dir/file && echo deep > /data/dir/sub/deep"
    " && ln -s file /data/dir/link && ln -s /data/dir /data/dirlink && touch /data/ready"
    " && sleep 600"
)


def make_tar(members: list[tuple[str, str, bytes | str]]) -> bytes:
    """Build a tar archive from (name, type, content or link target) triples."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, data in members:
            member = tarfile.TarInfo(name)
            member.mtime = int(time.time())
            if kind == "file":
                content = data.encode() if isinstance(data, str) else data
                member.size = len(content)
                member.mode = 0o644
                archive.addfile(member, io.BytesIO(content))
            elif kind == "dir":
                member.type = tarfile.DIRTYPE
                member.mode = 0o755
                archive.addfile(member)
            elif kind == "symlink":
                member.type = tarfile.SYMTYPE
                member.linkname = str(data)
                archive.addfile(member)
    return buffer.getvalue()


def archive_url(container: str, path: str, **query: str) -> str:
    parameters = "".join(f"&{key}={value}" for key, value in query.items())
    return f"/containers/{container}/archive?path={quote(path)}{parameters}"


def put_archive(api: ApiClient, container: str, path: str, data: bytes,
                **query: str) -> ApiResponse:
    return api.request("PUT", archive_url(container, path, **query), body=data,
                       headers={"Content-Type": "application/x-tar"})


def path_stat(api: ApiClient, container: str, path: str) -> dict | None:
    """Return the decoded X-Docker-Container-Path-Stat of path, or None on 404."""
    response = api.request("HEAD", archive_url(container, path))
    if response.status == 404:
        return None
    assert response.status == 200, response
    header = response.header("X-Docker-Container-Path-Stat")
    assert header is not None
    return json.loads(base64.b64decode(header))


def read_file(api: ApiClient, container: str, path: str) -> bytes:
    response = api.request("GET", archive_url(container, path))
    assert response.status == 200, response.body
    with tarfile.open(fileobj=io.BytesIO(response.body)) as archive:
        member = archive.next()
        assert member is not None and member.isfile()
        extracted = archive.extractfile(member)
        assert extracted is not None
        return extracted.read()


def wait_for_path(api: ApiClient, container: str, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while path_stat(api, container, path) is None:
        assert time.monotonic() < deadline, f"{path} did not appear in {container}"
        time.sleep(0.2)


@pytest.fixture
def running(docker: DockerCLI, api: ApiClient, busybox: str,
            name: Callable[[str], str]) -> str:
    container = name("cp-run")
    docker.ok("run", "-d", "--name", container, busybox, "sh", "-c", PREPARE_AND_WAIT)
    wait_for_path(api, container, "/data/ready")
    return container


@pytest.fixture
def stopped(docker: DockerCLI, busybox: str, name: Callable[[str], str]) -> str:
    container = name("cp-stop")
    docker.ok("run", "--name", container, busybox, "true")
    state = json.loads(docker.ok("inspect", container).stdout)[0]["State"]
    assert state["Status"] == "exited"
    return container


def make_source_tree(root: Path) -> Path:
    source = root / "src"
    (source / "sub").mkdir(parents=True)
    (source / "file.txt").write_text("hello\n")
    (source / "sub" / "deep.txt").write_text("deep\n")
    (source / "link").symlink_to("file.txt")
    return source


# docker cp into a stopped container


def test_cp_file_into_stopped(docker: DockerCLI, stopped: str, tmp_path: Path) -> None:
    source = make_source_tree(tmp_path)
    docker.ok("cp", str(source / "file.txt"), f"{stopped}:/root/copied.txt")
    out = tmp_path / "out.txt"
    docker.ok("cp", f"{stopped}:/root/copied.txt", str(out))
    assert out.read_text() == "hello\n"


def test_cp_directory_into_stopped(docker: DockerCLI, stopped: str, tmp_path: Path) -> None:
    source = make_source_tree(tmp_path)
    docker.ok("cp", str(source), f"{stopped}:/tmp/")
    out = tmp_path / "out"
    docker.ok("cp", f"{stopped}:/tmp/src", str(out))
    assert (out / "file.txt").read_text() == "hello\n"
    assert (out / "sub" / "deep.txt").read_text() == "deep\n"
    assert (out / "link").is_symlink()
    assert os.readlink(out / "link") == "file.txt"


def test_cp_directory_contents_into_stopped(docker: DockerCLI, stopped: str,
                                            tmp_path: Path) -> None:
    source = make_source_tree(tmp_path)
    docker.ok("cp", f"{source}/.", f"{stopped}:/srv")
    out = tmp_path / "out"
    out.mkdir()
    docker.ok("cp", f"{stopped}:/srv/.", str(out))
    assert sorted(os.listdir(out)) == ["file.txt", "link", "sub"]
    assert (out / "sub" / "deep.txt").read_text() == "deep\n"


def test_cp_symlink_into_stopped(docker: DockerCLI, api: ApiClient, stopped: str,
                                 tmp_path: Path) -> None:
    link = tmp_path / "abslink"
    link.symlink_to("/etc/passwd")
    docker.ok("cp", str(link), f"{stopped}:/tmp/abslink")
    stat = path_stat(api, stopped, "/tmp/abslink")
    assert stat is not None
    assert stat["mode"] & GO_MODE_SYMLINK
    assert stat["linkTarget"] == "/etc/passwd"
    out = tmp_path / "out"
    docker.ok("cp", f"{stopped}:/tmp/abslink", str(out))
    assert out.is_symlink()
    assert os.readlink(out) == "/etc/passwd"


def test_cp_into_never_started(docker: DockerCLI, busybox: str, name: Callable[[str], str],
                               tmp_path: Path) -> None:
    container = name("cp-new")
    docker.ok("create", "--name", container, busybox, "cat", "/copied.txt")
    (tmp_path / "copied.txt").write_text("before start\n")
    docker.ok("cp", str(tmp_path / "copied.txt"), f"{container}:/copied.txt")
    result = docker.ok("start", "-a", container)
    assert result.stdout == "before start\n"


# docker cp out of a running container


def test_cp_file_from_running(docker: DockerCLI, running: str, tmp_path: Path) -> None:
    out = tmp_path / "file"
    docker.ok("cp", f"{running}:/data/dir/file", str(out))
    assert out.read_text() == "top\n"


def test_cp_directory_from_running(docker: DockerCLI, running: str, tmp_path: Path) -> None:
    docker.ok("cp", f"{running}:/data/dir", str(tmp_path))
    copied = tmp_path / "dir"
    assert (copied / "file").read_text() == "top\n"
    assert (copied / "sub" / "deep").read_text() == "deep\n"
    assert os.readlink(copied / "link") == "file"


def test_cp_directory_contents_from_running(docker: DockerCLI, running: str,
                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    docker.ok("cp", f"{running}:/data/dir/.", str(out))
    assert sorted(os.listdir(out)) == ["file", "link", "sub"]


def test_cp_symlink_from_running(docker: DockerCLI, running: str, tmp_path: Path) -> None:
    out = tmp_path / "link"
    docker.ok("cp", f"{running}:/data/dir/link", str(out))
    assert out.is_symlink()
    assert os.readlink(out) == "file"
    followed = tmp_path / "followed"
    docker.ok("cp", "-L", f"{running}:/data/dir/link", str(followed))
    assert not followed.is_symlink()
    assert followed.read_text() == "top\n"


def test_cp_into_running(docker: DockerCLI, api: ApiClient, running: str,
                         tmp_path: Path) -> None:
    (tmp_path / "new.txt").write_text("into running\n")
    docker.ok("cp", str(tmp_path / "new.txt"), f"{running}:/data/dirlink/")
    assert read_file(api, running, "/data/dir/new.txt") == b"into running\n"


def test_cp_missing_path_fails(docker: DockerCLI, running: str, tmp_path: Path) -> None:
    result = docker("cp", f"{running}:/nope", str(tmp_path / "x"))
    assert result.returncode != 0
    assert f"Could not find the file /nope in container {running}" in result.stderr


# export and diff


def test_export_lists_files(docker: DockerCLI, stopped: str, tmp_path: Path) -> None:
    (tmp_path / "marker").write_text("exported\n")
    docker.ok("cp", str(tmp_path / "marker"), f"{stopped}:/marker")
    export = subprocess.run(
        [str(docker.executable), "export", stopped], env=docker.env,
        capture_output=True, check=True, timeout=120,
    )
    names = tarfile.open(fileobj=io.BytesIO(export.stdout)).getnames()
    assert "bin/busybox" in names
    assert "etc/passwd" in names
    assert "marker" in names
    listed = subprocess.run(["tar", "t"], input=export.stdout, capture_output=True,
                            check=True, timeout=60)
    assert b"bin/busybox" in listed.stdout.splitlines()


def test_export_running(docker: DockerCLI, running: str) -> None:
    export = subprocess.run(
        [str(docker.executable), "export", running], env=docker.env,
        capture_output=True, check=True, timeout=120,
    )
    names = tarfile.open(fileobj=io.BytesIO(export.stdout)).getnames()
    assert "data/dir/file" in names
    assert not any(name.startswith("proc/") for name in names)


def test_diff_kinds(docker: DockerCLI, busybox: str, name: Callable[[str], str]) -> None:
    container = name("diff")
    docker.ok("run", "--name", container, busybox, "sh", "-c",
              "rm /etc/group && echo extra >> /etc/passwd && mkdir /added")
    lines = docker.ok("diff", container).stdout.splitlines()
    assert "D /etc/group" in lines
    assert "C /etc/passwd" in lines
    assert "A /added" in lines
    assert "C /added" not in lines
    assert "A /etc/hosts" not in lines


def test_changes_api_kinds(api: ApiClient, docker: DockerCLI, busybox: str,
                           name: Callable[[str], str]) -> None:
    container = name("changes")
    docker.ok("run", "--name", container, busybox, "sh", "-c", "rm /etc/group && mkdir /added")
    response = api.request("GET", f"/containers/{container}/changes")
    assert response.status == 200
    changes = {change["Path"]: change["Kind"] for change in response.json()}
    assert changes["/etc/group"] == 2
    assert changes["/added"] == 1


# Raw archive API


def test_put_into_volume_of_created(docker: DockerCLI, api: ApiClient, busybox: str,
                                    name: Callable[[str], str]) -> None:
    container = name("cp-vol")
    docker.ok("create", "--name", container, "-v", "/data", busybox, "cat", "/data/in-volume.txt")
    try:
        response = put_archive(api, container, "/data",
                               make_tar([("in-volume.txt", "file", "volume data\n")]))
        assert response.status == 200, response.body
        # The volume is mounted over /data at start, so the file is only seen if
        # it went into the volume rather than into the container's own /data.
        result = docker.ok("start", "-a", container)
        assert result.stdout == "volume data\n"
    finally:
        docker("rm", "-f", "-v", container)


def test_cp_into_read_only_volume_of_created(docker: DockerCLI, busybox: str,
                                            name: Callable[[str], str], tmp_path: Path) -> None:
    container = name("cp-rovol")
    (tmp_path / "bound").mkdir()
    docker.ok("create", "--name", container, "-v", f"{tmp_path / 'bound'}:/ro:ro", busybox, "true")
    (tmp_path / "file").write_text("x\n")
    result = docker("cp", str(tmp_path / "file"), f"{container}:/ro/")
    assert result.returncode != 0
    assert "mounted volume is marked read-only" in result.stderr
    assert os.listdir(tmp_path / "bound") == []


def test_put_gzip_archive(api: ApiClient, stopped: str) -> None:
    data = gzip.compress(make_tar([("zipped.txt", "file", "gzip\n")]))
    response = put_archive(api, stopped, "/tmp", data)
    assert response.status == 200, response.body
    assert read_file(api, stopped, "/tmp/zipped.txt") == b"gzip\n"


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_put_parent_escape_rejected(api: ApiClient, state: str, request: pytest.FixtureRequest,
                                    tmp_path: Path) -> None:
    container = request.getfixturevalue(state)
    marker = f"escape-{uuid.uuid4().hex[:8]}"
    members = [(f"../../{marker}", "file", "escaped\n"),
               (f"../../../../../../../..{tmp_path}/{marker}", "file", "escaped\n")]
    for member in members:
        response = put_archive(api, container, "/tmp", make_tar([member]))
        assert response.status == 400, response.body
    assert not Path("/", marker).exists()
    assert not (tmp_path / marker).exists()
    assert path_stat(api, container, f"/{marker}") is None
    assert path_stat(api, container, f"/tmp/{marker}") is None


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_put_through_root_symlink_stays_inside(api: ApiClient, state: str,
                                               request: pytest.FixtureRequest,
                                               tmp_path: Path) -> None:
    container = request.getfixturevalue(state)
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    link = f"root-{uuid.uuid4().hex[:8]}"
    data = make_tar([
        (link, "symlink", "/"),
        (f"{link}{host_dir}/escaped.txt", "file", "escaped\n"),
        (f"{link}-host", "symlink", str(host_dir)),
        (f"{link}-host/direct.txt", "file", "escaped\n"),
    ])
    response = put_archive(api, container, "/tmp", data)
    assert not (host_dir / "escaped.txt").exists()
    assert not (host_dir / "direct.txt").exists()
    assert os.listdir(host_dir) == []
    # A symlink in the archive resolves inside the container's root, as it
    # would for a process in the container.
    assert path_stat(api, container, f"{host_dir}/escaped.txt") is not None
    assert response.status == 200, response.body


def test_put_relative_symlink_escape_rejected(api: ApiClient, stopped: str) -> None:
    data = make_tar([("up", "symlink", "../../../../.."), ("up/x", "file", "x")])
    response = put_archive(api, stopped, "/tmp", data)
    assert response.status == 400, response.body
    assert path_stat(api, stopped, "/tmp/up") is None


def test_put_conflicts_and_errors(api: ApiClient, stopped: str) -> None:
    as_file = make_tar([("etc", "file", "not a directory\n")])
    conflict = put_archive(api, stopped, "/", as_file, noOverwriteDirNonDir="1")
    assert conflict.status == 409, conflict.body
    as_dir = make_tar([("passwd", "dir", b"")])
    conflict = put_archive(api, stopped, "/etc", as_dir, noOverwriteDirNonDir="true")
    assert conflict.status == 409, conflict.body
    not_dir = put_archive(api, stopped, "/etc/passwd", make_tar([("x", "file", "x")]))
    assert not_dir.status == 400, not_dir.body
    missing = put_archive(api, stopped, "/nope", make_tar([("x", "file", "x")]))
    assert missing.status == 404
    assert missing.json()["message"] == f"Could not find the file /nope in container {stopped}"
    garbage = put_archive(api, stopped, "/tmp", b"this is not a tar archive" * 100)
    assert garbage.status == 400, garbage.body


def test_put_failed_extraction_not_200(api: ApiClient, stopped: str) -> None:
    data = make_tar([("dangling", "symlink", "/does/not/exist"), ("dangling/x", "file", "x")])
    response = put_archive(api, stopped, "/tmp", data)
    assert response.status == 500, response.body
    assert "extracting the archive failed" in response.json()["message"]


def test_put_copy_uid_gid(docker: DockerCLI, api: ApiClient, busybox: str,
                          name: Callable[[str], str]) -> None:
    container = name("cp-owner")
    docker.ok("create", "--user", "nobody", "--name", container, busybox, "true")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for file_name in ("kept.txt", "owned.txt"):
            member = tarfile.TarInfo(file_name)
            member.uid, member.gid, member.size = 1234, 4321, 1
            archive.addfile(member, io.BytesIO(b"x"))
    data = buffer.getvalue()
    assert put_archive(api, container, "/tmp", data).status == 200
    kept = api.request("GET", archive_url(container, "/tmp/kept.txt"))
    member = tarfile.open(fileobj=io.BytesIO(kept.body)).getmembers()[0]
    assert (member.uid, member.gid) == (1234, 4321)
    assert put_archive(api, container, "/var", data, copyUIDGID="1").status == 200
    owned = api.request("GET", archive_url(container, "/var/owned.txt"))
    member = tarfile.open(fileobj=io.BytesIO(owned.body)).getmembers()[0]
    assert (member.uid, member.gid) == (65534, 65534)


def test_put_read_only_rootfs(docker: DockerCLI, api: ApiClient, busybox: str,
                              name: Callable[[str], str]) -> None:
    container = name("cp-ro")
    docker.ok("create", "--read-only", "--name", container, busybox, "true")
    response = put_archive(api, container, "/tmp", make_tar([("x", "file", "x")]))
    assert response.status == 403
    assert response.json()["message"] == "container rootfs is marked read-only"


def test_head_stat_header(api: ApiClient, running: str) -> None:
    directory = path_stat(api, running, "/data/dir")
    assert directory is not None
    assert directory["name"] == "dir"
    assert directory["mode"] & GO_MODE_DIR
    assert directory["linkTarget"] == ""
    link = path_stat(api, running, "/data/dirlink")
    assert link is not None
    assert link["mode"] & GO_MODE_SYMLINK
    assert link["linkTarget"] == "/data/dir"
    file = path_stat(api, running, "/data/dir/file")
    assert file == {**file, "name": "file", "size": 4, "mode": 0o644}
    assert file["mtime"].endswith("Z")


def test_head_missing_path_404(api: ApiClient, running: str) -> None:
    response = api.request("HEAD", archive_url(running, "/nope"))
    assert response.status == 404


def test_get_without_path_400(api: ApiClient, running: str) -> None:
    response = api.request("GET", f"/containers/{running}/archive")
    assert response.status == 400
    assert "path" in response.json()["message"]


def test_get_unknown_container_404(api: ApiClient) -> None:
    response = api.request("GET", archive_url("no-such-container-xyz", "/etc"))
    assert response.status == 404
    assert response.json()["message"] == "No such container: no-such-container-xyz"


def test_get_directory_names(api: ApiClient, running: str) -> None:
    response = api.request("GET", archive_url(running, "/data/dir"))
    assert response.status == 200
    names = tarfile.open(fileobj=io.BytesIO(response.body)).getnames()
    assert names[0] == "dir"
    assert "dir/sub/deep" in names
    response = api.request("GET", archive_url(running, "/data/dir/."))
    names = tarfile.open(fileobj=io.BytesIO(response.body)).getnames()
    assert names[0] == "."
    assert "./sub/deep" in names
