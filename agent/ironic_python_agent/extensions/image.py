# SPDX-License-Identifier: Apache-2.0
"""The ``image`` namespace: boot entries for the deployed image.

Whole-disk images carry their own boot loader, so the only work is UEFI NVRAM
entries when the ramdisk booted UEFI and the image has an ESP with loaders.
Everything else is a successful no-op, including Ironic asking for
``target_boot_mode=uefi`` on a node whose ramdisk booted BIOS. Installing
GRUB for partition images is not supported (partition images are not either).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from ironic_python_agent import config, efi, errors, run
from ironic_python_agent.extensions import base

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
        """UEFI entries for a whole-disk image's loaders; otherwise nothing to do."""
        ignore = (ignore_bootloader_failure if ignore_bootloader_failure is not None
                  else bool(config.current().ignore_bootloader_failure))
        uefi = self.firmware_is_uefi()
        if target_boot_mode == "uefi" and not uefi:
            LOG.info("Ironic asked for UEFI boot but the ramdisk booted BIOS; "
                     "no UEFI entries can be written from here")
        if uefi and run.which("efibootmgr"):
            device = self.device_finder()
            try:
                if efi.manage_uefi(device, efi_system_part_uuid):
                    return
            except errors.DeviceNotFound:
                if not is_whole_disk_root(root_uuid):
                    raise
                LOG.info("Whole-disk image on %s has no ESP; nothing to do", device)
            except Exception as exc:
                if ignore:
                    LOG.warning("Ignoring boot loader failure: %s", exc)
                    return
                if isinstance(exc, errors.RESTError):
                    raise
                raise errors.CommandExecutionError(
                    f"Setting up UEFI boot entries failed: {exc}") from None
        if is_whole_disk_root(root_uuid):
            LOG.info("Whole-disk image: the boot loader is the image's own")
            return
        if ignore:
            LOG.warning("Not installing a boot loader for root %s (not supported)", root_uuid)
            return
        raise errors.InvalidImage(
            f"Root {root_uuid} looks like a partition image; installing boot loaders for "
            "partition images is not supported by this agent")


def _install_device() -> str:
    from ironic_python_agent import hardware

    return hardware.get_os_install_device()


EXTENSION = ImageExtension
