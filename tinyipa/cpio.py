# SPDX-License-Identifier: Apache-2.0
"""The "newc" cpio format the kernel unpacks as initramfs: write and read.

The kernel accepts several archives, each compressed on its own, one after
the other; the builder uses that to reuse compressed parts between builds.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, entry: Entry, mtime: int, size: int) -> bytes:
    name = entry.name.encode() + b"\0"
    fields = (ino, entry.mode, 0, 0, 1, mtime, size, 0, 0,
              entry.rdev[0], entry.rdev[1], len(name), 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name
    return head + _pad(len(head))


def write_entry(out: BinaryIO, ino: int, entry: Entry, mtime: int) -> None:
    out.write(_header(ino, entry, mtime, len(entry.data)))
    out.write(entry.data + _pad(len(entry.data)))


def walk(root: Path) -> list[str]:
    """Every path below *root* (relative, sorted, parents before children)."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        rel = base.relative_to(root)
        if str(rel) != ".":
            found.append(str(rel))
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            found.append(str(rel / name) if str(rel) != "." else name)
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
    return found


def entry_for(root: Path, rel: str) -> Entry:
    """The archive entry for one path below *root* (owner root)."""
    path = root / rel
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return Entry(rel, stat.S_IFLNK | 0o777, os.readlink(path).encode())
    if stat.S_ISDIR(st.st_mode):
        return Entry(rel, stat.S_IFDIR | (st.st_mode & 0o7777))
    return Entry(rel, stat.S_IFREG | (st.st_mode & 0o7777), path.read_bytes())


def archive(entries: list[Entry], *, mtime: int, first_ino: int = 1) -> bytes:
    """One complete newc archive (with trailer) of *entries*."""
    out = io.BytesIO()
    for ino, entry in enumerate(entries, start=first_ino):
        write_entry(out, ino, entry, mtime)
    out.write(_header(0, Entry(TRAILER, 0), 0, 0))
    return out.getvalue()


def read_entries(data: bytes) -> Iterator[Entry]:
    """Entries of uncompressed newc archives, one after the other (as the kernel
    reads them: zero padding between archives is skipped)."""
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            pos += 1
            continue
        if data[pos:pos + 6] != b"070701":
            raise ValueError(f"not a newc cpio header at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        name_start = pos + 110
        name = data[name_start:name_start + namesize - 1].decode()
        pos = name_start + namesize
        pos += -pos % 4
        body = data[pos:pos + size]
        pos += size
        pos += -pos % 4
        if name != TRAILER:
            yield Entry(name, mode, body, (rmaj, rmin))


def decompress_command(path: Path) -> list[str]:
    """The command that writes *path* (the builder's output, in any of its
    compressions: concatenated xz streams, zstd frames or gzip members) to
    stdout as plain cpio."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return ["xz", "-dc", str(path)]
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        return ["zstd", "-dc", str(path)]
    if magic.startswith(b"\x1f\x8b"):
        return ["gzip", "-dc", str(path)]
    return ["cat", str(path)]
