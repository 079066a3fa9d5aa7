# SPDX-License-Identifier: Apache-2.0
"""UEFI boot entries for a deployed whole-disk image.

Find the EFI system partition on the disk, look for boot loaders on it
(shim's ``BOOT<ARCH>.CSV`` files first, then the removable-media path
``EFI/BOOT/BOOT<ARCH>.EFI``) and add an ``efibootmgr`` entry for each one not
already in NVRAM. The ESP is read in place with mtools, so neither a mount
nor the vfat module is needed. The parsing parts are pure; :func:`manage_uefi`
runs the tools.
"""

from __future__ import annotations

import logging
import platform
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ironic_python_agent import errors, partition_table, run

LOG = logging.getLogger(__name__)

ESP_GPT_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ESP_MBR_TYPE = "ef"
_ENTRY = re.compile(r"^Boot([0-9A-Fa-f]{4})\*?\s+(.*?)\t(.*)$")
# Without a tab (older efibootmgr), the device path starts at a known node type.
_ENTRY_SPACED = re.compile(
    r"^Boot([0-9A-Fa-f]{4})\*?\s+(.*?)\s+"
    r"((?:BBS|HD|FvFile|FvVol|PciRoot|VenMsg|VenHw|UsbClass)\(.*)$")
_FILE = re.compile(r"File\(([^)]*)\)")
_MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}


@dataclass(frozen=True)
class Loader:
    label: str
    path: str  # as UEFI writes it: \EFI\vendor\shimx64.efi


@dataclass(frozen=True)
class BootEntry:
    number: str
    label: str
    path: str | None
    device_path: str = ""  # the whole UEFI device path as efibootmgr -v shows it


def efi_arch(machine: str | None = None) -> str:
    machine = machine or platform.machine()
    return {"x86_64": "x64", "aarch64": "aa64", "i686": "ia32", "riscv64": "riscv64"}.get(
        machine, machine)


def find_esp(table: partition_table.PartitionTable,
             uuid: str | None = None) -> partition_table.Partition | None:
    for part in table.partitions:
        if uuid and part.uuid and part.uuid.lower() == uuid.lower():
            return part
    for part in table.partitions:
        if part.type.upper() == ESP_GPT_TYPE or part.type.lower() == ESP_MBR_TYPE:
            return part
    return None


def parse_boot_csv(text: str) -> list[tuple[str, str]]:
    """``(loader file, label)`` pairs of a shim ``BOOT<ARCH>.CSV``."""
    pairs = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.lstrip("\ufeff").split(",")]
        if len(fields) >= 2 and fields[0] and fields[1]:
            pairs.append((fields[0], fields[1]))
    return pairs


def find_loaders(files: Iterable[str], read: Callable[[str], bytes],
                 arch: str | None = None) -> list[Loader]:
    """The boot loaders among an ESP's *files* (``/EFI/...`` paths), in entry order.

    *read* returns a file's content; FAT names match case-insensitively.
    """
    arch = (arch or efi_arch()).upper()
    by_lower = {f.lower().rstrip("/"): f.rstrip("/") for f in files}
    found: list[Loader] = []
    vendors = sorted({f.split("/")[2] for f in by_lower.values()
                      if f.count("/") >= 3 and f.lower().startswith("/efi/")})
    for vendor in vendors:
        if vendor.lower() == "boot":
            continue
        csv = by_lower.get(f"/efi/{vendor}/boot{arch}.csv".lower())
        if csv is None:
            continue
        raw = read(csv)
        text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode()
        for loader, label in parse_boot_csv(text):
            actual = by_lower.get(f"/efi/{vendor}/{loader}".lower())
            if actual:
                found.append(Loader(label, actual.replace("/", "\\")))
    if found:
        return found
    fallback = by_lower.get(f"/efi/boot/boot{arch}.efi".lower())
    return [Loader("Boot", fallback.replace("/", "\\"))] if fallback else []


def esp_image(device: str, table: partition_table.PartitionTable,
              esp: partition_table.Partition) -> str:
    """What mtools' ``-i`` takes for partition *esp* of *device*."""
    return _mtools_image(device, table, esp)


def _mtools_image(device: str, table: partition_table.PartitionTable,
                  esp: partition_table.Partition) -> str:
    # mtools reads the FAT file system in place: no mount, no vfat module needed.
    return f"{device}@@{esp.start * table.sector_size}"


