"""Calls to containerd's gRPC API for what nerdctl has no command or flag for.

finchd encodes the few protobuf messages it needs by hand, so it needs no
generated code. It reads snapshot mounts with Snapshots.Mounts. It changes a
container's OCI runtime spec and labels before a start with Containers.Get
and Containers.Update. It starts a task with stdin through Tasks.Create,
Start, CloseIO and Delete.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finchd.errors import EngineError, NoSuchContainerError

SNAPSHOT_MOUNTS_METHOD = "/containerd.services.snapshots.v1.Snapshots/Mounts"
CONTAINER_GET_METHOD = "/containerd.services.containers.v1.Containers/Get"
CONTAINER_UPDATE_METHOD = "/containerd.services.containers.v1.Containers/Update"
TASKS_SERVICE = "/containerd.services.tasks.v1.Tasks/"
TASK_CREATE_METHOD = "/containerd.services.tasks.v1.Tasks/Create"
TASK_START_METHOD = "/containerd.services.tasks.v1.Tasks/Start"
TASK_DELETE_METHOD = "/containerd.services.tasks.v1.Tasks/Delete"
TASK_CLOSE_IO_METHOD = "/containerd.services.tasks.v1.Tasks/CloseIO"
RPC_TIMEOUT = 30.0

# Field numbers in containerd's api/types and services/containers/v1 protobuf files.
CONTAINER_ID_FIELD = 1
CONTAINER_LABELS_FIELD = 2
CONTAINER_SPEC_FIELD = 5
CONTAINER_SNAPSHOTTER_FIELD = 6
CONTAINER_SNAPSHOT_KEY_FIELD = 7
ANY_TYPE_URL_FIELD = 1
ANY_VALUE_FIELD = 2


def protobuf_string(field: int, value: str) -> bytes:
    """Encode a string field."""
    return protobuf_bytes(field, value.encode())


def protobuf_bytes(field: int, data: bytes) -> bytes:
    """Encode a length-delimited field: bytes, a string or an embedded message."""
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        low = number & 0x7F
        number >>= 7
        if number:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def protobuf_fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """Decode one protobuf message into (field number, value) pairs."""
    fields: list[tuple[int, bytes | int]] = []
    position = 0
    while position < len(data):
        key, position = _read_varint(data, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _read_varint(data, position)
            fields.append((field, value))
        elif wire_type == 2:
            length, position = _read_varint(data, position)
            fields.append((field, data[position:position + length]))
            position += length
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        else:
            raise EngineError(f"invalid reply from containerd: unknown protobuf wire type {wire_type}")
    return fields


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if position >= len(data):
            raise EngineError("invalid reply from containerd: truncated protobuf varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _first_bytes(message: bytes, field: int) -> bytes:
    for number, value in protobuf_fields(message):
        if number == field and isinstance(value, bytes):
            return value
    return b""


def decode_mounts(reply: bytes) -> list[dict[str, Any]]:
    """Decode a MountsResponse: `repeated Mount mounts = 1`, each with type,
    source, target and repeated options (fields 1 to 4)."""
    mounts = []
    for field, value in protobuf_fields(reply):
        if field != 1 or not isinstance(value, bytes):
            continue
        mount: dict[str, Any] = {"type": "", "source": "", "target": "", "options": []}
        for inner, item in protobuf_fields(value):
            if not isinstance(item, bytes):
                continue
            text = item.decode()
            if inner == 1:
                mount["type"] = text
            elif inner == 2:
                mount["source"] = text
            elif inner == 3:
                mount["target"] = text
            elif inner == 4:
                mount["options"].append(text)
        mounts.append(mount)
    return mounts


@dataclass
class ContainerRecord:
    """The parts of containerd's Container message that starting a task needs."""

    labels: dict[str, str]
    snapshotter: str
    snapshot_key: str


