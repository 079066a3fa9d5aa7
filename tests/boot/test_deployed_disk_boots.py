# SPDX-License-Identifier: Apache-2.0
"""A disk the agent wrote boots.

One QEMU guest under OVMF, with its own writable variable store: tinyipa
writes a bootable whole-disk image (tests/bootdisk.py: GPT, a FAT32 ESP made
with ``mkfs.vfat``, GRUB named by a shim-style ``BOOTX64.CSV``, no
removable-media loader) through ``standby.prepare_image`` from a loopback HTTP
server, and ``image.install_bootloader`` adds the UEFI entry. QEMU then starts
again with no kernel, initrd or ISO, the same disk and the same NVRAM: the
firmware can only boot through the entry the agent wrote, and the deployed OS
prints its marker on the serial console.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import bootdisk
from tests.boot.agent_checks import AgentAPI, lookup_and_heartbeat
from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic
from tests.imageserver import ImageServer

DISK_SIZE = 8 << 30  # agents ignore disks under 4 GiB as root devices


@pytest.mark.boot
def test_whole_disk_image_written_by_the_agent_boots(tinyipa_image: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    kernel, initramfs = tinyipa_image
    image = bootdisk.whole_disk_image(kernel)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    disk, nvram = tmp_path / "disk.img", tmp_path / "OVMF_VARS.fd"
    with FakeIronic() as ironic, ImageServer() as images:
        images.serve("/disk.raw", image)
        spec = GuestSpec(
            name="tinyipa-deploy-boot", kernel=kernel, initrd=initramfs, firmware="uefi",
            memory_mib=512, disk_size=DISK_SIZE,
            append=(f"console=ttyS0 panic=-1 ipa-api-url=http://10.0.2.2:{ironic.port} "
                    "ipa-insecure=1"))
        with Guest(spec) as guest:
            beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=300, heartbeat_timeout=180)
            api = AgentAPI.from_heartbeat(guest, beat, ironic.agent_token, timeout=600)
            info = {"id": "bootdisk", "urls": [f"http://10.0.2.2:{images.port}/disk.raw"],
                    "disk_format": "raw", "container_format": "bare",
                    "stream_raw_images": True, "os_hash_algo": "sha256",
                    "os_hash_value": digest, "node_uuid": "boot-node"}
            written = api.command("standby.prepare_image", {"image_info": info})
            assert written["command_status"] == "SUCCEEDED", written
            installed = api.command("image.install_bootloader",
                                    {"root_uuid": "0x00000000", "target_boot_mode": "uefi"})
            assert installed["command_status"] == "SUCCEEDED", installed
            assert api.command("standby.sync")["command_status"] == "SUCCEEDED"
            guest.stop()
            assert bootdisk.LABEL.encode("utf-16-le") in guest.vars_path.read_bytes()
            subprocess.run(["cp", "--sparse=always", str(guest.disk_path), str(disk)],
                           check=True)
            shutil.copyfile(guest.vars_path, nvram)
    with open(disk, "rb") as f, open(image, "rb") as want:
        assert f.read(1 << 20) == want.read(1 << 20)  # the agent's GPT, as served

    deployed = GuestSpec(name="deployed-os", firmware="uefi", memory_mib=512,
                         disk_size=DISK_SIZE, disk_image=disk, nvram=nvram)
    with Guest(deployed) as guest:
        guest.wait_for_console(bootdisk.MARKER, timeout=600)
        console = guest.console()
        assert "lean-ipa test GRUB: ESP is hd0,gpt1" in console, console[-2000:]
        assert "ironic-python-agent" not in console
