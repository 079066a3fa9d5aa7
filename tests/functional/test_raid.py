# SPDX-License-Identifier: Apache-2.0
"""Software RAID steps on four loop devices of the test's own.

This host's kernel has no md driver (and no partition parsers: partitions appear
through ``partx -a``), so arrays are built in tinyipa under QEMU
(tests/boot/test_tinyipa_raid.py). Here, on real loop devices: the step refuses
before touching a disk when the kernel has no md; the member layout (ESP or
BIOS boot partition, then the RAID partitions) is written and seen by the
kernel; and md superblocks, written as mdadm 1.2 lays them out (mdadm
--examine reads them back), are removed by ``delete_configuration`` and by
``erase_devices_metadata``, which then erases the former members.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironic_python_agent import errors
from ironic_python_agent.hardware import generic, raid
from tests.hwfixtures import MiB, hardware_conf, loop_device, reset_hardware

GiB = 1 << 30
MD_AVAILABLE = os.path.exists("/proc/mdstat")


def superblock_1(name: str, level: int, raid_disks: int, dev_number: int,
                 data_sectors: int) -> bytes:
    """An md 1.2 superblock (struct mdp_superblock_1 and the role table, checksummed)."""
    sb = bytearray(256 + 2 * raid_disks)
    struct.pack_into("<II", sb, 0, 0xA92B4EFC, 1)
    sb[16:32] = uuid.UUID(int=0x1234).bytes
    sb[32:32 + len(name)] = name.encode()
    struct.pack_into("<QiiQII", sb, 64, 1_700_000_000, level, 0, data_sectors,
                     0 if level == 1 else 1024, raid_disks)
    struct.pack_into("<QQQQI", sb, 128, 4096, data_sectors, 8, 0, dev_number)
    sb[168:184] = uuid.UUID(int=0x5678 + dev_number).bytes
    struct.pack_into("<QQQ", sb, 192, 1_700_000_000, 1, 0xFFFFFFFFFFFFFFFF)
    struct.pack_into("<I", sb, 220, raid_disks)
    for n in range(raid_disks):
        struct.pack_into("<H", sb, 256 + 2 * n, n)
    total = sum(struct.unpack_from(f"<{len(sb) // 4}I", sb))
    struct.pack_into("<I", sb, 216, ((total & 0xFFFFFFFF) + (total >> 32)) & 0xFFFFFFFF)
    return bytes(sb)


def write_superblock(device: str, number: int, size: int) -> None:
    with open(device, "r+b") as f:
        f.seek(4096)
        f.write(superblock_1("any:root", 1, 4, number, size // 512 - 4096))
        f.flush()
        os.fsync(f.fileno())


def examine(device: str) -> bool:
    """Whether mdadm finds an md superblock (on a partitioned disk it describes the
    partition table and exits 0 as well)."""
    out = subprocess.run(["mdadm", "--examine", device], capture_output=True, text=True)
    return out.returncode == 0 and "Magic : a92b4efc" in out.stdout


def partitions(device: str) -> list[dict]:
    out = subprocess.run(["sfdisk", "--json", device], capture_output=True, text=True)
    if out.returncode != 0:
        return []
    return json.loads(out.stdout)["partitiontable"]["partitions"]


@pytest.fixture()
def loops(tmp_path: Path) -> Iterator[list[str]]:
    reset_hardware()
    with contextlib.ExitStack() as stack:
        devices = [stack.enter_context(loop_device(tmp_path, 2 * GiB, name=f"d{n}.img"))
                   for n in range(4)]
        hardware_conf(allow=devices)
        yield devices
        for device in devices:
            subprocess.run(["partx", "-d", device], check=False, capture_output=True)
    reset_hardware()


def node(**extra: object) -> dict:
    return {"uuid": "raid-node", "properties": {}, "instance_info": {},
            "driver_internal_info": {}, **extra}


TARGET = {"logical_disks": [
    {"controller": "software", "raid_level": "1", "size_gb": 1, "volume_name": "root",
     "is_root_volume": True},
    {"controller": "software", "raid_level": "0", "size_gb": "MAX", "volume_name": "data"}]}


@pytest.mark.skipif(MD_AVAILABLE, reason="this kernel has md: arrays are tested in QEMU")
def test_create_refuses_on_a_kernel_without_md_before_writing(loops):
    manager = generic.GenericHardwareManager()
    with pytest.raises(errors.SoftwareRAIDError,
                       match=r"This kernel has no md \(software RAID\) driver"):
        manager.create_configuration(node(target_raid_config=TARGET), [])
    for device in loops:
        assert partitions(device) == [], device
        with open(device, "rb") as f:
            assert f.read(MiB).count(0) == MiB


def test_create_refuses_sizes_that_do_not_fit(loops):
    manager = generic.GenericHardwareManager()
    config = {"logical_disks": [{"controller": "software", "raid_level": "1", "size_gb": 2}]}
    with pytest.raises(errors.SoftwareRAIDError, match=r"is too small for the requested "
                       r"volumes \(md0: 2 GiB RAID-1\)"):
        manager.create_configuration(node(target_raid_config=config), [])
    assert all(partitions(d) == [] for d in loops)


def test_member_layout_written_and_seen_by_the_kernel(loops):
    vols = [raid.Volume(0, "1", 1, "root", list(loops), True, {}),
            raid.Volume(1, "0", None, "data", list(loops), None, {})]
    layout = raid.plan(vols, {d: 2 * GiB for d in loops}, "uefi", "gpt")
    raid.partition_disks(layout, "gpt")
    raid.wait_for([m for v in vols for m in v.members])
    for n, device in enumerate(loops):
        parts = partitions(device)
        assert [(p["start"] * 512 // MiB, p["type"], p["name"]) for p in parts] == [
            (1, raid.ESP_TYPE, f"uefi-holder-{n}"), (551, raid.GPT_RAID_TYPE, "raid-root"),
            (551 + 1026, raid.GPT_RAID_TYPE, "raid-data")]
        assert parts[0]["size"] * 512 == 550 * MiB
        assert parts[1]["size"] * 512 == 1026 * MiB
        assert os.path.exists(f"{device}p3")
    assert vols[1].members == [f"{d}p3" for d in loops]
    assert raid.esp_partitions(loops) == [f"{d}p1" for d in loops]


def test_delete_configuration_zeroes_every_superblock(loops):
    layout = raid.plan([raid.Volume(0, "1", 1, "root", loops[:3], True, {})],
                       {d: 2 * GiB for d in loops}, "bios", "gpt")
    raid.partition_disks(layout, "gpt")
    raid.wait_for([f"{d}p2" for d in loops[:3]])
    members = [f"{d}p2" for d in loops[:3]] + [loops[3]]  # one whole-disk member
    for n, member in enumerate(members):
        write_superblock(member, n, 1026 * MiB)
    assert all(examine(m) for m in members)
    generic.GenericHardwareManager().delete_configuration(node(), [])
    assert not any(examine(m) for m in members)
    assert not any(examine(f"{d}p2") for d in loops[:3])


def test_erase_metadata_wipes_members_instead_of_skipping_them(loops):
    for n, device in enumerate(loops):
        write_superblock(device, n, 2 * GiB)
    report = generic.GenericHardwareManager().erase_devices_metadata(node(), [])
    assert {name: line["outcome"] for name, line in report.items()} == {
        d: "erased" for d in loops}
    assert not any(examine(d) for d in loops)
