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


@pytest.fixture
def project(docker: DockerCLI, busybox: str, tmp_path: Path) -> Iterator[ComposeProject]:
    if docker("compose", "version").returncode != 0:
        pytest.fail("the docker compose plugin is missing; run scripts/install-deps")
    file = tmp_path / "compose.yaml"
    file.write_text(COMPOSE_FILE.format(image=busybox))
    file.chmod(0o644)
    compose = ComposeProject(docker, unique_name("proj"), file)
    yield compose
    docker("compose", "-p", compose.name, "-f", str(file), "down", "--volumes",
           "--timeout", "1", timeout=120)


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
