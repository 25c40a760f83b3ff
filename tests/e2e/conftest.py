"""Session fixtures for end-to-end tests against a real `finchd serve`.

One session starts a loopback registry with busybox pushed, points containerd's
registry host configuration for docker.io at it, starts `finchd serve` on a
private socket and loads the busybox archive through the docker CLI. Tests talk
to the daemon with the real docker CLI, docker-py or raw HTTP on the socket.

Set FINCHD_TEST_SOCKET to test a daemon that is already running on that socket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from finchd.paths import Paths
from tests.conftest import DOCKER_CLI
from tests.e2e.unixhttp import ApiClient
from tests.fixtures.images import Image, build_busybox_image, write_image_archive
from tests.fixtures.processes import stop_gracefully
from tests.fixtures.registry import LocalRegistry, push_image

BUSYBOX = "busybox:latest"
# The first test's timeout (pytest-timeout, 300 s in pyproject.toml) also covers
# these session fixtures, so the daemon start must fit well inside it.
FINCHD_START_TIMEOUT = 180.0
FINCHD_STOP_TIMEOUT = 30.0

# Log files whose tails are attached to the report of every failed engine test,
# with the max number of characters of each.
_DIAGNOSTIC_LOGS: dict[str, tuple[Path, int]] = {}


def unique_name(prefix: str) -> str:
    """Return `prefix-` and 8 random hex digits, a valid container or image name."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _tail(path: Path, max_chars: int = 20000) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return text[-max_chars:]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and item.get_closest_marker("engine"):
        for title, (path, max_chars) in _DIAGNOSTIC_LOGS.items():
            report.sections.append((title, _tail(path, max_chars)))


@pytest.fixture(scope="session")
def busybox_image() -> Image:
    return build_busybox_image()


@pytest.fixture(scope="session")
def busybox_archive(
    busybox_image: Image, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    directory = tmp_path_factory.mktemp("images")
    return write_image_archive(busybox_image, directory / "busybox.tar", [BUSYBOX])


@pytest.fixture(scope="session")
def registry(
    busybox_image: Image, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRegistry]:
    """A loopback registry that serves busybox:latest and library/busybox:latest."""
    local = LocalRegistry(tmp_path_factory.mktemp("registry"))
    _DIAGNOSTIC_LOGS["docker-registry log"] = (local.log_path, 5000)
    local.start()
    try:
        for repository in ("busybox", "library/busybox"):
            push_image(local, busybox_image, repository, "latest")
        yield local
    finally:
        local.stop()
        _DIAGNOSTIC_LOGS.pop("docker-registry log", None)


def _hosts_toml(registry: LocalRegistry) -> str:
    return (
        f'server = "{registry.url}"\n'
        "\n"
        f'[host."{registry.url}"]\n'
        '  capabilities = ["pull", "resolve", "push"]\n'
    )


@pytest.fixture(scope="session")
def registry_hosts(registry: LocalRegistry) -> Iterator[LocalRegistry]:
    """containerd host configuration that sends docker.io to the loopback registry.

    The loopback registry is the `server` of docker.io, not only a mirror,
    because containerd falls back from a failed mirror to the server, and the
    real docker.io must never be contacted. The registry's own host:port gets a
    configuration too, so that pulls by that name use plain HTTP. Files that
    existed before are restored at the end.
    """
    certs_dir = Paths.from_environment().certs_dir
    saved: dict[Path, bytes | None] = {}
    for host in ("docker.io", registry.host):
        path = certs_dir / host / "hosts.toml"
        saved[path] = path.read_bytes() if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_hosts_toml(registry))
    try:
        yield registry
    finally:
        for path, content in saved.items():
            if content is None:
                path.unlink(missing_ok=True)
                try:
                    path.parent.rmdir()
                except OSError:
                    pass
            else:
                path.write_bytes(content)


