# SPDX-License-Identifier: Apache-2.0
"""Which checksum an ``image_info`` asks for, and reading checksum files.

Pure parts (:func:`validate_image_info_checksum`, :func:`algorithm_for`,
:func:`parse_checksum_file`) are separate from :func:`expected_checksum`,
which may fetch a checksum file over HTTP.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ironic_python_agent import errors

LOG = logging.getLogger(__name__)

_BY_LENGTH = {32: "md5", 64: "sha256", 128: "sha512"}
_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    value: str

    def new_hasher(self) -> Any:
        return hashlib.new(self.algorithm)


def is_url(value: str) -> bool:
    return urllib.parse.urlsplit(value).scheme in ("http", "https")


def validate_image_info_checksum(image_info: Mapping[str, Any], md5_enabled: bool) -> None:
    """Raise :class:`errors.InvalidCommandParamsError` unless a usable checksum is given."""
    checksum = image_info.get("checksum")
    algo = image_info.get("os_hash_algo")
    value = image_info.get("os_hash_value")
    if checksum is not None and (not isinstance(checksum, str) or not checksum):
        raise errors.InvalidCommandParamsError(
            f"Image 'checksum' must be a non-empty string: {checksum!r}")
    if algo or value:
        if not (isinstance(algo, str) and algo and isinstance(value, str) and value):
            raise errors.InvalidCommandParamsError(
                "Image 'os_hash_algo' and 'os_hash_value' must both be non-empty strings")
        return
    if checksum and (is_url(checksum) or len(checksum) > 32 or md5_enabled):
        return
    if checksum:
        raise errors.InvalidCommandParamsError(
            "Image checksum is MD5, which is disabled (agent_md5_checksum_enable)")
    raise errors.InvalidCommandParamsError(
        "Image is missing a checksum: give os_hash_algo and os_hash_value, or checksum")


def algorithm_for(value: str, md5_enabled: bool) -> str:
    """The hash algorithm a bare hex checksum of this length implies."""
    algo = _BY_LENGTH.get(len(value))
    if algo is None or not _HEX.match(value):
        raise errors.ImageChecksumError("", "", value, "not a checksum of a known length")
    if algo == "md5" and not md5_enabled:
        raise errors.RESTError("MD5 checksums are disabled (agent_md5_checksum_enable)")
    return algo


def parse_checksum_file(text: str, image_url: str) -> str:
    """The checksum for *image_url*'s file name in a checksum file.

    Accepts a file holding one bare checksum, ``sha256sum`` output
    (``<hash>  name`` / ``<hash> *name``) and BSD style
    (``SHA256 (name) = <hash>``).
    """
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(lines) == 1 and len(lines[0].split()) == 1:
        return lines[0]
    name = os.path.basename(urllib.parse.urlsplit(image_url).path)
    for line in lines:
        words = line.split()
        if line.endswith((f" {name}", f" *{name}")) and _HEX.match(words[0]):
            return words[0]
        if f"({name})" in line and _HEX.match(words[-1]):
            return words[-1]
    raise errors.ImageDownloadError(name, f"no checksum for {name} in the checksum file")


def expected_checksum(image_info: Mapping[str, Any], md5_enabled: bool,
                      fetch: Callable[[str], bytes]) -> Checksum:
    """The checksum to verify against; *fetch* downloads checksum files."""
    urls = image_info.get("urls") or [""]
    algo = image_info.get("os_hash_algo")
    value = image_info.get("os_hash_value")
    if algo and value:
        algo = str(algo).lower()
        if algo not in hashlib.algorithms_available:
            raise errors.RESTError(f"Unknown checksum algorithm {algo}")
        if algo == "md5" and not md5_enabled:
            raise errors.RESTError("MD5 checksums are disabled (agent_md5_checksum_enable)")
        if is_url(value):
            value = parse_checksum_file(fetch(value).decode(errors="replace"), urls[0])
        return Checksum(algo, value.strip().lower())
    checksum = image_info.get("checksum")
    if not checksum:
        raise errors.RESTError(f"Unable to verify image {image_info.get('id')} "
                               "with available checksums")
    if is_url(checksum):
        checksum = parse_checksum_file(fetch(checksum).decode(errors="replace"), urls[0])
    checksum = checksum.strip().lower()
    return Checksum(algorithm_for(checksum, md5_enabled), checksum)
