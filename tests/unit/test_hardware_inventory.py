# SPDX-License-Identifier: Apache-2.0
"""Inventory: parsers against captured samples, collectors against fake tools and sysfs."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from ironic_python_agent import hardware
from ironic_python_agent.hardware import disks, inventory
from tests.hwfixtures import fake_tools_env, hardware_conf, reset_hardware, sample


@pytest.fixture(autouse=True)
def _clean_hardware():
    reset_hardware()
    inventory._warned.clear()
    yield
    reset_hardware()


# --- CPU and memory --------------------------------------------------------------------

def test_cpuinfo_vm_sample():
    blocks = inventory.parse_cpuinfo(sample("cpuinfo", "amd_epyc_vm.txt"))
    cpu = inventory.cpu_from_cpuinfo(blocks, "x86_64")
    assert cpu.model_name == "AMD EPYC"
    assert cpu.count == len(blocks) >= 1
    assert cpu.frequency == blocks[0]["cpu MHz"]
    assert "fpu" in cpu.flags and "avx2" in cpu.flags
    assert cpu.socket_count == 1
    assert set(cpu.serialize()) == {"model_name", "frequency", "count", "architecture",
                                    "flags", "socket_count"}


def test_cpuinfo_two_sockets_and_max_frequency():
    blocks = inventory.parse_cpuinfo(sample("cpuinfo", "xeon_2sockets.txt"))
    cpu = inventory.cpu_from_cpuinfo(blocks, "x86_64", max_khz=3700000)
    assert cpu.model_name == "Intel(R) Xeon(R) Gold 6138 CPU @ 2.00GHz"
    assert cpu.frequency == "3700.0000"
    assert (cpu.count, cpu.socket_count) == (2, 2)
    assert len(cpu.cpus) == 2 and cpu.cpus[1].core_id == 0


def test_cpuinfo_arm_features_and_no_model():
    blocks = inventory.parse_cpuinfo(sample("cpuinfo", "aarch64.txt"))
    cpu = inventory.cpu_from_cpuinfo(blocks, "aarch64", packages={"0"})
    assert cpu.model_name == ""
    assert cpu.frequency == ""
    assert cpu.flags[:3] == ["fp", "asimd", "evtstrm"]
    assert (cpu.count, cpu.socket_count) == (2, 1)


def test_cpu_flags_with_odd_characters_are_dropped():
    cpu = inventory.cpu_from_cpuinfo([{"processor": "0", "flags": "fpu VME de"}], "x86_64")
    assert cpu.flags == []


def test_meminfo_total():
    total = inventory.parse_meminfo_total(sample("meminfo", "vm.txt"))
    assert total is not None and total % 1024 == 0 and total > 64 * 1024 * 1024
    assert inventory.parse_meminfo_total("garbage") is None


def test_dmidecode_server_sample():
    sections = inventory.parse_dmidecode(sample("dmidecode", "server.txt"))
    assert inventory.physical_memory_mb(sections) == 32 * 1024 + 16384
    vendor = inventory.system_vendor_from_dmi(sections).serialize()
    assert vendor == {"product_name": "PowerEdge R640", "serial_number": "8XKQ9Y2",
                      "manufacturer": "Dell Inc.",
                      "firmware": {"vendor": "Dell Inc.", "version": "2.12.2",
                                   "build_date": "07/09/2021"}}


def test_dmidecode_qemu_sample_has_no_serial():
    sections = inventory.parse_dmidecode(sample("dmidecode", "qemu.txt"))
    assert inventory.physical_memory_mb(sections) == 2048
    vendor = inventory.system_vendor_from_dmi(sections)
    assert vendor.manufacturer == "QEMU" and vendor.serial_number is None
    assert vendor.firmware is not None and vendor.firmware.vendor == "SeaBIOS"


def fake_device_tree(proc: Path, props: dict[str, bytes]) -> None:
    """/proc/device-tree as the kernel shows it: a link to the root node's
    directory, one file per property holding its raw (NUL-terminated) value."""
    base = proc.parent / "sys/firmware/devicetree/base"
    base.mkdir(parents=True)
    for name, value in props.items():
        (base / name).write_bytes(value)
    proc.mkdir()
    (proc / "device-tree").symlink_to(base)


def test_device_tree_names_an_arm64_board_without_dmi(tmp_path: Path) -> None:
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    fake_device_tree(proc, {"model": b"Raspberry Pi 4 Model B Rev 1.4\0",
                            "serial-number": b"10000000a1b2c3d4\0",
                            "compatible": b"raspberrypi,4-model-b\0brcm,bcm2711\0"})
    vendor = inventory.collect_system_vendor(None, sys=str(sys), proc=str(proc)).serialize()
    assert vendor == {"product_name": "Raspberry Pi 4 Model B Rev 1.4",
                      "serial_number": "10000000a1b2c3d4", "manufacturer": None,
                      "firmware": {"vendor": None, "version": None, "build_date": None}}


def test_device_tree_without_serial_and_dmi_first(tmp_path: Path) -> None:
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    fake_device_tree(proc, {"model": b"linux,dummy-virt\0"})   # QEMU virt, -kernel boot
    vendor = inventory.collect_system_vendor(None, sys=str(sys), proc=str(proc))
    assert (vendor.product_name, vendor.serial_number) == ("linux,dummy-virt", None)
    # SMBIOS, when the machine has it (arm64 servers booted by UEFI), wins
    sections = inventory.parse_dmidecode(sample("dmidecode", "server.txt"))
    vendor = inventory.collect_system_vendor(sections, sys=str(sys), proc=str(proc))
    assert (vendor.product_name, vendor.manufacturer) == ("PowerEdge R640", "Dell Inc.")
    # and so do sysfs' DMI files
    dmi = sys / "class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("Ampere Computing\n")
    (dmi / "product_name").write_text("Mt.Jade\n")
    vendor = inventory.collect_system_vendor(None, sys=str(sys), proc=str(proc))
    assert (vendor.product_name, vendor.manufacturer) == ("Mt.Jade", "Ampere Computing")


def test_no_dmi_and_no_device_tree_is_all_null(tmp_path: Path) -> None:
    vendor = inventory.collect_system_vendor(None, sys=str(tmp_path / "sys"),
                                             proc=str(tmp_path / "proc"))
    assert (vendor.product_name, vendor.serial_number, vendor.manufacturer) == (None,) * 3
    assert inventory.device_tree_string(b"\0") is None
    assert inventory.device_tree_string(None) is None


# --- BMC -------------------------------------------------------------------------------------

def test_ipmitool_lan_print():
    fields = inventory.parse_ipmi_lan(sample("ipmitool", "lan_print_1.txt"))
    assert fields["IP Address"] == "192.0.2.45"
    assert fields["MAC Address"] == "38:63:bb:2f:71:aa"
    assert fields["Auth Type Enable"] == "Callback : MD5"


def test_ipmitool_lan6_print_skips_link_local_and_disabled():
    enabled, addresses = inventory.parse_ipmi_lan6(sample("ipmitool", "lan6_print_1.txt"))
    assert enabled is True
    assert addresses == ["2001:db8::45"]


@pytest.fixture
def ipmi_dev(tmp_path: Path) -> Path:
    dev = tmp_path / "dev"
    dev.mkdir()
    os.mknod(dev / "ipmi0", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    return dev


def test_bmc_through_fake_ipmitool(tmp_path, ipmi_dev, monkeypatch):
    for key, value in fake_tools_env(tmp_path / "state").items():
        monkeypatch.setenv(key, value)
    hardware_conf()
    probe = inventory.BMCProbe(dev=str(ipmi_dev))
    assert probe.address() == "192.0.2.45"
    assert probe.mac() == "38:63:bb:2f:71:aa"
    assert probe.v6address() == "2001:db8::45"


def test_bmc_unset_address(tmp_path, ipmi_dev, monkeypatch):
    for key, value in fake_tools_env(tmp_path / "state", "ipmitool=unset").items():
        monkeypatch.setenv(key, value)
    hardware_conf()
    probe = inventory.BMCProbe(dev=str(ipmi_dev))
    assert probe.address() == "0.0.0.0"
    assert probe.mac() is None


def test_bmc_skipped_without_ipmi_device(tmp_path, monkeypatch):
    for key, value in fake_tools_env(tmp_path / "state").items():
        monkeypatch.setenv(key, value)
    hardware_conf()
    empty = tmp_path / "nodev"
    empty.mkdir()
    probe = inventory.BMCProbe(dev=str(empty))
    assert (probe.address(), probe.v6address(), probe.mac()) == (None, None, None)
    # ipmitool was never run: the fake logs every call it gets.
    assert not (tmp_path / "state" / "calls.log").exists()


def test_bmc_skipped_when_lookup_says_so(tmp_path, ipmi_dev, monkeypatch):
    for key, value in fake_tools_env(tmp_path / "state").items():
        monkeypatch.setenv(key, value)
    hardware_conf(skip_bmc_detect=True)
    assert inventory.BMCProbe(dev=str(ipmi_dev)).address() is None


# --- network ---------------------------------------------------------------------------------

def test_if_inet6_prefers_global_addresses():
    text = ("fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n"
            "fd000000000000000000000000000002 04 40 00 82     eth0\n"
            "00000000000000000000000000000001 01 80 10 80       lo\n")
    assert inventory.parse_if_inet6(text) == {"eth0": ["fd00::2", "fe80::fc:ff:fe00:1"],
                                              "lo": ["::1"]}


def test_infiniband_client_id():
    address = "a0:00:02:20:fe:80:00:00:00:00:00:00:e4:1d:2d:03:00:55:29:a1"
    address = address + ":00:00:00:00:00:00:00:00"[: 59 - len(address)]
    assert len(address) == 59
    mac, client_id = inventory.infiniband_client_id(address, "0x15b3")
    assert client_id == "ff:00:00:00:00:00:02:00:00:02:c9:00:" + address[36:]
    assert mac == address[36:-14] + address[51:]
    assert inventory.infiniband_client_id("aa:bb:cc:dd:ee:ff", "0x8086") == (
        "aa:bb:cc:dd:ee:ff", None)


# --- disks from a sysfs tree we build -----------------------------------------------------------

def _block(root: Path, name: str, *, size_sectors: int = 2 * 1024 * 1024 * 16,
           dev: str = "8:0", rotational: str = "0", ro: str = "0",
           extra: dict[str, str] | None = None, parent: str | None = None) -> Path:
    base = root / "sys" / "class" / "block" / name
    base.mkdir(parents=True)
    files = {"size": str(size_sectors), "dev": dev, "ro": ro, "queue/rotational": rotational,
             "queue/logical_block_size": "512", "queue/physical_block_size": "4096"}
    files.update(extra or {})
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text + "\n")
    return base


def test_disks_from_sysfs_and_udev_db(tmp_path):
    roots = disks.Roots(sys=tmp_path / "sys", dev=tmp_path / "dev", udev=tmp_path / "udev")
    _block(tmp_path, "sdb", dev="8:16", extra={"device/model": "Samsung SSD 860  ",
                                               "device/vendor": "ATA     ",
                                               "device/scsi_device/1:0:0:0/x": "",
                                               "device/wwid": "naa.5002538E40A1B2C3"})
    _block(tmp_path, "zram0")
    _block(tmp_path, "loop3")
    _block(tmp_path, "sr0")
    _block(tmp_path, "md0", dev="9:0", extra={"md/level": "raid1"})
    _block(tmp_path, "dm-0", dev="253:0", extra={"dm/uuid": "LVM-abc"})
    _block(tmp_path, "nvme0n1", dev="259:0", size_sectors=0)
    (tmp_path / "udev").mkdir()
    (tmp_path / "udev" / "b8:16").write_text(sample("udev", "b8:16"))
    bypath = tmp_path / "dev" / "disk" / "by-path"
    bypath.mkdir(parents=True)
    os.symlink("../../sdb", bypath / "pci-0000:00:17.0-ata-2")

    found = disks.list_all_block_devices(roots=roots)
    assert [d.name for d in found] == [str(tmp_path / "dev" / "md0"),
                                       str(tmp_path / "dev" / "sdb")]
    sdb = found[1].serialize()
    assert sdb == {
        "name": str(tmp_path / "dev" / "sdb"), "model": "Samsung SSD 860", "size": 16 * 1024 ** 3,
        "rotational": False, "wwn": "0x5002538e40a1b2c3", "serial": "S3Z1NB0K123456A",
        "vendor": "ATA", "wwn_with_extension": "0x5002538e40a1b2c3",
        "wwn_vendor_extension": None, "hctl": "1:0:0:0",
        "by_path": str(bypath / "pci-0000:00:17.0-ata-2"),
        "logical_sectors": 512, "physical_sectors": 4096, "tran": None}
    assert found[1].serials == ["S3Z1NB0K123456A", "Samsung_SSD_860_EVO_500GB_S3Z1NB0K123456A"]

    only_loop = disks.list_all_block_devices(roots=roots, allow={"loop3"})
    assert [d.name for d in only_loop] == [str(tmp_path / "dev" / "loop3")]
    assert only_loop[0].kind == "disk"


def test_two_paths_under_a_multipath_map_are_one_disk(tmp_path):
    """sda and sdb are paths to one LUN held by the map dm-1: only dm-1 is listed, with
    the LUN's WWN (from the map's device-mapper UUID) and its paths' serial and model."""
    roots = disks.Roots(sys=tmp_path / "sys", dev=tmp_path / "dev", udev=tmp_path / "udev")
    (tmp_path / "udev").mkdir()
    for name, dev in (("sda", "8:0"), ("sdb", "8:16")):
        _block(tmp_path, name, dev=dev, extra={"device/model": "QEMU HARDDISK",
                                               "device/vendor": "QEMU", "holders/dm-1": "",
                                               "device/wwid": "naa.5000c500a1b2c3d4"})
        (tmp_path / "udev" / f"b{dev}").write_text("E:ID_SERIAL_SHORT=LEANIPA-LUN0\n")
    _block(tmp_path, "dm-1", dev="253:1",
           extra={"dm/uuid": "mpath-35000c500a1b2c3d4", "slaves/sda": "", "slaves/sdb": ""})
    # what multipath's udev rules put on the map: its WWID as the serial
    (tmp_path / "udev" / "b253:1").write_text("E:ID_SERIAL=35000c500a1b2c3d4\n")
    found = disks.list_all_block_devices(roots=roots)
    assert [(d.name, d.kind) for d in found] == [(str(tmp_path / "dev" / "dm-1"), "mpath")]
    assert (found[0].wwn, found[0].serial, found[0].model) == (
        "0x5000c500a1b2c3d4", "LEANIPA-LUN0", "QEMU HARDDISK")
    assert disks.mpath_wwn("mpath-SATA_disk1") is None


