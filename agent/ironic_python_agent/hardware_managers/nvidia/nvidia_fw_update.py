# SPDX-License-Identifier: Apache-2.0
"""NVIDIA (Mellanox) NIC firmware images and settings, under upstream's module name.

Upstream's Mellanox manager (``hardware_managers/mlnx.py``) calls
:func:`update_nvidia_nic_firmware_image` and
:func:`update_nvidia_nic_firmware_settings` from its clean steps of those
names. Both take upstream's JSON shapes::

    images:   [{"url": "http://.../fw.bin" | "file:///...", "checksum": "<hex>",
                "checksumType": "sha256" | "sha512", "componentFlavor": "<PSID>",
                "version": "20.35.1012"}, ...]
    settings: [{"deviceID": "101b", "globalConfig": {"SRIOV_EN": True, ...},
                "function0Config": {...}, "function1Config": {...}}, ...]

The NICs are the network-class PCI functions of vendor 15b3 (``lspci -Dn``);
each card (its functions share a PCI address but for the function number) is
handled once. An image goes to the cards whose PSID is its componentFlavor,
after its checksum, PSID and version were checked (``mstflint -i FILE query``),
and only when the card runs another version; a card with a burnt image still
waiting for a reset is reset first (``mstfwreset``). Settings are checked
against what mstconfig knows (``mstconfig i``) and what the firmware offers
(``mstconfig q``), all before any is written (``mstconfig set``). The tools
come from Debian's ``mstflint`` package, which no image carries by default
(doc/hardware-managers.rst says how to add it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from ironic_python_agent import config, run
from ironic_python_agent.errors import RESTError

LOG = logging.getLogger(__name__)

VENDOR_ID = "15b3"
TOOLS = ("mstflint", "mstconfig", "mstfwreset", "lspci")
SUPPORTED_CHECKSUM_ALGORITHMS = ("sha256", "sha512")
IMAGE_KEYS = ("url", "checksum", "checksumType", "componentFlavor", "version")

# mstflint query lines; "FW Version(Running)" appears while a burnt image waits for a reset.
_QUERY_FIELDS = {
    "fw_ver": re.compile(r"FW Version:\s*(\d+\.\d+\.\d+)"),
    "running_fw_ver": re.compile(r"FW Version\(Running\):\s*(\d+\.\d+\.\d+)"),
    "psid": re.compile(r"PSID:\s*(\w+)"),
}
# NAME[3] or NAME[0..3] in a setting; Array[0..7] as mstconfig shows an array's value.
_ARRAY_PARAM = re.compile(r"(?P<name>\w+)\[(?:(?P<index>\d+)|(?P<first>\d+)\.\.(?P<last>\d+))\]$")
_ARRAY_VALUE = re.compile(r"Array\[(?P<first>\d+)\.\.(?P<last>\d+)\]")


# --- errors: upstream's names -----------------------------------------------------------

class InvalidFirmwareImageConfig(RESTError):
    message = "Invalid firmware image config"


class InvalidFirmwareSettingsConfig(RESTError):
    message = "Invalid firmware settings config"


class MismatchChecksumError(RESTError):
    message = "Mismatch Checksum for the firmware image"


class MismatchComponentFlavor(RESTError):
    message = "Mismatch Component Flavor"


class MismatchFWVersion(RESTError):
    message = "Mismatch Firmware version"


class DuplicateComponentFlavor(RESTError):
    message = "Duplicate Component Flavor for the firmware image"


class DuplicateDeviceID(RESTError):
    message = "Duplicate Device ID for firmware settings"


class UnSupportedConfigByMstflintPackage(RESTError):
    message = "Unsupported config by mstflint package"


class UnSupportedConfigByFW(RESTError):
    message = "Unsupported config by Firmware"


class InvalidURLScheme(RESTError):
    message = "Invalid URL Scheme"


class InvalidChecksumAlgorithm(RESTError):
    message = "Invalid checksum algorithm"


class FirmwareToolsMissing(RESTError):
    """Ours: upstream fails on the first missing tool with an OSError."""

    message = "NVIDIA NIC firmware tools are not in this ramdisk"


# --- parsing tool output (pure) -----------------------------------------------------------

@dataclass(frozen=True)
class Nic:
    """One PCI function of an NVIDIA NIC; ``card`` is its address without the function."""

    pci: str
    device_id: str

    @property
    def card(self) -> str:
        return self.pci[:-1]

    @property
    def is_first_function(self) -> bool:
        return self.pci.endswith("0")


def parse_lspci(text: str) -> list[Nic]:
    """The network-class (02xx) functions of vendor 15b3 in ``lspci -Dn -d 15b3:`` output."""
    nics = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or not words[2].startswith(f"{VENDOR_ID}:"):
            continue
        if re.fullmatch(r"02[0-9a-f]{2}:?", words[1].lower()):
            nics.append(Nic(words[0], words[2].split(":", 1)[1].lower()))
    return nics


def parse_mstflint_query(text: str) -> dict[str, str]:
    """``fw_ver``, ``psid`` and, while an image waits for a reset, ``running_fw_ver``."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        for key, pattern in _QUERY_FIELDS.items():
            found = pattern.match(line.strip())
            if found:
                info[key] = found.group(1)
    return info


