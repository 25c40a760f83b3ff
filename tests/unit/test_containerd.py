"""The hand-encoded protobuf messages sent to and read from containerd."""

from __future__ import annotations

import json

import pytest

from finchd.errors import EngineError
from finchd.nerdctl.containerd import (
    decode_container_spec,
    encode_spec_update,
    protobuf_bytes,
    protobuf_fields,
    protobuf_string,
)

SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


def get_reply(container_id: str, spec: bytes) -> bytes:
    spec_any = protobuf_string(1, SPEC_TYPE) + protobuf_bytes(2, spec)
    container = (protobuf_string(1, container_id) + protobuf_string(3, "busybox")
                 + protobuf_bytes(5, spec_any) + protobuf_string(6, "overlayfs"))
    return protobuf_bytes(1, container)


def test_decode_container_spec() -> None:
    spec = {"ociVersion": "1.1.0", "process": {"terminal": True}}
    type_url, decoded = decode_container_spec(get_reply("abc", json.dumps(spec).encode()))
    assert type_url == SPEC_TYPE
    assert decoded == spec


def test_decode_container_without_spec() -> None:
    with pytest.raises(EngineError, match="without a runtime spec"):
        decode_container_spec(protobuf_bytes(1, protobuf_string(1, "abc")))


def test_decode_invalid_spec_json() -> None:
    with pytest.raises(EngineError, match="invalid runtime spec"):
        decode_container_spec(get_reply("abc", b"{not json"))


def test_spec_update_sets_only_spec() -> None:
    spec = {"process": {"consoleSize": {"height": 24, "width": 80}}}
    request = dict(protobuf_fields(encode_spec_update("abc", SPEC_TYPE, spec)))
    container = request[1]
    update_mask = request[2]
    assert isinstance(container, bytes)
    assert isinstance(update_mask, bytes)
    assert protobuf_fields(update_mask) == [(1, b"spec")]
    fields = dict(protobuf_fields(container))
    assert fields[1] == b"abc"
    assert set(fields) == {1, 5}
    spec_any = fields[5]
    assert isinstance(spec_any, bytes)
    any_fields = dict(protobuf_fields(spec_any))
    assert any_fields[1] == SPEC_TYPE.encode()
    value = any_fields[2]
    assert isinstance(value, bytes)
    assert json.loads(value) == spec


def test_long_field_uses_multibyte_length() -> None:
    data = protobuf_string(2, "x" * 300)
    assert protobuf_fields(data) == [(2, b"x" * 300)]


def test_spec_update_with_labels_masks_each_label() -> None:
    request = dict(protobuf_fields(
        encode_spec_update("abc", SPEC_TYPE, {}, {"nerdctl/networks": '["a","b"]'})))
    update_mask = request[2]
    container = request[1]
    assert isinstance(update_mask, bytes)
    assert isinstance(container, bytes)
    assert protobuf_fields(update_mask) == [(1, b"spec"), (1, b"labels.nerdctl/networks")]
    entries = [value for field, value in protobuf_fields(container) if field == 2]
    assert len(entries) == 1
    entry = entries[0]
    assert isinstance(entry, bytes)
    assert protobuf_fields(entry) == [(1, b"nerdctl/networks"), (2, b'["a","b"]')]
