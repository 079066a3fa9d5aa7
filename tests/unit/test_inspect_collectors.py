# SPDX-License-Identifier: Apache-2.0
"""Built-in inspection collectors against sysfs and tool output captured from a QEMU guest.

The samples (``tests/samples/sysfs-qemu-numa``, ``dmidecode/qemu-pc-2socket.txt``,
``lshw/qemu-pc-usb.json``) all come from one boot of a two-socket, two-NUMA-node
guest with a USB tablet and keyboard; see the README there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ironic_python_agent import errors
from ironic_python_agent.inspection import collectors, dmi, numa, pci, usb
from ironic_python_agent.inspector import AccumulatedFailures

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SYSFS = SAMPLES / "sysfs-qemu-numa"


def test_pci_devices_from_sysfs() -> None:
    devices = pci.list_pci_devices(SYSFS / "bus" / "pci" / "devices")
    assert [d["bus"] for d in devices] == ["0000:00:00.0", "0000:00:01.0", "0000:00:01.1",
                                           "0000:00:01.2", "0000:00:01.3", "0000:00:02.0"]
    uhci = devices[3]
    assert uhci == {"vendor_id": "8086", "product_id": "7020", "class": "0c0300",
                    "revision": "01", "bus": "0000:00:01.2", "numa_node_id": "-1"}
    assert all(not (d["vendor_id"] or "").startswith("0x") for d in devices)


def test_pci_devices_without_sysfs_is_empty(tmp_path: Path) -> None:
    assert pci.list_pci_devices(tmp_path / "missing") == []


def test_numa_topology_of_two_nodes() -> None:
    topology = numa.numa_topology(SYSFS / "devices" / "system" / "node", SYSFS / "class" / "net")
    assert topology["ram"] == [{"numa_node": 0, "size_kb": 256340},
                               {"numa_node": 1, "size_kb": 211916}]
    assert topology["cpus"] == [
        {"cpu": 0, "numa_node": 0, "thread_siblings": [0]},
        {"cpu": 1, "numa_node": 0, "thread_siblings": [1]},
        {"cpu": 0, "numa_node": 1, "thread_siblings": [2]},
        {"cpu": 1, "numa_node": 1, "thread_siblings": [3]},
    ]
    assert topology["nics"] == []


def test_numa_groups_hyperthreads_by_core_and_reads_nics(tmp_path: Path) -> None:
    node = tmp_path / "node" / "node0"
    node.mkdir(parents=True)
    (node / "meminfo").write_text("Node 0 MemTotal:       1024 kB\nNode 0 MemFree: 1 kB\n")
    for cpu, core, siblings in ((0, 0, "0,2"), (1, 1, "1,3"), (2, 0, "0,2"), (3, 1, "1,3")):
        topo = node / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "core_id").write_text(f"{core}\n")
        (topo / "thread_siblings_list").write_text(f"{siblings}\n")
    (node / "cpulist").write_text("0-3\n")  # not a cpu directory
    net = tmp_path / "net"
    (net / "eth0" / "device").mkdir(parents=True)
    (net / "eth0" / "device" / "numa_node").write_text("0\n")
    (net / "bond0").mkdir()
    topology = numa.numa_topology(tmp_path / "node", net)
    assert topology["cpus"] == [{"cpu": 0, "numa_node": 0, "thread_siblings": [0, 2]},
                                {"cpu": 1, "numa_node": 0, "thread_siblings": [1, 3]}]
    assert topology["nics"] == [{"name": "eth0", "numa_node": 0}]


def test_numa_format_errors(tmp_path: Path) -> None:
    with pytest.raises(errors.IncompatibleNumaFormatError):
        numa.numa_topology(tmp_path / "missing")
    (tmp_path / "node0").mkdir()
    (tmp_path / "node0" / "meminfo").write_text("garbage\n")
    with pytest.raises(errors.IncompatibleNumaFormatError, match="MemTotal"):
        numa.numa_topology(tmp_path)


def test_parse_cpu_list() -> None:
    assert numa.parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert numa.parse_cpu_list("5") == [5]


def test_dmidecode_sections() -> None:
    data = dmi.parse_dmi((SAMPLES / "dmidecode" / "qemu-pc-2socket.txt").read_text())
    assert data["bios"]["Vendor"] == "SeaBIOS"
    assert data["bios"]["Release Date"] == "04/01/2014"
    assert data["bios"]["Characteristics"] == ["BIOS characteristics not supported",
                                               "Targeted content distribution is supported"]
    assert data["bios"]["Handle"] == "Handle 0x0000, DMI type 0, 24 bytes"
    assert [c["Socket Designation"] for c in data["cpu"]] == ["CPU 0", "CPU 1"]
    assert data["cpu"][1]["Thread Count"] == "2"
    assert data["memory"]["Maximum Capacity"] == "512 MB"
    assert data["memory"]["Number Of Devices"] == 1
    assert "Handle" not in data["memory"]
    assert [d["Size"] for d in data["memory"]["devices"]] == ["512 MB"]
    json.dumps(data)


def test_dmidecode_sums_memory_arrays() -> None:
    text = ("Handle 0x1000, DMI type 16, 23 bytes\nPhysical Memory Array\n\tUse: System Memory\n"
            "\tNumber Of Devices: 8\n\nHandle 0x1001, DMI type 16, 23 bytes\n"
            "Physical Memory Array\n\tUse: System Memory\n\tNumber Of Devices: 4\n")
    assert dmi.parse_dmi(text)["memory"] == {"Use": "System Memory", "Number Of Devices": 12,
                                             "devices": []}
    assert dmi.parse_dmi("") == {"bios": {}, "cpu": [], "memory": {"devices": []}}


def _lshw_usb_end_devices(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    if str(node.get("businfo", "")).startswith("usb@") and node.get("class") != "bus":
        found.append({"product": node.get("product"), "vendor": node.get("vendor"),
                      "handle": node.get("handle")})
    for child in node.get("children", []):
        found.extend(_lshw_usb_end_devices(child))
    return found


def test_usb_devices_from_sysfs_match_lshw_of_the_same_boot() -> None:
    devices = usb.list_usb_devices(SYSFS / "bus" / "usb" / "devices")
    assert devices == [{"product": "QEMU USB Tablet", "vendor": "QEMU", "handle": "USB:1:2"},
                       {"product": "QEMU USB Keyboard", "vendor": "QEMU", "handle": "USB:1:4"}]
    lshw = json.loads((SAMPLES / "lshw" / "qemu-pc-usb.json").read_text())
    lshw = lshw[0] if isinstance(lshw, list) else lshw
    assert sorted(devices, key=str) == sorted(_lshw_usb_end_devices(lshw), key=str)


def test_collectors_fill_their_keys_from_a_sysfs_root() -> None:
    context = collectors.Context(sysfs=SYSFS)
    data: dict[str, Any] = {}
    failures = AccumulatedFailures()
    collectors.collect_pci_devices(data, failures, context)
    collectors.collect_numa_topology(data, failures, context)
    collectors.collect_usb_devices(data, failures, context)
    assert sorted(data) == ["numa_topology", "pci_devices", "usb_devices"]
    assert not failures


def test_numa_collector_skips_a_machine_without_numa_sysfs(tmp_path: Path) -> None:
    data: dict[str, Any] = {}
    collectors.collect_numa_topology(data, AccumulatedFailures(),
                                     collectors.Context(sysfs=tmp_path))
    assert data == {}


IP_ADDR = json.dumps([
    {"ifindex": 1, "ifname": "lo", "link_type": "loopback", "address": "00:00:00:00:00:00",
     "addr_info": [{"family": "inet", "local": "127.0.0.1"}]},
    {"ifindex": 2, "ifname": "eth0", "link_type": "ether", "address": "52:54:00:12:34:56",
     "addr_info": [{"family": "inet", "local": "192.0.2.10", "prefixlen": 24},
                   {"family": "inet6", "local": "fe80::5054:ff:fe12:3456"}]},
    {"ifindex": 3, "ifname": "eth1", "link_type": "ether", "address": "52:54:00:AB:CD:EF",
     "addr_info": [{"family": "inet6", "local": "fe80::1"}]},
])


def test_parse_ip_addr_and_dhcp_waiting() -> None:
    links = collectors.parse_ip_addr(IP_ADDR)
    assert links == {"eth0": {"mac": "52:54:00:12:34:56", "ipv4": ["192.0.2.10"]},
                     "eth1": {"mac": "52:54:00:ab:cd:ef", "ipv4": []}}
    assert collectors.missing_dhcp(links, "52:54:00:12:34:56", False) == []
    assert collectors.missing_dhcp(links, "52:54:00:ab:cd:ef", False) == ["eth1"]
    assert collectors.missing_dhcp(links, None, True) == ["eth1"]
    assert collectors.missing_dhcp(links, "00:11:22:33:44:55", False) == ["00:11:22:33:44:55"]


def test_dhcp_candidates_are_nics_bonds_and_vlans(tmp_path: Path) -> None:
    for name in ("eth0", "bond0", "eth0.100", "virbr0", "dummy0"):
        (tmp_path / name).mkdir()
    (tmp_path / "eth0" / "device").mkdir()
    (tmp_path / "bond0" / "bonding").mkdir()
    assert [n for n in ("eth0", "bond0", "eth0.100", "virbr0", "dummy0")
            if collectors.is_candidate(n, tmp_path)] == ["eth0", "bond0", "eth0.100"]


def test_no_dhcp_wait_without_bootif() -> None:
    assert collectors.wait_for_dhcp(collectors.Context(params={})) is False


def test_bootif_forms() -> None:
    assert collectors.normalize_mac("01-52-54-00-12-34-56") == "52:54:00:12:34:56"
    assert collectors.normalize_mac("52:54:00:12:34:56") == "52:54:00:12:34:56"
    assert collectors.normalize_mac("52-54-00-AB-CD-EF") == "52:54:00:ab:cd:ef"


def test_guess_root_disk_is_the_smallest_of_at_least_4_gib() -> None:
    gib = 1024**3
    disks = [{"name": "/dev/sda", "size": 100 * gib}, {"name": "/dev/sdb", "size": 2 * gib},
             {"name": "/dev/sdc", "size": 8 * gib}, {"name": "/dev/sdd", "size": None}]
    assert collectors.guess_root_disk(disks) == {"name": "/dev/sdc", "size": 8 * gib}
    assert collectors.guess_root_disk(disks[1:2]) is None


def test_to_plain_handles_inventory_objects() -> None:
    class Disk:
        serializable_fields = ("name", "size")

        def __init__(self) -> None:
            self.name, self.size, self.hidden = "/dev/sda", 1, "x"

    class WithSerialize:
        def serialize(self) -> dict[str, Any]:
            return {"a": (1, 2)}

    assert collectors.to_plain({"disks": [Disk()], "w": WithSerialize(), "p": Path("/x")}) == {
        "disks": [{"name": "/dev/sda", "size": 1}], "w": {"a": [1, 2]}, "p": "/x"}


def test_context_options_fall_back_to_defaults() -> None:
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.FloatOpt("lldp_timeout", default=5.0)])
    conf([])
    context = collectors.Context(conf=conf)
    assert context.option("lldp_timeout", 30.0) == 5.0
    assert context.option("not_registered", "fallback") == "fallback"
    assert collectors.Context().option("lldp_timeout", 30.0) == 30.0