def test_udev_db_parser():
    props, links = disks.parse_udev_db(sample("udev", "b8:16"))
    assert props["ID_SERIAL_SHORT"] == "S3Z1NB0K123456A"
    assert "disk/by-path/pci-0000:00:17.0-ata-2" in links


# --- the whole inventory -----------------------------------------------------------------------

INVENTORY_KEYS = ["interfaces", "cpu", "disks", "memory", "bmc_address", "bmc_v6address",
                  "system_vendor", "boot", "hostname"]


def test_list_hardware_info_shape_with_fake_dmidecode(tmp_path, monkeypatch):
    for key, value in fake_tools_env(tmp_path / "state").items():
        monkeypatch.setenv(key, value)
    hardware_conf(allow=["nonexistent0"], params={"BOOTIF": "01-52-54-00-12-34-56"})
    info = hardware.dispatch_to_managers("list_hardware_info")
    json.dumps(info)  # plain JSON values only
    assert list(info)[:9] == INVENTORY_KEYS
    assert info["memory"]["physical_mb"] == 32 * 1024 + 16384
    assert info["memory"]["total"] > 0
    assert info["system_vendor"]["product_name"] == "PowerEdge R640"
    assert info["cpu"]["count"] >= 1 and info["cpu"]["architecture"]
    uefi = os.path.isdir("/sys/firmware/efi")
    assert info["boot"] == {"current_boot_mode": "uefi" if uefi else "bios",
                            "pxe_interface": "01-52-54-00-12-34-56",
                            "secure_boot": inventory.read_secure_boot() if uefi else None}
    assert info["disks"] == []  # the allowlist names no existing device
    for iface in info["interfaces"]:
        assert set(iface) == {"name", "mac_address", "ipv4_address", "ipv6_address",
                              "has_carrier", "lldp", "vendor", "product", "client_id",
                              "biosdevname", "speed_mbps", "pci_address", "driver"}