def decode_container(reply: bytes) -> ContainerRecord:
    """Decode the labels and snapshot of a GetContainerResponse."""
    record = ContainerRecord({}, "", "")
    for field, value in protobuf_fields(_first_bytes(reply, 1)):
        if not isinstance(value, bytes):
            continue
        if field == CONTAINER_LABELS_FIELD:
            entry = dict(protobuf_fields(value))
            key, label = entry.get(1, b""), entry.get(2, b"")
            if isinstance(key, bytes) and isinstance(label, bytes):
                record.labels[key.decode()] = label.decode()
        elif field == CONTAINER_SNAPSHOTTER_FIELD:
            record.snapshotter = value.decode()
        elif field == CONTAINER_SNAPSHOT_KEY_FIELD:
            record.snapshot_key = value.decode()
    return record


def encode_mount(mount: dict[str, Any]) -> bytes:
    """Encode a containerd.types.Mount: type, source, target, repeated options."""
    data = (protobuf_string(1, mount["type"]) + protobuf_string(2, mount["source"])
            + protobuf_string(3, mount["target"]))
    return data + b"".join(protobuf_string(4, option) for option in mount["options"])


def encode_create_task(container_id: str, rootfs: list[dict[str, Any]], stdin: str,
                       stdout: str, stderr: str) -> bytes:
    """Encode a CreateTaskRequest without a terminal, with stdio on the named FIFOs."""
    request = protobuf_string(1, container_id)
    request += b"".join(protobuf_bytes(3, encode_mount(mount)) for mount in rootfs)
    return (request + protobuf_string(4, stdin) + protobuf_string(5, stdout)
            + protobuf_string(6, stderr))


def encode_labels_update(container_id: str, labels: dict[str, str]) -> bytes:
    """Encode an UpdateContainerRequest that sets the given labels only."""
    return _encode_update(container_id, labels, None)


def decode_container_spec(reply: bytes) -> tuple[str, dict[str, Any]]:
    """Return the type URL and the JSON runtime spec of a GetContainerResponse."""
    container = _first_bytes(reply, 1)
    spec_any = _first_bytes(container, CONTAINER_SPEC_FIELD)
    if not spec_any:
        raise EngineError("containerd returned a container without a runtime spec")
    type_url = _first_bytes(spec_any, ANY_TYPE_URL_FIELD).decode()
    try:
        spec = json.loads(_first_bytes(spec_any, ANY_VALUE_FIELD))
    except ValueError as exc:
        raise EngineError(f"invalid runtime spec from containerd: {exc}") from exc
    if not type_url or not isinstance(spec, dict):
        raise EngineError("containerd returned a container without a runtime spec")
    return type_url, spec


def encode_spec_update(container_id: str, type_url: str, spec: dict[str, Any],
                       labels: dict[str, str] | None = None) -> bytes:
    """Encode an UpdateContainerRequest that replaces the spec and the given labels only."""
    spec_any = (protobuf_string(ANY_TYPE_URL_FIELD, type_url)
                + protobuf_bytes(ANY_VALUE_FIELD, json.dumps(spec).encode()))
    return _encode_update(container_id, labels or {}, spec_any)


def _encode_update(container_id: str, labels: dict[str, str], spec_any: bytes | None) -> bytes:
    container = protobuf_string(CONTAINER_ID_FIELD, container_id)
    paths = ["spec"] if spec_any is not None else []
    for key, value in labels.items():
        # A protobuf map is a repeated message of key (field 1) and value (field 2).
        entry = protobuf_string(1, key) + protobuf_string(2, value)
        container += protobuf_bytes(CONTAINER_LABELS_FIELD, entry)
        paths.append(f"labels.{key}")
    if spec_any is not None:
        container += protobuf_bytes(CONTAINER_SPEC_FIELD, spec_any)
    update_mask = b"".join(protobuf_string(1, path) for path in paths)
    return protobuf_bytes(1, container) + protobuf_bytes(2, update_mask)


