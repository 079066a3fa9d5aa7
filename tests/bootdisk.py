# SPDX-License-Identifier: Apache-2.0
"""Small bootable UEFI disk images for deploy tests, built from Debian packages.

:func:`whole_disk_image` makes a GPT whole-disk image whose only partition is
an EFI system partition made with ``mkfs.vfat`` (FAT32, as distributions make
it) holding:

* ``EFI/<VENDOR>/grubx64.efi``: a standalone GRUB (``grub-mkstandalone`` from
  grub-efi-amd64-bin) whose built-in grub.cfg finds the ESP by a stamp file
  and boots the kernel and initramfs beside it;
* ``EFI/<VENDOR>/BOOTX64.CSV``: as shim ships it, naming that loader, so the
  agent's ``image.install_bootloader`` adds an NVRAM entry for it. There is no
  removable-media loader (``EFI/BOOT/BOOTX64.EFI``): the firmware can only boot
  the disk through the entry the agent wrote;
* ``vmlinuz`` (any x86_64 kernel with a serial console, e.g. tinyipa's) and an
  initramfs whose /init (busybox-static) prints :data:`MARKER` on the console
  and powers off.

Images are cached under ``.cache/bootdisk/<key>/`` like the ramdisk builds: the
key hashes the inputs (kernel, busybox, GRUB modules, this module).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from tinyipa import cpio

TOP = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("CACHE", TOP / ".cache")) / "bootdisk"
MARKER = "LEAN-IPA-DEPLOYED-OS-BOOTED"
VENDOR = "lean"
LABEL = "lean-ipa deployed"
ESP_GPT_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
MiB = 1 << 20
ESP_START_MIB, ESP_MIB = 1, 64
STAMP = "/lean-ipa-test-esp"  # grub.cfg searches for this file
GRUB_MODULES = Path("/usr/lib/grub/x86_64-efi")
BUSYBOX = Path("/usr/bin/busybox")  # busybox-static

INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "{MARKER} $(/bin/busybox cat /proc/cmdline)"
/bin/busybox poweroff -f
"""

GRUB_CFG = f"""set timeout=0
search --no-floppy --file --set=root {STAMP}
echo "lean-ipa test GRUB: ESP is $root"
linux /vmlinuz console=ttyS0 panic=-1 rdinit=/init
initrd /initrd.gz
boot
"""


