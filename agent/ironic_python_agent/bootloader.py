# SPDX-License-Identifier: Apache-2.0
"""Boot loaders for partition images: the deployed OS's own GRUB.

A partition image is only a root file system, so something must make it
bootable. Two ways, in the order tried:

UEFI, without running anything of the image
    The OS's signed shim and GRUB (Debian/Ubuntu ``/usr/lib/shim`` and
    ``/usr/lib/grub/<arch>-efi-signed``, or the ``/boot/efi/EFI/<vendor>`` tree
    RHEL-like images carry) are copied onto the ESP under ``EFI/<vendor>/`` and
    the removable-media path ``EFI/BOOT/``, with a ``grub.cfg`` that finds the
    root by its UUID and loads the OS's own ``/boot/grub*/grub.cfg``, and shim's
    ``BOOT<ARCH>.CSV``. The NVRAM entries then come from :mod:`efi`, as for
    whole-disk images. Only files are read from the image.

GRUB's installer in a chroot (as upstream)
    The root is mounted with ``/dev``, ``/proc``, ``/sys`` and ``/run``, and the
    image's ``grub-install`` (or ``grub2-install``) runs inside it: on the
    install disk for BIOS (on every member disk for a software RAID root), into
    the ESP mounted at ``/boot/efi`` for UEFI; then ``grub-mkconfig``. This runs
    the tenant's programs in the ramdisk, so Ironic 39 allows it only with
    ``[agent]enable_bios_bootloader_install`` (the conductor sends it in the
    lookup configuration); without it the command fails with upstream's message.

The parts that decide (where the files are, what goes on the ESP) are pure and
take the mounted root as a directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ironic_python_agent import efi, errors, partition_table, run

LOG = logging.getLogger(__name__)

BIOS_DISABLED = ("Install of legacy BIOS bootloaders disabled by "
                 "CONF.enable_bios_bootloader_install as part of "
                 "CVE-2026-43003 mitigation.")
BIND_MOUNTS = ("/dev", "/proc", "/run")
# GRUB's EFI platform names per UEFI architecture suffix (efi.efi_arch)
GRUB_EFI_TARGET = {"x64": "x86_64-efi", "aa64": "arm64-efi", "ia32": "i386-efi"}


@dataclass(frozen=True)
class EfiAssets:
    """The OS's EFI boot files, as paths inside its root."""

    vendor: str                 # the ESP directory: EFI/<vendor>/
    grub: str
    shim: str | None = None
    mok_manager: str | None = None
    tree: str | None = None     # a whole EFI/<vendor> directory to copy (RHEL-like)


def os_id(root: str) -> str:
    """``ID`` of the image's os-release (the ESP directory name), else ``linux``."""
    for rel in ("etc/os-release", "usr/lib/os-release"):
        try:
            with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
                for line in f:
                    key, _, value = line.strip().partition("=")
                    if key == "ID" and value.strip("\"'"):
                        return value.strip("\"'").lower()
        except OSError:
            continue
    return "linux"


def _first(root: str, candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if os.path.isfile(os.path.join(root, c))), None)


def find_efi_assets(root: str, arch: str) -> EfiAssets | None:
    """Where the image at *root* keeps its EFI boot loaders for *arch* (``x64``, ``aa64``)."""
    tree = os.path.join(root, "boot/efi/EFI")
    if os.path.isdir(tree):
        for vendor in sorted(os.listdir(tree)):
            if vendor.lower() == "boot":
                continue
            here = f"boot/efi/EFI/{vendor}"
            grub = _first(root, [f"{here}/grub{arch}.efi"])
            if grub:
                return EfiAssets(vendor, grub, _first(root, [f"{here}/shim{arch}.efi"]),
                                 _first(root, [f"{here}/mm{arch}.efi"]), tree=here)
    target = GRUB_EFI_TARGET.get(arch, f"{arch}-efi")
    grub = _first(root, [f"usr/lib/grub/{target}-signed/grub{arch}.efi.signed",
                         f"usr/lib/grub/{target}/monolithic/grub{arch}.efi"])
    if grub is None:
        return None
    return EfiAssets(os_id(root), grub,
                     _first(root, [f"usr/lib/shim/shim{arch}.efi.signed",
                                   f"usr/lib/shim/shim{arch}.efi"]),
                     _first(root, [f"usr/lib/shim/mm{arch}.efi.signed",
                                   f"usr/lib/shim/mm{arch}.efi"]))


def grub_dir(root: str) -> str | None:
    """The directory of the OS's own GRUB configuration (``/boot/grub`` or ``/boot/grub2``)."""
    for name in ("grub", "grub2"):
        if os.path.isfile(os.path.join(root, "boot", name, "grub.cfg")):
            return f"/boot/{name}"
    return None