@dataclass
class FinchdProcess:
    socket_path: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def ping(self) -> bool:
        try:
            response = ApiClient(self.socket_path).request("GET", "/_ping", timeout=5)
        except OSError:
            return False
        return response.status == 200 and response.body == b"OK"

    def start(self, workdir: Path) -> None:
        command = [
            sys.executable,
            "-m",
            "finchd",
            "serve",
            "--socket",
            self.socket_path,
            "--log-level",
            "debug",
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + FINCHD_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"finchd serve exited with status {self.process.returncode} "
                    f"before GET /_ping succeeded; its output:\n{_tail(self.log_path)}"
                )
            if self.ping():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"finchd serve did not return OK to GET /_ping on {self.socket_path} within "
            f"{FINCHD_START_TIMEOUT} s; its output:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        stop_gracefully(self.process, FINCHD_STOP_TIMEOUT)


@pytest.fixture(scope="session")
def finchd_socket(registry_hosts: LocalRegistry) -> Iterator[str]:
    """The socket of a running `finchd serve`, started once per session.

    The socket lives in a short directory under /tmp because a Unix socket path
    must fit the 108 bytes of `sun_path`.
    """
    existing = os.environ.get("FINCHD_TEST_SOCKET")
    if existing:
        yield existing
        return

    workdir = Path(tempfile.mkdtemp(prefix="fd-", dir="/tmp"))
    daemon = FinchdProcess(str(workdir / "d.sock"), workdir / "finchd.log")
    _DIAGNOSTIC_LOGS["finchd serve output"] = (daemon.log_path, 20000)
    try:
        daemon.start(workdir)
        yield daemon.socket_path
    finally:
        daemon.stop()
        _DIAGNOSTIC_LOGS.pop("finchd serve output", None)
        if daemon.process is not None and daemon.process.returncode not in (0, None):
            sys.stderr.write(
                f"finchd serve exited with status {daemon.process.returncode}; "
                f"its output:\n{_tail(daemon.log_path)}\n"
            )
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class DockerCLI:
    """The docker CLI pointed at the daemon under test."""

    socket_path: str
    config_dir: Path
    executable: Path = DOCKER_CLI

    @property
    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("DOCKER_") and "proxy" not in key.lower()
        }
        env["DOCKER_HOST"] = f"unix://{self.socket_path}"
        env["DOCKER_CONFIG"] = str(self.config_dir)
        env["DOCKER_CLI_HINTS"] = "false"
        return env

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `docker ARGS` and return the completed process, whatever its status."""
        return subprocess.run(
            [str(self.executable), *args],
            check=False,
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def ok(
        self, *args: str, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `docker ARGS` and fail the test unless it exits 0."""
        result = self(*args, input=input, timeout=timeout)
        assert result.returncode == 0, (
            f"docker {' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
            [str(self.executable), *args], env=self.env, **kwargs
        )


@pytest.fixture(scope="session")
def docker(finchd_socket: str, tmp_path_factory: pytest.TempPathFactory) -> DockerCLI:
    return DockerCLI(finchd_socket, tmp_path_factory.mktemp("docker-config"))


@pytest.fixture(scope="session")
def api(finchd_socket: str) -> ApiClient:
    return ApiClient(finchd_socket)


@pytest.fixture(scope="session")
def busybox(docker: DockerCLI, busybox_archive: Path) -> Iterator[str]:
    """Load the busybox archive once per session and return its tag."""
    result = docker.ok("load", "-i", str(busybox_archive), timeout=120)
    assert f"Loaded image: {BUSYBOX}" in result.stdout
    yield BUSYBOX
    docker("rmi", "-f", BUSYBOX, timeout=60)


@dataclass
class Cleanup:
    """Containers and images a test created, removed at teardown."""

    docker: DockerCLI
    containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    def container(self, reference: str) -> str:
        self.containers.append(reference)
        return reference

    def image(self, reference: str) -> str:
        self.images.append(reference)
        return reference

    def remove_all(self) -> None:
        for reference in reversed(self.containers):
            try:
                self.docker("rm", "-f", reference, timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for reference in reversed(self.images):
            try:
                self.docker("rmi", "-f", reference, timeout=60)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def cleanup(docker: DockerCLI) -> Iterator[Cleanup]:
    tracker = Cleanup(docker)
    yield tracker
    tracker.remove_all()


@pytest.fixture
def name(cleanup: Cleanup) -> Callable[[str], str]:
    """Make a unique container name and record it for removal."""

    def make(prefix: str) -> str:
        return cleanup.container(unique_name(prefix))

    return make
