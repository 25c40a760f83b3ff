"""docker compose projects: networks, service names, aliases and teardown."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import DockerCLI, unique_name

pytestmark = pytest.mark.engine

COMPOSE_FILE = """\
services:
  db:
    image: {image}
    command: ["sh", "-c", "echo served-by-db > /srv/index.html && httpd -f -p 8080 -h /srv"]
    volumes:
      - data:/srv
    networks:
      default:
        aliases: [database]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://localhost:8080/"]
      interval: 1s
      timeout: 2s
      retries: 30
  app:
    image: {image}
    depends_on:
      db:
        condition: service_healthy
    command: ["sh", "-c", "wget -q -O- http://db:8080/ && wget -q -O- http://database:8080/ && sleep 300"]
volumes:
  data:
"""


TWO_NETWORKS_FILE = """\
services:
  db:
    image: {image}
    command: ["sh", "-c", "echo from-db > /tmp/index.html && httpd -f -p 8080 -h /tmp"]
    networks: [back]
  api:
    image: {image}
    command: ["sh", "-c", "echo from-api > /tmp/index.html && httpd -f -p 8080 -h /tmp"]
    networks:
      front:
        aliases: [backend-api]
      back: {{}}
  web:
    image: {image}
    command: ["sleep", "300"]
    networks: [front]
networks:
  front: {{}}
  back: {{}}
"""


@dataclass
class ComposeProject:
    docker: DockerCLI
    name: str
    file: Path

    def __call__(self, *args: str, timeout: float = 120.0) -> str:
        """Run `docker compose ARGS` for the project and return its output."""
        result = self.docker.ok("compose", "-p", self.name, "-f", str(self.file), *args,
                                timeout=timeout)
        return result.stdout


def start_project(docker: DockerCLI, text: str, folder: Path) -> Iterator[ComposeProject]:
    """Write a compose file, yield its project, and take the project down afterwards."""
    if docker("compose", "version").returncode != 0:
        pytest.fail("the docker compose plugin is missing; run scripts/install-deps")
    file = folder / "compose.yaml"
    file.write_text(text)
    file.chmod(0o644)
    compose = ComposeProject(docker, unique_name("proj"), file)
    yield compose
    docker("compose", "-p", compose.name, "-f", str(file), "down", "--volumes",
           "--timeout", "1", timeout=120)


@pytest.fixture
def project(docker: DockerCLI, busybox: str, tmp_path: Path) -> Iterator[ComposeProject]:
    yield from start_project(docker, COMPOSE_FILE.format(image=busybox), tmp_path)


@pytest.fixture
def two_networks(docker: DockerCLI, busybox: str, tmp_path: Path) -> Iterator[ComposeProject]:
    yield from start_project(docker, TWO_NETWORKS_FILE.format(image=busybox), tmp_path)


def service_logs(project: ComposeProject, service: str, text: str, count: int,
                 timeout: float = 60) -> str:
    """Return a service's log once text occurs count times, or the log so far at the timeout."""
    deadline = time.monotonic() + timeout
    logs = ""
    while time.monotonic() < deadline:
        logs = project("logs", "--no-color", service)
        if logs.count(text) >= count:
            break
        time.sleep(0.5)
    return logs


def test_up_resolves_service_and_alias(project: ComposeProject) -> None:
    project("up", "-d", "--wait")
    logs = service_logs(project, "app", "served-by-db", 2)
    assert logs.count("served-by-db") == 2, logs


def test_ps_lists_running_services(project: ComposeProject) -> None:
    project("up", "-d", "db")
    listed = [json.loads(line) for line in project("ps", "--format", "json").splitlines()
              if line.strip()]
    services = {entry["Service"]: entry["State"] for entry in listed}
    assert services == {"db": "running"}


def test_down_removes_containers_network_volume(
        project: ComposeProject, docker: DockerCLI) -> None:
    project("up", "-d", "db")
    project("down", "--volumes", "--timeout", "1")
    label = f"label=com.docker.compose.project={project.name}"
    containers = docker.ok("ps", "-aq", "--filter", label).stdout
    networks = docker.ok("network", "ls", "-q", "--filter", label).stdout
    volumes = docker.ok("volume", "ls", "-q", "--filter", label).stdout
    assert containers.strip() == ""
    assert networks.strip() == ""
    assert volumes.strip() == ""


def test_service_on_two_networks(two_networks: ComposeProject) -> None:
    two_networks("up", "-d", "--wait")
    through_front = two_networks("exec", "-T", "web", "wget", "-q", "-O-",
                                 "http://backend-api:8080/")
    through_back = two_networks("exec", "-T", "api", "wget", "-q", "-O-", "http://db:8080/")
    assert through_front.strip() == "from-api"
    assert through_back.strip() == "from-db"


def test_networks_stay_separate(two_networks: ComposeProject, docker: DockerCLI) -> None:
    two_networks("up", "-d", "--wait")
    result = docker("compose", "-p", two_networks.name, "-f", str(two_networks.file),
                    "exec", "-T", "web", "ping", "-c", "1", "-W", "1", "db")
    assert result.returncode != 0
    assert "PING db (" not in result.stdout