def initramfs() -> bytes:
    """A gzip'd newc archive: busybox and an /init printing the marker."""
    entries = [
        cpio.Entry("bin", stat.S_IFDIR | 0o755),
        cpio.Entry("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes()),
        cpio.Entry("dev", stat.S_IFDIR | 0o755),
        cpio.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        cpio.Entry("proc", stat.S_IFDIR | 0o755),
        cpio.Entry("init", stat.S_IFREG | 0o755, INIT.encode()),
    ]
    return gzip.compress(cpio.archive(entries, mtime=0), mtime=0)


def grub_efi(out: Path) -> None:
    """A standalone GRUB EFI binary with :data:`GRUB_CFG` built in."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "grub.cfg"
        cfg.write_text(GRUB_CFG)
        subprocess.run(
            ["grub-mkstandalone", "-O", "x86_64-efi", "-o", str(out),
             "--locales=", "--fonts=", "--themes=", "--modules=part_gpt fat",
             f"boot/grub/grub.cfg={cfg}"], check=True, capture_output=True)


def make_esp(path: Path, kernel: Path, mib: int = ESP_MIB) -> None:
    """A FAT32 ESP file system image of *mib* MiB with the loader, kernel and initramfs."""
    with open(path, "wb") as f:
        f.truncate(mib * MiB)
    subprocess.run(["mkfs.vfat", "-F", "32", "-n", "EFI", str(path)], check=True,
                   capture_output=True)
    work = path.parent
    grub_efi(work / "grubx64.efi")
    (work / "BOOTX64.CSV").write_bytes(f"grubx64.efi,{LABEL},,lean-ipa test\n".encode("utf-16"))
    (work / "initrd.gz").write_bytes(initramfs())
    (work / "stamp").write_text("lean-ipa test ESP\n")
    shutil.copyfile(kernel, work / "vmlinuz")
    subprocess.run(["mmd", "-i", str(path), "::/EFI", f"::/EFI/{VENDOR}"], check=True)
    for src, dest in (("grubx64.efi", f"/EFI/{VENDOR}/grubx64.efi"),
                      ("BOOTX64.CSV", f"/EFI/{VENDOR}/BOOTX64.CSV"),
                      ("vmlinuz", "/vmlinuz"), ("initrd.gz", "/initrd.gz"),
                      ("stamp", STAMP)):
        subprocess.run(["mcopy", "-i", str(path), str(work / src), f"::{dest}"], check=True)


def build_whole_disk_image(out: Path, kernel: Path) -> None:
    """GPT (512-byte sectors) with the ESP as partition 1; raw, sparse."""
    esp_mib = ESP_MIB
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        esp = Path(tmp) / "esp.img"
        make_esp(esp, kernel, esp_mib)
        disk = Path(tmp) / "disk.raw"
        with open(disk, "wb") as f:
            f.truncate((ESP_START_MIB + esp_mib + 1) * MiB)
        subprocess.run(["sfdisk", "-q", str(disk)], check=True, text=True, input=(
            f"label: gpt\nstart={ESP_START_MIB * MiB // 512}, size={esp_mib}MiB, "
            f"type={ESP_GPT_TYPE}, name=EFI\n"))
        with open(esp, "rb") as src, open(disk, "r+b") as dst:
            dst.seek(ESP_START_MIB * MiB)
            shutil.copyfileobj(src, dst, 4 * MiB)
        os.replace(disk, out)


def _key(kernel: Path) -> str:
    digest = hashlib.sha256()
    digest.update(Path(__file__).read_bytes())
    for path in (kernel, BUSYBOX, GRUB_MODULES / "linux.mod", GRUB_MODULES / "kernel.img"):
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


def whole_disk_image(kernel: Path, cache: Path = CACHE) -> Path:
    """The cached whole-disk image for *kernel*, built when its inputs changed."""
    out = cache / _key(kernel) / "disk.raw"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        build_whole_disk_image(out, kernel)
    return out


def esp_disk(out: Path, label: str, *, fat: int = 32, sector_size: int = 512,
             esp_mib: int = ESP_MIB, hidden: int = 0) -> None:
    """A GPT disk whose ESP (at 1 MiB) holds a dummy shim layout whose CSV names *label*.

    For the ESPs distributions ship: FAT16 or FAT32, 512-byte or 4K sectors (the
    GPT of a 4K disk is written through a loop device with that sector size),
    *hidden* sectors as ``mkfs.vfat`` sets them on a partition.
    """
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        work = Path(tmp)
        esp = work / "esp.img"
        with open(esp, "wb") as f:
            f.truncate(esp_mib * MiB)
        subprocess.run(["mkfs.vfat", "-F", str(fat), "-S", str(sector_size), "-h", str(hidden),
                        "-n", "EFI", str(esp)], check=True, capture_output=True)
        (work / "loader.efi").write_bytes(b"MZ not really a loader\n")
        (work / "BOOTX64.CSV").write_bytes(f"shimx64.efi,{label},,test\n".encode("utf-16"))
        subprocess.run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT", f"::/EFI/{VENDOR}"],
                       check=True)
        for src, dest in (("loader.efi", "/EFI/BOOT/BOOTX64.EFI"),
                          ("loader.efi", f"/EFI/{VENDOR}/shimx64.efi"),
                          ("BOOTX64.CSV", f"/EFI/{VENDOR}/BOOTX64.CSV")):
            subprocess.run(["mcopy", "-i", str(esp), str(work / src), f"::{dest}"], check=True)
        with open(out, "wb") as f:
            f.truncate((ESP_START_MIB + esp_mib + 1) * MiB)
        table = (f"label: gpt\nstart={ESP_START_MIB * MiB // sector_size}, size={esp_mib}MiB, "
                 f"type={ESP_GPT_TYPE}, name=EFI\n")
        if sector_size == 512:
            subprocess.run(["sfdisk", "-q", str(out)], check=True, text=True, input=table)
        else:
            dev = subprocess.run(["losetup", "--find", "--show", "--sector-size",
                                  str(sector_size), str(out)],
                                 check=True, capture_output=True, text=True).stdout.strip()
            try:
                # the kernel may fail to re-read the table (no partition parsers): harmless
                subprocess.run(["sfdisk", "-q", "--no-reread", dev], check=True, text=True,
                               input=table, capture_output=True)
            finally:
                subprocess.run(["losetup", "--detach", dev], check=False)
        with open(esp, "rb") as src, open(out, "r+b") as dst:
            dst.seek(ESP_START_MIB * MiB)
            shutil.copyfileobj(src, dst, 4 * MiB)
