# SPDX-License-Identifier: Apache-2.0
"""Reading what the agent's software RAID left on a disk image file, from the host:
md 1.x superblocks and GPT entries, parsed from the bytes (no md driver needed)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

MD_MAGIC = 0xA92B4EFC


def superblock(disk: Path, part_start: int) -> dict[str, Any] | None:
    """The md 1.2 superblock (4 KiB into the partition at *part_start* bytes), or None."""
    with open(disk, "rb") as f:
        f.seek(part_start + 4096)
        raw = f.read(256)
    magic, major = struct.unpack_from("<II", raw, 0)
    if magic != MD_MAGIC:
        return None
    level, _layout, size, _chunk, raid_disks = struct.unpack_from("<iIQII", raw, 72)
    data_offset, data_size, super_offset = struct.unpack_from("<QQQ", raw, 128)
    return {"major": major, "name": raw[32:64].rstrip(b"\0").decode(), "level": level,
            "raid_disks": raid_disks, "super_offset": super_offset,
            "data_offset": data_offset, "size": size}


def gpt_entries(disk: Path) -> list[tuple[int, int, str]]:
    """(start byte, end byte, name) of the GPT partitions, [] without a GPT."""
    with open(disk, "rb") as f:
        f.seek(512)
        header = f.read(92)
        if header[:8] != b"EFI PART":
            return []
        entries_lba, count, size = struct.unpack_from("<QII", header, 72)
        f.seek(entries_lba * 512)
        table = f.read(count * size)
    found = []
    for n in range(count):
        entry = table[n * size:(n + 1) * size]
        first, last = struct.unpack_from("<QQ", entry, 32)
        if first:
            found.append((first * 512, (last + 1) * 512,
                          entry[56:128].decode("utf-16-le").rstrip("\0")))
    return found


def mbr_entries(disk: Path) -> list[tuple[int, int, int]]:
    """(start byte, end byte, type) of the primary MBR partitions, [] without an MBR."""
    with open(disk, "rb") as f:
        sector = f.read(512)
    if sector[510:512] != b"\x55\xaa":
        return []
    found = []
    for n in range(4):
        entry = sector[446 + 16 * n:446 + 16 * (n + 1)]
        ptype = entry[4]
        start, count = struct.unpack_from("<II", entry, 8)
        if ptype:
            found.append((start * 512, (start + count) * 512, ptype))
    return found
