"""`finchd serve` on a private session bus, driven with busctl, gdbus, docker and nerdctl."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from finchd.config import Settings
from finchd.dbus.names import BUS_NAME, INTERFACE_NAME, OBJECT_PATH
from finchd.engine.environment import engine_env
from finchd.paths import Paths
from tests.dbus.buslib import (
    INTERFACE_XML,
    SOCKET_LEAK_FILTERS,
    SignalRecorder,
    busctl,
    gdbus,
    get_property,
    interface_shape,
    is_properties_changed,
    is_signal,
    wait_for_property,
)
from tests.dbus.conftest import BusFinchd
from tests.e2e.conftest import Cleanup, DockerCLI

pytestmark = [pytest.mark.engine, *SOCKET_LEAK_FILTERS]

# The acceptance limit for a count to follow a container's start or stop.
COUNT_DEADLINE = 2.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def docker_info(docker: DockerCLI) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(docker.ok("info", "--format", "{{json .}}").stdout)
    return info


def finchd_status(bus_finchd: BusFinchd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "finchd", "status", *args],
                          capture_output=True, text=True, env=bus_finchd.bus.env(),
                          timeout=30, check=False)


def nerdctl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run nerdctl against the shared engine, bypassing finchd."""
    env = engine_env(Settings(), Paths.from_environment())
    return subprocess.run(["nerdctl", *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_busctl_introspect_shows_interface(bus_finchd: BusFinchd) -> None:
    result = busctl(bus_finchd.bus.address, "introspect", BUS_NAME, OBJECT_PATH)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == [INTERFACE_NAME, "interface"] for line in lines)
    for member in (".Ping", ".GetInfo", ".State", ".ContainersRunning", ".StateChanged",
                   ".ContainerEvent"):
        assert any(line.startswith(member + " ") for line in lines), member


def test_gdbus_introspect_matches_xml(bus_finchd: BusFinchd) -> None:
    result = gdbus(bus_finchd.bus.env(), "introspect", "--session", "--xml", "--dest", BUS_NAME,
                   "--object-path", OBJECT_PATH)
    assert result.returncode == 0, result.stderr
    assert interface_shape(result.stdout) == interface_shape(INTERFACE_XML.read_text())


def test_gdbus_ping(bus_finchd: BusFinchd) -> None:
    result = gdbus(bus_finchd.bus.env(), "call", "--session", "--dest", BUS_NAME,
                   "--object-path", OBJECT_PATH, "--method", f"{INTERFACE_NAME}.Ping")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "('OK',)"


def test_fixed_properties(bus_finchd: BusFinchd) -> None:
    address = bus_finchd.bus.address
    assert get_property(address, "State") == 's "running"'
    assert get_property(address, "ApiVersion") == 's "1.43"'
    assert get_property(address, "SocketPath") == f's "{bus_finchd.socket_path}"'
    assert get_property(address, "Rootless") == "b true"
    assert get_property(address, "NetworkDriver") == 's "slirp4netns"'
    assert get_property(address, "PortDriver") == 's "builtin"'
    started_at = int(get_property(address, "StartedAt").split()[1])
    assert abs(started_at / 1e6 - time.time()) < 24 * 3600


def test_warnings_match_info(bus_finchd: BusFinchd, docker: DockerCLI) -> None:
    client_warnings = docker_info(docker)["Warnings"] or []
    result = gdbus(bus_finchd.bus.env(), "call", "--session", "--dest", BUS_NAME,
                   "--object-path", OBJECT_PATH, "--method",
                   "org.freedesktop.DBus.Properties.Get", INTERFACE_NAME, "Warnings")
    assert result.returncode == 0, result.stderr
    for warning in client_warnings:
        assert warning in result.stdout


def test_running_count_follows_docker(
    bus_finchd: BusFinchd, docker: DockerCLI, busybox: str, cleanup: Cleanup
) -> None:
    address = bus_finchd.bus.address
    before = int(get_property(address, "ContainersRunning").split()[1])
    name = cleanup.container(unique("dbus-count"))

    docker.ok("run", "-d", "--name", name, busybox, "sleep", "60")
    elapsed = wait_for_property(address, "ContainersRunning", f"u {before + 1}", COUNT_DEADLINE)
    assert elapsed < COUNT_DEADLINE

    docker.ok("stop", "-t", "1", name)
    elapsed = wait_for_property(address, "ContainersRunning", f"u {before}", COUNT_DEADLINE)
    assert elapsed < COUNT_DEADLINE


async def test_signals_for_start_and_die(
    bus_finchd: BusFinchd, docker: DockerCLI, busybox: str, cleanup: Cleanup
) -> None:
    client = await SignalRecorder.connect(bus_finchd.bus.address)
    try:
        name = cleanup.container(unique("dbus-signals"))
        container_id = docker.ok("run", "-d", "--name", name, busybox, "sleep", "60").stdout.strip()
        started = await client.wait_for(is_signal("ContainerEvent", container_id, name, "start"), 5)
        running = int(get_property(bus_finchd.bus.address, "ContainersRunning").split()[1])
        await client.wait_for(is_properties_changed("ContainersRunning", running), 5)

        docker.ok("stop", "-t", "1", name)
        died = await client.wait_for(is_signal("ContainerEvent", container_id, name, "die"), 5)
        await client.wait_for(is_properties_changed("ContainersRunning", running - 1), 5)
    finally:
        await client.disconnect()
    assert started.signature == "sss"
    assert died.body == [container_id, name, "die"]


async def test_nerdctl_changes_are_followed(
    bus_finchd: BusFinchd, docker: DockerCLI, busybox: str
) -> None:
    address = bus_finchd.bus.address
    before = int(get_property(address, "ContainersRunning").split()[1])
    name = unique("dbus-nerdctl")
    client = await SignalRecorder.connect(address)
    try:
        result = nerdctl("run", "-d", "--pull=never", f"--name={name}", busybox, "sleep", "60")
        assert result.returncode == 0, result.stderr
        container_id = result.stdout.strip().splitlines()[-1]
        await client.wait_for(is_signal("ContainerEvent", container_id, name, "create"), 5)
        await client.wait_for(is_signal("ContainerEvent", container_id, name, "start"), 5)
        assert get_property(address, "ContainersRunning") == f"u {before + 1}"

        assert nerdctl("rm", "-f", name).returncode == 0
        await client.wait_for(is_signal("ContainerEvent", container_id, name, "destroy"), 10)
        assert get_property(address, "ContainersRunning") == f"u {before}"
    finally:
        nerdctl("rm", "-f", name)
        await client.disconnect()


def wait_for_equal_counts(bus_finchd: BusFinchd, docker: DockerCLI) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return `finchd status --json` and `docker info` once their counts agree."""
    keys = ("Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images")
    deadline = time.monotonic() + 5
    while True:
        result = finchd_status(bus_finchd, "--json")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        info = docker_info(docker)
        if all(status[key] == info[key] for key in keys) or time.monotonic() > deadline:
            return status, info
        time.sleep(0.2)


def test_status_matches_docker_info(
    bus_finchd: BusFinchd, docker: DockerCLI, busybox: str, cleanup: Cleanup
) -> None:
    docker.ok("run", "-d", "--name", cleanup.container(unique("dbus-up")), busybox, "sleep", "60")
    docker.ok("create", "--name", cleanup.container(unique("dbus-created")), busybox)

    status, info = wait_for_equal_counts(bus_finchd, docker)
    text = finchd_status(bus_finchd)

    assert status["Running"] is True
    assert status["State"] == "running"
    for key in ("Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped",
                "Images"):
        assert status[key] == info[key], key
    assert status["Warnings"] == (info["Warnings"] or [])
    assert text.returncode == 0, text.stderr
    assert (f"Containers: {info['Containers']} ({info['ContainersRunning']} running, "
            f"{info['ContainersPaused']} paused, {info['ContainersStopped']} stopped)") in text.stdout
    assert f"Images:     {info['Images']}" in text.stdout
    assert ": running" in text.stdout.splitlines()[0]
