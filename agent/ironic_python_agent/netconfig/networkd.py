# SPDX-License-Identifier: Apache-2.0
"""What systemd-networkd must be told after ``lean-ipa-network`` applied a plan.

The dib and coreos images run systemd-networkd, whose own ``.network`` does DHCP
on every wired interface. ``lean-ipa-network --networkd DIR`` runs before it,
applies the plan itself (one implementation for every image) and then writes
files into ``DIR`` (``/run/systemd/network``) that sort before the image's:

* a link the plan gives DHCP: managed by networkd, which runs the DHCP client
  (the images have no other); its static addresses, routes and MTU are written
  too, and ``KeepConfiguration=static`` keeps them while networkd takes over;
* every other link of the plan: ``Unmanaged=yes`` (networkd never touches a
  bond, its slaves, a VLAN or an address lean-ipa-network configured);
* every other interface: ``Unmanaged=yes`` as well (no DHCP behind the plan's
  back), except with ``dhcp_everywhere`` (``ip=dhcp``), where the image's own
  DHCP file still covers them.

Pure: the plan in, ``{file name: text}`` out.
"""

from __future__ import annotations

from ironic_python_agent.netconfig.plan import Link, Plan

MANAGED = "dhcp"        # networkd runs DHCP on it
UNMANAGED = "unmanaged"
PREFIX = "10-lean-ipa-"
OTHERS = "19-lean-ipa-others.network"  # before the image's 80-lean-ipa-dhcp.network
RESOLVED = "lean-ipa-network.conf"


def roles(plan: Plan) -> dict[str, str]:
    """Each link of the plan: :data:`MANAGED` or :data:`UNMANAGED`."""
    dhcp = {d.link for d in plan.dhcp}
    slaves = {s for li in plan.links if li.kind == "bond" for s in li.slaves}
    static = {a.link for a in plan.addresses} | set(plan.slaac) | slaves
    out = {}
    for link in plan.links:
        if link.name in dhcp:
            out[link.name] = MANAGED
        elif plan.dhcp_everywhere and link.name not in static:
            out[link.name] = MANAGED  # as the image's own file would, bonds and VLANs too
        else:
            out[link.name] = UNMANAGED
    return out


def _dhcp_value(families: set[int]) -> str:
    return {frozenset({4}): "ipv4", frozenset({6}): "ipv6"}.get(frozenset(families), "yes")


def managed_network(plan: Plan, link: Link) -> str:
    """The ``.network`` of a link networkd runs DHCP on."""
    items = [d for d in plan.dhcp if d.link == link.name]
    families = {d.family for d in items} or {4, 6}
    v6 = link.name in plan.slaac or 6 in families
    lines = [f"# lean-ipa-network ({link.source or 'plan'}): DHCP by networkd, "
             "the rest was configured before it started",
             "[Match]", f"Name={link.name}", ""]
    if link.mtu:
        lines += ["[Link]", f"MTUBytes={link.mtu}", ""]
    lines += ["[Network]", f"DHCP={_dhcp_value(families)}",
              # what lean-ipa-network configured stays while networkd takes the link over
              "KeepConfiguration=static",
              "LinkLocalAddressing=ipv6",
              f"IPv6AcceptRA={'yes' if v6 else 'no'}"]
    lines += [f"Address={a.address}" for a in plan.addresses if a.link == link.name]
    lines += [f"DNS={n}" for n in plan.nameservers]
    lines.append("")
    own = [a.address for a in plan.addresses if a.link == link.name]
    for route in (r for r in plan.routes if r.link == link.name):
        lines += ["[Route]", f"Destination={route.destination}"]
        if route.gateway is not None:
            lines.append(f"Gateway={route.gateway}")
            if route.gateway.version == 4 and not any(
                    route.gateway in a.network for a in own if a.version == 4):
                lines.append("GatewayOnLink=yes")  # as ip route ... onlink
        lines.append("")
    if 4 in families:
        lines += ["[DHCPv4]", f"UseMTU={'no' if link.mtu else 'yes'}", ""]
    stateful = [d for d in items if d.family == 6]
    if stateful:
        start = "information-request" if all(d.stateless for d in stateful) else "solicit"
        lines += ["[DHCPv6]", f"WithoutRA={start}", ""]
    return "\n".join(lines)


def unmanaged_network(link: Link) -> str:
    return "\n".join([
        f"# lean-ipa-network configured {link.name} ({link.source or 'plan'}): "
        "networkd leaves it alone",
        "[Match]", f"Name={link.name}", "", "[Link]", "Unmanaged=yes", ""])


OTHERS_TEXT = "\n".join([
    "# lean-ipa-network configured this machine's network: networkd leaves every",
    "# interface the plan does not name alone (no DHCP behind its back)",
    "[Match]", "Name=*", "", "[Link]", "Unmanaged=yes", ""])


def files(plan: Plan) -> dict[str, str]:
    """``{file name: text}`` for networkd's ``/run/systemd/network``."""
    out = {}
    for name, role in roles(plan).items():
        link = plan.link(name)
        assert link is not None
        text = managed_network(plan, link) if role == MANAGED else unmanaged_network(link)
        out[f"{PREFIX}{name}.network"] = text
    if not plan.dhcp_everywhere:
        out[OTHERS] = OTHERS_TEXT
    return out


def networkd_idle(plan: Plan) -> bool:
    """True when networkd manages no link at all (nothing for wait-online to wait for)."""
    return not plan.dhcp_everywhere and MANAGED not in roles(plan).values()


def resolved_conf(nameservers: list[str]) -> str:
    """A systemd-resolved drop-in with the plan's nameservers (global DNS servers)."""
    return ("# lean-ipa-network: the nameservers of network_data.json / nameserver=\n"
            f"[Resolve]\nDNS={' '.join(nameservers)}\n")
