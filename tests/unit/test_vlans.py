# SPDX-License-Identifier: Apache-2.0
"""``ipa-enable-vlan-interfaces``: entries parsed, the kernel's VLAN list read, parents found.

Making the VLANs from real LLDP frames inside a network namespace:
tests/functional/test_vlans.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ironic_python_agent import vlans
from ironic_python_agent.vlans import FromLldp, Vlan

# What the kernel's net/8021q/vlanproc.c prints ("%-15s| %d  | %s").
PROC_VLAN_CONFIG = """\
VLAN Dev name\t | VLAN ID
Name-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD
eth0.100       | 100  | eth0
vlan7          | 7  | enp129s0f0np0
"""


def test_parse_each_kind_of_entry() -> None:
    request = vlans.parse(" eth0.100, eno1 ,all,,52:54:00:AB:cd:01.7,bond0.4094")
    assert request.items == (
        Vlan("eth0.100", "eth0", 100), FromLldp("eno1", "eno1"), FromLldp("all", None),
        Vlan("52:54:00:AB:cd:01.7", "52:54:00:AB:cd:01", 7), Vlan("bond0.4094", "bond0", 4094))
    assert request.errors == ()


def test_parse_empty_value_asks_for_nothing() -> None:
    assert vlans.parse("") == vlans.Request((), ())
    assert vlans.parse(" , ") == vlans.Request((), ())


def test_parse_bad_entries_are_named_and_the_rest_kept() -> None:
    request = vlans.parse("eth0.x,eth0.0,eth0.4095,eth0.100,.5,eth 1,eth0.1.2,"
                          "averyveryverylongname,eth0.+5,eth0.٣")
    assert request.items == (Vlan("eth0.100", "eth0", 100),)
    assert request.errors == (
        "ipa-enable-vlan-interfaces entry 'eth0.x': VLAN id 'x' is not a number; skipped",
        "ipa-enable-vlan-interfaces entry 'eth0.0': VLAN id 0 is outside 1-4094; skipped",
        "ipa-enable-vlan-interfaces entry 'eth0.4095': VLAN id 4095 is outside 1-4094; skipped",
        "ipa-enable-vlan-interfaces entry '.5': no interface before the '.'; skipped",
        "ipa-enable-vlan-interfaces entry 'eth 1': 'eth 1' is not an interface name or MAC "
        "address; skipped",
        "ipa-enable-vlan-interfaces entry 'eth0.1.2': VLAN id '1.2' is not a number; skipped",
        "ipa-enable-vlan-interfaces entry 'averyveryverylongname': 'averyveryverylongname' is "
        "not an interface name or MAC address; skipped",
        "ipa-enable-vlan-interfaces entry 'eth0.+5': VLAN id '+5' is not a number; skipped",
        "ipa-enable-vlan-interfaces entry 'eth0.٣': VLAN id '٣' is not a number; skipped",
    )


def test_parse_repeated_entries_once() -> None:
    assert vlans.parse("eth0.100,eth0.100,all,all").items == (
        Vlan("eth0.100", "eth0", 100), FromLldp("all", None))


def test_leading_zeros_name_the_same_vlan() -> None:
    assert vlans.parse("eth0.0100").items == (Vlan("eth0.0100", "eth0", 100),)


def test_kernel_vlan_list() -> None:
    assert vlans.parse_vlan_config(PROC_VLAN_CONFIG) == {
        "eth0.100": ("eth0", 100), "vlan7": ("enp129s0f0np0", 7)}
    assert vlans.parse_vlan_config("") == {}


def test_existing_vlans_without_8021q_is_empty(tmp_path: Path) -> None:
    assert vlans.existing_vlans(tmp_path / "absent") == {}
    (tmp_path / "config").write_text(PROC_VLAN_CONFIG)
    assert set(vlans.existing_vlans(tmp_path)) == {"eth0.100", "vlan7"}


def test_all_listens_on_every_interface_but_vlans() -> None:
    names = ["bond0", "eth0", "eth0.100", "eno1", "vlan7"]
    assert vlans.parent_candidates(names, {"vlan7": ("eno1", 7)}) == ["bond0", "eth0", "eno1"]


def test_parent_by_mac_and_unknown_parents_without_lldp(tmp_path: Path) -> None:
    for name, mac in (("eth0", "52:54:00:ab:cd:01"), ("eth1", "52:54:00:ab:cd:02")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "address").write_text(mac + "\n")
    request = vlans.parse("52:54:00:AB:CD:02.7,eth9.5,eth0.100,eth0.0100,52:54:00:00:00:09.3")
    found, problems = vlans.wanted(request, ["eth0", "eth1"], 0.1, sys_class_net=tmp_path)
    assert found == [Vlan("52:54:00:AB:CD:02.7", "eth1", 7), Vlan("eth0.100", "eth0", 100)]
    assert problems == [
        "ipa-enable-vlan-interfaces entry 'eth9.5': no interface 'eth9' on this machine; "
        "skipped",
        "ipa-enable-vlan-interfaces entry '52:54:00:00:00:09.3': no interface "
        "'52:54:00:00:00:09' on this machine; skipped",
    ]


def test_an_existing_vlan_of_another_parent_is_not_taken(caplog) -> None:
    # enp129s0f1np1.100 is longer than 15 characters: named vlan100, as lean-ipa-network does
    with caplog.at_level(logging.WARNING):
        name = vlans.create(Vlan("enp129s0f1np1.100", "enp129s0f1np1", 100),
                            {"vlan100": ("enp129s0f0np0", 100)})
    assert name is None
    assert caplog.records[0].getMessage() == (
        "ipa-enable-vlan-interfaces entry 'enp129s0f1np1.100': vlan100 already exists as "
        "VLAN 100 on enp129s0f0np0; skipped")


def test_marker_of_lean_ipa_network(tmp_path: Path) -> None:
    marker = tmp_path / "lean-ipa-network" / "enable-vlan-interfaces"
    assert not vlans.applied_before("all", marker)
    vlans.record_applied("eth0.100,all", marker)
    assert vlans.applied_before(" eth0.100,all ", marker)
    assert not vlans.applied_before("all", marker)
