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

:func:`partition_image` makes what Ironic calls a partition image: only a
root file system (ext4), laid out as a Debian system keeps its boot files:

* ``/usr/lib/shim/shimx64.efi.signed``, ``mmx64.efi.signed`` and
  ``/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed`` from Debian's
  shim-signed, shim-helpers-amd64-signed and grub-efi-amd64-signed (the agent
  copies them to the ESP it creates; nothing else puts a boot loader there);
* ``/boot/grub/grub.cfg`` booting ``/boot/vmlinuz`` and ``/boot/initrd.gz``
  (the marker initramfs) with ``lean_ipa_layout=partition`` on the command
  line; ``/etc/os-release`` with ``ID=debian``.

Images are cached under ``.cache/bootdisk/<key>/`` like the ramdisk builds: the
key hashes the inputs (kernel, busybox, GRUB modules, signed packages, this module).
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
# Debian's signed EFI boot chain, as a Debian partition image carries it
SIGNED_PACKAGES = ("shim-signed", "shim-helpers-amd64-signed", "grub-efi-amd64-signed")
SIGNED_FILES = ("usr/lib/shim/shimx64.efi.signed", "usr/lib/shim/mmx64.efi.signed",
                "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
ROOT_FS_MIB = 64
PARTITION_LAYOUT = "lean_ipa_layout=partition"

OS_GRUB_CFG = f"""set timeout=0
echo "lean-ipa test OS: root is $root"
linux /boot/vmlinuz console=ttyS0 panic=-1 rdinit=/init {PARTITION_LAYOUT}
initrd /boot/initrd.gz
boot
"""

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


# -- partition images ---------------------------------------------------------


def signed_chain(cache: Path = CACHE) -> Path:
    """Debian's signed shim, MokManager and GRUB unpacked under a directory (cached
    by the packages' candidate versions); downloaded with ``apt-get download``."""
    policy = subprocess.run(["apt-cache", "policy", *SIGNED_PACKAGES], check=True,
                            capture_output=True, text=True).stdout
    key = hashlib.sha256(policy.encode()).hexdigest()[:16]
    root = cache / f"signed-{key}"
    if all((root / rel).is_file() for rel in SIGNED_FILES):
        return root
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(["apt-get", "download", "-q", *SIGNED_PACKAGES], cwd=tmp, check=True,
                       capture_output=True)
        unpacked = Path(tmp) / "root"
        for deb in sorted(Path(tmp).glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        missing = [rel for rel in SIGNED_FILES if not (unpacked / rel).is_file()]
        if missing:
            raise RuntimeError(f"Debian's signed packages lack {', '.join(missing)}")
        shutil.rmtree(root, ignore_errors=True)
        os.replace(unpacked, root)
    return root


def build_partition_image(out: Path, kernel: Path, chain: Path) -> None:
    """An ext4 root file system image (raw) of a Debian-like OS that boots the marker."""
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tree = Path(tmp) / "root"
        for rel in SIGNED_FILES:
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(chain / rel, tree / rel)
        (tree / "boot/grub").mkdir(parents=True)
        (tree / "boot/grub/grub.cfg").write_text(OS_GRUB_CFG)
        shutil.copyfile(kernel, tree / "boot/vmlinuz")
        (tree / "boot/initrd.gz").write_bytes(initramfs())
        (tree / "etc").mkdir()
        (tree / "etc/os-release").write_text('ID=debian\nPRETTY_NAME="lean-ipa test OS"\n')
        (tree / "etc/fstab").write_text("# lean-ipa test OS\n")
        image = Path(tmp) / "root.img"
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-E", "root_owner=0:0",
                        "-d", str(tree), str(image), f"{ROOT_FS_MIB}M"], check=True,
                       capture_output=True)
        os.replace(image, out)


