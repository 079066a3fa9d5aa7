# SPDX-License-Identifier: Apache-2.0
"""Lay out the ISO tree and run xorriso: El Torito BIOS + UEFI, hybrid MBR + GPT."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from isoimage import bootconfig
from isoimage.command import run

DEFAULT_LABEL = "VMEDIA_BOOT_ISO"


@dataclass(frozen=True)
class IsoSpec:
    """Everything the ISO is made of."""

    kernel: Path
    initrd: Path
    kernel_args: tuple[str, ...]
    label: str = DEFAULT_LABEL


def stage_tree(spec: IsoSpec, tree: Path, esp: Path, tools: dict[str, Path]) -> None:
    """Fill *tree* with the ISO's files (the layout Ironic's own ISO code uses).

    ::

        /vmlinuz  /initrd                                      (grafted by make_iso)
        /isolinux/isolinux.bin  ldlinux.c32  isolinux.cfg     BIOS
        /boot/grub/efiboot.img   (FAT ESP: EFI/BOOT/BOOTX64.EFI) UEFI
        /EFI/BOOT/grub.cfg
    """
    isolinux = tree / "isolinux"
    isolinux.mkdir(parents=True)
    shutil.copyfile(tools["isolinux.bin"], isolinux / "isolinux.bin")
    shutil.copyfile(tools["ldlinux.c32"], isolinux / "ldlinux.c32")
    (isolinux / "isolinux.cfg").write_text(bootconfig.isolinux_cfg(spec.kernel_args))
    esp_in_iso = tree / bootconfig.ESP_IN_ISO
    esp_in_iso.parent.mkdir(parents=True)
    shutil.copyfile(esp, esp_in_iso)
    grub_cfg = tree / bootconfig.GRUB_CONFIG_PATH.lstrip("/")
    grub_cfg.parent.mkdir(parents=True)
    grub_cfg.write_text(bootconfig.grub_cfg(spec.kernel_args))


def graft(iso_path: str, disk_path: Path) -> str:
    """A ``-graft-points`` argument: *disk_path* appears in the ISO as *iso_path*."""
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("=", "\\=")
    return f"{escape(iso_path)}={escape(str(disk_path.resolve()))}"


def make_iso(spec: IsoSpec, output: Path, tree: Path, tools: dict[str, Path]) -> Path:
    """Write *output* from the staged *tree*."""
    output.unlink(missing_ok=True)
    run([tools["xorriso"], "-as", "mkisofs",
         "-quiet",
         "-volid", spec.label,
         "-rational-rock", "-joliet", "-joliet-long",
         # ISO 9660 names as given (efiboot.img, not EFIBOOT.IMG;1): Ironic reads
         # deploy ISOs with pycdlib by those names when it harvests the ESP.
         "-untranslated-filenames",
         # BIOS: isolinux, also from the MBR when the ISO is written to a disk.
         "-isohybrid-mbr", tools["isohdpfx.bin"],
         "-eltorito-catalog", "isolinux/boot.cat",
         "-eltorito-boot", "isolinux/isolinux.bin",
         "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
         # UEFI: the ESP as a second El Torito image, and as a GPT partition.
         "-eltorito-alt-boot",
         "-e", bootconfig.ESP_IN_ISO,
         "-no-emul-boot", "-isohybrid-gpt-basdat",
         "-output", output,
         "-graft-points",
         graft("/vmlinuz", spec.kernel),
         graft("/initrd", spec.initrd),
         graft("/", tree)])  # fmt: skip
    return output
