# SPDX-License-Identifier: Apache-2.0
"""The arm64 ISO: UEFI only (arm64 servers have no BIOS), GRUB arm64-efi.

GRUB's EFI image is made by the host's ``grub-mkimage`` (grub-common knows
every platform) from the arm64-efi modules of Debian's ``grub-efi-arm64-bin``:
found on an arm64 host in /usr/lib/grub/arm64-efi, given with
``--grub-efi-dir``, or fetched from the Debian mirror into the builders'
package cache and unpacked (nothing of it runs here). The layout is the x86_64
ISO's without isolinux: the FAT ESP (EFI/BOOT/BOOTAA64.EFI) as the El Torito
EFI image and as an appended GPT partition (a USB stick boots it too),
EFI/BOOT/grub.cfg on the ISO 9660 side, /vmlinuz and /initrd.
"""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

from isoimage import bootconfig, image
from isoimage.command import run
from isoimage.errors import IsoError

GRUB_FORMAT = "arm64-efi"
GRUB_PACKAGE = "grub-efi-arm64-bin"
GRUB_DIR = "/usr/lib/grub/arm64-efi"
EFI_BOOT_LOADER = "/EFI/BOOT/BOOTAA64.EFI"
# the x86_64 image's modules, less the x86 video ones, plus gzio: Debian's arm64
# kernels are shipped gzip'd (tinyipa's, Ubuntu's) and GRUB unpacks them on load
GRUB_MODULES = (
    "part_gpt", "part_msdos", "fat", "iso9660",
    "search", "search_fs_file", "search_label", "test",
    "normal", "configfile", "echo", "sleep", "ls", "cat",
    "linux", "gzio", "all_video", "efi_gop",
    "reboot", "halt",
)
_IMAGE_MAGIC = b"ARM\x64"   # offset 56 of an arm64 kernel Image


def describe_kernel(head: bytes) -> str | None:
    """None when *head* starts an arm64 kernel Image, raw or gzip'd; else why not."""
    data = head
    if head.startswith(b"\x1f\x8b"):
        try:
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 4096)
        except zlib.error as exc:
            return f"gzip data that does not unpack ({exc})"
    if len(data) < 64:
        return f"too short for an arm64 kernel Image ({len(data)} bytes)"
    if data[56:60] != _IMAGE_MAGIC:
        if head[0x202:0x206] == b"HdrS":
            return "this is an x86 bzImage, not an arm64 kernel (--arch?)"
        return "no arm64 Image header ('ARM\\x64' at 56), raw or gzip'd"
    return None


def grub_modules_dir(given: Path | None, cache: Path, release: str) -> Path:
    """The arm64-efi module directory: *given*, the host's, or Debian's package."""
    if given is not None:
        if not (given / "linux.mod").is_file():
            raise IsoError(f"--grub-efi-dir {given}: no GRUB arm64-efi modules (linux.mod)")
        return given
    if Path(GRUB_DIR, "linux.mod").is_file():
        return Path(GRUB_DIR)
    return fetch_grub(cache, release)


def fetch_grub(cache: Path, release: str) -> Path:
    """grub-efi-arm64-bin from the Debian mirror, unpacked under *cache*."""
    from buildlib.log import BuildError, Log  # the builders' runner and package view
    from tinyipa import debs

    cache.mkdir(parents=True, exist_ok=True)
    log = Log(cache / "iso-arm64-grub.log")
    try:
        apt = debs.Apt(cache, release, log, arch="arm64")
        apt.update()
        pkg = next(p for p in apt.resolve([GRUB_PACKAGE]) if p.name == GRUB_PACKAGE)
        [deb] = apt.download([pkg])
        top = debs.extract(deb, cache / "unpacked", log)
    except (BuildError, RuntimeError, StopIteration) as exc:
        raise IsoError(f"cannot fetch {GRUB_PACKAGE} ({release}, arm64): {exc}",
                       hint="give the unpacked modules with --grub-efi-dir") from None
    found = top / GRUB_DIR.lstrip("/")
    if not (found / "linux.mod").is_file():
        raise IsoError(f"{deb.name} has no {GRUB_DIR}/linux.mod")
    return found


def early_config() -> str:
    """The config built into BOOTAA64.EFI. GRUB runs it with its rescue parser
    (no ``if``): find the ISO 9660 side's grub.cfg by searching, which works when
    GRUB was loaded from the CD's El Torito image and from the ESP partition of
    the ISO written to a USB stick (the ESP has no grub.cfg)."""
    path = bootconfig.GRUB_CONFIG_PATH
    return (f"search --no-floppy --set=root --file {path}\n"
            f"set prefix=($root){bootconfig.GRUB_CONFIG_DIR}\n"
            "configfile $prefix/grub.cfg\n")


def make_esp(output: Path, work: Path, tools: dict[str, Path], grub_dir: Path) -> Path:
    """The FAT ESP holding EFI/BOOT/BOOTAA64.EFI (GRUB with its early config)."""
    early = work / "grub-early.cfg"
    early.write_text(early_config())
    efi = work / "BOOTAA64.EFI"
    run([tools["grub-mkimage"], "--format", GRUB_FORMAT, "--directory", grub_dir,
         "--prefix", bootconfig.GRUB_CONFIG_DIR, "--config", early, "--output", efi,
         *GRUB_MODULES])  # fmt: skip
    from isoimage.esp import esp_size_kib

    output.unlink(missing_ok=True)
    run([tools["mkfs.fat"], "-C", "-n", "EFIBOOT", output,
         str(esp_size_kib(efi.stat().st_size))])  # fmt: skip
    run([tools["mmd"], "-i", output, "::/EFI", "::/EFI/BOOT"])
    run([tools["mcopy"], "-i", output, efi, "::" + EFI_BOOT_LOADER])
    return output


def stage_tree(spec: image.IsoSpec, tree: Path, esp: Path) -> None:
    esp_in_iso = tree / bootconfig.ESP_IN_ISO
    esp_in_iso.parent.mkdir(parents=True)
    shutil.copyfile(esp, esp_in_iso)
    grub_cfg = tree / bootconfig.GRUB_CONFIG_PATH.lstrip("/")
    grub_cfg.parent.mkdir(parents=True)
    text = bootconfig.grub_cfg(spec.kernel_args).replace(bootconfig.EFI_BOOT_LOADER,
                                                          EFI_BOOT_LOADER)
    grub_cfg.write_text(text)


def make_iso(spec: image.IsoSpec, output: Path, tree: Path, esp: Path,
             tools: dict[str, Path]) -> Path:
    output.unlink(missing_ok=True)
    run([tools["xorriso"], "-as", "mkisofs",
         "-quiet",
         "-volid", spec.label,
         "-rational-rock", "-joliet", "-joliet-long",
         "-untranslated-filenames",
         # UEFI only: the ESP as the El Torito EFI image, and as GPT partition 2
         "-e", bootconfig.ESP_IN_ISO, "-no-emul-boot",
         "-append_partition", "2", "0xef", os.fspath(esp), "-appended_part_as_gpt",
         "-output", output,
         "-graft-points",
         image.graft("/vmlinuz", spec.kernel),
         image.graft("/initrd", spec.initrd),
         image.graft("/", tree)])  # fmt: skip
    return output
