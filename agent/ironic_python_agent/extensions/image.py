# SPDX-License-Identifier: Apache-2.0
"""The ``image`` namespace: boot entries for the deployed image.

Whole-disk images carry their own boot loader, so the only work is UEFI NVRAM
entries when the ramdisk booted UEFI and the image has an ESP with loaders;
otherwise a successful no-op, including Ironic asking for
``target_boot_mode=uefi`` on a node whose ramdisk booted BIOS. Partition images
(a root UUID that is a file system's) get the OS's own GRUB (:mod:`bootloader`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from ironic_python_agent import bootloader, config, efi, errors, partition_table, run
from ironic_python_agent.extensions import base
from ironic_python_agent.hardware import md

LOG = logging.getLogger(__name__)


def booted_uefi() -> bool:
    return os.path.isdir("/sys/firmware/efi")


def is_whole_disk_root(root_uuid: str | None) -> bool:
    """Whole-disk images report the disk identifier (``0x…``) or nothing."""
    return not root_uuid or root_uuid.lower().startswith("0x")


class ImageExtension(base.BaseAgentExtension):
    def __init__(self, agent: Any = None) -> None:
        super().__init__(agent=agent)
        # Injectable for tests: the firmware check and the install disk.
        self.firmware_is_uefi: Callable[[], bool] = booted_uefi
        self.device_finder: Callable[[], str] = _install_device

    @base.async_command("install_bootloader")
    def install_bootloader(self, root_uuid: str | None,
                           efi_system_part_uuid: str | None = None,
                           prep_boot_part_uuid: str | None = None,
                           target_boot_mode: str = "bios",
                           ignore_bootloader_failure: bool | None = None) -> None:
        """Whole-disk images: UEFI entries for their loaders. Partition images: the OS's
        own GRUB (copied to the ESP for UEFI; its grub-install when allowed)."""
        ignore = (ignore_bootloader_failure if ignore_bootloader_failure is not None
                  else bool(config.current().ignore_bootloader_failure))
        uefi = self.firmware_is_uefi()
        if target_boot_mode == "uefi" and not uefi:
            LOG.info("Ironic asked for UEFI boot but the ramdisk booted BIOS; "
                     "no UEFI entries can be written from here")
        if is_whole_disk_root(root_uuid) and (uefi or target_boot_mode == "uefi"):
            device = self.device_finder()
            if md.is_md_device(device):
                try:
                    self._raid_uefi(device, None, root_uuid, uefi)
                except Exception as exc:
                    _failed(exc, ignore, "Setting up the ESPs of the software RAID failed")
                return
        if uefi and run.which("efibootmgr") and is_whole_disk_root(root_uuid):
            device = self.device_finder()
            try:
                if efi.manage_uefi(device, efi_system_part_uuid):
                    return
            except errors.DeviceNotFound:
                LOG.info("Whole-disk image on %s has no ESP; nothing to do", device)
            except Exception as exc:
                _failed(exc, ignore, "Setting up UEFI boot entries failed")
                return
        if is_whole_disk_root(root_uuid):
            LOG.info("Whole-disk image: the boot loader is the image's own")
            return
        try:
            self._partition_image(root_uuid, efi_system_part_uuid, target_boot_mode, uefi)
        except Exception as exc:
            _failed(exc, ignore, f"Installing the boot loader for root {root_uuid} failed")

    def _partition_image(self, root_uuid: str, esp_uuid: str | None,
                         target_boot_mode: str, uefi_firmware: bool) -> None:
        allowed = bool(config.current().enable_bios_bootloader_install)
        bios = not (esp_uuid or target_boot_mode == "uefi")
        if bios and not allowed:
            raise errors.InvalidImage(bootloader.BIOS_DISABLED)
        device = self.device_finder()
        table = partition_table.read_partition_table(device)
        root, _ = bootloader.find_partition(device, root_uuid, table)
        if bios:
            raid = md.is_md_device(device)
            disks = md.get_holder_disks(device) if raid else [device]
            with bootloader.mounted(root) as where:
                if raid:
                    bootloader.check_raid_capable(where, device)
                bootloader.install_grub_in_chroot(where, disks, None, None)
            return
        if md.is_md_device(device):
            self._raid_uefi(device, root, root_uuid, uefi_firmware)
            return
        if esp_uuid:
            esp_path, esp = bootloader.find_partition(device, esp_uuid, table)
        else:
            found = efi.find_esp(table) if table else None
            if found is None:
                raise errors.DeviceNotFound(f"No EFI system partition found on {device}")
            esp, esp_path = found, partition_table.partition_path(device, found.number)
        assert table is not None
        with bootloader.mounted(root) as where:
            if bootloader.install_efi_files(where, efi.esp_image(device, table, esp), root_uuid):
                if esp_uuid:
                    bootloader.add_esp_to_fstab(where, esp_uuid)
            elif allowed:
                bootloader.install_grub_in_chroot(where, [], esp_path, esp_uuid)
            else:
                raise errors.InvalidImage(
                    f"The image on {root} carries no EFI boot loader to copy (shim/GRUB "
                    "under /usr/lib/shim, /usr/lib/grub/*-efi-signed or /boot/efi/EFI) or "
                    "no /boot/grub*/grub.cfg; running its grub-install needs "
                    "enable_bios_bootloader_install. " + bootloader.BIOS_DISABLED)
        if uefi_firmware and run.which("efibootmgr"):
            efi.manage_uefi(device, esp_uuid)
        else:
            LOG.info("No NVRAM entries from this ramdisk (%s); the firmware finds "
                     "EFI/BOOT on %s", "booted BIOS" if not uefi_firmware else "no efibootmgr",
                     esp_path)

    def _raid_uefi(self, device: str, root: str | None, root_uuid: str | None,
                   uefi_firmware: bool) -> None:
        """UEFI on a software RAID root: the firmware cannot read an ESP inside the
        array, so the boot files go onto the RAID-1 of the members' own ESPs
        (metadata 1.0: each member reads as a plain FAT), and every member gets its
        NVRAM entry. The files are the image's shim and GRUB when it carries them
        (partition images), else the content of the ESP inside the image."""
        from ironic_python_agent.hardware import raid

        esp_md = raid.prepare_boot_partitions(device, "uefi")
        assert esp_md is not None
        bootloader.format_esp(esp_md)
        copied = False
        if root is not None and root_uuid:
            with bootloader.mounted(root) as where:
                copied = bootloader.install_efi_files(where, esp_md, root_uuid)
        if not copied:
            table = partition_table.read_partition_table(device)
            inner = efi.find_esp(table) if table else None
            if inner is None or table is None:
                raise errors.InvalidImage(
                    f"The image on the software RAID {device} has neither EFI boot loaders "
                    "to copy (shim/GRUB in its root) nor an EFI system partition")
            count = efi.copy_esp(efi.esp_image(device, table, inner), esp_md)
            LOG.info("Copied %d files of the image's ESP to the RAIDed ESP %s", count, esp_md)
        run.run(["sync"], check=False, timeout=120)
        if not (uefi_firmware and run.which("efibootmgr")):
            LOG.info("No NVRAM entries from this ramdisk; the firmware finds EFI/BOOT on "
                     "the ESP of each member of %s", esp_md)
            return
        for n, disk in enumerate(md.get_holder_disks(device)):
            # read the member's ESP as the array wrote it, not what its cache holds
            run.run(["blockdev", "--flushbufs", disk], check=False, timeout=60)
            efi.manage_uefi(disk, None, label_suffix=f"(RAID, part{n})")


def _failed(exc: Exception, ignore: bool, what: str) -> None:
    """Log and return when boot loader failures are ignored; otherwise raise: an API
    error as it is, anything else as a CommandExecutionError saying *what* failed."""
    if ignore:
        LOG.warning("Ignoring boot loader failure: %s", exc)
        return
    if isinstance(exc, errors.RESTError):
        raise exc
    raise errors.CommandExecutionError(f"{what}: {exc}") from None


def _install_device() -> str:
    from ironic_python_agent import hardware

    return hardware.get_os_install_device()


EXTENSION = ImageExtension