def parse_mstconfig_query(text: str) -> dict[str, str]:
    """``{NAME: value}`` of the lines after ``Configurations:`` in ``mstconfig q``."""
    values: dict[str, str] = {}
    seen = False
    for line in text.splitlines():
        if "Configurations:" in line:
            seen = True
        elif seen and line.split():
            name, _, value = line.strip().partition(" ")
            values[name] = value.strip()
    return values


def parse_mstconfig_info(text: str) -> set[str]:
    """The parameter names ``mstconfig i`` lists (``NAME=<...>`` lines)."""
    return set(re.findall(r"^\s+([A-Z][A-Z0-9_]*)=", text, re.M))


def known_to_tool(name: str, tool_params: set[str]) -> bool:
    array = _ARRAY_PARAM.match(name)
    return (array.group("name") if array else name) in tool_params


def offered_by_firmware(name: str, current: Mapping[str, str]) -> bool:
    """Whether the firmware has *name*; an array element's index must be in range."""
    array = _ARRAY_PARAM.match(name)
    if not array:
        return name in current
    value = _ARRAY_VALUE.match(current.get(array.group("name"), ""))
    if not value:
        return False
    span = range(int(value.group("first")), int(value.group("last")) + 1)
    if array.group("index") is not None:
        return int(array.group("index")) in span
    first, last = int(array.group("first")), int(array.group("last"))
    return first in span and last in span and first < last


def settings_to_set(params: Mapping[str, Any], current: Mapping[str, str]) -> list[str]:
    """``NAME=value`` for each setting that differs from the current one, as upstream
    compares: numbers as numbers, other values by name (``SRIOV_EN`` ``True`` is
    already set when mstconfig shows ``True(1)``); array elements are always set."""
    changes = []
    for name, value in params.items():
        now = current.get(name)
        if _ARRAY_PARAM.match(name):
            same = False
        else:
            try:
                same = now is not None and int(value) == int(now)
            except (TypeError, ValueError):
                same = str(value).lower() in str(now).lower()
        if same:
            LOG.info("%s is already %s, not changing it", name, value)
        else:
            changes.append(f"{name}={value}")
    return changes


# --- validation of the arguments (pure) -------------------------------------------------

def _checksum_allowed(algorithm: Any, md5_enabled: bool) -> bool:
    return algorithm in SUPPORTED_CHECKSUM_ALGORITHMS or (algorithm == "md5" and md5_enabled)


def validate_images(images: Any, md5_enabled: bool) -> list[dict[str, Any]]:
    if not isinstance(images, list):
        raise InvalidFirmwareImageConfig(f"The images must be a list of images, {images!r}")
    for image in images:
        if not isinstance(image, dict) or not all(image.get(k) for k in IMAGE_KEYS):
            raise InvalidFirmwareImageConfig(
                f"Invalid parameters for image {image!r}, please provide the following "
                f"parameters {', '.join(IMAGE_KEYS)}")
        if not _checksum_allowed(image["checksumType"], md5_enabled):
            raise InvalidFirmwareImageConfig(
                f"Checksum algorithm {image['checksumType']} is not supported for image "
                f"{image['url']}. Supported algorithms are: "
                f"{', '.join(SUPPORTED_CHECKSUM_ALGORITHMS)}")
    return images


