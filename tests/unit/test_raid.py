# SPDX-License-Identifier: Apache-2.0
"""Software RAID: the checks of a target_raid_config, the member layout, the skip-list
rules, md arrays in sysfs, mdadm output, and the steps the generic manager offers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ironic_python_agent import errors
from ironic_python_agent.hardware import generic, md, raid
from ironic_python_agent.hardware.devices import BlockDevice
from tests.hwfixtures import hardware_conf, reset_hardware

GiB = 1 << 30


def ld(level: str, size: int | str, **extra: object) -> dict:
    return {"controller": "software", "raid_level": level, "size_gb": size, **extra}


def disk(name: str, size_gib: int, serial: str = "") -> BlockDevice:
    return BlockDevice(name=name, model="QEMU", size=size_gib * GiB, rotational=False,
                       serial=serial or os.path.basename(name), kind="disk",
                       serials=[serial or os.path.basename(name)])


def volumes(config: list[dict], devices: list[BlockDevice]) -> list[raid.Volume]:
    chosen = raid.select_disks(config, devices)
    return [raid.Volume(index=n, level=d["raid_level"],
                        size_gb=None if d["size_gb"] == "MAX" else int(d["size_gb"]),
                        name=d.get("volume_name", f"md{n}"), disks=chosen[n],
                        is_root=d.get("is_root_volume"), logical_disk=d, device=f"/dev/md{n}")
            for n, d in enumerate(config)]


# --- validation -------------------------------------------------------------------------

def test_valid_configurations_pass():
    for second in ("0", "1", "1+0", "5", "6"):
        raid.validate({"logical_disks": [ld("1", 10, volume_name="root", is_root_volume=True),
                                         ld(second, "MAX", volume_name="data")]})
    raid.validate({"logical_disks": [ld("1", "MAX")]})


@pytest.mark.parametrize(("config", "message"), [
    ({}, "RAID config contains no logical disks"),
    ({"logical_disks": [ld("0", 10)]}, "requires RAID-1 for the first logical disk, not RAID-0"),
    ({"logical_disks": [ld("1", 10), ld("2", 10)]}, "RAID level '2' is not supported"),
    ({"logical_disks": [ld("1", 10), ld("5+0", 10)]}, "RAID level '5+0' is not supported"),
    ({"logical_disks": [ld("1", 10)] * 3}, "requires one or two logical disks, not 3"),
    ({"logical_disks": [ld("1", "MAX"), ld("0", "MAX")]}, "only one RAID device with size 'MAX'"),
    ({"logical_disks": [ld("1", 10, volume_name="a"), ld("0", 1, volume_name="a")]},
     "Duplicate software RAID device name a"),
    ({"logical_disks": [ld("1", 10, is_root_volume=True), ld("0", 1, is_root_volume=True)]},
     "only one logical disk to be marked as is_root_volume"),
    ({"logical_disks": [{**ld("1", 10), "controller": "raidcard"}]},
     "'controller'='software' (logical disk 0 has 'raidcard')"),
    ({"logical_disks": [ld("1", 10, physical_disks=[{"name": "/dev/vda"}])]},
     "must be a list with at least 2 items"),
    ({"logical_disks": [ld("1", 10, physical_disks=["/dev/vda", "/dev/vdb"])]},
     "must be a list of device hints (dictionaries)"),
    ({"logical_disks": [ld("1", 10), ld("6", 1, physical_disks=[
        {"name": "a"}, {"name": "b"}, {"name": "c"}])]},
     "RAID-6 needs at least 4 disks, physical_disks names 3"),
    ({"logical_disks": [ld("1", -3)]}, "size_gb must be a positive number of GiB or 'MAX'"),
    ({"logical_disks": [ld("1", "big")]}, "size_gb must be a positive number of GiB or 'MAX'"),
    ({"logical_disks": [ld("1", 1, volume_name="esp")]}, "reserved for the RAID of the EFI"),
    ({"logical_disks": [ld("1", 1, volume_name="a b")]}, "volume_name 'a b' must be"),
])
def test_invalid_configurations_name_the_problem(config, message):
    with pytest.raises(errors.SoftwareRAIDError) as exc:
        raid.validate(config, "node-1")
    assert message in exc.value.details
    if config:
        assert "Could not validate Software RAID config for node-1" in exc.value.details


def test_skip_list_requires_volume_names():
    with pytest.raises(errors.SoftwareRAIDError, match="required to have a volume name"):
        raid.validate({"logical_disks": [ld("1", 10)]}, skip_volume_names={"data"})


# --- layout -------------------------------------------------------------------------------

FOUR = [disk(f"/dev/vd{c}", 8) for c in "abcd"]


def test_uefi_layout_esp_then_members_sized_per_level():
    vols = volumes([ld("1", 2, volume_name="root"), ld("0", 3, volume_name="data")], FOUR)
    layout = raid.plan(vols, {d.name: d.size for d in FOUR}, "uefi", "gpt")
    assert set(layout) == {d.name for d in FOUR}
    parts = layout["/dev/vdc"]
    assert parts[0] == raid.PartSpec(1, 1, 550, raid.ESP_TYPE, "uefi-holder-2")
    # RAID-1: each member holds all 2 GiB; RAID-0 over 4 disks: a quarter of 3 GiB each;
    # plus the 2 MiB md data offset.
    assert parts[1] == raid.PartSpec(2, 551, 2048 + 2, raid.GPT_RAID_TYPE, "raid-root")
    assert parts[2] == raid.PartSpec(3, 551 + 2050, 768 + 2, raid.GPT_RAID_TYPE, "raid-data")
    assert vols[0].members == ["/dev/vda2", "/dev/vdb2", "/dev/vdc2", "/dev/vdd2"]
    assert vols[1].members == ["/dev/vda3", "/dev/vdb3", "/dev/vdc3", "/dev/vdd3"]


def test_bios_layouts():
    vols = volumes([ld("1", 1)], FOUR[:2])
    gpt = raid.plan(vols, {d.name: d.size for d in FOUR}, "bios", "gpt")["/dev/vda"]
    assert [(p.number, p.start_mib, p.size_mib, p.type) for p in gpt] == [
        (1, 1, 2, raid.BIOS_BOOT_TYPE), (2, 8, 1026, raid.GPT_RAID_TYPE)]
    vols = volumes([ld("1", 1)], FOUR[:2])
    mbr = raid.plan(vols, {d.name: d.size for d in FOUR}, "bios", "msdos")["/dev/vda"]
    assert [(p.number, p.start_mib, p.size_mib, p.type) for p in mbr] == [(1, 1, 1026, "fd")]
    assert vols[0].members == ["/dev/vda1", "/dev/vdb1"]


@pytest.mark.parametrize(("level", "members", "per_member"), [
    ("0", 4, 256), ("1", 4, 1024), ("1+0", 4, 512), ("5", 4, 342), ("6", 4, 512),
    ("5", 3, 512), ("1+0", 2, 1024)])
def test_member_sizes(level, members, per_member):
    assert raid.member_mib(level, 1, members) == per_member + raid.DATA_OFFSET_MIB


def test_max_goes_last_and_takes_the_rest():
    vols = volumes([ld("1", "MAX", volume_name="root"), ld("1+0", 1, volume_name="d")], FOUR)
    layout = raid.plan(vols, {d.name: d.size for d in FOUR}, "uefi", "gpt")
    parts = layout["/dev/vda"]
    assert [(p.name, p.start_mib, p.size_mib) for p in parts[1:]] == [
        ("raid-d", 551, 514), ("raid-root", 551 + 514, None)]
    assert vols[0].members[0] == "/dev/vda3"
    script = raid.sfdisk_script(parts, "gpt")
    assert script.splitlines() == [
        "label: gpt",
        f"start=1MiB, size=550MiB, type={raid.ESP_TYPE}, name=\"uefi-holder-0\"",
        f"start=551MiB, size=514MiB, type={raid.GPT_RAID_TYPE}, name=\"raid-d\"",
        f"start=1065MiB, type={raid.GPT_RAID_TYPE}, name=\"raid-root\""]


def test_too_big_names_disk_and_sizes():
    small = [disk("/dev/vda", 8), disk("/dev/vdb", 4)]
    vols = volumes([ld("1", 6, volume_name="root")], small)
    with pytest.raises(errors.SoftwareRAIDError) as exc:
        raid.plan(vols, {d.name: d.size for d in small}, "uefi", "gpt")
    assert exc.value.details == (
        "/dev/vdb (4.0 GiB) is too small for the requested volumes (root: 6 GiB RAID-1): "
        "they need 6697 MiB of it and 4095 MiB are usable")


def test_not_enough_disks_for_level():
    vols = volumes([ld("1", 1), ld("6", 1, volume_name="data")], FOUR[:3])
    with pytest.raises(errors.SoftwareRAIDError,
                       match=r"RAID-6 volume data needs at least 4 disks, found 3 "
                             r"\(/dev/vda, /dev/vdb, /dev/vdc\)"):
        raid.plan(vols, {d.name: d.size for d in FOUR}, "bios", "msdos")


def test_physical_disks_are_device_hints():
    devices = [disk("/dev/sda", 8, "S1"), disk("/dev/sdb", 8, "S2"), disk("/dev/nvme0n1", 8, "N1"),
               disk("/dev/nvme1n1", 16, "N2")]
    chosen = raid.select_disks(
        [ld("1", 1, physical_disks=[{"serial": "N1"}, {"size": ">= 10"}]),
         ld("0", 1, physical_disks=[{"name": "s== /dev/sda"}, {"model": "QEMU"}])], devices)
    assert chosen == [["/dev/nvme0n1", "/dev/nvme1n1"], ["/dev/sda", "/dev/sdb"]]
    assert raid.partition_path("/dev/nvme0n1", 2) == "/dev/nvme0n1p2"
    with pytest.raises(errors.SoftwareRAIDError,
                       match=r"no disk left for physical_disks hint \{'serial': 'S1'\}"):
        raid.select_disks([ld("1", 1, physical_disks=[{"serial": "S1"}, {"serial": "S1"}])],
                          devices)


# --- the node -------------------------------------------------------------------------------

def test_boot_mode_and_label_from_the_node():
    assert raid.node_boot_mode({}, ramdisk_uefi=True) == "uefi"
    assert raid.node_boot_mode({"properties": {"capabilities": "boot_mode:bios"}},
                               ramdisk_uefi=True) == "bios"
    assert raid.node_boot_mode({"instance_info": {"deploy_boot_mode": "uefi"},
                                "properties": {"capabilities": "boot_mode:bios"}},
                               ramdisk_uefi=False) == "uefi"
    assert raid.node_boot_mode({"instance_info": {"capabilities": {"secure_boot": "true"}}},
                               ramdisk_uefi=False) == "uefi"
    bios_gpt = {"properties": {"capabilities": "boot_mode:bios,disk_label:gpt"}}
    assert raid.partition_table_type(bios_gpt, "bios") == "gpt"
    assert raid.partition_table_type({}, "bios") == "msdos"
    assert raid.partition_table_type({}, "uefi") == "gpt"


# --- skip list ------------------------------------------------------------------------------

def test_skip_list_keeps_named_array_wipes_neighbours_keeps_esp():
    arrays = {"/dev/md0": ("root", ["/dev/vda", "/dev/vdb"]),
              "/dev/md1": ("data", ["/dev/vda", "/dev/vdb"]),
              "/dev/md2": ("esp", ["/dev/vda", "/dev/vdb"]),
              "/dev/md3": ("scratch", ["/dev/vdc", "/dev/vdd"])}
    assert raid.decide(arrays, {"data"}) == {
        "/dev/md0": "wipe", "/dev/md1": "keep", "/dev/md2": "keep", "/dev/md3": "delete"}
    assert set(raid.decide(arrays, set()).values()) == {"delete"}


# --- md arrays and mdadm output ----------------------------------------------------------

def test_list_arrays_from_sysfs(tmp_path: Path):
    block = tmp_path / "class" / "block"
    for name in ("vda", "vdb"):
        (tmp_path / "devices" / name / f"{name}2").mkdir(parents=True)
        (tmp_path / "devices" / name / f"{name}2" / "partition").write_text("2\n")
        block.mkdir(parents=True, exist_ok=True)
        (block / name).symlink_to(tmp_path / "devices" / name)
        (block / f"{name}2").symlink_to(tmp_path / "devices" / name / f"{name}2")
    md0 = tmp_path / "devices" / "md0"
    (md0 / "md" / "dev-vda2").mkdir(parents=True)
    (md0 / "md" / "dev-vdb2").mkdir()
    (md0 / "md" / "level").write_text("raid1\n")
    (block / "md0").symlink_to(md0)
    (tmp_path / "devices" / "md0" / "md0p1").mkdir()
    (tmp_path / "devices" / "md0" / "md0p1" / "partition").write_text("1\n")
    (block / "md0p1").symlink_to(tmp_path / "devices" / "md0" / "md0p1")
    arrays = md.list_arrays(str(tmp_path))
    assert arrays == [md.Array("/dev/md0", "raid1", ("/dev/vda2", "/dev/vdb2"))]
    assert md.holder_disks(arrays[0].members, str(tmp_path)) == ["/dev/vda", "/dev/vdb"]


def test_volume_name_from_mdadm_detail():
    detail = ("/dev/md0:\n           Version : 1.2\n        Raid Level : raid1\n"
              "              Name : any:root\n              UUID : 3f0c2a1e:...\n")
    assert md.parse_volume_name(detail) == "root"
    assert md.parse_volume_name("           Name : ramdisk:md1  (local to host ramdisk)\n") \
        == "md1"
    assert md.parse_volume_name("nothing here") is None


# --- steps ----------------------------------------------------------------------------------

@pytest.fixture()
def manager():
    reset_hardware()
    hardware_conf(allow=["loop-none"])
    yield generic.GenericHardwareManager()
    reset_hardware()


def test_raid_steps_as_upstream(manager):
    clean = {s["step"]: s for s in manager.get_clean_steps({}, [])}
    for name in ("create_configuration", "delete_configuration"):
        assert clean[name] == {"step": name, "priority": 0, "interface": "raid",
                               "reboot_requested": False, "abortable": True}
    deploy = {s["step"]: s for s in manager.get_deploy_steps({}, [])}
    assert deploy["apply_configuration"]["interface"] == "raid"
    assert deploy["apply_configuration"]["argsinfo"]["raid_config"]["required"] is True
    assert deploy["apply_configuration"]["argsinfo"]["delete_existing"]["required"] is False
    service = {s["step"] for s in manager.get_service_steps({}, [])}
    assert {"create_configuration", "delete_configuration", "apply_configuration"} <= service


def test_create_without_target_config_does_nothing(manager):
    assert manager.create_configuration({"uuid": "n"}, []) == {}
    assert manager.create_configuration(
        {"target_raid_config": {"logical_disks": [
            {"controller": "hw", "raid_level": "5", "size_gb": 5}]}}, []) == {}


def test_apply_validates_before_touching_anything(manager):
    with pytest.raises(errors.SoftwareRAIDError, match="RAID-1 for the first logical disk"):
        manager.apply_configuration({"uuid": "n"}, [], {"logical_disks": [ld("0", 1)]})


def test_create_root_volume_flags_filter_as_ironic(manager):
    node = {"uuid": "n", "target_raid_config": {"logical_disks": [
        ld("1", 1, is_root_volume=True)]}}
    with pytest.raises(errors.SoftwareRAIDError,
                       match="empty after skipping the root volume"):
        manager.create_configuration(node, [], create_root_volume=False)