def grub_stub(root_uuid: str, config_dir: str) -> str:
    """The ESP's ``grub.cfg``: find the root file system, then load the OS's configuration."""
    return (f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
            f"set prefix=($root){config_dir}\n"
            "configfile $prefix/grub.cfg\n")


def boot_csv(loader: str, label: str) -> bytes:
    """shim's fallback ``BOOT<ARCH>.CSV`` (UCS-2 with a byte-order mark, as distributions ship)."""
    return f"{loader},{label},,This is the boot entry for {label}\n".encode("utf-16")


def esp_files(root: str, assets: EfiAssets, root_uuid: str, config_dir: str,
              arch: str) -> dict[str, str | bytes]:
    """ESP path → the image's file to copy (a path in *root*) or the bytes to write."""
    vendor = f"/EFI/{assets.vendor}"
    files: dict[str, str | bytes] = {}
    if assets.tree:
        base = os.path.join(root, assets.tree)
        for top, _, names in os.walk(base):
            for name in names:
                rel = os.path.relpath(os.path.join(top, name), base).replace(os.sep, "/")
                files[f"{vendor}/{rel}"] = os.path.join(assets.tree, rel)
    files[f"{vendor}/grub{arch}.efi"] = assets.grub
    stub = grub_stub(root_uuid, config_dir).encode()
    files[f"{vendor}/grub.cfg"] = stub
    first = f"grub{arch}.efi"
    if assets.shim:
        files[f"{vendor}/shim{arch}.efi"] = assets.shim
        first = f"shim{arch}.efi"
    if assets.mok_manager:
        files[f"{vendor}/mm{arch}.efi"] = assets.mok_manager
    files[f"{vendor}/BOOT{arch.upper()}.CSV"] = boot_csv(first, assets.vendor)
    # The removable-media path, for firmware whose NVRAM is reset: shim (or GRUB)
    # as BOOT<ARCH>.EFI, GRUB and its grub.cfg beside it ($cmdpath).
    files[f"/EFI/BOOT/BOOT{arch.upper()}.EFI"] = assets.shim or assets.grub
    if assets.shim:
        files[f"/EFI/BOOT/grub{arch}.efi"] = assets.grub
        if assets.mok_manager:
            files[f"/EFI/BOOT/mm{arch}.efi"] = assets.mok_manager
    files["/EFI/BOOT/grub.cfg"] = stub
    return files


def fstab_line(esp_uuid: str) -> str:
    return f"UUID={esp_uuid}\t/boot/efi\tvfat\tumask=0077\t0\t1\n"


def add_esp_to_fstab(root: str, esp_uuid: str) -> None:
    """Mount the ESP at /boot/efi in the deployed OS unless its fstab already does."""
    path = os.path.join(root, "etc/fstab")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    if any(len(fields) > 1 and fields[1] == "/boot/efi"
           for fields in (line.split() for line in text.splitlines())
           if fields and not fields[0].startswith("#")):
        return
    with open(path, "a", encoding="utf-8") as f:
        if text and not text.endswith("\n"):
            f.write("\n")
        f.write(fstab_line(esp_uuid))


# --- finding the partitions -------------------------------------------------

def find_partition(device: str, uuid: str,
                   table: partition_table.PartitionTable | None = None,
                   ) -> tuple[str, partition_table.Partition]:
    """The partition of *device* whose file system UUID (or partition UUID) is *uuid*."""
    from ironic_python_agent.partition_image import block_uuid

    table = table or partition_table.read_partition_table(device)
    for part in table.partitions if table else ():
        path = partition_table.partition_path(device, part.number)
        if (part.uuid or "").lower() == uuid.lower():
            return path, part
        if os.path.exists(path) and (block_uuid(path) or "").lower() == uuid.lower():
            return path, part
    raise errors.DeviceNotFound(f"No partition with UUID {uuid} on {device}")


# --- the work ----------------------------------------------------------------

@contextlib.contextmanager
def mounted(device: str, where: str | None = None, options: str = "") -> Iterator[str]:
    """*device* mounted on *where* (made if missing; default: a temporary directory,
    removed afterwards)."""
    temporary = where is None
    where = where or tempfile.mkdtemp(prefix="lean-ipa-root-")
    os.makedirs(where, exist_ok=True)
    run.run(["mount", *(["-o", options] if options else []), device, where], timeout=120)
    try:
        yield where
    except BaseException:
        run.run(["umount", where], check=False, timeout=120)
        raise
    else:
        run.run(["umount", where], timeout=120)  # unflushed writes are lost if this fails
    finally:
        if temporary:
            with contextlib.suppress(OSError):
                os.rmdir(where)


