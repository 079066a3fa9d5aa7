# SPDX-License-Identifier: Apache-2.0
"""Just enough ELF reading: shared-library needs and kernel-module .modinfo."""

from __future__ import annotations

import lzma
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"\x7fELF"
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 0, 1, 5, 15, 29


@dataclass(frozen=True)
class Dynamic:
    """What the dynamic loader needs to run one ELF file."""

    needed: tuple[str, ...]
    runpath: tuple[str, ...]
    interpreter: str | None


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def parse_dynamic(data: bytes) -> Dynamic | None:
    """DT_NEEDED, DT_RUNPATH/DT_RPATH and PT_INTERP of a 64-bit little-endian ELF.

    Returns None for files that are not such an ELF or are statically linked.
    """
    if data[:4] != MAGIC or data[4] != 2 or data[5] != 1:
        return None
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads: list[tuple[int, int, int]] = []
    dynamic = interp = None
    for i in range(phnum):
        p_type, _flags, off, vaddr, _paddr, filesz, _memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == PT_LOAD:
            loads.append((vaddr, off, filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (off, filesz)
        elif p_type == PT_INTERP:
            interp = data[off:off + filesz].rstrip(b"\0").decode()
    if dynamic is None:
        return None
    entries: list[tuple[int, int]] = []
    off, size = dynamic
    for pos in range(off, off + size, 16):
        tag, val = struct.unpack_from("<qQ", data, pos)
        if tag == DT_NULL:
            break
        entries.append((tag, val))
    strtab_vaddr = next((v for t, v in entries if t == DT_STRTAB), None)
    if strtab_vaddr is None:
        return None
    strtab = next((o + strtab_vaddr - va for va, o, sz in loads
                   if va <= strtab_vaddr < va + sz), strtab_vaddr)

    def string(index: int) -> str:
        start = strtab + index
        return data[start:data.index(b"\0", start)].decode()

    needed = tuple(string(v) for t, v in entries if t == DT_NEEDED)
    runpath: list[str] = []
    for t, v in entries:
        if t in (DT_RUNPATH, DT_RPATH):
            runpath += [p for p in string(v).split(":") if p]
    return Dynamic(needed, tuple(runpath), interp)


def read_dynamic(path: Path) -> Dynamic | None:
    if not is_elf(path):
        return None
    return parse_dynamic(path.read_bytes())


def parse_modinfo(data: bytes) -> dict[str, list[str]]:
    """The ``key=value`` pairs of a kernel module's ``.modinfo`` section."""
    if data[:4] != MAGIC or data[4] != 2:
        return {}
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    names_off = sections[shstrndx][4]
    info: dict[str, list[str]] = {}
    for sh in sections:
        name_start = names_off + sh[0]
        name = data[name_start:data.index(b"\0", name_start)]
        if name != b".modinfo":
            continue
        for item in data[sh[4]:sh[4] + sh[5]].split(b"\0"):
            key, sep, value = item.decode(errors="replace").partition("=")
            if sep:
                info.setdefault(key, []).append(value)
    return info


def read_modinfo(path: Path) -> dict[str, list[str]]:
    data = path.read_bytes()
    if path.suffix == ".xz":
        data = lzma.decompress(data)
    return parse_modinfo(data)


def module_dependencies(info: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Hard (``depends=``) and soft (``softdep=pre:/post:``) dependencies.

    Soft dependencies may name aliases (``crc32c``) rather than modules.
    """
    hard = [d for v in info.get("depends", []) for d in v.split(",") if d]
    soft = [w for v in info.get("softdep", []) for w in v.split() if not w.endswith(":")]
    return hard, soft