def list_esp(image: str) -> list[str]:
    done = run.run(["mdir", "-/", "-b", "-i", image, "::/"], env=_MTOOLS_ENV, check=False)
    if done.returncode and 'File "::/" not found' in done.stderr:
        return []  # an empty file system (a fresh ESP)
    if done.returncode:
        raise run.CommandError(done.argv, done.returncode, done.stdout, done.stderr)
    out = done.stdout
    return [line.strip()[2:] for line in out.splitlines() if line.strip().startswith("::/")]


def read_esp_file(image: str, path: str) -> bytes:
    done = run.run(["mcopy", "-n", "-i", image, f"::{path}", "-"], env=_MTOOLS_ENV,
                   binary=True)
    return done.stdout  # type: ignore[return-value]


def write_esp_files(image: str, files: Mapping[str, bytes]) -> None:
    """Write *files* (ESP path such as ``/EFI/debian/grubx64.efi`` → content) onto the
    FAT file system *image*, making the directories that are missing."""
    have = {p.rstrip("/").lower() for p in list_esp(image)}
    wanted = sorted({"/".join(path.split("/")[:n]) for path in files
                     for n in range(2, path.count("/") + 1)}, key=lambda d: (d.count("/"), d))
    for directory in wanted:
        if directory.lower() not in have:
            run.run(["mmd", "-i", image, f"::{directory}"], env=_MTOOLS_ENV)
            have.add(directory.lower())
    for path, data in files.items():
        run.run(["mcopy", "-o", "-i", image, "-", f"::{path}"], env=_MTOOLS_ENV, input=data,
                binary=True)


def copy_esp(source: str, dest: str) -> int:
    """Copy every file of the FAT file system *source* onto *dest* (mtools images);
    the number of files copied."""
    files = [path for path in list_esp(source) if not path.endswith("/")]
    write_esp_files(dest, {path: read_esp_file(source, path) for path in files})
    return len(files)


def mtools_failure(exc: run.CommandError) -> str:
    """What an mtools failure says, all of it: its last line is always the same
    ``Cannot initialize '::'``, the cause is on the lines before."""
    lines = [line.strip() for line in exc.stderr.splitlines() if line.strip()]
    what = "not found" if exc.returncode is None else f"exit code {exc.returncode}"
    text = f"{shlex.join(exc.argv)}: {what}" + (f": {'; '.join(lines)}" if lines else "")
    if "codepage" in exc.stderr.lower() or "code page" in exc.stderr.lower():
        # mtools converts FAT short names through iconv (code page 850 by default)
        text += ("; mtools cannot convert FAT names: glibc's IBM850 iconv module "
                 "(gconv) is missing from this ramdisk")
    return text


def parse_efibootmgr(text: str) -> list[BootEntry]:
    """Entries from ``efibootmgr -v`` output."""
    entries = []
    for line in text.splitlines():
        m = _ENTRY.match(line) or _ENTRY_SPACED.match(line)
        if m:
            f = _FILE.search(m.group(3))
            entries.append(BootEntry(m.group(1), m.group(2).strip(),
                                     f.group(1) if f else None, m.group(3).strip()))
    return entries


def manage_uefi(device: str, esp_uuid: str | None = None, label_suffix: str = "") -> bool:
    """Add NVRAM entries for the loaders on *device*'s ESP; False when it has none.

    *label_suffix* tells apart the entries of the member disks of a software RAID,
    whose ESPs hold the same loaders (as upstream: ``debian (RAID, part0)``)."""
    table = partition_table.read_partition_table(device)
    esp = find_esp(table, esp_uuid) if table else None
    if esp is None:
        raise errors.DeviceNotFound(f"No EFI system partition found on {device}")
    image = _mtools_image(device, table, esp)  # type: ignore[arg-type]
    try:
        loaders = find_loaders(list_esp(image), lambda p: read_esp_file(image, p))
    except run.CommandError as exc:
        raise errors.CommandExecutionError(
            f"Cannot read the EFI system partition {esp.number} of {device}: "
            f"{mtools_failure(exc)}") from None
    if not loaders:
        LOG.info("No UEFI boot loaders on partition %d of %s", esp.number, device)
        return False
    if label_suffix:
        loaders = [Loader(f"{loader.label} {label_suffix}", loader.path) for loader in loaders]
    existing = parse_efibootmgr(run.run(["efibootmgr", "-v"]).stdout)
    for loader in loaders:
        if any(e.label == loader.label and (e.path or "").lower() == loader.path.lower()
               for e in existing):
            LOG.info("UEFI entry %s (%s) exists", loader.label, loader.path)
            continue
        run.run(["efibootmgr", "-c", "-d", device, "-p", str(esp.number), "-w",
                 "-L", loader.label, "-l", loader.path])  # fmt: skip
        LOG.info("Added UEFI entry %s (%s)", loader.label, loader.path)
    return True