def test_missing_tools_give_null_and_one_warning(tmp_path, monkeypatch, caplog):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(inventory.run, "which", lambda name: None)
    hardware_conf(allow=["nonexistent0"])
    with caplog.at_level(logging.WARNING):
        first = hardware.dispatch_to_managers("list_hardware_info")
        hardware.clear_managers()
        second = hardware.dispatch_to_managers("list_hardware_info")
    # Without dmidecode, physical_mb comes from the kernel's memory blocks.
    assert first["memory"]["physical_mb"] == inventory.collect_memory_blocks()
    assert second["memory"]["physical_mb"] == first["memory"]["physical_mb"]
    assert first["bmc_address"] is None
    dmi_warnings = [r for r in caplog.records if "dmidecode" in r.getMessage()]
    assert len(dmi_warnings) == 1


def test_bmc_skipped_when_the_cached_node_says_so(tmp_path, ipmi_dev, monkeypatch):
    for key, value in fake_tools_env(tmp_path / "state").items():
        monkeypatch.setenv(key, value)
    hardware_conf()
    hardware.cache_node({"uuid": "n", "skip_bmc_detect": True})
    assert inventory.BMCProbe(dev=str(ipmi_dev)).address() is None


class BrokenDisks(hardware.GenericHardwareManager):
    def list_block_devices(self, include_partitions=False, all_serial_and_wwn=False):
        raise OSError("sysfs vanished")