def images_by_psid(images: Iterable[dict[str, Any]], psids: set[str]) -> dict[str, dict[str, Any]]:
    """The images meant for a PSID present here; two for the same PSID is an error."""
    chosen: dict[str, dict[str, Any]] = {}
    for image in images:
        psid = image["componentFlavor"]
        if psid not in psids:
            LOG.debug("No NIC here has PSID %s, skipping its image", psid)
        elif psid in chosen:
            raise DuplicateComponentFlavor(f"Duplicate componentFlavor {psid}")
        else:
            chosen[psid] = image
    return chosen


def settings_by_device_id(settings: Any, device_ids: set[str]) -> dict[str, dict[str, Any]]:
    """The settings for device IDs present here (compared without case: lspci prints
    ``101b``, upstream's examples write ``101B``)."""
    if not isinstance(settings, list):
        raise InvalidFirmwareSettingsConfig(
            f"The settings must be a list of settings, {settings!r}")
    chosen: dict[str, dict[str, Any]] = {}
    for setting in settings:
        device_id = setting.get("deviceID") if isinstance(setting, dict) else None
        if not device_id:
            raise InvalidFirmwareSettingsConfig(
                f"There is no deviceID provided for the settings {setting!r}")
        key = str(device_id).lower()
        if key not in device_ids:
            LOG.debug("There are no devices with ID %s here", device_id)
        elif key in chosen:
            raise DuplicateDeviceID(f"duplicate settings for device ID {device_id}")
        else:
            chosen[key] = setting
    return chosen


# --- the tools ----------------------------------------------------------------------------

def check_prereq() -> None:
    """Every tool the updates run is on PATH, or one error naming the missing ones."""
    missing = [tool for tool in TOOLS if run.which(tool) is None]
    if missing:
        raise FirmwareToolsMissing(
            f"{', '.join(missing)} not found; they come with the Debian packages mstflint "
            "and pciutils (see doc/hardware-managers.rst)")


def discover() -> list[Nic]:
    return parse_lspci(run.run(["lspci", "-Dn", "-d", f"{VENDOR_ID}:"]).stdout)


def query_device(pci: str) -> dict[str, str]:
    return parse_mstflint_query(run.run(["mstflint", "-d", pci, "-qq", "query"]).stdout)


def reset_device(pci: str) -> None:
    LOG.info("Device %s: firmware reset", pci)
    run.run(["mstfwreset", "-d", pci, "-y", "--sync", "1", "reset"])


# --- images -------------------------------------------------------------------------------

def fetch_image(url: str, dest_dir: str, timeout: float) -> str:
    """The image at *url* (http, https or file) as a file in *dest_dir*."""
    parts = urllib.parse.urlsplit(url)
    dest = os.path.join(dest_dir, os.path.basename(parts.path) or "firmware.bin")
    if parts.scheme == "file":
        # Upstream moves the file; a copy leaves the operator's file where it was.
        shutil.copyfile(urllib.parse.unquote(parts.path), dest)
    elif parts.scheme in ("http", "https"):
        LOG.info("Downloading firmware image %s", url)
        with requests.get(url, stream=True, timeout=timeout) as response:
            response.raise_for_status()
            with open(dest, "wb") as f:
                for chunk in response.iter_content(1 << 20):
                    f.write(chunk)
    else:
        raise InvalidURLScheme(
            f"Firmware URL scheme {parts.scheme} is not supported. The supported "
            "firmware URL schemes are (http://, https://, file://)")
    return dest


def check_image(path: str, image: Mapping[str, Any], md5_enabled: bool) -> None:
    """The file's checksum, PSID and version are the ones *image* states."""
    algorithm = image["checksumType"]
    if not _checksum_allowed(algorithm, md5_enabled):
        raise InvalidChecksumAlgorithm(
            f"Checksum algorithm {algorithm} is not supported. Supported algorithms "
            f"are: {', '.join(SUPPORTED_CHECKSUM_ALGORITHMS)}")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != str(image["checksum"]).lower():
        raise MismatchChecksumError(
            f"Mismatch provided checksum {image['checksum']} for image {image['url']}")
    info = parse_mstflint_query(run.run(["mstflint", "-i", path, "query"]).stdout)
    if info.get("psid") != image["componentFlavor"]:
        raise MismatchComponentFlavor(
            f"The provided psid {image['componentFlavor']} does not match the image "
            f"psid {info.get('psid')}")
    if info.get("fw_ver") != image["version"]:
        raise MismatchFWVersion(
            f"The provided firmware version {image['version']} does not match image "
            f"firmware version {info.get('fw_ver')}")


