# SPDX-License-Identifier: Apache-2.0
"""The config drive: decode it and put it in a ``config-2`` partition at the disk end.

Ironic sends the config drive as base64 of a gzipped ISO 9660 image, or as a
URL to that. It goes into a partition in the last 64 MiB of the disk, GPT or
MBR as the deployed image has; a partition already holding a ``config-2``
file system is reused. The content is written through the whole-disk device
at the partition's offset, so nothing waits for partition device nodes.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import zlib
from collections.abc import Callable

from ironic_python_agent import errors, run
from ironic_python_agent.partition_table import (  # noqa: F401 - re-exported, old home
    Partition,
    PartitionTable,
    parse_sfdisk_json,
    partition_path,
    read_partition_table,
)

LOG = logging.getLogger(__name__)

MIB = 1 << 20
PARTITION_SIZE = 64 * MIB
MAX_SIZE = 64 * MIB
LABEL = "config-2"
_ALIGN_SECTORS = 2048
_MBR_LIMIT = 2**32  # sectors an MBR entry can address


def volume_label(head: bytes) -> str | None:
    """The label of the ISO 9660 or FAT file system starting with *head*, if any."""
    if head[0x8001:0x8006] == b"CD001":
        return head[0x8028:0x8048].decode("ascii", "replace").strip() or None
    if head[510:512] == b"\x55\xaa" and head[0x52:0x5a] == b"FAT32   ":
        return head[0x47:0x52].decode("ascii", "replace").strip() or None
    if head[510:512] == b"\x55\xaa" and head[0x36:0x39] == b"FAT":
        return head[0x2b:0x36].decode("ascii", "replace").strip() or None
    return None


def decode(configdrive: str, fetch: Callable[[str], bytes] | None = None) -> bytes:
    """The ISO image from Ironic's configdrive value (inline or a URL)."""
    if configdrive.startswith(("http://", "https://")):
        if fetch is None:
            raise errors.DeploymentError("config drive is a URL but no fetcher was given")
        data = fetch(configdrive)
    else:
        try:
            data = base64.b64decode(configdrive, validate=True)
        except (binascii.Error, ValueError):
            LOG.warning("Config drive is not base64; writing it as it is")
            data = configdrive.encode()
    if data[:2] == b"\x1f\x8b":
        dec = zlib.decompressobj(wbits=31)
        out = dec.decompress(data, MAX_SIZE + 1)
        if len(out) > MAX_SIZE or dec.unconsumed_tail:
            raise errors.DeploymentError(f"config drive is larger than {MAX_SIZE // MIB} MiB")
        data = out
    if len(data) > MAX_SIZE:
        raise errors.DeploymentError(f"config drive is larger than {MAX_SIZE // MIB} MiB")
    return data


def _sectors(device: str, sector_size: int) -> int:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END) // sector_size
    finally:
        os.close(fd)


def _read(device: str, offset: int, length: int) -> bytes:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def find_existing(device: str, table: PartitionTable) -> Partition | None:
    for part in table.partitions:
        head = _read(device, part.start * table.sector_size, 0x8800)
        if (volume_label(head) or "").lower() == LABEL or (part.name or "") == LABEL:
            return part
    return None


def plan_new(table: PartitionTable, disk_sectors: int) -> tuple[int, int]:
    """(start, last) sectors for a new config drive partition at the end of the disk."""
    want = PARTITION_SIZE // table.sector_size
    if table.label == "gpt":
        # The backup GPT takes the last 33 sectors; sgdisk may align further.
        last = table.last_lba if table.last_lba is not None else disk_sectors - 34
    else:
        if sum(1 for p in table.partitions if p.number <= 4) >= 4:
            raise errors.DeploymentError(
                "the image's MBR has four primary partitions; no room for a config drive")
        last = min(disk_sectors, _MBR_LIMIT) - 1
    start = (last + 1 - want) // _ALIGN_SECTORS * _ALIGN_SECTORS
    used_end = max((p.start + p.size for p in table.partitions), default=_ALIGN_SECTORS)
    if start < used_end:
        raise errors.DeploymentError(
            f"no room for a {PARTITION_SIZE // MIB} MiB config drive after the image's "
            f"partitions (they end at sector {used_end}, the disk has {disk_sectors})")
    return start, last


def _create(device: str, table: PartitionTable) -> Partition:
    disk_sectors = _sectors(device, table.sector_size)
    if table.label == "gpt":
        # Move the backup header to the real end of the disk first.
        run.run(["sgdisk", "-e", device])
        table = read_partition_table(device) or table
        start, last = plan_new(table, disk_sectors)
        number = max((p.number for p in table.partitions), default=0) + 1
        run.run(["sgdisk", "-n", f"{number}:{start}:{last}", "-t", f"{number}:0700",
                 "-c", f"{number}:{LABEL}", device])  # fmt: skip
    elif table.label == "dos":
        start, last = plan_new(table, disk_sectors)
        run.run(["sfdisk", "--append", "--no-reread", "--no-tell-kernel", "-q", device],
                input=f"start={start}, size={last - start + 1}, type=83\n")
    else:
        raise errors.DeploymentError(f"cannot add a config drive to a {table.label} table")
    new = read_partition_table(device)
    part = next((p for p in (new.partitions if new else ()) if p.start == start), None)
    if part is None:
        raise errors.DeploymentError("the config drive partition did not appear")
    return part


def rescan(device: str) -> None:
    """Make the kernel and udev see a changed partition table (best effort).

    ``partx -a`` adds, from its own reading of the table, partitions the kernel did
    not (a kernel built without a partition-table parser sees none after partprobe);
    it leaves the ones the kernel already has.
    """
    for argv in (["partprobe", device], ["partx", "-a", device], ["udevadm", "settle"]):
        try:
            run.run(argv, check=False, timeout=120)
        except run.CommandError as exc:
            LOG.debug("%s", exc)


def write_configdrive(device: str, content: bytes) -> str:
    """Put *content* in the ``config-2`` partition of *device*; its device path."""
    table = read_partition_table(device)
    if table is None or not table.partitions:
        raise errors.DeploymentError(f"{device} has no partitions; cannot add a config drive")
    part = find_existing(device, table)
    if part is None:
        part = _create(device, table)
        LOG.info("Created config drive partition %d on %s", part.number, device)
    else:
        LOG.info("Reusing config drive partition %d on %s", part.number, device)
    if len(content) > part.size * table.sector_size:
        raise errors.DeploymentError(
            f"config drive ({len(content)} bytes) does not fit partition {part.number}")
    write_at(device, part.start * table.sector_size, content)
    rescan(device)
    return partition_path(device, part.number)


def write_at(device: str, offset: int, content: bytes) -> None:
    """Write *content* at byte *offset* of *device* and flush it."""
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, content, offset)
        os.fsync(fd)
    except OSError as exc:
        raise errors.ImageWriteError(device, exc.errno or "", "", str(exc)) from None
    finally:
        os.close(fd)


def disk_identifier(device: str) -> str:
    """The MBR disk signature as Ironic stores it for whole-disk images (``0x…``)."""
    sig = int.from_bytes(_read(device, 440, 4).ljust(4, bytes(1)), "little")
    return f"0x{sig:08x}"