@contextlib.contextmanager
def chroot_mounts(root: str) -> Iterator[None]:
    """``/dev``, ``/proc``, ``/run`` bound and a sysfs, for GRUB's tools in *root*."""
    done: list[str] = []
    try:
        for fs in BIND_MOUNTS:
            target = os.path.join(root, fs.lstrip("/"))
            os.makedirs(target, exist_ok=True)
            run.run(["mount", "--bind", fs, target], timeout=60)
            done.append(target)
        target = os.path.join(root, "sys")
        os.makedirs(target, exist_ok=True)
        run.run(["mount", "-t", "sysfs", "sysfs", target], timeout=60)
        done.append(target)
        yield
    finally:
        for target in reversed(done):
            run.run(["umount", "-l", target], check=False, timeout=60)


def install_efi_files(root: str, esp: str, root_uuid: str, arch: str | None = None) -> bool:
    """Copy the OS's loaders from *root* onto the ESP *esp* (an mtools image); False
    when the image has none (or no GRUB configuration to point them at)."""
    arch = arch or efi.efi_arch()
    assets = find_efi_assets(root, arch)
    config = grub_dir(root)
    if assets is None or config is None:
        LOG.info("The image has %s", "no GRUB configuration" if assets else
                 f"no EFI boot loaders for {arch}")
        return False
    files = esp_files(root, assets, root_uuid, config, arch)
    efi.write_esp_files(esp, {path: content if isinstance(content, bytes) else _read(root, content)
                              for path, content in files.items()})
    LOG.info("Copied the image's %s boot loaders to EFI/%s and EFI/BOOT",
             "shim and GRUB" if assets.shim else "GRUB", assets.vendor)
    return True


def _read(root: str, rel: str) -> bytes:
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()


def grub_flavour(root: str) -> str:
    """``grub2`` (RHEL, SUSE) or ``grub`` (Debian, Ubuntu): the image's tool prefix."""
    for flavour in ("grub2", "grub"):
        for sbin in ("usr/sbin", "sbin", "usr/bin"):
            if os.path.exists(os.path.join(root, sbin, f"{flavour}-install")):
                return flavour
    raise errors.InvalidImage("The image has neither grub-install nor grub2-install; "
                              "cannot install a boot loader for it")


def format_esp(device: str) -> None:
    """Make a FAT32 file system on *device* unless it already has one (a rebuild finds
    the RAIDed ESP of the last deploy)."""
    done = run.run(["blkid", "-o", "value", "-s", "TYPE", device], check=False, timeout=60)
    if done.stdout.strip() == "vfat":
        return
    run.run(["mkfs.vfat", "-F", "32", "-n", "EFI-RAID", device], timeout=300)


def check_raid_capable(root: str, md_device: str) -> None:
    """Refuse an image whose GRUB tools cannot name a software RAID root: they ask
    the image's ``mdadm --detail`` for the array, and fail without it."""
    if not any(os.path.exists(os.path.join(root, d, "mdadm"))
               for d in ("usr/sbin", "sbin", "usr/bin")):
        raise errors.InvalidImage(
            f"The image has no mdadm: its grub-install cannot find the root on the software "
            f"RAID {md_device}; deploy an image that carries mdadm (its initramfs needs it "
            "to assemble the root too)")


def install_grub_in_chroot(root: str, disks: Sequence[str], esp: str | None,
                           esp_uuid: str | None, arch: str | None = None) -> None:
    """The image's own grub-install (BIOS: on *disks*; UEFI: into *esp*) and grub-mkconfig."""
    flavour = grub_flavour(root)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "GRUB_DISABLE_OS_PROBER": "true"}
    with chroot_mounts(root):
        if esp is not None:
            arch = arch or efi.efi_arch()
            target = GRUB_EFI_TARGET.get(arch, f"{arch}-efi")
            with mounted(esp, os.path.join(root, "boot/efi"), "umask=0077"):
                for extra in ("--no-nvram", "--removable"):
                    run.run(["chroot", root, f"{flavour}-install", f"--target={target}",
                             "--efi-directory=/boot/efi", f"--bootloader-id={os_id(root)}",
                             extra], env=env, timeout=600)  # fmt: skip
                run.run(["chroot", root, f"{flavour}-mkconfig", "-o",
                         f"/boot/{flavour}/grub.cfg"], env=env, timeout=600)
            if esp_uuid:
                add_esp_to_fstab(root, esp_uuid)
        else:
            for disk in disks:
                run.run(["chroot", root, f"{flavour}-install", "--target=i386-pc", disk],
                        env=env, timeout=600)
                LOG.info("GRUB installed on %s", disk)
            run.run(["chroot", root, f"{flavour}-mkconfig", "-o",
                     f"/boot/{flavour}/grub.cfg"], env=env, timeout=600)