class Containerd:
    """A client of containerd's gRPC socket for one namespace."""

    def __init__(self, socket: Path, namespace: str):
        self.socket = socket
        self.namespace = namespace

    async def snapshot_mounts(self, snapshotter: str, key: str) -> list[dict[str, Any]]:
        """Return the mounts of a snapshot from containerd's Snapshots API."""
        request = protobuf_string(1, snapshotter) + protobuf_string(2, key)
        reply = await asyncio.to_thread(self._call, SNAPSHOT_MOUNTS_METHOD, request)
        return decode_mounts(reply)

    async def container_spec(self, container_id: str) -> tuple[str, dict[str, Any]]:
        """Return the type URL and the OCI runtime spec stored for a container."""
        request = protobuf_string(CONTAINER_ID_FIELD, container_id)
        reply = await asyncio.to_thread(self._call, CONTAINER_GET_METHOD, request, container_id)
        return decode_container_spec(reply)

    async def replace_container_spec(self, container_id: str, type_url: str,
                                     spec: dict[str, Any],
                                     labels: dict[str, str] | None = None) -> None:
        """Store a new OCI runtime spec and labels for a container, used from its next task on."""
        request = encode_spec_update(container_id, type_url, spec, labels)
        await asyncio.to_thread(self._call, CONTAINER_UPDATE_METHOD, request, container_id)

    async def container(self, container_id: str) -> ContainerRecord:
        """Return a container's labels and snapshot."""
        request = protobuf_string(CONTAINER_ID_FIELD, container_id)
        reply = await asyncio.to_thread(self._call, CONTAINER_GET_METHOD, request, container_id)
        return decode_container(reply)

    async def set_labels(self, container_id: str, labels: dict[str, str]) -> None:
        """Set labels of a container, keeping the others."""
        request = encode_labels_update(container_id, labels)
        await asyncio.to_thread(self._call, CONTAINER_UPDATE_METHOD, request, container_id)

    async def create_task(self, container_id: str, rootfs: list[dict[str, Any]], stdin: str,
                          stdout: str, stderr: str) -> None:
        """Create a container's task with its stdio on FIFOs, in which runc creates the process."""
        request = encode_create_task(container_id, rootfs, stdin, stdout, stderr)
        await asyncio.to_thread(self._call, TASK_CREATE_METHOD, request, container_id)

    async def start_task(self, container_id: str) -> None:
        """Start the process of a created task."""
        request = protobuf_string(1, container_id)
        await asyncio.to_thread(self._call, TASK_START_METHOD, request, container_id)

    async def close_task_stdin(self, container_id: str) -> None:
        """Close the stdin of a task's process, whose FIFO the shim keeps open until then."""
        # CloseIORequest: container_id = 1, exec_id = 2, stdin = 3.
        request = protobuf_string(1, container_id) + _varint(3 << 3) + _varint(1)
        await asyncio.to_thread(self._call, TASK_CLOSE_IO_METHOD, request, container_id)

    async def delete_task(self, container_id: str) -> bool:
        """Delete a container's stopped task, and return False when it has none."""
        request = protobuf_string(1, container_id)
        try:
            await asyncio.to_thread(self._call, TASK_DELETE_METHOD, request, container_id)
        except NoSuchContainerError:
            return False
        return True

    def _call(self, method: str, request: bytes, container_id: str = "") -> bytes:
        import grpc  # type: ignore[import-untyped]

        target = f"unix://{self.socket}"
        with grpc.insecure_channel(target) as channel:
            call = channel.unary_unary(method)
            try:
                reply: bytes = call(
                    request, timeout=RPC_TIMEOUT,
                    metadata=[("containerd-namespace", self.namespace)],
                )
            except grpc.RpcError as exc:
                if container_id and exc.code() == grpc.StatusCode.NOT_FOUND:
                    raise NoSuchContainerError(container_id) from exc
                if method.startswith(TASKS_SERVICE):
                    # containerd's own text, such as runc's reason for a failed start.
                    raise EngineError(str(exc.details())) from exc
                raise EngineError(f"containerd {method} failed: {exc.details()}") from exc
        return reply
