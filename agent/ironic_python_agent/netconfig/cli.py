# SPDX-License-Identifier: Apache-2.0
"""``lean-ipa-network``: configure the network before the agent starts.

Exit status: 0 configured; 3 nothing to configure (or nothing came up), so
the image's own DHCP on every interface runs as before; 2 bad usage.

With ``--networkd DIR`` (the dib and coreos images) it runs before
systemd-networkd, leaves the plan's DHCP to it and writes ``DIR/*.network``
so that networkd keeps its hands off the rest (:mod:`.networkd`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ironic_python_agent import vlans
from ironic_python_agent.netconfig import apply as applying
from ironic_python_agent.netconfig import networkd
from ironic_python_agent.netconfig.kernel_args import plan_from_kernel_args, tokens
from ironic_python_agent.netconfig.network_data import parse, plan_from_network_data
from ironic_python_agent.netconfig.plan import Dhcp, Link, Plan, vlan_name

LOG = logging.getLogger("lean-ipa-network")
EXIT_DHCP = 3
NETWORK_DATA = "openstack/latest/network_data.json"
# Written with --networkd when networkd manages no link: the images' wait for a
# networkd link (systemd-networkd-wait-online) is skipped, it would only time out.
NETWORKD_IDLE = Path("/run/lean-ipa-network/networkd-idle")


def say(text: str) -> None:
    print(f"lean-ipa-network: {text}", flush=True)


def read_network_data() -> tuple[str | None, str | None]:
    """The network_data.json text from the vmedia ISO or config drive, and where it was."""
    from ironic_python_agent import vmedia

    device = vmedia.find_labelled_device(vmedia.CONFIG_LABELS)
    if device is None:
        return None, None
    with vmedia.mounted(device) as where:
        path = os.path.join(where, NETWORK_DATA)
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", errors="replace"), f"{device}:{NETWORK_DATA}"
        except OSError:
            return None, None


def vlan_plan(value: str, interfaces: dict[str, str], plan: Plan,
              lldp_timeout: float) -> Plan:
    """``ipa-enable-vlan-interfaces``, read and resolved as the agent does (:mod:`vlans`):
    ``eth0.100`` as is; ``eth0`` or ``all``: the VLANs LLDP announces there."""
    out = Plan()
    request = vlans.parse(value)
    found, problems = vlans.wanted(request, sorted(interfaces.values()), lldp_timeout,
                                   macs=interfaces)
    out.problems.extend([*request.errors, *problems])
    for vlan in found:
        out.add_link(Link(vlan.parent, "phy", source=vlans.OPTION))
        out.add_link(Link(vlan_name(vlan.parent, vlan.vid), "vlan", parent=vlan.parent,
                          vlan_id=vlan.vid, source=f"{vlans.OPTION} entry {vlan.entry!r}"))
    for link in out.links:
        if link.kind == "vlan" and not plan.empty():
            out.add_dhcp(Dhcp(link.name, 4))
    return out


def build_plan(cmdline: str, interfaces: dict[str, str],
               network_data: str | None, source: str | None) -> Plan:
    words = tokens(cmdline)
    plan = Plan()
    if network_data is not None:
        data, error = parse(network_data)
        if error:
            plan.problems.append(f"{source}: {error}")
        else:
            assert data is not None
            plan.merge(plan_from_network_data(data, interfaces))
            say(f"network_data.json from {source}")
    plan.merge(plan_from_kernel_args(words, interfaces))
    params = dict(w.partition("=")[::2] for w in words if "=" in w)
    vlans = params.get("ipa-enable-vlan-interfaces", "")
    if vlans:
        try:
            timeout = float(params.get("ipa-lldp-timeout", "30"))
        except ValueError:
            timeout = 30.0
        extra = vlan_plan(vlans, interfaces, plan, timeout)
        if plan.empty():
            extra.dhcp_everywhere = True  # as upstream: DHCP on them and everything else
        plan.merge(extra)
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lean-ipa-network", description=__doc__.split("\n")[0])
    parser.add_argument("--cmdline", default="/proc/cmdline", help="kernel command line file")
    parser.add_argument("--network-data", help="a network_data.json to use (default: the "
                        "one on the virtual media ISO or config drive)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the addresses (default 30)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--networkd", metavar="DIR", type=Path,
                        help="systemd-networkd runs next: leave the plan's DHCP to it and "
                        "write DIR/*.network (e.g. /run/systemd/network) that keep it off "
                        "everything else")
    parser.add_argument("--resolved", metavar="DIR", type=Path,
                        help="write the nameservers as a systemd-resolved drop-in in DIR "
                        "(e.g. /run/systemd/resolved.conf.d), not to /etc/resolv.conf")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="lean-ipa-network: %(message)s")
    try:
        cmdline = Path(args.cmdline).read_text(errors="replace")
    except OSError as exc:
        say(f"cannot read {args.cmdline}: {exc}")
        cmdline = ""
    interfaces = applying.physical_interfaces()
    text, source = None, None
    if args.network_data:
        try:
            text, source = Path(args.network_data).read_text(errors="replace"), args.network_data
        except OSError as exc:
            say(f"cannot read {args.network_data}: {exc}")
    else:
        try:
            text, source = read_network_data()
        except Exception as exc:  # noqa: BLE001 - a broken medium must not stop the boot
            say(f"cannot read network_data.json: {exc}")
    plan = build_plan(cmdline, interfaces, text, source)
    if args.dry_run:
        for line in describe(plan):
            print(line)
        return 0
    if plan.empty():
        for problem in plan.problems:
            say(f"ignored {problem}")
        return EXIT_DHCP
    applier = applying.Applier(plan, start_dhcp=args.networkd is None,
                               resolv_conf=None if args.resolved else Path("/etc/resolv.conf"))
    applier.apply()
    value = dict(w.partition("=")[::2] for w in tokens(cmdline) if "=" in w).get(vlans.OPTION)
    if value:  # the agent then does not listen for the same LLDP again
        vlans.record_applied(value)
    state, left = applying.wait(waited_for(plan, args.networkd is not None), args.timeout,
                                failed=applier.failed)
    for problem in plan.problems:
        say(f"ignored {problem}")
    for item in left:
        say(f"still waiting for {item} after {args.timeout:g} s")
    for line in applying.summary(state):
        say(line)
    if not plan.dhcp_everywhere and not any(info["addrs"] for info in state.values()) \
            and not plan.dhcp:
        say("no interface has an address: falling back to DHCP on every interface")
        return EXIT_DHCP
    if args.networkd is not None:
        hand_over(plan, args.networkd, NETWORKD_IDLE)
    if args.resolved is not None and plan.nameservers:
        write_file(args.resolved / networkd.RESOLVED, networkd.resolved_conf(plan.nameservers))
    return EXIT_DHCP if plan.dhcp_everywhere else 0


def waited_for(plan: Plan, by_networkd: bool) -> Plan:
    """What lean-ipa-network itself waits for: with networkd, not what networkd does
    after it (DHCP, and router advertisements on the links it manages)."""
    if not by_networkd:
        return plan
    roles = networkd.roles(plan)
    return dataclasses.replace(plan, dhcp=[], slaac=[
        s for s in plan.slaac if roles.get(s) != networkd.MANAGED])


def hand_over(plan: Plan, directory: Path, idle_marker: Path) -> None:
    """The plan's .network files for networkd, and the marker when it has nothing to do."""
    for name, text in networkd.files(plan).items():
        write_file(directory / name, text)
    say(f"systemd-networkd: {', '.join(f'{n} {r}' for n, r in networkd.roles(plan).items())}"
        + ("" if plan.dhcp_everywhere else "; every other interface unmanaged"))
    if networkd.networkd_idle(plan):
        write_file(idle_marker, " ".join(li.name for li in plan.links) + "\n")


def write_file(path: Path, text: str) -> None:
    """Write *path* whole (a reader never sees half a file); an error is said, not raised."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        say(f"cannot write {path}: {exc}")


def describe(plan: Plan) -> list[str]:
    lines = []
    for li in plan.ordered_links():
        extra = {"bond": f" slaves={','.join(li.slaves)} {li.bond_options}",
                 "vlan": f" on {li.parent} id {li.vlan_id}"}.get(li.kind, "")
        lines.append(f"link {li.name} {li.kind}{extra}" + (f" mtu {li.mtu}" if li.mtu else ""))
    lines += [f"address {a.link} {a.address}" for a in plan.addresses]
    lines += [f"route {r.link} {r.destination} via {r.gateway}" for r in plan.routes]
    lines += [f"dhcpv{d.family} {d.link}" + (" stateless" if d.stateless else "")
              for d in plan.dhcp]
    lines += [f"slaac {s}" for s in plan.slaac]
    lines += [f"nameserver {n}" for n in plan.nameservers]
    lines += [f"problem {p}" for p in plan.problems]
    return lines


if __name__ == "__main__":
    sys.exit(main())
