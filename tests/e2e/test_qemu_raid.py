# SPDX-License-Identifier: Apache-2.0
"""End to end: the real Ironic 39 builds software RAID on a QEMU node, deploys an
OS onto it that boots from any member, and deletes the RAID again.

A node with four virtio disks (TCG, tinyipa from the kernel, BIOS, so MBR
member disks), ``raid_interface=agent`` and no automated cleaning; the operator
sets a ``target_raid_config`` of a RAID-1 root and a RAID-0 data volume and runs
manual cleaning with ``delete_configuration`` + ``create_configuration``: Ironic
stores the agent's result as the node's ``raid_config`` and the RAID level in
its capabilities, and the host reads the md superblocks from the disk files.

Then Ironic (``[agent]enable_bios_bootloader_install``) deploys the BIOS
partition image of tests/bootdisk.py onto the RAID-1 root (the agent
partitions the md device and runs the image's ``grub-install`` on every
member). The disks boot by themselves twice, once without the first member and
once without the second: each member's MBR has GRUB, which assembles the
degraded array and starts the deployed OS. After undeploy, manual cleaning with
``delete_configuration`` leaves no md superblock on any member. Erasing and
the other layouts are shown in tinyipa with the agent's API alone
(tests/boot/test_tinyipa_raid.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import bootdisk
from tests.boot.qemu import Guest, GuestSpec
from tests.e2e import ironic, qemu_bmc
from tests.e2e.conftest import Ironic, vm_ironic
from tests.raidtools import gpt_entries, mbr_entries, superblock

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

MiB = 1 << 20
TARGET = {"logical_disks": [
    {"controller": "software", "raid_level": "1", "size_gb": 2, "volume_name": "root",
     "is_root_volume": True},
    {"controller": "software", "raid_level": "0", "size_gb": 2, "volume_name": "data"}]}


@dataclass
class FourDiskMedia(qemu_bmc.KernelMedia):
    """Direct kernel boot with three more virtio disks beside the node's own."""

    extra_disks: tuple[Path, ...] = field(default=())

    def spec(self, node: qemu_bmc.QemuNode, params: str, workdir: Path) -> GuestSpec:
        spec = super().spec(node, params, workdir)
        args: list[str] = []
        for n, path in enumerate(self.extra_disks, start=1):
            args += ["-drive", f"file={path},if=none,id=raid{n},format=raw,cache=unsafe",
                     "-device", f"virtio-blk-pci,drive=raid{n},serial=raid-disk{n}"]
        spec.extra_args = tuple(args)
        return spec


@pytest.fixture(scope="module")
def ironic_raid(tmp_path_factory: pytest.TempPathFactory, e2e_artifacts: Path
                ) -> Iterator[Ironic]:
    artefacts = e2e_artifacts / "qemu-raid"
    artefacts.mkdir(parents=True, exist_ok=True)
    yield from vm_ironic(tmp_path_factory, artefacts, "ironic-raid",
                         bios_bootloader_install=True)


def boot_without(disks: list[Path], missing: int, name: str, artefacts: Path, marker: str,
                 firmware: str = "bios", nvram: Path | None = None) -> str:
    """Boot the node's disks (no kernel or ISO) with member *missing* removed; the
    console once *marker* is on it. The disks and *nvram* are not changed."""
    present = [d for n, d in enumerate(disks) if n != missing]
    args: list[str] = []
    for n, path in enumerate(present[1:], start=1):
        args += ["-drive", f"file={path},if=none,id=raid{n},format=raw,snapshot=on",
                 "-device", f"virtio-blk-pci,drive=raid{n},serial=raid-disk{n}"]
    spec = GuestSpec(name=name, firmware=firmware, memory_mib=512, disk_image=present[0],
                     disk_size=qemu_bmc.DISK_SIZE, forward_ports=(), extra_args=tuple(args),
                     nvram=nvram)
    with Guest(spec) as guest:
        try:
            guest.wait_for_console(marker, timeout=600)
            return guest.console()
        finally:
            guest.stop()
            shutil.copyfile(guest.console_path, artefacts / f"{name}.console.log")


def four_disk_node(ironic_raid: Ironic, artefacts: Path, tmp_path: Path, name: str,
                   firmware: str) -> tuple[qemu_bmc.QemuNode, qemu_bmc.NodeFlows, list[Path]]:
    """A node booting tinyipa from the kernel with four sparse virtio disks, enrolled
    with ``raid_interface=agent``, no automated cleaning and :data:`TARGET`."""
    kernel, initrd = qemu_bmc.tinyipa_image(ironic.out_dir())
    extra = tuple(tmp_path / f"{name}-disk{n}.img" for n in (1, 2, 3))
    for path in extra:
        with open(path, "wb") as f:
            f.truncate(qemu_bmc.DISK_SIZE)
    media = FourDiskMedia(kernel, initrd, extra_disks=extra)
    node = qemu_bmc.QemuNode(name, media, ironic_raid.service.api_port, tmp_path, artefacts,
                             firmware=firmware)
    flows = qemu_bmc.NodeFlows(node, ironic_raid.service, ironic_raid.client)
    client = ironic_raid.client
    flows.enroll(management_interface="noop", automated_clean=False)
    client.patch_node(node.uuid, raid_interface="agent", properties={
        **client.node(node.uuid)["properties"], "capabilities": f"boot_mode:{firmware}"})
    client.call("PUT", f"/v1/nodes/{node.uuid}/states/raid", TARGET, ok=(204,))
    return node, flows, [node.disk, *extra]


