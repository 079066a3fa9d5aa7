# SPDX-License-Identifier: Apache-2.0
"""network_data.json and the ip=/bond=/vlan=/nameserver= parameters, translated to a plan.

Samples: the example of the OpenStack metadata documentation (nova-example.json)
and what Ironic 39's own get_neutron_port_data writes (ironic-*.json, made by
tests/samples/network_data/generate.py in the real Ironic's venv;
tests/e2e/test_network_data_samples.py checks they still are).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from ironic_python_agent.netconfig import apply as applying
from ironic_python_agent.netconfig.cli import build_plan, describe
from ironic_python_agent.netconfig.kernel_args import plan_from_kernel_args, split_fields
from ironic_python_agent.netconfig.network_data import parse, plan_from_network_data
from ironic_python_agent.netconfig.plan import Dhcp

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "network_data"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def ip(text: str):
    return ipaddress.ip_interface(text)


def test_nova_example_bond_with_two_vlans():
    nics = {"a0:36:9f:32:47:d8": "eno1", "a0:36:9f:32:47:d9": "eno2"}
    plan = plan_from_network_data(sample("nova-example.json"), nics)
    assert plan.problems == []
    assert describe(plan)[:5] == [
        "link eno1 phy mtu 1500",
        "link eno2 phy mtu 1500",
        "link bond0 bond slaves=eno1,eno2 {'mode': '802.3ad', 'miimon': '100', "
        "'xmit_hash_policy': 'layer3+4'}",
        "link bond0.101 vlan on bond0 id 101",
        "link bond0.401 vlan on bond0 id 401",
    ]
    assert plan.link("bond0.101").mac == "a0:36:9f:32:47:d8"
    assert [(a.link, str(a.address)) for a in plan.addresses] == [
        ("bond0.101", "104.130.20.113/24"), ("bond0.401", "10.176.12.28/19"),
        ("bond0.101", "2001:4800:7818:103:be76:4eff:fe04:8e59/64")]
    routes = [(r.link, str(r.destination), str(r.gateway)) for r in plan.routes]
    assert routes == [("bond0.101", "0.0.0.0/0", "104.130.20.1"),
                      ("bond0.401", "10.208.0.0/12", "10.176.0.1"),
                      ("bond0.401", "10.176.0.0/12", "10.176.0.1"),
                      ("bond0.101", "::/0", "fe80::def")]
    assert plan.nameservers == ["72.3.128.241", "72.3.128.240"]
    assert plan.dhcp == [] and not plan.dhcp_everywhere


def test_ironic_port_sample():
    plan = plan_from_network_data(sample("ironic-port.json"), {"52:54:00:12:34:01": "ens3"})
    assert plan.problems == []
    assert [li.name for li in plan.links] == ["ens3"] and plan.links[0].mtu == 1500
    assert [str(a.address) for a in plan.addresses] == ["192.0.2.10/24", "2001:db8:1::10/64"]
    assert [(str(r.destination), str(r.gateway)) for r in plan.routes] == [
        ("0.0.0.0/0", "192.0.2.1"), ("198.51.100.0/24", "192.0.2.254"),
        ("::/0", "2001:db8:1::1")]
    assert plan.nameservers == ["192.0.2.53", "2001:db8::53"]


def test_ironic_portgroup_sample_bond_without_mode_is_balance_rr():
    nics = {"52:54:00:12:34:02": "ens4", "52:54:00:12:34:03": "ens5"}
    plan = plan_from_network_data(sample("ironic-portgroup.json"), nics)
    assert plan.problems == []
    bond = plan.link("bond0")
    assert bond.slaves == ["ens4", "ens5"] and bond.bond_options == {"mode": "balance-rr"}
    assert bond.mac == "52:54:00:12:34:11" and bond.mtu == 9000
    assert [(a.link, str(a.address)) for a in plan.addresses] == [("bond0", "192.0.2.20/24")]


def test_dhcp_and_ipv6_kinds():
    data = {"links": [{"id": "a", "type": "vif", "ethernet_mac_address": "52:54:00:00:00:01"}],
            "networks": [{"id": "n1", "type": "ipv4_dhcp", "link": "a"},
                         {"id": "n2", "type": "ipv6_slaac", "link": "a"},
                         {"id": "n3", "type": "ipv6_dhcpv6-stateless", "link": "a"},
                         {"id": "n4", "type": "ipv6_dhcp", "link": "a"},
                         {"id": "n5", "type": "ipv6", "link": "a", "ip_address": "fd00::5/80"}],
            "services": []}
    plan = plan_from_network_data(data, {"52:54:00:00:00:01": "eth0"})
    assert plan.problems == []
    assert plan.dhcp == [Dhcp("eth0", 4), Dhcp("eth0", 6, stateless=True), Dhcp("eth0", 6)]
    assert plan.slaac == ["eth0"]
    assert [str(a.address) for a in plan.addresses] == ["fd00::5/80"]


def test_bad_fields_are_named_and_the_rest_applies():
    data = {"links": [
        {"id": "a", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01", "mtu": 20},
        {"id": "gone", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:99"},
        {"id": "b", "type": "bond", "bond_mode": "fastest", "bond_links": ["a", "gone"]},
        {"id": "v", "type": "vlan", "vlan_link": "b", "vlan_id": 5000},
        {"id": "w", "type": "wifi"}],
        "networks": [
            {"type": "ipv4", "link": "b", "ip_address": "10.0.0.5", "netmask": "255.0.255.0"},
            {"type": "ipv4", "link": "b", "ip_address": "10.0.0.6", "netmask": "255.255.255.0",
             "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "fd00::1"}]},
            {"type": "ipv4", "link": "gone", "ip_address": "10.0.1.5"},
            {"type": "ipv5", "link": "a"}],
        "services": [{"type": "dns", "address": "not-an-ip"}, {"type": "ntp", "address": "x"}]}
    plan = plan_from_network_data(data, {"52:54:00:00:00:01": "eth0"})
    assert plan.problems == [
        "links[0].mtu: 20 is not an MTU (68-65535); not set",
        "links[1].ethernet_mac_address: no interface has MAC 52:54:00:00:00:99; skipped",
        "links[4].type: 'wifi' is not supported; skipped",
        "links[2].bond_links: 'gone' is no usable link; left out of the bond",
        "links[2].bond_mode: 'fastest' is not a bonding mode; balance-rr",
        "links[3].vlan_id: 5000 is not a VLAN ID (1-4094); skipped",
        "networks[0].netmask: '255.0.255.0' is not a netmask; network skipped",
        "networks[1].routes[0]: not IPv4 like its network; route skipped",
        "networks[2].link: 'gone' is no usable link; network skipped",
        "networks[3].type: 'ipv5' is not supported; network skipped",
        "services[0]: 'not-an-ip' is not an address; ignored",
    ]
    assert plan.link("bond0").slaves == ["eth0"]
    assert [str(a.address) for a in plan.addresses] == ["10.0.0.6/24"]


def test_not_json():
    data, error = parse("{links: ")
    assert data is None and error.startswith("network_data.json: not JSON:")
    assert parse("[]")[1] == "network_data.json: a list, not an object"
    plan = build_plan("ro", {}, "{", "/dev/sr0:openstack/latest/network_data.json")
    assert plan.empty() and plan.problems[0].startswith("/dev/sr0:openstack/latest/network_data"
                                                         ".json: network_data.json: not JSON")


NICS = {"52:54:00:00:00:01": "eth0", "52:54:00:00:00:02": "eth1"}


def kplan(cmdline: str):
    return plan_from_kernel_args(cmdline.split(), NICS)


def test_ip_static_dracut_form():
    plan = kplan("ip=192.0.2.5::192.0.2.1:255.255.255.0:node1:eth0:none nameserver=192.0.2.53 "
                 "nameserver=192.0.2.54")
    assert describe(plan) == ["link eth0 phy", "address eth0 192.0.2.5/24",
                              "route eth0 0.0.0.0/0 via 192.0.2.1",
                              "nameserver 192.0.2.53", "nameserver 192.0.2.54"]


def test_ip_static_ipv6_prefix_mtu_mac_and_dns():
    plan = kplan("ip=[fd00::5]::[fd00::1]:64::eth1:none:9000:52:54:00:aa:bb:cc")
    assert [str(a.address) for a in plan.addresses] == ["fd00::5/64"]
    assert plan.link("eth1").mtu == 9000 and plan.link("eth1").mac == "52:54:00:aa:bb:cc"
    assert [str(r.gateway) for r in plan.routes] == ["fd00::1"]
    plan = kplan("ip=10.1.1.5::10.1.1.1:24::eth0:none:10.1.1.53:10.1.1.54")
    assert plan.nameservers == ["10.1.1.53", "10.1.1.54"]
    assert split_fields("[fd00::5]::[fd00::1]:64") == ["fd00::5", "", "fd00::1", "64"]


def test_ip_dhcp_forms():
    assert kplan("ip=eth1:dhcp").dhcp == [Dhcp("eth1", 4)]
    plan = kplan("ip=eth1:dhcp6")
    assert plan.dhcp == [Dhcp("eth1", 6)] and plan.slaac == ["eth1"]
    assert kplan("ip=eth0:auto6").slaac == ["eth0"]
    plan = kplan("ip=dhcp")
    assert plan.dhcp_everywhere and [li.name for li in plan.links] == ["eth0", "eth1"]
    plan = kplan("ip=dhcp6")
    assert not plan.dhcp_everywhere and plan.dhcp == [Dhcp("eth0", 6), Dhcp("eth1", 6)]
    assert kplan("ip=52-54-00-00-00-02:dhcp").dhcp == [Dhcp("eth1", 4)]


def test_bond_and_vlan_parameters():
    plan = kplan("bond=bond0:eth0,eth1:mode=active-backup,miimon=100 vlan=bond0.20:bond0 "
                 "ip=10.0.20.5::10.0.20.1:24::bond0.20:none")
    assert describe(plan) == [
        "link eth0 phy", "link eth1 phy",
        "link bond0 bond slaves=eth0,eth1 {'mode': 'active-backup', 'miimon': '100'}",
        "link bond0.20 vlan on bond0 id 20",
        "address bond0.20 10.0.20.5/24", "route bond0.20 0.0.0.0/0 via 10.0.20.1"]
    assert kplan("vlan=vlan0005:eth0").link("vlan0005").vlan_id == 5


def test_bad_kernel_parameters_are_named():
    plan = kplan("ip=10.0.0.300:::::eth0:none ip=eth7:dhcp vlan=foo:eth0 bond=bond1:eth9 "
                 "nameserver=dns ip=10.0.0.5:::255.0.255.0::eth0:none ip=eth0:bogus")
    assert plan.problems == [
        "bond=bond1:eth9 slave eth9: no interface 'eth9' on this machine; skipped",
        "bond=bond1:eth9: no usable slave; skipped",
        "vlan=foo:eth0: no VLAN ID (1-4094) in the name 'foo' (vlan0005, vlan5 or eth0.5); "
        "skipped",
        "ip=10.0.0.300:::::eth0:none: client address '10.0.0.300' is not an address; ignored",
        "ip=eth7:dhcp: no interface 'eth7' on this machine; skipped",
        "nameserver=dns: not an address; ignored",
        "ip=10.0.0.5:::255.0.255.0::eth0:none: netmask '255.0.255.0' is not a netmask; ignored",
        "ip=eth0:bogus: unknown method 'bogus'; ignored",
    ]


def test_nothing_configured_is_empty():
    assert build_plan("ro quiet ipa-api-url=http://10.0.2.2:6385", NICS, None, None).empty()


def test_enable_vlan_interfaces_by_name_keeps_dhcp_everywhere():
    plan = build_plan("ipa-enable-vlan-interfaces=eth0.100,eth3.7", NICS, None, None)
    assert plan.dhcp_everywhere and [li.name for li in plan.links] == ["eth0", "eth0.100"]
    # the agent's messages (ironic_python_agent.vlans reads the value for both)
    assert plan.problems == ["ipa-enable-vlan-interfaces entry 'eth3.7': no interface 'eth3' "
                             "on this machine; skipped"]
    plan = build_plan("ip=eth1:dhcp ipa-enable-vlan-interfaces=eth0.100", NICS, None, None)
    assert not plan.dhcp_everywhere and Dhcp("eth0.100", 4) in plan.dhcp


def test_enable_vlan_interfaces_by_mac_and_bad_vlan_ids():
    plan = build_plan("ipa-enable-vlan-interfaces=52:54:00:00:00:02.20,eth0.4095,eth0.x",
                      NICS, None, None)
    assert [(li.name, li.parent, li.vlan_id) for li in plan.links] == [
        ("eth1", None, None), ("eth1.20", "eth1", 20)]
    assert plan.problems == [
        "ipa-enable-vlan-interfaces entry 'eth0.4095': VLAN id 4095 is outside 1-4094; skipped",
        "ipa-enable-vlan-interfaces entry 'eth0.x': VLAN id 'x' is not a number; skipped"]


def test_network_data_and_kernel_parameters_merge():
    data = json.dumps({"links": [{"id": "x", "type": "phy",
                                  "ethernet_mac_address": "52:54:00:00:00:01"}],
                       "networks": [{"type": "ipv4_dhcp", "link": "x"}], "services": []})
    plan = build_plan("ip=eth1:dhcp", NICS, data, "test")
    assert plan.dhcp == [Dhcp("eth0", 4), Dhcp("eth1", 4)]


# -- applying: parse what ip -j prints, and the DHCP client commands ---------------------

IP_JSON = json.dumps([
    {"ifname": "lo", "flags": ["LOOPBACK", "UP"], "addr_info": []},
    {"ifname": "eth0", "flags": ["BROADCAST", "UP", "LOWER_UP"], "operstate": "UP",
     "addr_info": [{"family": "inet", "local": "192.0.2.5", "prefixlen": 24, "scope": "global"},
                   {"family": "inet6", "local": "fd00::5", "prefixlen": 64, "scope": "global",
                    "tentative": True},
                   {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]},
    {"ifname": "eth1", "flags": ["BROADCAST"], "operstate": "DOWN", "addr_info": []}])


def test_wait_state_and_summary():
    state = applying.addresses(IP_JSON)
    plan = kplan("ip=192.0.2.5:::24::eth0:none ip=[fd00::5]:::64::eth0:none ip=eth1:dhcp")
    assert applying.missing(plan, state) == ["eth0 fd00::5/64", "eth1 DHCPv4"]
    assert applying.missing(plan, state, failed={"eth0", "eth1"}) == []
    plan = kplan("ip=10.0.0.5:::24::eth1:none")
    assert applying.missing(plan, state) == ["eth1 10.0.0.5/24", "eth1 link up"]
    assert applying.summary(state) == ["eth0 up 192.0.2.5/24 fd00::5/64 (tentative)",
                                       "eth1 down"]


def test_dhcp_client_commands():
    udhcpc = applying.dhcp_argv(Dhcp("eth0", 4), {"udhcpc": "/bin/udhcpc"})
    assert udhcpc[:3] == ["/bin/udhcpc", "-i", "eth0"] and "/run/udhcpc.eth0.pid" in udhcpc
    dhclient = applying.dhcp_argv(Dhcp("eth0", 6, stateless=True), {"dhclient": "/sbin/dhclient"})
    assert dhclient[:4] == ["/sbin/dhclient", "-6", "-nw", "-S"] and dhclient[-1] == "eth0"
    assert applying.dhcp_argv(Dhcp("eth0", 6), {"udhcpc": "/bin/udhcpc"}) is None
