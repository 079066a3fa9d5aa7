# SPDX-License-Identifier: Apache-2.0
"""``network_data.json`` (the OpenStack network-data format, Ironic's
``node.network_data``) to a :class:`~.plan.Plan`.

Pure: the machine's interfaces come in as a ``{mac: name}`` mapping. Every
field that cannot be used is recorded in ``plan.problems`` as
``links[1].bond_mode: ...`` and skipped; the rest is still planned.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from ironic_python_agent.netconfig.plan import (
    BOND_MODES, Address, Dhcp, Link, Plan, Route, normalize_mac, vlan_name)

# Link types that are a NIC of the machine, matched by ethernet_mac_address
# (Ironic's schema lists them all; Ironic itself writes "phy" and "vif").
PHYSICAL_TYPES = frozenset({"phy", "vif", "ethernet", "bridge", "dvs", "hw_veb", "hyperv",
                            "ovs", "tap", "vhostuser"})
IPV6_DHCP_TYPES = {"ipv6_dhcp": False, "ipv6_dhcpv6-stateful": False,
                   "ipv6_dhcpv6_stateful": False, "ipv6_dhcpv6-stateless": True}


def parse(text: str | bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in *text*, or ``(None, reason)``."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"network_data.json: not JSON: {exc}"
    if not isinstance(data, dict):
        return None, f"network_data.json: a {type(data).__name__}, not an object"
    return data, None


def _mtu(value: Any, where: str, plan: Plan) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 68 <= value <= 65535 or int(value) != value:
        plan.problems.append(f"{where}.mtu: {value!r} is not an MTU (68-65535); not set")
        return None
    return int(value)


def _prefix(netmask: Any, version: int) -> int | None:
    """A prefix length from a dotted/colon netmask or a number (``"64"``, ``24``)."""
    if netmask is None or netmask == "":
        return None
    text = str(netmask).strip().lstrip("/")
    if text.isdigit():
        n = int(text)
        return n if n <= (32 if version == 4 else 128) else -1
    try:
        mask = ipaddress.ip_address(text)
    except ValueError:
        return -1
    if mask.version != version:
        return -1
    bits = int(mask)
    width = mask.max_prefixlen
    n = bin(bits).count("1")
    return n if bits == ((1 << width) - 1) ^ ((1 << (width - n)) - 1) else -1


def _interface(address: Any, netmask: Any, version: int, where: str,
               plan: Plan) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
    if not isinstance(address, str) or not address:
        plan.problems.append(f"{where}.ip_address: missing; network skipped")
        return None
    text, _, suffix = address.partition("/")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        plan.problems.append(f"{where}.ip_address: {address!r} is not an address; network "
                             "skipped")
        return None
    if ip.version != version:
        plan.problems.append(f"{where}.ip_address: {address!r} is not IPv{version}; network "
                             "skipped")
        return None
    prefix = _prefix(suffix or netmask, version)
    if prefix == -1:
        plan.problems.append(f"{where}.netmask: {netmask!r} is not a netmask; network skipped")
        return None
    if prefix is None:
        prefix = 64 if version == 6 else 32
    return ipaddress.ip_interface(f"{ip}/{prefix}")


def _routes(net: Mapping[str, Any], link: str, version: int, where: str, plan: Plan) -> None:
    routes = net.get("routes") or []
    if not isinstance(routes, list):
        plan.problems.append(f"{where}.routes: not a list; no routes")
        return
    for j, route in enumerate(routes):
        rwhere = f"{where}.routes[{j}]"
        if not isinstance(route, dict):
            plan.problems.append(f"{rwhere}: not an object; skipped")
            continue
        try:
            network = ipaddress.ip_address(str(route.get("network", "")).split("/")[0])
            prefix = _prefix(route.get("netmask") or str(route.get("network", "")).partition(
                "/")[2] or None, network.version)
            if prefix == -1:
                raise ValueError(f"netmask {route.get('netmask')!r}")
            if prefix is None:
                prefix = network.max_prefixlen
            destination = ipaddress.ip_network(f"{network}/{prefix}", strict=False)
            gateway = (ipaddress.ip_address(route["gateway"]) if route.get("gateway")
                       else None)
        except (ValueError, TypeError) as exc:
            plan.problems.append(f"{rwhere}: {exc}; route skipped")
            continue
        if destination.version != version or (gateway and gateway.version != version):
            plan.problems.append(f"{rwhere}: not IPv{version} like its network; route skipped")
            continue
        plan.routes.append(Route(link, destination, gateway))


def _dns(items: Any, where: str, plan: Plan) -> None:
    if not items:
        return
    if not isinstance(items, list):
        plan.problems.append(f"{where}: not a list; ignored")
        return
    for k, item in enumerate(items):
        address = item.get("address") if isinstance(item, dict) else item
        if isinstance(item, dict) and item.get("type", "dns") != "dns":
            continue
        try:
            plan.add_nameserver(str(ipaddress.ip_address(str(address))))
        except ValueError:
            plan.problems.append(f"{where}[{k}]: {address!r} is not an address; ignored")


def plan_from_network_data(data: Mapping[str, Any], interfaces: Mapping[str, str]) -> Plan:
    """The plan for *data*; *interfaces* maps each NIC's MAC (lower case) to its name."""
    plan = Plan()
    names: dict[str, str] = {}  # link id -> kernel name
    links = data.get("links") or []
    if not isinstance(links, list):
        plan.problems.append("links: not a list; no links")
        links = []
    bonds = 0
    pending: list[tuple[int, dict[str, Any]]] = []
    for i, link in enumerate(links):
        where = f"links[{i}]"
        if not isinstance(link, dict) or not isinstance(link.get("id"), str):
            plan.problems.append(f"{where}: not an object with an id; skipped")
            continue
        kind = link.get("type")
        if kind in ("bond", "vlan"):
            pending.append((i, link))
            continue
        if kind not in PHYSICAL_TYPES:
            plan.problems.append(f"{where}.type: {kind!r} is not supported; skipped")
            continue
        mac = normalize_mac(link.get("ethernet_mac_address"))
        if mac is None:
            plan.problems.append(f"{where}.ethernet_mac_address: "
                                 f"{link.get('ethernet_mac_address')!r} is not a MAC; skipped")
            continue
        name = interfaces.get(mac)
        if name is None:
            plan.problems.append(f"{where}.ethernet_mac_address: no interface has MAC {mac}; "
                                 "skipped")
            continue
        names[link["id"]] = name
        plan.add_link(Link(name, "phy", mac=mac, mtu=_mtu(link.get("mtu"), where, plan),
                           source=where))
    # Bonds before VLANs (a VLAN may sit on a bond); a VLAN on a VLAN resolves on a later pass.
    pending.sort(key=lambda item: item[1].get("type") != "bond")
    for _ in range(3):
        left: list[tuple[int, dict[str, Any]]] = []
        for i, link in pending:
            where = f"links[{i}]"
            if link["type"] == "bond":
                slaves, missing = [], []
                raw = link.get("bond_links") or []
                for sid in raw if isinstance(raw, list) else []:
                    (slaves if sid in names else missing).append(names.get(sid, sid))
                for sid in missing:
                    plan.problems.append(f"{where}.bond_links: {sid!r} is no usable link; "
                                         "left out of the bond")
                if not slaves:
                    plan.problems.append(f"{where}.bond_links: no usable link; bond skipped")
                    continue
                mode = link.get("bond_mode", "balance-rr")
                options: dict[str, str] = {}
                if mode not in BOND_MODES:
                    plan.problems.append(f"{where}.bond_mode: {mode!r} is not a bonding mode; "
                                         "balance-rr")
                    mode = "balance-rr"
                options["mode"] = mode
                for key, value in link.items():
                    if key.startswith("bond_") and key not in ("bond_mode", "bond_links") \
                            and value is not None:
                        options[key[len("bond_"):]] = str(value).lower() \
                            if isinstance(value, bool) else str(value)
                name = f"bond{bonds}"
                bonds += 1
                names[link["id"]] = name
                plan.add_link(Link(name, "bond", mac=normalize_mac(
                    link.get("ethernet_mac_address")), mtu=_mtu(link.get("mtu"), where, plan),
                    slaves=slaves, bond_options=options, source=where))
            else:
                parent = names.get(link.get("vlan_link"))  # type: ignore[arg-type]
                vid = link.get("vlan_id")
                if isinstance(vid, str) and vid.isdigit():
                    vid = int(vid)
                if isinstance(vid, bool) or not isinstance(vid, int) or not 0 < vid < 4095:
                    plan.problems.append(f"{where}.vlan_id: {vid!r} is not a VLAN ID "
                                         "(1-4094); skipped")
                    continue
                if parent is None:
                    if any(other.get("id") == link.get("vlan_link") for _, other in pending):
                        left.append((i, link))
                        continue
                    plan.problems.append(f"{where}.vlan_link: {link.get('vlan_link')!r} is no "
                                         "usable link; skipped")
                    continue
                name = vlan_name(parent, vid)
                names[link["id"]] = name
                plan.add_link(Link(name, "vlan", mac=normalize_mac(
                    link.get("vlan_mac_address")), mtu=_mtu(link.get("mtu"), where, plan),
                    parent=parent, vlan_id=vid, source=where))
        if not left or len(left) == len(pending):
            for i, link in left:
                plan.problems.append(f"links[{i}].vlan_link: {link.get('vlan_link')!r} is no "
                                     "usable link; skipped")
            break
        pending = left

    networks = data.get("networks") or []
    if not isinstance(networks, list):
        plan.problems.append("networks: not a list; no networks")
        networks = []
    for i, net in enumerate(networks):
        where = f"networks[{i}]"
        if not isinstance(net, dict):
            plan.problems.append(f"{where}: not an object; skipped")
            continue
        link = names.get(net.get("link"))  # type: ignore[arg-type]
        if link is None:
            plan.problems.append(f"{where}.link: {net.get('link')!r} is no usable link; "
                                 "network skipped")
            continue
        kind = net.get("type")
        if kind == "ipv4_dhcp":
            plan.add_dhcp(Dhcp(link, 4))
        elif kind == "ipv6_slaac":
            plan.add_slaac(link)
        elif kind in IPV6_DHCP_TYPES:
            stateless = IPV6_DHCP_TYPES[kind]
            if stateless:
                plan.add_slaac(link)
            plan.add_dhcp(Dhcp(link, 6, stateless=stateless))
        elif kind in ("ipv4", "ipv6"):
            version = 4 if kind == "ipv4" else 6
            address = _interface(net.get("ip_address"), net.get("netmask"), version, where,
                                 plan)
            if address is None:
                continue
            plan.addresses.append(Address(link, address))
            _routes(net, link, version, where, plan)
        else:
            plan.problems.append(f"{where}.type: {kind!r} is not supported; network skipped")
            continue
        _dns(net.get("dns_nameservers"), f"{where}.dns_nameservers", plan)
        _dns(net.get("services"), f"{where}.services", plan)
    _dns(data.get("services"), "services", plan)
    return plan