def create_raid(node: qemu_bmc.QemuNode, ironic_raid: Ironic) -> dict[str, Any]:
    """Manual cleaning: delete_configuration, create_configuration; the node after."""
    created = qemu_bmc.drive(
        node, ironic_raid.service, ironic_raid.client, "clean", {"manageable"},
        wait_state="clean wait", label="raid-create", clean_steps=[
            {"interface": "raid", "step": "delete_configuration"},
            {"interface": "raid", "step": "create_configuration"}]).node
    assert created["last_error"] is None, created["last_error"]
    assert created["raid_config"]["logical_disks"] == TARGET["logical_disks"]
    assert "raid_level:1" in created["properties"].get("capabilities", "")
    return created


@pytest.mark.timeout(2400)
def test_raid_interface_agent_builds_software_raid(
        ironic_raid: Ironic, e2e_artifacts: Path, tmp_path: Path) -> None:
    kernel, _ = qemu_bmc.tinyipa_image(ironic.out_dir())
    artefacts = e2e_artifacts / "qemu-raid"
    node, flows, disks = four_disk_node(ironic_raid, artefacts, tmp_path, "vm-raid", "bios")
    client, service = ironic_raid.client, ironic_raid.service
    try:
        create_raid(node, ironic_raid)
        for disk in disks:
            assert gpt_entries(disk) == [], disk  # BIOS, no disk_label: MBR members
            parts = mbr_entries(disk)
            assert [(p[0], p[1] - p[0], p[2]) for p in parts] == [
                (1 * MiB, 2050 * MiB, 0xFD), (2051 * MiB, 514 * MiB, 0xFD)], disk
            root, data = superblock(disk, parts[0][0]), superblock(disk, parts[1][0])
            assert root is not None and data is not None, disk
            assert (root["major"], root["super_offset"], root["name"], root["level"]) == (
                1, 8, "any:root", 1)
            assert (data["name"], data["level"], data["raid_disks"]) == ("any:data", 0, 4)
        starts = {disk: [p[0] for p in mbr_entries(disk)] for disk in disks}

        # Deploy the BIOS partition image onto the RAID-1 root; boot it degraded.
        served = qemu_bmc.serve_copies(tmp_path / "served", {
            "partition-bios.qcow2": bootdisk.bios_partition_image(kernel)})
        image = served / "partition-bios.qcow2"
        client.set_provision_state(node.uuid, "provide")
        client.wait_for_state(node.uuid, {"available"}, timeout=120)
        with qemu_bmc.ImageServer(served) as server:
            flows.deploy(server, image, "qcow2", image_type="partition")
        for disk in disks:
            with open(disk, "rb") as f:
                assert b"GRUB" in f.read(512), f"no GRUB in the MBR of {disk}"
        for missing in (0, 1):
            console = boot_without(disks, missing, f"vm-raid-os-without-disk{missing}",
                                   artefacts, bootdisk.MARKER + ".*" + bootdisk.BIOS_LAYOUT)
            assert bootdisk.BIOS_KERNEL_VERSION in console, console[-2000:]

        # Undeploy (no cleaning), then delete_configuration: no superblock is left.
        client.set_provision_state(node.uuid, "deleted")
        client.wait_for_state(node.uuid, {"available"}, timeout=180)
        client.set_provision_state(node.uuid, "manage")
        client.wait_for_state(node.uuid, {"manageable"}, timeout=60)
        deleted = qemu_bmc.drive(
            node, service, client, "clean", {"manageable"}, wait_state="clean wait",
            label="raid-delete",
            clean_steps=[{"interface": "raid", "step": "delete_configuration"}]).node
        assert deleted["last_error"] is None, deleted["last_error"]
        for disk in disks:
            left = [start for start in starts[disk] if superblock(disk, start) is not None]
            assert left == [], f"md superblocks left on {disk} at {left}"
    finally:
        node.close()
        flows.retire()


@pytest.mark.timeout(2400)
def test_uefi_raid_root_boots_from_any_member(ironic_raid: Ironic, e2e_artifacts: Path,
                                              tmp_path: Path) -> None:
    """UEFI: each member gets an ESP from create_configuration; the boot loader goes
    onto their RAID-1 (metadata 1.0, a plain FAT on each member) with an NVRAM entry
    per member, and the OS boots with the first or the second member removed."""
    kernel, _ = qemu_bmc.tinyipa_image(ironic.out_dir())
    artefacts = e2e_artifacts / "qemu-raid"
    node, flows, disks = four_disk_node(ironic_raid, artefacts, tmp_path, "vm-raid-uefi",
                                        "uefi")
    client = ironic_raid.client
    try:
        create_raid(node, ironic_raid)
        for n, disk in enumerate(disks):
            assert [p[2] for p in gpt_entries(disk)] == [
                f"uefi-holder-{n}", "raid-root", "raid-data"], disk
        served = qemu_bmc.serve_copies(tmp_path / "served", {
            "partition.img": bootdisk.partition_image(kernel)})
        client.set_provision_state(node.uuid, "provide")
        client.wait_for_state(node.uuid, {"available"}, timeout=120)
        with qemu_bmc.ImageServer(served) as server:
            flows.deploy(server, served / "partition.img", "raw", image_type="partition")
        assert node.nvram is not None
        variables = node.nvram.read_bytes()
        for n in range(len(disks)):
            assert f"(RAID, part{n})".encode("utf-16-le") in variables, n
        for missing in (0, 1):
            console = boot_without(disks, missing, f"vm-raid-uefi-os-without-disk{missing}",
                                   artefacts, bootdisk.MARKER + ".*" + bootdisk.PARTITION_LAYOUT,
                                   firmware="uefi", nvram=node.nvram)
            assert "lean-ipa test OS: root is" in console, console[-2000:]
    finally:
        node.close()
        flows.retire()
