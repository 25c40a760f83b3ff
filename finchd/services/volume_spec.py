"""Checks of a volume create request, with dockerd's messages and statuses."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from finchd.errors import InvalidParameterError, NotFoundError
from finchd.services.validation import describe, expect, string_map

RESERVED_LABEL_PREFIX = "nerdctl/"
CREATE_FIELDS = {"Name", "Driver", "DriverOpts", "Labels", "ClusterVolumeSpec"}
LOCAL_DRIVER = "local"
# dockerd's rule for local volume names; nerdctl 2.0.3 applies the same pattern.
NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
NAME_CHARACTERS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
# finchd keeps a `<name>.json` record per volume, and a file name has at most 255 bytes.
MAX_NAME_LENGTH = 255 - len(".json")
# The options of dockerd's local driver, and the options each one requires.
LOCAL_OPTIONS = ("type", "o", "device", "size")
REQUIRED_OPTIONS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
SIZE_PATTERN = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp]?)i?b?$", re.IGNORECASE | re.ASCII)


@dataclass
class VolumeRequest:
    """A checked create request. Labels and Options are None when the client sent null."""

    name: str
    driver: str
    anonymous: bool
    labels: dict[str, str] | None
    options: dict[str, str] | None
    cluster: bool


def parse_volume_create(body: Any) -> VolumeRequest:
    """Check the types of a VolumeCreateOptions body. An empty name makes an anonymous volume."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidParameterError(
            f"invalid JSON: expected a JSON object for the volume create request, got "
            f"{describe(body)}")
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        raise InvalidParameterError(f"unknown field {unknown[0]} in volume create request")

    name = expect(body.get("Name"), str, "Name") or ""
    driver = expect(body.get("Driver"), str, "Driver") or ""
    options = string_map(body.get("DriverOpts"), "DriverOpts")
    labels = string_map(body.get("Labels"), "Labels")
    cluster = expect(body.get("ClusterVolumeSpec"), dict, "ClusterVolumeSpec") is not None
    _check_label_keys(labels or {})

    anonymous = not name
    if anonymous:
        # The shape of dockerd's generated names: 32 random bytes in hexadecimal.
        name = secrets.token_hex(32)
    return VolumeRequest(name=name, driver=driver, anonymous=anonymous, labels=labels,
                         options=options, cluster=cluster)


def _check_label_keys(labels: dict[str, str]) -> None:
    for key in labels:
        if not key or "=" in key:
            raise InvalidParameterError(
                f"invalid label key {key!r}: a volume label key must be non-empty and must not "
                "contain '='")
        if key.startswith(RESERVED_LABEL_PREFIX):
            # nerdctl keeps its own state in these labels, such as the anonymous mark.
            raise InvalidParameterError(
                f"invalid label key {key!r}: keys starting with {RESERVED_LABEL_PREFIX} "
                "are reserved for the engine")


def check_driver(name: str, driver: str) -> None:
    """Raise dockerd's 404 for a driver other than local, the only one finchd has."""
    if driver and driver != LOCAL_DRIVER:
        raise NotFoundError(
            f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" not found')


def check_volume_name(name: str) -> None:
    """Raise dockerd's 400 for a name that the local driver rejects."""
    if len(name) == 1:
        raise InvalidParameterError(
            f"create {name}: volume name is too short, names should be at least two "
            "alphanumeric characters")
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidParameterError(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            f'"{NAME_CHARACTERS}" are allowed. If you intended to pass a host directory, use '
            "absolute path")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidParameterError(
            f"create {name[:32]}...: volume name is {len(name)} characters long; finchd takes at "
            f"most {MAX_NAME_LENGTH}")


def check_driver_options(name: str, options: dict[str, str]) -> None:
    """Check local driver options as dockerd does, then reject those nerdctl cannot apply.

    nerdctl 2.0.3 creates every volume as a plain folder and has no driver options,
    so a mount type, device or mount options, and a size quota, are rejected with
    400 naming the option. A size of zero, which dockerd accepts without a quota, is
    accepted.
    """
    for option in options:
        if option not in LOCAL_OPTIONS:
            raise InvalidParameterError(f'create {name}: invalid option: "{option}"')
    if "size" in options and parse_size(name, options["size"]) > 0:
        raise InvalidParameterError(f"create {name}: quota size requested but no quota support")
    for option, required in REQUIRED_OPTIONS.items():
        if option in options:
            for needed in required:
                if needed not in options:
                    raise InvalidParameterError(
                        f'create {name}: missing required option: "{needed}"')
    for option in ("type", "device", "o"):
        if option in options:
            raise InvalidParameterError(
                f'create {name}: driver option "{option}" is not supported: nerdctl 2.0.3 '
                "creates local volumes only as plain folders and cannot mount a device or "
                "file system for them")


def parse_size(name: str, value: str) -> float:
    """Parse a size as dockerd's RAMInBytes does (`100m`, `1.5GiB`), in bytes."""
    match = SIZE_PATTERN.match(value.strip())
    if not match:
        raise InvalidParameterError(f"create {name}: invalid size: '{value}'")
    exponent = "kmgtp".find(match.group(2).lower()) + 1 if match.group(2) else 0
    return float(match.group(1)) * float(1024 ** exponent)
