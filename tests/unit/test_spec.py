"""Create-request checks and the nerdctl argv they become."""

from __future__ import annotations

import pytest

from finchd.errors import InvalidParameterError
from finchd.nerdctl.containers import create_args
from finchd.services.container_spec import parse_create


def test_cmd_string_becomes_list() -> None:
    spec = parse_create({"Image": "busybox", "Cmd": "echo hi"}, None, False)
    assert spec.cmd == ["echo hi"]
    assert spec.config["Cmd"] == ["echo hi"]


def test_values_are_bound_to_flags() -> None:
    spec = parse_create(
        {"Image": "busybox", "Cmd": ["--privileged"], "Env": ["--x=1"],
         "Labels": {"--a": "b"}, "WorkingDir": "/-w"},
        "web", False,
    )
    args = create_args(spec)
    assert "--privileged" not in args[: args.index("--")]
    assert "--env=--x=1" in args
    assert "--label=--a=b" in args
    assert args[args.index("--") + 1] == "busybox"


def test_entrypoint_list_splits_into_flag_and_args() -> None:
    spec = parse_create({"Image": "busybox", "Entrypoint": ["sh", "-c"], "Cmd": ["echo"]}, None, False)
    args = create_args(spec)
    assert "--entrypoint=sh" in args
    assert args[-3:] == ["busybox", "-c", "echo"]


def test_memory_limit_warns_without_cgroups() -> None:
    spec = parse_create({"Image": "busybox", "HostConfig": {"Memory": 64 * 1024 * 1024}}, None, False)
    assert len(spec.warnings) == 1
    assert "Memory" in spec.warnings[0]


def test_auto_remove_with_restart_is_rejected() -> None:
    body = {"Image": "busybox", "HostConfig": {"AutoRemove": True,
                                               "RestartPolicy": {"Name": "always"}}}
    with pytest.raises(InvalidParameterError):
        parse_create(body, None, False)


def test_zero_values_of_unsupported_fields_pass() -> None:
    body = {"Image": "busybox", "HostConfig": {"VolumesFrom": None, "Links": [],
                                               "CgroupnsMode": "", "OomScoreAdj": 0}}
    assert parse_create(body, None, False).warnings == []