def test_a_failing_piece_is_null_not_a_failed_inventory(caplog):
    hardware_conf(allow=["nonexistent0"])
    with caplog.at_level(logging.WARNING):
        info = BrokenDisks().list_hardware_info()
    assert info["disks"] == [] and info["cpu"]["count"] >= 1
    assert any("sysfs vanished" in r.getMessage() for r in caplog.records)


# --- boot state --------------------------------------------------------------------------------

SB_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def efi_sys(tmp_path, variables: dict[str, bytes] | None) -> str:
    """A /sys with firmware/efi; efivarfs mounted (holding *variables*) unless None."""
    efivars = tmp_path / "sys/firmware/efi/efivars"
    efivars.mkdir(parents=True)
    for name, data in (variables or {}).items():
        (efivars / name).write_bytes(data)
    return str(tmp_path / "sys")


@pytest.mark.parametrize("variables, expected", [
    ({SB_VAR: b"\x06\x00\x00\x00\x01"}, True),
    ({SB_VAR: b"\x06\x00\x00\x00\x00"}, False),
    ({"BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c": b"\x07\0\0\0\0\0"}, False),
    ({SB_VAR: b"\x06\x00\x00\x00"}, None),   # truncated: not a guess
    (None, None),                               # efivarfs not mounted
])
def test_secure_boot_from_the_efi_variable(tmp_path, variables, expected):
    sys_dir = efi_sys(tmp_path, variables)
    info = inventory.collect_boot_info(sys_dir)
    assert (info.current_boot_mode, info.secure_boot) == ("uefi", expected)
    state = {True: "on", False: "off", None: "unknown"}[expected]
    assert inventory.describe_boot(info) == f"UEFI, Secure Boot {state}"


def test_bios_boot_has_no_secure_boot_state(tmp_path):
    (tmp_path / "sys/firmware").mkdir(parents=True)
    info = inventory.collect_boot_info(str(tmp_path / "sys"))
    assert (info.current_boot_mode, info.secure_boot) == ("bios", None)
    assert inventory.describe_boot(info) == "BIOS (legacy) boot"