def partition_image(kernel: Path, cache: Path = CACHE) -> Path:
    """The cached partition image for *kernel*, built when its inputs changed."""
    cache.mkdir(parents=True, exist_ok=True)
    chain = signed_chain(cache)
    digest = hashlib.sha256(_key(kernel).encode())
    for rel in SIGNED_FILES:
        digest.update((chain / rel).read_bytes())
    out = cache / f"partition-{digest.hexdigest()[:16]}" / "root.img"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        build_partition_image(out, kernel, chain)
    return out


# -- a partition image with GRUB's installer (BIOS) ---------------------------

BIOS_LAYOUT = "lean_ipa_layout=partition-bios"
# mdadm: GRUB's tools ask it (mdadm --detail) to name a software RAID root, as in
# any distribution image meant for one
BIOS_PACKAGES = ("grub-pc-bin", "grub2-common", "mdadm")
BIOS_KERNEL_VERSION = "6.1.0-lean-test"
BIOS_ROOT_FS_MIB = 512
APT_SOURCES = next((p for p in (Path("/etc/apt/sources.list.d/debian.sources"),
                                Path("/etc/apt/sources.list")) if p.exists()),
                   Path("/etc/apt/sources.list.d/debian.sources"))
DEFAULT_GRUB = f"""GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR="lean-ipa test OS"
GRUB_CMDLINE_LINUX="console=ttyS0 panic=-1 {BIOS_LAYOUT}"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
"""


def debian_root(out: Path, packages: tuple[str, ...]) -> None:
    """A tarball of Debian's Essential set plus *packages* (mmdebstrap, the host's sources)."""
    tmp = out.with_suffix(".tmp.tar")
    subprocess.run(["mmdebstrap", "--quiet", "--variant=essential", "--format=tar",
                    "--include=" + ",".join(packages),
                    *(f"--dpkgopt=path-exclude=/usr/share/{d}/*"
                      for d in ("doc", "man", "locale", "info")),
                    "bookworm", str(tmp), str(APT_SOURCES)], check=True,
                   capture_output=True)
    os.replace(tmp, out)


def build_bios_partition_image(out: Path, kernel: Path, rootfs: Path) -> None:
    """A qcow2 of an ext4 root file system: Debian with GRUB for BIOS (grub-pc-bin,
    grub2-common) and mdadm, the kernel and marker initramfs as ``/boot/vmlinuz-<v>`` and
    ``/boot/initrd.img-<v>``, and ``/etc/default/grub`` for a serial console. The
    image has no boot loader installed: only its own ``grub-install`` (run by the
    agent in a chroot) can make the disk boot."""
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tree = Path(tmp) / "root"
        tree.mkdir()
        subprocess.run(["tar", "-xf", str(rootfs), "-C", str(tree)], check=True)
        boot = tree / "boot"
        boot.mkdir(exist_ok=True)
        shutil.copyfile(kernel, boot / f"vmlinuz-{BIOS_KERNEL_VERSION}")
        (boot / f"initrd.img-{BIOS_KERNEL_VERSION}").write_bytes(initramfs())
        (tree / "etc/default").mkdir(parents=True, exist_ok=True)
        (tree / "etc/default/grub").write_text(DEFAULT_GRUB)
        raw = Path(tmp) / "root.img"
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(tree), str(raw),
                        f"{BIOS_ROOT_FS_MIB}M"], check=True, capture_output=True)
        qcow2 = Path(tmp) / "root.qcow2"
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw),
                        str(qcow2)], check=True, capture_output=True)
        os.replace(qcow2, out)


def bios_partition_image(kernel: Path, cache: Path = CACHE) -> Path:
    """The cached BIOS partition image (qcow2) for *kernel*."""
    cache.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(APT_SOURCES.read_bytes() + " ".join(BIOS_PACKAGES).encode()
                            + Path(__file__).read_bytes())
    rootfs = cache / f"debian-grub-pc-{digest.hexdigest()[:16]}.tar"
    if not rootfs.exists():
        debian_root(rootfs, BIOS_PACKAGES)
    digest.update(_key(kernel).encode())
    out = cache / f"partition-bios-{digest.hexdigest()[:16]}" / "root.qcow2"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        build_bios_partition_image(out, kernel, rootfs)
    return out
