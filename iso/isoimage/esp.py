# SPDX-License-Identifier: Apache-2.0
"""The UEFI side, a small FAT ESP holding either a GRUB EFI image built here (from
grub-efi-amd64-bin, no network; unsigned) or Debian's signed shim + GRUB (Secure Boot)."""

from __future__ import annotations

from pathlib import Path

from isoimage import bootconfig
from isoimage import signed as signed_chain
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


def _esp_files(work: Path, tools: dict[str, Path],
               signed: dict[str, Path] | None) -> dict[str, Path]:
    """ESP path -> file: the unsigned GRUB image, or shim, GRUB, MokManager and the
    config Debian's GRUB reads (the same early config: it finds the menu on the ISO)."""
    if signed is None:
        return {bootconfig.EFI_BOOT_LOADER: make_grub_efi(work, tools)}
    files = {dest: signed[name] for dest, name in signed_chain.ESP_LAYOUT.items()}
    config = work / "debian-grub.cfg"
    config.write_text(bootconfig.grub_early_cfg())
    files[signed_chain.GRUB_CONFIG] = config
    return files


def make_esp(output: Path, work: Path, tools: dict[str, Path],
             signed: dict[str, Path] | None = None) -> Path:
    """Write the FAT ESP image *output* holding EFI/BOOT/BOOTX64.EFI (and, with
    *signed*, the rest of Debian's signed chain); return its path."""
    files = _esp_files(work, tools, signed)
    output.unlink(missing_ok=True)
    total = sum(path.stat().st_size for path in files.values())
    run([tools["mkfs.fat"], "-C", "-n", "EFIBOOT", output, str(esp_size_kib(total))])
    dirs = sorted({str(Path(dest).parent) for dest in files})
    tops = sorted({str(Path(d).parent) for d in dirs} - {"/"})
    run([tools["mmd"], "-i", output, *(f"::{d}" for d in tops + dirs)])
    for dest, src in files.items():
        run([tools["mcopy"], "-i", output, src, "::" + dest])
    return output
