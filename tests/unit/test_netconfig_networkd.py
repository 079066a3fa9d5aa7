# SPDX-License-Identifier: Apache-2.0
"""What lean-ipa-network --networkd tells systemd-networkd (the dib and coreos images):
the .network files for a plan, the resolved drop-in, what it waits for itself."""

from __future__ import annotations

import configparser
from pathlib import Path

from ironic_python_agent.netconfig import networkd
from ironic_python_agent.netconfig.cli import hand_over, waited_for
from ironic_python_agent.netconfig.kernel_args import plan_from_kernel_args
from ironic_python_agent.netconfig.network_data import plan_from_network_data
from ironic_python_agent.netconfig.plan import Dhcp

NICS = {"52:54:00:00:00:01": "eth0", "52:54:00:00:00:02": "eth1"}


def kplan(cmdline: str):
    return plan_from_kernel_args(cmdline.split(), NICS)


def sections(text: str) -> dict[str, dict[str, list[str]]]:
    """A .network file as {section: {key: [values]}} (keys may repeat, sections too)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key, []).append(value)
    return out


def test_static_address_unmanaged_and_every_other_interface_too():
    plan = kplan("ip=10.0.2.50::10.0.2.2:255.255.255.0::52-54-00-00-00-01:none")
    files = networkd.files(plan)
    assert sorted(files) == ["10-lean-ipa-eth0.network", "19-lean-ipa-others.network"]
    eth0 = sections(files["10-lean-ipa-eth0.network"])
    assert eth0 == {"Match": {"Name": ["eth0"]}, "Link": {"Unmanaged": ["yes"]}}
    others = sections(files["19-lean-ipa-others.network"])
    assert others == {"Match": {"Name": ["*"]}, "Link": {"Unmanaged": ["yes"]}}
    # before the images' own DHCP file (networkd takes the first match, by file name)
    assert max(files) < "80-lean-ipa-dhcp.network"
    assert networkd.networkd_idle(plan)


def test_dhcp_link_is_managed_the_static_one_is_not():
    data = {"links": [{"id": "a", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
                      {"id": "b", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:02",
                       "mtu": 9000}],
            "networks": [{"id": "n0", "type": "ipv4", "link": "a", "ip_address": "192.0.2.5",
                          "netmask": "255.255.255.0"},
                         {"id": "n1", "type": "ipv4_dhcp", "link": "b"}],
            "services": [{"type": "dns", "address": "192.0.2.53"}]}
    plan = plan_from_network_data(data, NICS)
    assert networkd.roles(plan) == {"eth0": "unmanaged", "eth1": "dhcp"}
    eth1 = sections(networkd.files(plan)["10-lean-ipa-eth1.network"])
    assert eth1["Network"]["DHCP"] == ["ipv4"]
    assert eth1["Network"]["KeepConfiguration"] == ["static"]
    assert eth1["Network"]["IPv6AcceptRA"] == ["no"]
    assert eth1["Network"]["DNS"] == ["192.0.2.53"]
    assert eth1["Link"] == {"MTUBytes": ["9000"]}
    assert eth1["DHCPv4"] == {"UseMTU": ["no"]}  # the MTU of network_data.json stays
    assert not networkd.networkd_idle(plan)


def test_dual_stack_link_declares_its_static_part_to_networkd():
    """Static IPv4 plus DHCPv6 on one link: networkd manages it, and its address and
    routes are in the file too, so networkd keeps them whatever it does with foreign ones."""
    data = {"links": [{"id": "a", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"}],
            "networks": [{"id": "n0", "type": "ipv4", "link": "a", "ip_address": "192.0.2.5",
                          "netmask": "255.255.255.0",
                          "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                      "gateway": "192.0.2.1"},
                                     {"network": "10.0.0.0", "netmask": "255.0.0.0",
                                      "gateway": "198.51.100.1"}]},
                         {"id": "n1", "type": "ipv6_dhcp", "link": "a"}]}
    plan = plan_from_network_data(data, NICS)
    text = networkd.files(plan)["10-lean-ipa-eth0.network"]
    net = sections(text)
    assert net["Network"]["DHCP"] == ["ipv6"]
    assert net["Network"]["Address"] == ["192.0.2.5/24"]
    assert net["Network"]["IPv6AcceptRA"] == ["yes"]
    assert net["DHCPv6"] == {"WithoutRA": ["solicit"]}
    assert "DHCPv4" not in net
    routes = text.split("[Route]\n")[1:]
    assert [sections("[Route]\n" + r)["Route"] for r in routes] == [
        {"Destination": ["0.0.0.0/0"], "Gateway": ["192.0.2.1"]},
        {"Destination": ["10.0.0.0/8"], "Gateway": ["198.51.100.1"],
         "GatewayOnLink": ["yes"]}]  # not on the link's subnet: as `ip route ... onlink`


def test_stateless_dhcpv6_asks_for_information_only():
    data = {"links": [{"id": "a", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"}],
            "networks": [{"id": "n", "type": "ipv6_dhcpv6-stateless", "link": "a"}]}
    net = sections(networkd.files(plan_from_network_data(data, NICS))[
        "10-lean-ipa-eth0.network"])
    assert net["DHCPv6"] == {"WithoutRA": ["information-request"]}
    assert net["Network"]["IPv6AcceptRA"] == ["yes"]


def test_bond_with_dhcp_keeps_its_slaves_unmanaged():
    """networkd would take a slave out of a bond it did not make: the slaves stay unmanaged."""
    plan = kplan("bond=bond0:eth0,eth1:mode=active-backup ip=bond0:dhcp")
    assert networkd.roles(plan) == {"eth0": "unmanaged", "eth1": "unmanaged", "bond0": "dhcp"}
    assert sections(networkd.files(plan)["10-lean-ipa-bond0.network"])["Network"]["DHCP"] \
        == ["ipv4"]


def test_dhcp_everywhere_leaves_other_interfaces_to_the_image():
    plan = kplan("ip=dhcp")
    files = networkd.files(plan)
    assert networkd.OTHERS not in files
    assert {n: sections(t)["Network"]["DHCP"] for n, t in files.items()} == {
        "10-lean-ipa-eth0.network": ["yes"], "10-lean-ipa-eth1.network": ["yes"]}
    assert not networkd.networkd_idle(plan)


def test_files_parse_as_ini():
    """Each file is plain systemd ini syntax (section headers, key=value)."""
    plan = kplan("bond=bond0:eth0,eth1 vlan=bond0.5:bond0 ip=bond0.5:dhcp "
                 "ip=192.0.2.7::192.0.2.1:24::eth0:none nameserver=192.0.2.53")
    for text in networkd.files(plan).values():
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(text)
        assert parser.sections()


def test_resolved_drop_in():
    assert networkd.resolved_conf(["192.0.2.53", "2001:db8::53"]).splitlines()[1:] == [
        "[Resolve]", "DNS=192.0.2.53 2001:db8::53"]


def test_waits_only_for_what_lean_ipa_network_configures_itself():
    plan = kplan("ip=10.0.2.50::10.0.2.2:24::eth0:none ip=eth1:dhcp6")
    assert plan.dhcp == [Dhcp("eth1", 6)] and plan.slaac == ["eth1"]
    waited = waited_for(plan, by_networkd=True)
    assert waited.dhcp == [] and waited.slaac == [] and waited.addresses == plan.addresses
    assert waited_for(plan, by_networkd=False) is plan


def test_hand_over_writes_the_files_and_the_idle_marker(tmp_path: Path):
    plan = kplan("ip=10.0.2.50::10.0.2.2:24::eth0:none")
    marker = tmp_path / "state/networkd-idle"
    hand_over(plan, tmp_path / "network", marker)
    assert sorted(p.name for p in (tmp_path / "network").iterdir()) == [
        "10-lean-ipa-eth0.network", "19-lean-ipa-others.network"]
    assert marker.read_text() == "eth0\n"

    busy = tmp_path / "busy"
    hand_over(kplan("ip=eth1:dhcp"), busy / "network", busy / "networkd-idle")
    assert not (busy / "networkd-idle").exists()


def test_the_images_skip_the_wait_on_the_marker_the_tool_writes():
    from ironic_python_agent.netconfig.cli import NETWORKD_IDLE

    top = Path(__file__).resolve().parents[2]
    dib = top / "elements/lean-ipa-agent/static/etc/systemd/system"
    assert f"test -e {NETWORKD_IDLE} ||" in (dib / "lean-ipa.service").read_text()
    assert "--networkd /run/systemd/network" in (dib / "lean-ipa-network.service").read_text()
    coreos = (top / "coreos/units/wait-online.conf.j2").read_text()
    assert f"ConditionPathExists=!{NETWORKD_IDLE}" in coreos
