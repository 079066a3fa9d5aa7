# SPDX-License-Identifier: Apache-2.0
"""dracut-style network kernel parameters to a :class:`~.plan.Plan`.

* ``ip=<client>:[<peer>]:<gateway>:<netmask>:<hostname>:<iface>:{none|off|static}[:<mtu>[:<mac>]]``
  (IPv6 addresses in brackets; the netmask may be a prefix length), also with
  ``:<dns1>[:<dns2>]`` after ``none``
* ``ip=<iface>:{dhcp|on|any|dhcp6|auto6}[:<mtu>[:<mac>]]`` (``<iface>`` a name, or a MAC
  written with ``-``) and ``ip={dhcp|dhcp6|auto6}``
  (every wired interface)
* ``nameserver=<address>`` (repeatable)
* ``vlan=<name>:<parent>`` (the VLAN ID from the name: ``vlan0005``, ``vlan5``, ``eth0.5``)
* ``bond=<name>[:<slave>,<slave>[:<option>=<value>,...[:<mtu>]]]``

Pure: parameters come as the raw command line tokens (``ip=`` may repeat).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence

from ironic_python_agent.netconfig.plan import (
    BOND_MODES, Address, Dhcp, Link, Plan, Route, normalize_mac, valid_ifname)

KEYS = ("ip", "nameserver", "vlan", "bond")
DHCP_METHODS = {"dhcp": (4,), "on": (4, 6), "any": (4, 6), "dhcp6": (6,), "auto6": ()}
STATIC_METHODS = ("none", "off", "static", "")


def tokens(cmdline: str) -> list[str]:
    try:
        return shlex.split(cmdline)
    except ValueError:
        return cmdline.split()


def network_args(words: Sequence[str]) -> list[tuple[str, str]]:
    """The ``(key, value)`` network parameters, in order, repeats kept."""
    out = []
    for word in words:
        key, sep, value = word.partition("=")
        if sep and key in KEYS:
            out.append((key, value))
    return out


def split_fields(value: str) -> list[str]:
    """Split on ``:`` outside ``[...]`` (IPv6 addresses), brackets removed."""
    fields, cur, depth = [], "", 0
    for ch in value:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(depth - 1, 0)
        elif ch == ":" and depth == 0:
            fields.append(cur)
            cur = ""
            continue
        cur += ch
    fields.append(cur)
    return [f[1:-1] if f.startswith("[") and f.endswith("]") else f for f in fields]


def _prefix(text: str, version: int) -> int | None:
    if not text:
        return None
    if text.isdigit():
        n = int(text)
        return n if n <= (32 if version == 4 else 128) else None
    try:
        return ipaddress.ip_network(f"0.0.0.0/{text}" if version == 4 else f"::/{text}").prefixlen
    except ValueError:
        return None


def _name(iface: str, interfaces: Mapping[str, str], where: str, plan: Plan) -> str | None:
    """A kernel interface name from a name or a MAC in the parameter."""
    mac = normalize_mac(iface)
    if mac is not None:
        name = interfaces.get(mac)
        if name is None:
            plan.problems.append(f"{where}: no interface has MAC {mac}; skipped")
        return name
    if not valid_ifname(iface):
        plan.problems.append(f"{where}: {iface!r} is not an interface name; skipped")
        return None
    return iface


def _ensure(plan: Plan, name: str, interfaces: Mapping[str, str], where: str) -> Link | None:
    link = plan.link(name)
    if link is not None:
        return link
    by_name = {v: k for k, v in interfaces.items()}
    if name not in by_name:
        plan.problems.append(f"{where}: no interface {name!r} on this machine; skipped")
        return None
    return plan.add_link(Link(name, "phy", mac=by_name[name], source=where))


def _vlan_id(name: str) -> int | None:
    m = re.fullmatch(r"(?:vlan|.+\.)0*(\d+)", name)
    return int(m.group(1)) if m else None


def plan_from_kernel_args(words: Sequence[str], interfaces: Mapping[str, str]) -> Plan:
    """The plan for the network parameters among *words*; *interfaces* maps MAC to name."""
    plan = Plan()
    args = network_args(words)
    # bond= and vlan= first: ip= may name the interfaces they create.
    for n, (key, value) in enumerate(args):
        where = f"{key}={value}"
        if key == "bond":
            parts = split_fields(value)
            name = parts[0] or "bond0"
            if not valid_ifname(name):
                plan.problems.append(f"{where}: {name!r} is not an interface name; skipped")
                continue
            slave_names = [s for s in (parts[1] if len(parts) > 1 else "eth0,eth1").split(",")
                           if s]
            options: dict[str, str] = {"mode": "balance-rr"}
            for opt in (parts[2].split(",") if len(parts) > 2 and parts[2] else []):
                k, sep, v = opt.partition("=")
                if not sep:
                    plan.problems.append(f"{where}: option {opt!r} is not key=value; ignored")
                    continue
                options[k.strip()] = v.strip()
            if options["mode"] not in BOND_MODES and not options["mode"].isdigit():
                plan.problems.append(f"{where}: mode {options['mode']!r} is not a bonding "
                                     "mode; balance-rr")
                options["mode"] = "balance-rr"
            mtu = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else None
            slaves = []
            for s in slave_names:
                if _ensure(plan, s, interfaces, f"{where} slave {s}") is not None:
                    slaves.append(s)
            if not slaves:
                plan.problems.append(f"{where}: no usable slave; skipped")
                continue
            plan.add_link(Link(name, "bond", mtu=mtu, slaves=slaves, bond_options=options,
                               source=where))
    for key, value in args:
        where = f"{key}={value}"
        if key == "vlan":
            parts = split_fields(value)
            if len(parts) != 2 or not parts[1]:
                plan.problems.append(f"{where}: not <name>:<parent>; skipped")
                continue
            name, parent = parts
            vid = _vlan_id(name)
            if vid is None or not 0 < vid < 4095 or not valid_ifname(name):
                plan.problems.append(f"{where}: no VLAN ID (1-4094) in the name {name!r} "
                                     "(vlan0005, vlan5 or eth0.5); skipped")
                continue
            if _ensure(plan, parent, interfaces, where) is None:
                continue
            plan.add_link(Link(name, "vlan", parent=parent, vlan_id=vid, source=where))
    for key, value in args:
        where = f"{key}={value}"
        if key == "nameserver":
            try:
                plan.add_nameserver(str(ipaddress.ip_address(value.strip("[]"))))
            except ValueError:
                plan.problems.append(f"{where}: not an address; ignored")
        elif key == "ip":
            _ip(value, where, plan, interfaces)
    return plan


def _ip(value: str, where: str, plan: Plan, interfaces: Mapping[str, str]) -> None:
    parts = split_fields(value)
    if len(parts) == 1:  # ip=dhcp: every wired interface
        method = parts[0]
        if method not in DHCP_METHODS:
            plan.problems.append(f"{where}: unknown method {method!r}; ignored")
            return
        if method in ("dhcp", "on", "any"):
            plan.dhcp_everywhere = True
        for name in sorted(interfaces.values()):
            plan.add_link(Link(name, "phy", mac=next(
                m for m, n in interfaces.items() if n == name), source=where))
            for family in DHCP_METHODS[method]:
                if family == 6:
                    plan.add_dhcp(Dhcp(name, 6))
            if method != "dhcp":
                plan.add_slaac(name)
        return
    if parts[1] in DHCP_METHODS and not _is_address(parts[0]):  # ip=<iface>:dhcp[:mtu[:mac]]
        name = _name(parts[0], interfaces, where, plan)
        if name is None:
            return
        link = _ensure(plan, name, interfaces, where)
        if link is None:
            return
        _mtu_mac(link, parts[2:], where, plan)
        method = parts[1]
        for family in DHCP_METHODS[method]:
            plan.add_dhcp(Dhcp(name, family))
        if method in ("auto6", "on", "any", "dhcp6"):
            plan.add_slaac(name)
        return
    if len(parts) == 2 and not _is_address(parts[0]):
        plan.problems.append(f"{where}: unknown method {parts[1]!r}; ignored")
        return
    parts += [""] * (7 - len(parts))
    client, _peer, gateway, netmask, _hostname, iface, method = parts[:7]
    rest = parts[7:]
    if not iface:
        if len(interfaces) == 1:
            iface = next(iter(interfaces.values()))
        else:
            plan.problems.append(f"{where}: no interface named and the machine has "
                                 f"{len(interfaces)}; ignored")
            return
    name = _name(iface, interfaces, where, plan)
    if name is None:
        return
    link = _ensure(plan, name, interfaces, where)
    if link is None:
        return
    if method in DHCP_METHODS:
        for family in DHCP_METHODS[method]:
            plan.add_dhcp(Dhcp(name, family))
        if method != "dhcp":
            plan.add_slaac(name)
        _mtu_mac(link, rest, where, plan)
        return
    if method not in STATIC_METHODS:
        plan.problems.append(f"{where}: unknown method {method!r}; ignored")
        return
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        plan.problems.append(f"{where}: client address {client!r} is not an address; ignored")
        return
    prefix = _prefix(netmask, ip.version)
    if netmask and prefix is None:
        plan.problems.append(f"{where}: netmask {netmask!r} is not a netmask; ignored")
        return
    if prefix is None:
        prefix = 24 if ip.version == 4 else 64
    plan.addresses.append(Address(name, ipaddress.ip_interface(f"{ip}/{prefix}")))
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            plan.problems.append(f"{where}: gateway {gateway!r} is not an address; no route")
        else:
            default = ipaddress.ip_network("0.0.0.0/0" if gw.version == 4 else "::/0")
            plan.routes.append(Route(name, default, gw))
    # After the method: either <mtu>:<mac> or <dns1>:<dns2>.
    dns = [r for r in rest if r and _is_address(r)]
    for r in dns:
        plan.add_nameserver(r)
    if not dns:
        _mtu_mac(link, rest, where, plan)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _mtu_mac(link: Link, rest: Sequence[str], where: str, plan: Plan) -> None:
    if rest and rest[0]:
        if rest[0].isdigit() and 68 <= int(rest[0]) <= 65535:
            link.mtu = int(rest[0])
        else:
            plan.problems.append(f"{where}: MTU {rest[0]!r} is not an MTU; not set")
    text = ":".join(rest[1:])  # a MAC's own colons split it into fields
    if text:
        mac = normalize_mac(text)
        if mac is None:
            plan.problems.append(f"{where}: MAC {text!r} is not a MAC; not set")
        else:
            link.mac = mac