def update_nvidia_nic_firmware_image(images: Any) -> None:
    """Burn each image on the cards whose PSID it names, where the version differs."""
    conf = config.current()
    md5_enabled = bool(conf.md5_enabled)
    validate_images(images, md5_enabled)
    check_prereq()
    nics = discover()
    psid_of = {nic.card: query_device(nic.pci).get("psid") for nic in nics}
    wanted = images_by_psid(images, {p for p in psid_of.values() if p})
    done: set[str] = set()
    for nic in nics:
        image = wanted.get(psid_of.get(nic.card) or "")
        if image is None or nic.card in done:
            continue
        done.add(nic.card)
        with tempfile.TemporaryDirectory(prefix="nvidia_firmware") as tmp:
            path = fetch_image(image["url"], tmp,
                               float(conf.image_download_connection_timeout))
            check_image(path, image, md5_enabled)
            device = query_device(nic.pci)
            LOG.info("Device %s runs firmware %s, the image has %s", nic.pci,
                     device.get("fw_ver"), image["version"])
            if device.get("fw_ver") == image["version"]:
                LOG.info("Device %s: no firmware update needed", nic.pci)
                continue
            if "running_fw_ver" in device:
                reset_device(nic.pci)  # a pending image must be activated before burning
            LOG.info("Device %s: burning %s", nic.pci, image["url"])
            run.run(["mstflint", "-d", nic.pci, "-i", path, "-y", "burn"])


# --- settings -----------------------------------------------------------------------------

def update_nvidia_nic_firmware_settings(settings: Any) -> None:
    """Apply each card's ``globalConfig`` and per-function ``function0Config`` /
    ``function1Config`` with mstconfig; cards with a burnt image waiting are reset first."""
    settings_by_device_id(settings, set())  # the shape, before any tool runs
    check_prereq()
    nics = discover()
    chosen = settings_by_device_id(settings, {nic.device_id for nic in nics})
    plans: list[tuple[Nic, dict[str, Any]]] = []
    to_reset: list[Nic] = []
    seen: set[str] = set()
    for nic in nics:
        setting = chosen.get(nic.device_id)
        if setting is None:
            continue
        params: dict[str, Any] = {}
        if nic.card not in seen:
            seen.add(nic.card)
            params.update(setting.get("globalConfig") or {})
            device = query_device(nic.pci)
            if device.get("running_fw_ver", device.get("fw_ver")) != device.get("fw_ver"):
                to_reset.append(nic)
        params.update(setting.get("function0Config" if nic.is_first_function
                                  else "function1Config") or {})
        if params:
            plans.append((nic, params))
    for nic in to_reset:
        try:
            reset_device(nic.pci)
        except run.CommandError as exc:  # upstream logs this one and goes on
            LOG.error("Failed to reset device %s: %s", nic.pci, exc)
    current: dict[str, dict[str, str]] = {}
    for nic, params in plans:
        tool_params = parse_mstconfig_info(run.run(["mstconfig", "-d", nic.pci, "i"]).stdout)
        current[nic.pci] = parse_mstconfig_query(
            run.run(["mstconfig", "-d", nic.pci, "q"]).stdout)
        for name in params:
            if not known_to_tool(name, tool_params):
                raise UnSupportedConfigByMstflintPackage(
                    f"Configuration {name} is not supported by mstconfig, please update "
                    "to the latest mstflint package.")
            if not offered_by_firmware(name, current[nic.pci]):
                raise UnSupportedConfigByFW(
                    f"Configuration {name} for device {nic.pci} is not supported with "
                    "the current firmware")
    for nic, params in plans:
        changes = settings_to_set(params, current[nic.pci])
        if changes:
            LOG.info("Device %s: setting %s", nic.pci, " ".join(changes))
            run.run(["mstconfig", "-d", nic.pci, "-y", "set", *changes])
