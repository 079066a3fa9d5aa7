# SPDX-License-Identifier: Apache-2.0
"""The UEFI side: a GRUB EFI image (from grub-efi-amd64-bin, no network) in a small FAT ESP."""

from __future__ import annotations

from pathlib import Path

from isoimage import bootconfig
from isoimage.command import run

# Built into the EFI image, so no module has to be found on disk at boot.
GRUB_MODULES = (
    "part_gpt", "part_msdos", "fat", "iso9660",            # find the ISO (CD or USB stick)
    "search", "search_fs_file", "search_label", "test",    # the early config
    "normal", "configfile", "echo", "sleep", "ls", "cat",  # the menu
    "linux", "all_video", "efi_gop", "efi_uga",            # boot the kernel with a console
    "reboot", "halt",
)

# FAT12 leaves room for BOOTX64.EFI (about 1.5 MiB); a fixed size keeps the ESP
# small, like devstack's 4 MiB one.
_MIN_ESP_KIB = 4096
_ESP_SLACK_KIB = 512


def make_grub_efi(work: Path, tools: dict[str, Path]) -> Path:
    """Write BOOTX64.EFI (GRUB with GRUB_MODULES and the early config) under *work*."""
    early = work / "grub-early.cfg"
    early.write_text(bootconfig.grub_early_cfg())
    efi = work / "BOOTX64.EFI"
    run([tools["grub-mkimage"], "--format", "x86_64-efi",
         "--directory", tools["grub-efi"],
         "--prefix", bootconfig.GRUB_CONFIG_DIR,
         "--config", early,
         "--output", efi,
         *GRUB_MODULES])  # fmt: skip
    return efi


def esp_size_kib(loader_bytes: int) -> int:
    """The FAT image size for a boot loader of *loader_bytes*: at least 4 MiB, whole MiB."""
    need = loader_bytes // 1024 + _ESP_SLACK_KIB
    return max(_MIN_ESP_KIB, -(-need // 1024) * 1024)


def make_esp(output: Path, work: Path, tools: dict[str, Path]) -> Path:
    """Write the FAT ESP image *output* holding EFI/BOOT/BOOTX64.EFI; return its path."""
    efi = make_grub_efi(work, tools)
    output.unlink(missing_ok=True)
    run([tools["mkfs.fat"], "-C", "-n", "EFIBOOT", output,
         str(esp_size_kib(efi.stat().st_size))])  # fmt: skip
    run([tools["mmd"], "-i", output, "::/EFI", "::/EFI/BOOT"])
    run([tools["mcopy"], "-i", output, efi, "::" + bootconfig.EFI_BOOT_LOADER])
    return output
