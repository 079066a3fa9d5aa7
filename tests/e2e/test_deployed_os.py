# SPDX-License-Identifier: Apache-2.0
"""End to end: what the agent writes for the real Ironic 39 boots by itself.

One UEFI QEMU node (OVMF, one variable store for all its boots, kernel +
initramfs boots of tinyipa as the ramdisk), no automated cleaning. Twice, the
real Ironic deploys an image to it and the test then powers it on with no
kernel, initrd or ISO: the firmware can only start what is on the disk,
through the boot entries the agent wrote (neither image has a removable-media
loader of its own), and the deployed OS prints its marker on the serial
console (tests/bootdisk.py).

1. A partition image (``image_type: partition``, ``root_gb: 1``): the agent
   makes the GPT, the ESP and the root partition, streams the ext4 root into
   it, and ``image.install_bootloader`` copies the image's own Debian-signed
   shim and GRUB onto the ESP (``EFI/debian``) with a grub.cfg that finds the
   root by UUID and loads the OS's ``/boot/grub/grub.cfg``.
2. After undeploy, a whole-disk image (GPT, a FAT32 ESP made with
   ``mkfs.vfat`` holding GRUB named by a shim-style ``BOOTX64.CSV``): the
   agent adds the NVRAM entry from the CSV.

And one BIOS node (SeaBIOS): Ironic, with
``[agent]enable_bios_bootloader_install``, deploys a partition image of a
Debian root with GRUB for BIOS but no boot loader installed (qcow2); the agent
makes the MBR table and root partition, and runs the image's own
``grub-install`` on the disk and ``grub-mkconfig`` in a chroot. SeaBIOS then
boots the disk's MBR.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import bootdisk
from tests.e2e import ironic, qemu_bmc
from tests.e2e.conftest import Ironic, vm_ironic

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

GiB = 1 << 30


@pytest.fixture(scope="module")
def artefacts(e2e_artifacts: Path) -> Path:
    path = e2e_artifacts / "deployed-os"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def ironic_os(tmp_path_factory: pytest.TempPathFactory, artefacts: Path) -> Iterator[Ironic]:
    """BIOS boot loader installs allowed (the partition image's grub-install)."""
    yield from vm_ironic(tmp_path_factory, artefacts, "ironic-os",
                         bios_bootloader_install=True)


def partitions(disk: Path) -> list[dict[str, Any]]:
    """The node disk's partition table, as ``sfdisk --json`` reads it."""
    out = subprocess.run(["sfdisk", "--json", str(disk)], check=True, capture_output=True,
                         text=True).stdout
    return list(json.loads(out)["partitiontable"]["partitions"])


def uefi_or_bios_node(ironic_os: Ironic, artefacts: Path, tmp_path: Path, firmware: str,
                      ) -> tuple[qemu_bmc.QemuNode, qemu_bmc.NodeFlows]:
    """A node booting tinyipa from the kernel under *firmware*, and its flows."""
    kernel, initrd = qemu_bmc.tinyipa_image(ironic.out_dir())
    node = qemu_bmc.QemuNode(f"os-{firmware}", qemu_bmc.KernelMedia(kernel, initrd),
                             ironic_os.service.api_port, tmp_path, artefacts,
                             memory_mib=1024, firmware=firmware)
    return node, qemu_bmc.NodeFlows(node, ironic_os.service, ironic_os.client)


def make_available(flows: qemu_bmc.NodeFlows, boot_mode: str) -> str:
    """Enroll the node with *boot_mode* and no automated cleaning, and provide it."""
    client = flows.client
    uuid = flows.enroll(management_interface="noop", automated_clean=False)
    client.patch_node(uuid, properties={**client.node(uuid)["properties"],
                                        "capabilities": f"boot_mode:{boot_mode}"})
    client.set_provision_state(uuid, "provide")
    client.wait_for_state(uuid, {"available"}, timeout=120)
    return uuid


def report(flows: qemu_bmc.NodeFlows) -> None:
    for t in flows.timings:
        print(f"deployed-os {t.flow:24} agent up {t.agent_started or 0:6.1f} s, "
              f"done {t.finished:6.1f} s after the guest started")


@pytest.mark.timeout(2400)
def test_deployed_images_boot_from_their_disk(ironic_os: Ironic, artefacts: Path,
                                              tmp_path: Path) -> None:
    kernel, _ = qemu_bmc.tinyipa_image(ironic.out_dir())
    served = qemu_bmc.serve_copies(tmp_path / "served", {
        "partition.img": bootdisk.partition_image(kernel),
        "whole-disk.raw": bootdisk.whole_disk_image(kernel)})
    partition, whole_disk = served / "partition.img", served / "whole-disk.raw"
    node, flows = uefi_or_bios_node(ironic_os, artefacts, tmp_path, "uefi")
    client = ironic_os.client
    try:
        with qemu_bmc.ImageServer(served) as server:
            uuid = make_available(flows, "uefi")

            flows.deploy(server, partition, "raw", image_type="partition")
            table = partitions(node.disk)
            esp = [p for p in table if p["type"] == bootdisk.ESP_GPT_TYPE]
            assert len(esp) == 1, table
            assert any(p["size"] * 512 == GiB for p in table), f"no 1 GiB root: {table}"
            console = node.boot_from_disk("os-partition", bootdisk.MARKER + r".*"
                                          + bootdisk.PARTITION_LAYOUT)
            assert "lean-ipa test OS: root is" in console, console[-2000:]
            assert node.nvram is not None
            assert "debian".encode("utf-16-le") in node.nvram.read_bytes()

            client.set_provision_state(uuid, "deleted")
            client.wait_for_state(uuid, {"available"}, timeout=180)

            flows.deploy(server, whole_disk, "raw")
            with open(node.disk, "rb") as disk, open(whole_disk, "rb") as want:
                assert disk.read(1 << 20) == want.read(1 << 20)  # the image's GPT
            console = node.boot_from_disk("os-whole-disk", bootdisk.MARKER)
            assert "lean-ipa test GRUB: ESP is hd0,gpt1" in console, console[-2000:]
            assert bootdisk.LABEL.encode("utf-16-le") in node.nvram.read_bytes()
            assert "ironic-python-agent" not in console
    finally:
        report(flows)
        flows.retire()
        node.close()


@pytest.mark.timeout(1800)
def test_bios_partition_image_boots_with_its_own_grub(ironic_os: Ironic, artefacts: Path,
                                                      tmp_path: Path) -> None:
    kernel, _ = qemu_bmc.tinyipa_image(ironic.out_dir())
    served = qemu_bmc.serve_copies(tmp_path / "served", {
        "partition-bios.qcow2": bootdisk.bios_partition_image(kernel)})
    image = served / "partition-bios.qcow2"
    node, flows = uefi_or_bios_node(ironic_os, artefacts, tmp_path, "bios")
    try:
        with qemu_bmc.ImageServer(served) as server:
            make_available(flows, "bios")
            flows.deploy(server, image, "qcow2", image_type="partition")
            assert node.read_disk(2, 510) == b"\x55\xaa", "no MBR on the disk"
            assert b"GRUB" in node.read_disk(512), "GRUB's boot code is not in the MBR"
            table = partitions(node.disk)
            assert any(p["size"] * 512 == GiB for p in table), f"no 1 GiB root: {table}"
            console = node.boot_from_disk("os-bios", bootdisk.MARKER + r".*"
                                          + bootdisk.BIOS_LAYOUT)
            assert bootdisk.BIOS_KERNEL_VERSION in console, console[-2000:]
    finally:
        report(flows)
        flows.retire()
        node.close()
