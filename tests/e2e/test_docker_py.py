"""docker-py, the reference Python client, against finchd."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import docker.errors
import pytest

from tests.e2e.conftest import unique_name

pytestmark = pytest.mark.engine


@pytest.fixture
def client(finchd_socket: str) -> Iterator[docker.DockerClient]:
    connected = docker.DockerClient(
        base_url=f"unix://{finchd_socket}", version="1.43", timeout=60
    )
    yield connected
    connected.close()


def test_run_returns_output(client: docker.DockerClient, busybox: str) -> None:
    output = client.containers.run(busybox, "echo hi", remove=True)

    assert output == b"hi\n"


def test_missing_container_raises_not_found(client: docker.DockerClient) -> None:
    missing = unique_name("missing")

    with pytest.raises(docker.errors.NotFound) as raised:
        client.containers.get(missing)

    assert not isinstance(raised.value, docker.errors.ImageNotFound)
    assert raised.value.status_code == 404
    assert f"No such container: {missing}" in str(raised.value)


def test_missing_image_raises_image_not_found(client: docker.DockerClient) -> None:
    missing = f"{unique_name('missing')}:latest"

    with pytest.raises(docker.errors.ImageNotFound) as raised:
        client.images.get(missing)

    assert raised.value.status_code == 404
    assert "No such image" in str(raised.value)
