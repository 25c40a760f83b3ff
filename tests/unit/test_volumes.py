"""Volume create checks, nerdctl volume output parsing and Docker's Volume shape."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from finchd.errors import EngineError, InvalidParameterError, NotFoundError
from finchd.nerdctl.containers import VolumeGuard
from finchd.nerdctl.volumes import (
    ANONYMOUS_VOLUMES_LABEL,
    NativeVolume,
    anonymous_volume_names,
    create_args,
    parse_inspect,
    parse_names,
)
from finchd.services.volume_spec import (
    check_driver,
    check_driver_options,
    check_volume_name,
    parse_size,
    parse_volume_create,
)
from finchd.services.volumes import (
    ANONYMOUS_LABEL,
    VolumeUsage,
    bool_filter,
    container_usage,
    is_anonymous,
    match_list_filters,
    match_prune_filters,
    prune_all,
    volume_view,
)

MOUNTPOINT = "/home/user/.local/share/finchd/nerdctl/abc/volumes/default/data/_data"


def test_parse_inspect_labels_and_size() -> None:
    stdout = json.dumps([
        {"Name": "data", "Mountpoint": MOUNTPOINT, "Labels": {"a": "b", "c": ""}, "Size": 12},
        {"Name": "bare", "Mountpoint": "/m"},
        {"Mountpoint": "/nameless"},
        "not an object",
    ]).encode()
    volumes = parse_inspect(stdout)
    assert [volume.name for volume in volumes] == ["data", "bare"]
    assert volumes[0].labels == {"a": "b", "c": ""}
    assert volumes[0].size == 12
    assert volumes[0].mountpoint == MOUNTPOINT
    assert volumes[1].labels == {}
    assert volumes[1].size == 0


def test_parse_inspect_bad_output() -> None:
    with pytest.raises(EngineError):
        parse_inspect(b"{not json")
    with pytest.raises(EngineError):
        parse_inspect(b'{"Name": "x"}')
    assert parse_inspect(b"") == []


def test_parse_names_skips_blank_lines() -> None:
    assert parse_names(b"one\n\n two \n") == ["one", "two"]


def test_anonymous_volume_names_from_container_labels() -> None:
    assert anonymous_volume_names({ANONYMOUS_VOLUMES_LABEL: '["v1", "v2"]'}) == ["v1", "v2"]
    assert anonymous_volume_names({ANONYMOUS_VOLUMES_LABEL: "[not json"}) == []
    assert anonymous_volume_names({ANONYMOUS_VOLUMES_LABEL: '{"v1": 1}'}) == []
    assert anonymous_volume_names({}) == []


def test_create_args_binds_values_to_flags() -> None:
    args = create_args("data", {"a": "b", "c": ""})
    assert args == ["volume", "create", "--label=a=b", "--label=c=", "--", "data"]
    anonymous = create_args("f" * 64, {}, anonymous=True)
    assert anonymous == ["volume", "create", f"--label={ANONYMOUS_VOLUMES_LABEL}=", "--", "f" * 64]


def test_parse_create_anonymous_name() -> None:
    for body in (None, {}, {"Name": ""}):
        request = parse_volume_create(body)
        assert request.anonymous
        assert len(request.name) == 64
        assert all(char in "0123456789abcdef" for char in request.name)


def test_parse_create_keeps_nulls_as_sent() -> None:
    request = parse_volume_create({"Name": "data", "Labels": {}, "DriverOpts": None})
    assert not request.anonymous
    assert request.labels == {}
    assert request.options is None
    assert not request.cluster
    assert parse_volume_create({"ClusterVolumeSpec": {}}).cluster


@pytest.mark.parametrize("body, words", [
    ([], "expected a JSON object"),
    ("data", "expected a JSON object"),
    ({"Name": 5}, "invalid type for Name"),
    ({"Driver": True}, "invalid type for Driver"),
    ({"Labels": {"a": 1}}, "invalid type for Labels"),
    ({"Labels": ["a"]}, "invalid type for Labels"),
    ({"DriverOpts": "type=tmpfs"}, "invalid type for DriverOpts"),
    ({"ClusterVolumeSpec": "x"}, "invalid type for ClusterVolumeSpec"),
    ({"Nmae": "data"}, "unknown field Nmae"),
    ({"Labels": {"": "x"}}, "invalid label key"),
    ({"Labels": {"a=b": "x"}}, "invalid label key"),
])
def test_parse_create_rejects(body: Any, words: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        parse_volume_create(body)
    assert words in caught.value.message


def test_check_volume_name_as_dockerd() -> None:
    check_volume_name("ab")
    check_volume_name("my_volume.1-x")
    with pytest.raises(InvalidParameterError) as short:
        check_volume_name("a")
    assert short.value.message == ("create a: volume name is too short, names should be at "
                                   "least two alphanumeric characters")
    for name in ("-ab", "a/b", "a b", "_ab", "ab:c"):
        with pytest.raises(InvalidParameterError) as invalid:
            check_volume_name(name)
        assert invalid.value.message.startswith(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed.')
    with pytest.raises(InvalidParameterError) as long:
        check_volume_name("a" * 251)
    assert "251 characters" in long.value.message


def test_check_driver_only_local() -> None:
    check_driver("data", "")
    check_driver("data", "local")
    with pytest.raises(NotFoundError) as caught:
        check_driver("data", "rexray")
    assert caught.value.message == (
        'create data: error looking up volume plugin rexray: plugin "rexray" not found')


@pytest.mark.parametrize("options, words", [
    ({"foo": "bar"}, 'create v: invalid option: "foo"'),
    ({"size": "10m"}, "create v: quota size requested but no quota support"),
    ({"size": "ten"}, "create v: invalid size: 'ten'"),
    ({"type": "tmpfs"}, 'create v: missing required option: "device"'),
    ({"o": "size=1m", "type": "tmpfs"}, 'create v: missing required option: "device"'),
    ({"type": "tmpfs", "device": "tmpfs"}, 'driver option "type" is not supported'),
    ({"type": "nfs", "device": ":/x", "o": "addr=1.2.3.4"}, 'driver option "type"'),
])
def test_check_driver_options_rejects(options: dict[str, str], words: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        check_driver_options("v", options)
    assert words in caught.value.message


def test_check_driver_options_accepts_zero_size() -> None:
    check_driver_options("v", {})
    check_driver_options("v", {"size": "0"})


def test_parse_size_units() -> None:
    assert parse_size("v", "512") == 512
    assert parse_size("v", "1k") == 1024
    assert parse_size("v", "1.5MiB") == 1.5 * 1024 ** 2
    assert parse_size("v", "2 GB") == 2 * 1024 ** 3


def test_container_usage_collects_users_and_anonymous() -> None:
    natives = [
        {"Id": "c1", "Mounts": [{"Type": "volume", "Name": "shared"},
                                {"Type": "volume", "Name": "anon1"},
                                {"Type": "bind", "Name": "", "Source": "/tmp"}],
         "Config": {"Labels": {ANONYMOUS_VOLUMES_LABEL: '["anon1"]'}}},
        {"Id": "c2", "Mounts": [{"Type": "volume", "Name": "shared"}], "Config": {}},
        {"Id": "c3", "Mounts": None},
    ]
    usage = container_usage(natives)
    assert usage.users == {"shared": ["c1", "c2"], "anon1": ["c1"]}
    assert usage.anonymous == {"anon1"}


def test_is_anonymous_by_each_mark() -> None:
    usage = VolumeUsage(anonymous={"from-container"})
    plain = NativeVolume(name="plain", mountpoint="/m", labels={})
    assert not is_anonymous(plain, {}, usage)
    assert is_anonymous(plain, {"Anonymous": True}, usage)
    nerdctl = NativeVolume(name="n", mountpoint="/m", labels={ANONYMOUS_VOLUMES_LABEL: ""})
    assert is_anonymous(nerdctl, {}, usage)
    docker = NativeVolume(name="d", mountpoint="/m", labels={ANONYMOUS_LABEL: ""})
    assert is_anonymous(docker, {}, usage)
    container = NativeVolume(name="from-container", mountpoint="/m", labels={})
    assert is_anonymous(container, {}, usage)


def test_volume_view_shape() -> None:
    volume = NativeVolume(name="data", mountpoint=MOUNTPOINT,
                          labels={"a": "b", ANONYMOUS_VOLUMES_LABEL: ""}, created=86400.7)
    view = volume_view(volume, {"Labels": {"a": "b"}, "Options": {}}, anonymous=True)
    assert view == {
        "CreatedAt": "1970-01-02T00:00:00Z",
        "Driver": "local",
        "Labels": {"a": "b", ANONYMOUS_LABEL: ""},
        "Mountpoint": MOUNTPOINT,
        "Name": "data",
        "Options": {},
        "Scope": "local",
    }
    assert "UsageData" not in view
    assert "Status" not in view


def test_volume_view_null_and_empty_labels() -> None:
    volume = NativeVolume(name="data", mountpoint=MOUNTPOINT, labels={})
    implicit = volume_view(volume, {}, anonymous=False)
    assert implicit["Labels"] is None
    assert implicit["Options"] is None
    assert "CreatedAt" not in implicit
    sent_empty = volume_view(volume, {"Labels": {}, "Options": None}, anonymous=False)
    assert sent_empty["Labels"] == {}


def test_bool_filter_as_dockerd() -> None:
    assert bool_filter({}, "dangling") is None
    assert bool_filter({"dangling": ["true"]}, "dangling") is True
    assert bool_filter({"dangling": ["1", "true"]}, "dangling") is True
    assert bool_filter({"dangling": ["0"]}, "dangling") is False
    assert bool_filter({"dangling": ["false", "other"]}, "dangling") is False
    for values, message in ((["maybe"], "invalid filter 'dangling=[maybe]'"),
                            (["true", "0"], "invalid filter 'dangling=[true 0]'"),
                            ([], "invalid filter 'dangling'")):
        with pytest.raises(InvalidParameterError) as caught:
            bool_filter({"dangling": values}, "dangling")
        assert caught.value.message == message


def test_prune_all_values() -> None:
    assert prune_all({}) is False
    assert prune_all({"all": ["true"]}) is True
    assert prune_all({"all": ["1"]}) is True
    assert prune_all({"all": ["False"]}) is False
    with pytest.raises(InvalidParameterError) as many:
        prune_all({"all": ["true", "false"]})
    assert many.value.message == "invalid filter 'all=[true false]': only one value is expected"
    with pytest.raises(InvalidParameterError) as bad:
        prune_all({"all": ["maybe"]})
    assert "invalid filter 'all'" in bad.value.message


def _view(name: str, labels: dict[str, str] | None, options: Any = None) -> dict[str, Any]:
    return {"Name": name, "Driver": "local", "Labels": labels, "Options": options}


def test_match_list_filters() -> None:
    view = _view("app_data", {"env": "test", "tier": ""})
    assert match_list_filters(view, False, {}, None)
    assert match_list_filters(view, False, {"name": ["app_data"]}, None)
    assert match_list_filters(view, False, {"name": ["^app"]}, None)
    assert match_list_filters(view, False, {"name": ["nomatch", "data"]}, None)
    assert not match_list_filters(view, False, {"name": ["other"]}, None)
    assert not match_list_filters(view, False, {"name": ["("]}, None)
    assert match_list_filters(view, False, {"driver": ["local"]}, None)
    assert not match_list_filters(view, False, {"driver": ["nfs"]}, None)
    assert match_list_filters(view, False, {"label": ["env=test", "tier"]}, None)
    assert not match_list_filters(view, False, {"label": ["env=prod"]}, None)
    assert not match_list_filters(_view("x", None), False, {"label": ["env"]}, None)
    assert match_list_filters(view, False, {}, True)
    assert not match_list_filters(view, True, {}, True)
    assert match_list_filters(view, True, {}, False)
    assert not match_list_filters(view, False, {}, False)


def test_match_prune_filters() -> None:
    anonymous = _view("a", {ANONYMOUS_LABEL: "", "env": "test"})
    named = _view("n", {"env": "test"})
    assert match_prune_filters(anonymous, {}, everything=False)
    assert not match_prune_filters(named, {}, everything=False)
    assert match_prune_filters(named, {}, everything=True)
    assert match_prune_filters(named, {"label": ["env=test"]}, everything=True)
    assert not match_prune_filters(named, {"label": ["env=prod"]}, everything=True)
    assert not match_prune_filters(named, {"label!": ["env"]}, everything=True)
    # label! excludes only volumes that have every label it lists, as dockerd's does.
    assert match_prune_filters(named, {"label!": ["env", "other"]}, everything=True)
    with_options = _view("o", {}, options={"size": "0"})
    assert not match_prune_filters(with_options, {}, everything=True)


def test_reserved_label_prefix_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="reserved for the engine"):
        parse_volume_create({"Name": "data", "Labels": {"nerdctl/anonymous-volumes": "x"}})


@pytest.mark.parametrize("size", ["\u0660", "\u00b9m", "1\u0660g"])
def test_size_with_non_ascii_digits_rejected(size: str) -> None:
    with pytest.raises(InvalidParameterError, match="invalid size"):
        parse_size("data", size)


async def test_volume_guard_orders_removal_after_creates() -> None:
    guard = VolumeGuard()
    order: list[str] = []
    create_started = asyncio.Event()
    finish_create = asyncio.Event()

    async def create(label: str) -> None:
        async with guard.creating():
            order.append(f"{label} started")
            create_started.set()
            await finish_create.wait()
            order.append(f"{label} ended")

    async def remove() -> None:
        await create_started.wait()
        async with guard.removing():
            order.append("remove")

    tasks = [asyncio.ensure_future(create("first")), asyncio.ensure_future(create("second")),
             asyncio.ensure_future(remove())]
    await asyncio.sleep(0.05)
    assert order == ["first started", "second started"]
    finish_create.set()
    await asyncio.gather(*tasks)
    assert order[-1] == "remove"
