# SPDX-License-Identifier: Apache-2.0
"""What the network should look like: links, addresses, routes, DHCP, DNS.

Built by pure functions (:mod:`.network_data`, :mod:`.kernel_args`) and carried
out by :func:`ironic_python_agent.netconfig.apply.apply`. Names are kernel
interface names; ``problems`` lists every piece of input that was skipped,
each naming the field.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IFNAMSIZ = 15  # longest kernel interface name

# Kernel bonding driver options network_data.json (bond_<name>) and the
# bond= kernel parameter may set, as their sysfs names under bonding/.
BOND_OPTIONS = ("mode", "miimon", "lacp_rate", "xmit_hash_policy", "updelay", "downdelay",
                "primary", "ad_select", "arp_interval", "arp_ip_target", "fail_over_mac",
                "min_links", "use_carrier", "all_slaves_active", "num_grat_arp")
BOND_MODES = ("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad",
              "balance-tlb", "balance-alb")


@dataclass
class Link:
    """One interface to bring up: an existing NIC (``phy``), a ``bond`` or a ``vlan``."""

    name: str
    kind: str = "phy"
    mac: str | None = None
    mtu: int | None = None
    slaves: list[str] = field(default_factory=list)
    bond_options: dict[str, str] = field(default_factory=dict)
    parent: str | None = None
    vlan_id: int | None = None
    source: str = ""  # the input field it came from, for messages


@dataclass(frozen=True)
class Address:
    link: str
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class Route:
    link: str
    destination: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


@dataclass(frozen=True)
class Dhcp:
    """A DHCP client on *link*: family 4, or 6 (``stateless``: information only)."""

    link: str
    family: int = 4
    stateless: bool = False


@dataclass
class Plan:
    links: list[Link] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dhcp: list[Dhcp] = field(default_factory=list)
    slaac: list[str] = field(default_factory=list)
    nameservers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # DHCP on every wired link (init's default), on top of what is listed
    dhcp_everywhere: bool = False

    def link(self, name: str) -> Link | None:
        return next((li for li in self.links if li.name == name), None)

    def empty(self) -> bool:
        return not (self.links or self.dhcp_everywhere)

    def add_link(self, link: Link) -> Link:
        existing = self.link(link.name)
        if existing is not None:
            return existing
        self.links.append(link)
        return link

    def add_dhcp(self, item: Dhcp) -> None:
        if item not in self.dhcp:
            self.dhcp.append(item)

    def add_slaac(self, name: str) -> None:
        if name not in self.slaac:
            self.slaac.append(name)

    def add_nameserver(self, address: str) -> None:
        if address not in self.nameservers:
            self.nameservers.append(address)

    def merge(self, other: Plan) -> None:
        """Add *other*'s items (a link already named keeps its first definition)."""
        for li in other.links:
            self.add_link(li)
        for a in other.addresses:
            if a not in self.addresses:
                self.addresses.append(a)
        for r in other.routes:
            if r not in self.routes:
                self.routes.append(r)
        for d in other.dhcp:
            self.add_dhcp(d)
        for s in other.slaac:
            self.add_slaac(s)
        for n in other.nameservers:
            self.add_nameserver(n)
        self.problems.extend(other.problems)
        self.dhcp_everywhere = self.dhcp_everywhere or other.dhcp_everywhere

    def ordered_links(self) -> list[Link]:
        """Links in creation order: NICs, then bonds, then VLANs (parents first)."""
        rank = {"phy": 0, "bond": 1, "vlan": 2}
        out: list[Link] = []
        pending = sorted(self.links, key=lambda li: rank.get(li.kind, 3))
        while pending:
            progressed = False
            for li in list(pending):
                if li.parent is None or any(o.name == li.parent for o in out) \
                        or self.link(li.parent) is None:
                    out.append(li)
                    pending.remove(li)
                    progressed = True
            if not progressed:  # a cycle (VLAN on a VLAN on itself): keep the order
                out.extend(pending)
                break
        return out


def normalize_mac(value: object) -> str | None:
    """``aa:bb:cc:dd:ee:ff`` from a MAC with ``:`` or ``-``, or None when it is not one."""
    if not isinstance(value, str):
        return None
    parts = value.strip().lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        return None
    try:
        [int(p, 16) for p in parts]
    except ValueError:
        return None
    return ":".join(parts)


def valid_ifname(name: str) -> bool:
    return (0 < len(name) <= IFNAMSIZ and name not in (".", "..")
            and not any(c in name for c in "/: \t\n"))


def vlan_name(parent: str, vlan_id: int) -> str:
    """``<parent>.<id>`` as upstream names them, or ``vlan<id>`` when that is too long."""
    name = f"{parent}.{vlan_id}"
    return name if valid_ifname(name) else f"vlan{vlan_id}"
