# SPDX-License-Identifier: Apache-2.0
"""Find the host programs and boot files the ISO needs; name the apt package when one is missing."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from isoimage.errors import IsoError

# Where Debian/Ubuntu (and older syslinux layouts) keep the BIOS boot files.
ISOLINUX_BIN = ("/usr/lib/ISOLINUX/isolinux.bin", "/usr/lib/syslinux/isolinux.bin",
                "/usr/share/syslinux/isolinux.bin", "/usr/lib/syslinux/bios/isolinux.bin")
LDLINUX_C32 = ("/usr/lib/syslinux/modules/bios/ldlinux.c32", "/usr/share/syslinux/ldlinux.c32",
               "/usr/lib/syslinux/bios/ldlinux.c32")
ISOHDPFX_BIN = ("/usr/lib/ISOLINUX/isohdpfx.bin", "/usr/share/syslinux/isohdpfx.bin",
                "/usr/lib/syslinux/bios/isohdpfx.bin")
GRUB_EFI_DIR = ("/usr/lib/grub/x86_64-efi",)


@dataclass(frozen=True)
class Need:
    """One thing from the host: a program on PATH, or a file at one of several places."""

    what: str
    package: str
    candidates: tuple[str, ...] = ()

    @property
    def is_program(self) -> bool:
        return not self.candidates


PROGRAMS = {
    "xorriso": Need("xorriso", "xorriso"),
    "grub-mkimage": Need("grub-mkimage", "grub-common"),
    "mkfs.fat": Need("mkfs.fat", "dosfstools"),
    "mmd": Need("mmd", "mtools"),
    "mcopy": Need("mcopy", "mtools"),
    "sbverify": Need("sbverify", "sbsigntool"),
}
FILES = {
    "isolinux.bin": Need("isolinux.bin", "isolinux", ISOLINUX_BIN),
    "ldlinux.c32": Need("ldlinux.c32", "syslinux-common", LDLINUX_C32),
    "isohdpfx.bin": Need("isohdpfx.bin (hybrid MBR)", "isolinux", ISOHDPFX_BIN),
    "grub-efi": Need("GRUB x86_64-efi modules", "grub-efi-amd64-bin", GRUB_EFI_DIR),
}
ESP_NEEDS = ("grub-mkimage", "mkfs.fat", "mmd", "mcopy", "grub-efi")
ISO_NEEDS = ESP_NEEDS + ("xorriso", "isolinux.bin", "ldlinux.c32", "isohdpfx.bin")


def first_existing(candidates: Sequence[str]) -> Path | None:
    for candidate in candidates:
        if Path(candidate).exists():
            return Path(candidate)
    return None


def locate(need: Need) -> Path | None:
    if need.is_program:
        found = shutil.which(need.what)
        return Path(found) if found else None
    return first_existing(need.candidates)


def find_host_tools(names: Sequence[str]) -> dict[str, Path]:
    """Locate every named need; raise one :class:`IsoError` listing all missing ones."""
    found: dict[str, Path] = {}
    missing: list[Need] = []
    for name in names:
        need = PROGRAMS.get(name) or FILES[name]
        path = locate(need)
        if path is None:
            missing.append(need)
        else:
            found[name] = path
    if missing:
        packages = sorted({need.package for need in missing})
        raise IsoError("missing host tools: " + ", ".join(
            f"{need.what} (package {need.package})" for need in missing),
            hint="apt-get install " + " ".join(packages))
    return found
