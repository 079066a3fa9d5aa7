# SPDX-License-Identifier: Apache-2.0
"""Partition images: lay out the disk as Ironic asks, then fill the root partition.

Ironic sends a partition image's layout in ``image_info`` (``root_mb`` /
``root_gb``, ``swap_mb``, ``ephemeral_mb`` / ``ephemeral_gb``,
``ephemeral_format``, ``preserve_ephemeral``, ``deploy_boot_mode``,
``disk_label``). The table is GPT for UEFI, and MBR (``msdos``) or GPT per
``disk_label`` for BIOS. The partitions come in upstream's order, so that the
ephemeral partition keeps its place across rebuilds:

    ESP (UEFI) | BIOS boot (GPT + BIOS) | ephemeral | swap | config drive | root

Every partition starts on a MiB boundary. The whole plan is computed and
checked against the disk size (:func:`plan`) before anything is written.
With ``preserve_ephemeral`` the existing table must hold the planned
ephemeral partition at the same place; it is then left alone (not reformatted).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ironic_python_agent import configdrive, errors, run
from ironic_python_agent.imagewrite.writers import device_size
from ironic_python_agent.partition_table import PartitionTable, partition_path
from ironic_python_agent.partition_table import read_partition_table

LOG = logging.getLogger(__name__)

MIB = 1 << 20
SECTOR = 512
ALIGN = MIB // SECTOR
ESP_MB = 550  # upstream's [disk_utils]efi_system_partition_size
BIOS_BOOT_MB = 1  # upstream's [disk_utils]bios_boot_partition_size
GPT_TAIL = 34  # the backup GPT (header and entries) at the end of the disk
MBR_SECTORS = 2**32

GPT_TYPES = {
    "efi system partition": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "bios boot partition": "21686148-6449-6E6F-744E-656564454649",
    "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
}
GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
MBR_TYPES = {"swap": "82"}
MBR_LINUX = "83"
NAMES = {"efi system partition": "efi-part", "bios boot partition": "bios-boot",
         "ephemeral": "ephemeral0", "swap": "swap1", "configdrive": configdrive.LABEL,
         "root": "root"}
EPHEMERAL_FORMATS = ("ext2", "ext3", "ext4", "vfat")


@dataclass(frozen=True)
class Layout:
    """What Ironic asked for, checked."""

    root_mb: int
    swap_mb: int = 0
    ephemeral_mb: int = 0
    ephemeral_format: str | None = None
    preserve_ephemeral: bool = False
    boot_mode: str = "bios"  # "bios" or "uefi"
    label: str = "dos"  # "gpt" or "dos" (sfdisk's name for msdos)


@dataclass(frozen=True)
class PlannedPartition:
    role: str  # "root", "swap", "ephemeral", "configdrive", "efi system partition", ...
    number: int
    start: int  # sectors
    size: int  # sectors


def _int(image_info: Mapping[str, Any], key: str) -> int | None:
    value = image_info.get(key)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise errors.InvalidCommandParamsError(
            f"image_info.{key} must be an integer, not {value!r}") from None
    if number < 0:
        raise errors.InvalidCommandParamsError(f"image_info.{key} must not be negative")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y")
    return bool(value)


def layout_from_image_info(image_info: Mapping[str, Any],
                           firmware_uefi: bool | None = None) -> Layout:
    """The :class:`Layout` from Ironic's ``image_info``; a bad one is a 400.

    *firmware_uefi* is the ramdisk's own boot mode, used (as upstream) when
    Ironic sends no ``deploy_boot_mode``; None reads ``/sys/firmware/efi``.
    """
    root_mb = _int(image_info, "root_mb")
    if root_mb is None:
        root_gb = _int(image_info, "root_gb")
        root_mb = None if root_gb is None else root_gb * 1024
    if not root_mb:
        raise errors.InvalidCommandParamsError(
            "a partition image needs image_info.root_mb or root_gb (above 0)")
    ephemeral_mb = _int(image_info, "ephemeral_mb")
    if ephemeral_mb is None:
        ephemeral_mb = (_int(image_info, "ephemeral_gb") or 0) * 1024
    fmt = image_info.get("ephemeral_format") or None
    if ephemeral_mb:
        fmt = str(fmt or "ext4")  # Ironic's [pxe]default_ephemeral_format
        if fmt not in EPHEMERAL_FORMATS:
            raise errors.InvalidCommandParamsError(
                f"image_info.ephemeral_format {fmt!r} is not one of "
                f"{', '.join(EPHEMERAL_FORMATS)}")
    mode = str(image_info.get("deploy_boot_mode") or "").lower()
    if mode not in ("bios", "uefi"):
        if firmware_uefi is None:
            firmware_uefi = os.path.isdir("/sys/firmware/efi")
        mode = "uefi" if firmware_uefi else "bios"
    disk_label = str(image_info.get("disk_label") or "msdos").lower()
    if disk_label not in ("msdos", "gpt"):
        raise errors.InvalidCommandParamsError(
            f"image_info.disk_label {disk_label!r} is neither msdos nor gpt")
    label = "gpt" if mode == "uefi" or disk_label == "gpt" else "dos"
    return Layout(root_mb=root_mb, swap_mb=_int(image_info, "swap_mb") or 0,
                  ephemeral_mb=ephemeral_mb, ephemeral_format=fmt if ephemeral_mb else None,
                  preserve_ephemeral=_bool(image_info.get("preserve_ephemeral")),
                  boot_mode=mode, label=label)


def plan(layout: Layout, disk_bytes: int, configdrive_bytes: int = 0) -> list[PlannedPartition]:
    """The partitions of *layout* on a disk of *disk_bytes*; raises when they do not fit."""
    wanted: list[tuple[str, int]] = []
    if layout.boot_mode == "uefi":
        wanted.append(("efi system partition", ESP_MB))
    elif layout.label == "gpt":
        wanted.append(("bios boot partition", BIOS_BOOT_MB))
    if layout.ephemeral_mb:
        wanted.append(("ephemeral", layout.ephemeral_mb))
    if layout.swap_mb:
        wanted.append(("swap", layout.swap_mb))
    if configdrive_bytes:
        wanted.append(("configdrive", max(1, math.ceil(configdrive_bytes / MIB))))
    wanted.append(("root", layout.root_mb))
    disk_sectors = disk_bytes // SECTOR
    if layout.label == "gpt":
        last = disk_sectors - GPT_TAIL - 1
    else:
        last = min(disk_sectors, MBR_SECTORS) - 1
    parts: list[PlannedPartition] = []
    start = ALIGN
    for number, (role, mb) in enumerate(wanted, 1):
        size = mb * ALIGN
        parts.append(PlannedPartition(role, number, start, size))
        start += size
    end = start - 1
    if end > last:
        asked = ", ".join(f"{role} {mb} MiB" for role, mb in wanted)
        raise errors.InvalidCommandParamsError(
            f"the partitions asked for ({asked}; {math.ceil(start * SECTOR / MIB)} MiB with "
            f"the table) do not fit the {disk_bytes // MIB} MiB disk")
    return parts


def sfdisk_script(label: str, parts: list[PlannedPartition]) -> str:
    """The ``sfdisk`` input creating *parts* under a new *label* table."""
    lines = [f"label: {label}", "unit: sectors", ""]
    for p in parts:
        if label == "gpt":
            kind = GPT_TYPES.get(p.role, GPT_LINUX)
            lines.append(f'start={p.start}, size={p.size}, type={kind}, name="{NAMES[p.role]}"')
        else:
            kind = MBR_TYPES.get(p.role, MBR_LINUX)
            boot = ", bootable" if p.role == "root" else ""
            lines.append(f"start={p.start}, size={p.size}, type={kind}{boot}")
    return "\n".join(lines) + "\n"


def _matches(table: PartitionTable | None, part: PlannedPartition) -> bool:
    if table is None:
        return False
    have = table.by_number(part.number)
    return have is not None and (have.start, have.size) == (part.start, part.size)


def make_partitions(device: str, layout: Layout,
                    configdrive_bytes: int = 0) -> dict[str, str]:
    """Write the partition table of *layout* onto *device*; role -> partition path."""
    parts = plan(layout, device_size(device), configdrive_bytes)
    if layout.preserve_ephemeral and layout.ephemeral_mb:
        eph = next(p for p in parts if p.role == "ephemeral")
        if not _matches(read_partition_table(device), eph):
            raise errors.DeploymentError(
                f"preserve_ephemeral: {device} has no ephemeral partition {eph.number} at "
                f"sector {eph.start} of {eph.size} sectors; the layout changed, so it "
                "cannot be kept")
    # Forget the old partitions (the kernel would keep stale ones), then replace the
    # table; the data inside the partitions is not touched.
    run.run(["partx", "-d", device], check=False, timeout=60)
    argv = ["sfdisk", "--no-reread", "--no-tell-kernel", "-q", device]
    if not layout.preserve_ephemeral:
        argv[1:1] = ["--wipe", "always"]
    run.run(argv, input=sfdisk_script(layout.label, parts), timeout=120)
    configdrive.rescan(device)
    # Partitions the kernel still had (in use when ``partx -d`` ran) get the new sizes.
    run.run(["partx", "-u", device], check=False, timeout=60)
    paths = {p.role: partition_path(device, p.number) for p in parts}
    for role, path in paths.items():
        if not os.path.exists(path):
            raise errors.DeploymentError(f"the {role} partition {path} did not appear")
    LOG.info("Partitioned %s (%s, %s): %s", device, layout.label, layout.boot_mode,
             ", ".join(f"{r}={p}" for r, p in paths.items()))
    return paths


def block_uuid(path: str) -> str | None:
    """The file system UUID of *path*, else its partition UUID (as upstream)."""
    for tag in ("UUID", "PARTUUID"):
        out = run.run(["blkid", "-p", "-o", "value", "-s", tag, path], check=False,
                      timeout=60).stdout.strip()
        if out:
            return out
    return None


def _mkfs_ephemeral(fmt: str, path: str) -> None:
    label = NAMES["ephemeral"]
    if fmt == "vfat":
        run.run(["mkfs.vfat", "-n", label.upper(), path], timeout=600)
    elif fmt == "ext2":  # each program literal: tests/unit/test_image_programs.py finds them
        run.run(["mkfs.ext2", "-F", "-L", label, path], timeout=600)
    elif fmt == "ext3":
        run.run(["mkfs.ext3", "-F", "-L", label, path], timeout=600)
    else:
        run.run(["mkfs.ext4", "-F", "-L", label, path], timeout=600)


def deploy(device: str, layout: Layout, write_root: Callable[[str], Any],
           configdrive_content: bytes | None = None) -> dict[str, Any]:
    """Partition *device*, fill it, and return what ``get_partition_uuids`` answers.

    *write_root* streams the image onto the root partition path it is given
    (the whole-disk pipeline, so any format); it raises on any failure.
    """
    cd_size = len(configdrive_content) if configdrive_content else 0
    paths = make_partitions(device, layout, cd_size)
    esp = paths.get("efi system partition")
    if esp is not None:
        run.run(["mkfs.vfat", "-F", "32", "-n", "EFI-PART", esp], timeout=300)
    if configdrive_content:
        configdrive.write_at(paths["configdrive"], 0, configdrive_content)
    write_root(paths["root"])
    if "swap" in paths:
        run.run(["mkswap", "-L", NAMES["swap"], paths["swap"]], timeout=300)
    if "ephemeral" in paths and not layout.preserve_ephemeral:
        _mkfs_ephemeral(layout.ephemeral_format or "ext4", paths["ephemeral"])
    configdrive.rescan(device)
    uuids: dict[str, Any] = {
        "root uuid": block_uuid(paths["root"]),
        "efi system partition uuid": block_uuid(esp) if esp else None,
        # PReP partitions are for ppc64 only (deprecated upstream); never made here.
        "PReP Boot partition uuid": None,
    }
    if not uuids["root uuid"]:
        raise errors.DeploymentError(
            f"the root partition {paths['root']} has neither a file system UUID nor a "
            "partition UUID after writing the image")
    return {"partitions": paths, **uuids}
