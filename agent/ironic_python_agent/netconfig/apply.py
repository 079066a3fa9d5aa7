# SPDX-License-Identifier: Apache-2.0
"""Carry out a :class:`~.plan.Plan` with iproute2-compatible ``ip`` commands and sysfs.

Bonds are made through ``/sys/class/net/bonding_masters`` (no ``ip link add
type bond`` needed, so busybox ``ip`` works too), VLANs with ``ip link add
... type vlan``, DHCP with the client the image carries. A step that fails
is recorded in ``plan.problems`` with the input field it came from; the
other steps still run.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ironic_python_agent.netconfig.plan import Dhcp, Link, Plan
from ironic_python_agent.run import CommandError, run, which

LOG = logging.getLogger(__name__)

Runner = Callable[..., Any]
UDHCPC_SCRIPT = "/usr/share/udhcpc/default.script"


def physical_interfaces(sys_class_net: Path = Path("/sys/class/net")) -> dict[str, str]:
    """``{mac: name}`` of the Ethernet NICs (those backed by a device: no bonds, VLANs)."""
    found: dict[str, str] = {}
    try:
        names = sorted(os.listdir(sys_class_net))
    except OSError:
        return found
    for name in names:
        base = sys_class_net / name
        try:
            if (base / "type").read_text().strip() != "1" or not (base / "device").exists():
                continue
            # a bond slave shows the bond's MAC in address; the NIC's own is in perm_hwaddr
            mac = ((base / "bonding_slave" / "perm_hwaddr").read_text()
                   if (base / "bonding_slave").is_dir() else (base / "address").read_text())
        except OSError:
            continue
        mac = mac.strip().lower()
        if mac and mac != "00:00:00:00:00:00":
            found.setdefault(mac, name)
    return found


def dhcp_clients() -> dict[str, str]:
    """The DHCP clients on PATH, by name."""
    found = {}
    for name in ("udhcpc", "dhclient", "dhcpcd"):
        path = which(name)
        if path:
            found[name] = path
    return found


def dhcp_argv(item: Dhcp, clients: dict[str, str], run_dir: str = "/run",
              hostname: str = "lean-ipa") -> list[str] | None:
    """The command that starts a background DHCP client for *item*, or None if none can."""
    link = item.link
    if item.family == 4:
        if "udhcpc" in clients:
            return [clients["udhcpc"], "-i", link, "-s", UDHCPC_SCRIPT,
                    "-p", f"{run_dir}/udhcpc.{link}.pid", "-t", "20", "-T", "2", "-A", "3",
                    "-b", "-S", "-x", f"hostname:{hostname}", "-O", "mtu"]
        if "dhclient" in clients:
            return [clients["dhclient"], "-4", "-nw", "-pf", f"{run_dir}/dhclient.{link}.pid",
                    "-lf", f"{run_dir}/dhclient.{link}.leases", link]
        if "dhcpcd" in clients:
            return [clients["dhcpcd"], "-4", "-b", link]
        return None
    if "dhclient" in clients:
        return [clients["dhclient"], "-6", "-nw", *(["-S"] if item.stateless else []),
                "-pf", f"{run_dir}/dhclient6.{link}.pid",
                "-lf", f"{run_dir}/dhclient6.{link}.leases", link]
    if "dhcpcd" in clients:
        return [clients["dhcpcd"], "-6", "-b", link]
    return None


def stop_dhcp_clients(run_dir: Path, keep: Sequence[str] = (), client: str = "udhcpc"
                      ) -> list[str]:
    """Stop the clients an init (udhcpc) or an earlier run (``dhcpv6``) started, by
    their ``<client>.<link>.pid``; their links."""
    stopped = []
    for pidfile in sorted(run_dir.glob(f"{client}.*.pid")):
        link = pidfile.name[len(client) + 1:-len(".pid")]
        if link in keep:
            continue
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        pidfile.unlink(missing_ok=True)
        stopped.append(link)
    return stopped


class Applier:
    """One application of a plan: the commands, sysfs and /proc/sys it touches."""

    def __init__(self, plan: Plan, *, runner: Runner = run,
                 sys_class_net: Path = Path("/sys/class/net"),
                 proc_sys_net: Path = Path("/proc/sys/net"),
                 resolv_conf: Path | None = Path("/etc/resolv.conf"),
                 run_dir: Path = Path("/run"), clients: dict[str, str] | None = None,
                 start_dhcp: bool = True) -> None:
        # resolv_conf None: the nameservers go elsewhere (systemd-resolved);
        # start_dhcp False: systemd-networkd runs the plan's DHCP (see .networkd)
        self.plan = plan
        self.runner = runner
        self.net = sys_class_net
        self.proc = proc_sys_net
        self.resolv = resolv_conf
        self.run_dir = run_dir
        self.clients = dhcp_clients() if clients is None else clients
        self.start_dhcp = start_dhcp
        self.failed: set[str] = set()
        self.v6: set[str] = set()

    def problem(self, where: str, text: str) -> None:
        LOG.warning("%s: %s", where, text)
        self.plan.problems.append(f"{where}: {text}")

    def ip(self, *args: str) -> bool:
        try:
            self.runner(["ip", *args])
        except CommandError as exc:
            raise _StepFailed(str(exc)) from None
        return True

    def write(self, path: Path, value: str) -> None:
        try:
            path.write_text(value + "\n")
        except OSError as exc:
            raise _StepFailed(f"writing {value!r} to {path}: {exc.strerror or exc}") from None

    # -- links ----------------------------------------------------------------------

    def bond(self, link: Link) -> None:
        masters = self.net / "bonding_masters"
        if not masters.exists():
            try:
                self.runner(["modprobe", "bonding", "max_bonds=0"])
            except CommandError as exc:
                raise _StepFailed(f"the kernel has no bonding driver ({exc})", "bond_mode") \
                    from None
        if not (self.net / link.name).exists():
            self.write(masters, f"+{link.name}")
        self.ip("link", "set", "dev", link.name, "down")
        opts = self.net / link.name / "bonding"
        options = dict(link.bond_options)
        self.write(opts / "mode", options.pop("mode", "balance-rr"))
        for key, value in options.items():
            try:
                if key == "arp_ip_target":
                    for target in value.replace(",", " ").split():
                        self.write(opts / key, f"+{target}")
                elif key != "primary":  # needs the slaves: below
                    self.write(opts / key, value)
            except _StepFailed as exc:
                self.problem(f"{link.source}.bond_{key}", str(exc))
        for slave in link.slaves:
            if slave in self.failed:
                continue
            try:
                self.ip("link", "set", "dev", slave, "down")
                current = (opts / "slaves").read_text().split() if (opts / "slaves").exists() \
                    else []
                if slave not in current:
                    self.write(opts / "slaves", f"+{slave}")
            except _StepFailed as exc:
                self.problem(f"{link.source}.bond_links", f"{slave}: {exc}")
        if "primary" in options:
            try:
                self.write(opts / "primary", options["primary"])
            except _StepFailed as exc:
                self.problem(f"{link.source}.bond_primary", str(exc))

    def vlan(self, link: Link) -> None:
        if link.parent in self.failed:
            raise _StepFailed(f"its parent {link.parent} failed", "vlan_link")
        if not (self.net / link.name).exists():
            self.ip("link", "add", "link", str(link.parent), "name", link.name, "type", "vlan",
                    "id", str(link.vlan_id))

    def link(self, link: Link) -> None:
        if link.kind == "bond":
            self.bond(link)
        elif link.kind == "vlan":
            self.vlan(link)
        elif not (self.net / link.name).exists():
            raise _StepFailed(f"no interface {link.name}", "ethernet_mac_address")
        try:
            if link.mac and (link.kind != "phy" or
                             (self.net / link.name / "address").read_text().strip() != link.mac):
                self.ip("link", "set", "dev", link.name, "address", link.mac)
        except (_StepFailed, OSError) as exc:
            self.problem(f"{link.source}.mac", str(exc))
        if link.mtu:
            try:
                self.ip("link", "set", "dev", link.name, "mtu", str(link.mtu))
            except _StepFailed as exc:
                self.problem(f"{link.source}.mtu", str(exc))
        if link.name in self.v6:  # before it is up: no SLAAC address on a static link
            self.ipv6(link.name, link.name in self.plan.slaac)
        self.ip("link", "set", "dev", link.name, "up")

    def ipv6(self, name: str, slaac: bool) -> None:
        conf = self.proc / "ipv6" / "conf" / name
        try:
            self.write(conf / "disable_ipv6", "0")
            self.write(conf / "accept_ra", "2" if self.forwarding() else "1")
            # static only: router advertisements still give routes, not addresses
            self.write(conf / "autoconf", "1" if slaac else "0")
        except _StepFailed as exc:
            self.problem(f"{name} IPv6", str(exc))

    def forwarding(self) -> bool:
        try:
            return (self.proc / "ipv6" / "conf" / "all" / "forwarding").read_text().strip() == "1"
        except OSError:
            return False

    # -- the whole plan ----------------------------------------------------------------

    def apply(self) -> None:
        plan = self.plan
        keep = [d.link for d in plan.dhcp if d.family == 4]
        for name in stop_dhcp_clients(self.run_dir, keep):
            if plan.link(name) is None or name not in keep:
                self.runner(["ip", "-4", "addr", "flush", "dev", name], check=False)
            if plan.link(name) is None and not plan.dhcp_everywhere:
                self.runner(["ip", "link", "set", "dev", name, "down"], check=False)
        stop_dhcp_clients(self.run_dir, client="dhcpv6")  # a run before this one's
        self.v6 = ({a.link for a in plan.addresses if a.address.version == 6}
                   | set(plan.slaac) | {d.link for d in plan.dhcp if d.family == 6})
        for link in plan.ordered_links():
            try:
                self.link(link)
            except _StepFailed as exc:
                self.failed.add(link.name)
                self.problem(f"{link.source}.{exc.field}" if exc.field else link.source,
                             f"{exc}; {link.name} not configured")
        for addr in plan.addresses:
            if addr.link in self.failed:
                continue
            try:
                self.ip("addr", "replace", str(addr.address), "dev", addr.link)
            except _StepFailed as exc:
                self.problem(f"{addr.link} address {addr.address}", str(exc))
        for route in plan.routes:
            if route.link in self.failed:
                continue
            argv = ["-6" if route.destination.version == 6 else "-4", "route", "replace",
                    str(route.destination)]
            if route.gateway is not None:
                argv += ["via", str(route.gateway)]
            argv += ["dev", route.link]
            if route.gateway is not None and route.gateway.version == 4 and not any(
                    route.gateway in a.address.network for a in plan.addresses
                    if a.link == route.link and a.address.version == 4):
                argv.append("onlink")
            try:
                self.ip(*argv)
            except _StepFailed as exc:
                self.problem(f"{route.link} route {route.destination}", str(exc))
        if plan.nameservers and self.resolv is not None:
            try:
                self.resolv.write_text("".join(f"nameserver {n}\n" for n in plan.nameservers))
            except OSError as exc:
                self.problem("nameservers", f"writing {self.resolv}: {exc}")
        for item in plan.dhcp if self.start_dhcp else ():
            if item.link in self.failed:
                continue
            argv = dhcp_argv(item, self.clients, str(self.run_dir))
            if argv is None and item.family == 6:
                argv = dhcpv6_argv(item, str(self.run_dir))
            if argv is None:
                self.problem(f"{item.link} DHCPv{item.family}", "no DHCP client in this image")
                continue
            try:
                self.runner(argv)
            except CommandError as exc:
                self.problem(f"{item.link} DHCPv{item.family}", str(exc))


def dhcpv6_argv(item: Dhcp, run_dir: str = "/run", log: str = "/dev/console",
                python: str = sys.executable) -> list[str]:
    """Our own DHCPv6 client (:mod:`.dhcpv6_client`, for images without one), which
    forks into the background; its lines go to the console, as udhcpc's do."""
    return [python, "-m", "ironic_python_agent.netconfig.dhcpv6_client", "--background",
            "--pidfile", f"{run_dir}/dhcpv6.{item.link}.pid", "--log", log,
            *(["--stateless"] if item.stateless else []), item.link]


