# SPDX-License-Identifier: Apache-2.0
"""tinyipa reads an EFI system partition on a real (virtio) disk.

The functional tests read ESPs on loop devices from the host; this boots the
image under OVMF with a virtio disk holding a GPT and an ESP made by
``mkfs.vfat`` as distributions make them, and has the agent in the guest run
``image.install_bootloader`` for a whole-disk image: it must list the ESP with
mtools, read shim's ``BOOTX64.CSV`` and write the NVRAM entry, which then sits
in OVMF's variable store.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.boot.agent_checks import AgentAPI, lookup_and_heartbeat
from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic

DISK_SIZE = 8 << 30  # agents ignore disks under 4 GiB as root devices
ESP_START_MIB, ESP_MIB = 1, 64
LABEL = "lean-ipa ESP test"


def make_disk(path: Path) -> None:
    """GPT with a FAT32 ESP (shim layout) and a Linux partition, sparse."""
    with open(path, "wb") as disk:
        disk.truncate(DISK_SIZE)
    subprocess.run(["sfdisk", "-q", str(path)], check=True, text=True, input=(
        "label: gpt\n"
        f"start={ESP_START_MIB * 2048}, size={ESP_MIB}MiB, "
        "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
        "size=512MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"))
    esp = path.with_name("esp.img")
    with open(esp, "wb") as f:
        f.truncate(ESP_MIB << 20)
    subprocess.run(["mkfs.vfat", "-F", "32", "-n", "EFI", str(esp)], check=True,
                   capture_output=True)
    loader = path.with_name("loader.efi")
    loader.write_bytes(b"MZ not really a loader\n")
    csv = path.with_name("BOOTX64.CSV")
    csv.write_bytes(f"shimx64.efi,{LABEL},,This is the boot entry\n".encode("utf-16"))
    subprocess.run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT", "::/EFI/debian"],
                   check=True)
    for src, dest in ((loader, "::/EFI/BOOT/BOOTX64.EFI"), (loader, "::/EFI/debian/shimx64.efi"),
                      (csv, "::/EFI/debian/BOOTX64.CSV")):
        subprocess.run(["mcopy", "-i", str(esp), str(src), dest], check=True)
    subprocess.run(["dd", f"if={esp}", f"of={path}", "bs=1M", f"seek={ESP_START_MIB}",
                    "conv=notrunc,sparse", "status=none"], check=True)


@pytest.mark.boot
def test_install_bootloader_reads_esp_on_virtio_disk(tinyipa_image: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    kernel, initramfs = tinyipa_image
    disk = tmp_path / "disk.img"
    make_disk(disk)
    with FakeIronic() as ironic:
        spec = GuestSpec(
            name="tinyipa-esp", kernel=kernel, initrd=initramfs, firmware="uefi",
            memory_mib=512, disk_size=DISK_SIZE, disk_image=disk,
            append=(f"console=ttyS0 panic=-1 ipa-api-url=http://10.0.2.2:{ironic.port} "
                    "ipa-insecure=1"))
        with Guest(spec) as guest:
            beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=300, heartbeat_timeout=180)
            api = AgentAPI.from_heartbeat(guest, beat, ironic.agent_token)
            result = api.command("image.install_bootloader",
                                 {"root_uuid": "0x00000000", "target_boot_mode": "uefi"})
            assert result["command_status"] == "SUCCEEDED", result
            # efibootmgr wrote the entry through efivarfs into OVMF's variable store
            nvram = (guest.disk_path.parent / "OVMF_VARS.fd").read_bytes()
            assert LABEL.encode("utf-16-le") in nvram
            assert "\\EFI\\debian\\shimx64.efi".encode("utf-16-le") in nvram