class _StepFailed(Exception):
    def __init__(self, text: str, field: str = "") -> None:
        super().__init__(text)
        self.field = field


def apply(plan: Plan, **kwargs: Any) -> Plan:
    """Apply *plan* (see :class:`Applier` for the keyword arguments); returns it with problems."""
    Applier(plan, **kwargs).apply()
    return plan


# -- waiting and reporting ------------------------------------------------------------


def addresses(ip_json: str) -> dict[str, dict[str, Any]]:
    """``{name: {"up": bool, "addrs": [(cidr, tentative)]}}`` from ``ip -j addr show``."""
    out: dict[str, dict[str, Any]] = {}
    try:
        data = json.loads(ip_json or "[]")
    except ValueError:
        return out
    for link in data:
        name = link.get("ifname")
        if not name or name == "lo":
            continue
        addrs = []
        for a in link.get("addr_info", []):
            if a.get("scope") != "global":
                continue
            addrs.append((f"{a.get('local')}/{a.get('prefixlen')}",
                          bool(a.get("tentative")) or bool(a.get("dadfailed"))))
        out[name] = {"up": "UP" in link.get("flags", []) and link.get("operstate") != "DOWN",
                     "addrs": addrs}
    return out


def missing(plan: Plan, state: dict[str, dict[str, Any]], failed: set[str] = frozenset()
            ) -> list[str]:
    """What the plan still waits for in *state* (``eth0 10.0.0.5/24``, ``eth1 DHCPv4``)."""
    waits = []
    for addr in plan.addresses:
        if addr.link in failed:
            continue
        if not state.get(addr.link, {}).get("up"):
            waits.append(f"{addr.link} link up")
        have = dict(state.get(addr.link, {}).get("addrs", []))
        if have.get(str(addr.address), True):  # absent or tentative
            waits.append(f"{addr.link} {addr.address}")
    for name, family in ([(d.link, d.family) for d in plan.dhcp if not d.stateless]
                         + [(s, 6) for s in plan.slaac]):
        if name in failed:
            continue
        have = [c for c, tentative in state.get(name, {}).get("addrs", []) if not tentative
                and ipaddress.ip_interface(c).version == family]
        if not have:
            waits.append(f"{name} {'SLAAC' if family == 6 and name in plan.slaac else 'DHCP'}"
                         f"v{family}")
    return sorted(set(waits))


def read_state(runner: Runner = run) -> dict[str, dict[str, Any]]:
    try:
        return addresses(runner(["ip", "-j", "addr", "show"], log=False).stdout)
    except CommandError:
        return {}


def wait(plan: Plan, timeout: float, *, runner: Runner = run, failed: set[str] = frozenset(),
         interval: float = 0.25, sleep: Callable[[float], object] = time.sleep
         ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Wait up to *timeout* s for the plan's addresses; the state and what is still missing."""
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(runner)
        left = missing(plan, state, failed)
        if not left or time.monotonic() >= deadline:
            return state, left
        sleep(interval)


def summary(state: dict[str, dict[str, Any]]) -> list[str]:
    """One console line per interface: ``eth0 up 10.0.0.5/24 fd00::5/64`` or ``eth1 down``."""
    lines = []
    for name in sorted(state):
        info = state[name]
        addrs = " ".join(c + (" (tentative)" if t else "") for c, t in info["addrs"])
        lines.append(f"{name} {'up' if info['up'] else 'down'}" + (f" {addrs}" if addrs else ""))
    return lines
