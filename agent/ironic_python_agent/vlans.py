# SPDX-License-Identifier: Apache-2.0
"""VLAN interfaces from ``ipa-enable-vlan-interfaces``, made before the lookup.

The value is a comma-separated list, as upstream:

* ``eth0.100``: VLAN 100 on ``eth0`` (the parent may also be a MAC address);
* ``eth0``: the VLANs ``eth0``'s LLDP names (IEEE 802.1 VLAN-name TLVs);
* ``all``: the VLANs each interface's LLDP names.

Each VLAN is made with ``ip link add link <parent> name <parent>.<vid> type
vlan id <vid>`` and set up; the inventory then lists it like any interface.
An entry that cannot be applied is logged with the entry and the reason, the
others still are; a VLAN interface that already exists is left as it is.

:func:`parse` is pure; :func:`bring_up` listens for LLDP (one capture for all
interfaces named) and runs ``ip``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ironic_python_agent.inspection import lldp
from ironic_python_agent.netconfig.plan import normalize_mac, valid_ifname, vlan_name
from ironic_python_agent.run import CommandError, run

LOG = logging.getLogger(__name__)

OPTION = "ipa-enable-vlan-interfaces"
ALL = "all"
MIN_VID, MAX_VID = 1, 4094
# lean-ipa-network (tinyipa) writes the value it applied here: the agent need
# not listen for LLDP a second time.
APPLIED_MARKER = Path("/run/lean-ipa-network/enable-vlan-interfaces")


@dataclass(frozen=True)
class Vlan:
    """``<parent>.<vid>``: this VLAN on *parent* (an interface name or a MAC)."""

    entry: str
    parent: str
    vid: int


@dataclass(frozen=True)
class FromLldp:
    """A bare interface name (or ``all``: *parent* None): the VLANs its LLDP names."""

    entry: str
    parent: str | None


@dataclass(frozen=True)
class Request:
    items: tuple[Vlan | FromLldp, ...]
    errors: tuple[str, ...]  # one per entry skipped, naming it


def _parent_error(parent: str) -> str | None:
    if not parent:
        return "no interface before the '.'"
    if normalize_mac(parent) is None and not valid_ifname(parent):
        return f"{parent!r} is not an interface name or MAC address"
    return None


def parse_entry(entry: str) -> Vlan | FromLldp | str:
    """One entry as what it asks for, or (a str) why it cannot be applied."""
    if entry == ALL:
        return FromLldp(entry, None)
    if "." not in entry:
        return _parent_error(entry) or FromLldp(entry, entry)
    parent, _, vid = entry.partition(".")
    problem = _parent_error(parent)
    if problem:
        return problem
    if not (vid.isascii() and vid.isdigit()):
        return f"VLAN id {vid!r} is not a number"
    if not MIN_VID <= int(vid) <= MAX_VID:
        return f"VLAN id {int(vid)} is outside {MIN_VID}-{MAX_VID}"
    return Vlan(entry, parent, int(vid))


def parse(value: str) -> Request:
    """The entries of an ``ipa-enable-vlan-interfaces`` value; bad ones as errors."""
    items: list[Vlan | FromLldp] = []
    errors: list[str] = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        item = parse_entry(entry)
        if isinstance(item, str):
            errors.append(f"{OPTION} entry {entry!r}: {item}; skipped")
        elif item not in items:
            items.append(item)
    return Request(tuple(items), tuple(errors))


def parse_vlan_config(text: str) -> dict[str, tuple[str, int]]:
    """``{name: (parent, vid)}`` from ``/proc/net/vlan/config`` (``name | vid | parent``)."""
    found: dict[str, tuple[str, int]] = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) == 3 and fields[1].isdigit():
            found[fields[0]] = (fields[2], int(fields[1]))
    return found


def existing_vlans(proc_net_vlan: Path = Path("/proc/net/vlan")) -> dict[str, tuple[str, int]]:
    """The kernel's VLAN interfaces (none before the 8021q module is loaded)."""
    try:
        return parse_vlan_config((proc_net_vlan / "config").read_text())
    except OSError:
        return {}


def parent_candidates(names: Iterable[str],
                      vlans: dict[str, tuple[str, int]] | None = None) -> list[str]:
    """What ``all`` listens on: the inventory's interfaces without the VLANs themselves."""
    vlans = vlans or {}
    return [n for n in names if n not in vlans and not n.rpartition(".")[2].isdigit()]


def interface_macs(interfaces: Iterable[str],
                   sys_class_net: Path = Path("/sys/class/net")) -> dict[str, str]:
    """``{mac: name}`` of *interfaces*, from their current address (the first name wins)."""
    found: dict[str, str] = {}
    for name in interfaces:
        try:
            mac = (sys_class_net / name / "address").read_text().strip().lower()
        except OSError:
            continue
        found.setdefault(mac, name)
    return found


def wanted(request: Request, interfaces: Sequence[str], lldp_timeout: float,
           macs: Mapping[str, str] | None = None,
           sys_class_net: Path = Path("/sys/class/net")) -> tuple[list[Vlan], list[str]]:
    """The VLANs to make (parents resolved to names of *interfaces*), and what was skipped.

    A parent given as a MAC is looked up in *macs* (``{mac: name}``; read from
    sysfs when not given). The LLDP entries share one capture of up to
    *lldp_timeout* s per wait; an interface that stays silent is logged by the
    capture.
    """
    if macs is None:
        macs = interface_macs(interfaces, sys_class_net)
    found: list[Vlan] = []
    problems: list[str] = []
    listen: dict[str, str] = {}  # interface -> the entry that asked

    def add(vlan: Vlan) -> None:
        if all((v.parent, v.vid) != (vlan.parent, vlan.vid) for v in found):
            found.append(vlan)

    for item in request.items:
        if isinstance(item, FromLldp) and item.parent is None:
            for name in interfaces:
                listen.setdefault(name, item.entry)
            continue
        assert item.parent is not None
        name = (item.parent if item.parent in interfaces
                else macs.get(normalize_mac(item.parent) or ""))
        if name is None:
            problems.append(f"{OPTION} entry {item.entry!r}: no interface {item.parent!r} "
                            "on this machine; skipped")
        elif isinstance(item, Vlan):
            add(Vlan(item.entry, name, item.vid))
        else:
            listen.setdefault(name, item.entry)
    heard: dict[str, list[lldp.Tlv]] = {}
    if listen:
        lldp.bring_up(listen, sys_class_net)
        heard = lldp.capture(list(listen), lldp_timeout)
    for name, entry in listen.items():
        tlvs = heard.get(name)
        if not tlvs:  # capture() logged the silence (or why it could not listen)
            continue
        vids = lldp.vlan_ids(tlvs)
        if not vids:
            LOG.info("%s entry %r: LLDP on %s names no VLAN", OPTION, entry, name)
        for vid in vids:
            if MIN_VID <= vid <= MAX_VID:
                add(Vlan(entry, name, vid))
            else:
                problems.append(f"{OPTION} entry {entry!r}: LLDP on {name} names VLAN id "
                                f"{vid}; skipped")
    return found, problems


def create(vlan: Vlan, existing: dict[str, tuple[str, int]],
           sys_class_net: Path = Path("/sys/class/net")) -> str | None:
    """Make *vlan* (parent resolved) unless it exists, and set it up; its name, or None.

    None means it could not be brought up, and that is logged with the entry.
    """
    name = vlan_name(vlan.parent, vlan.vid)
    if name in existing and existing[name] != (vlan.parent, vlan.vid):
        parent, vid = existing[name]
        LOG.warning("%s entry %r: %s already exists as VLAN %d on %s; skipped",
                    OPTION, vlan.entry, name, vid, parent)
        return None
    if name not in existing and os.path.exists(sys_class_net / name):
        LOG.warning("%s entry %r: %s already exists and is not a VLAN; skipped",
                    OPTION, vlan.entry, name)
        return None
    try:
        if name in existing:
            LOG.info("VLAN interface %s already exists", name)
        else:
            LOG.info("Adding VLAN interface %s (VLAN %d on %s)", name, vlan.vid, vlan.parent)
            run(["ip", "link", "add", "link", vlan.parent, "name", name,
                 "type", "vlan", "id", str(vlan.vid)])
        if not lldp.is_up(vlan.parent, sys_class_net):
            # the kernel refuses a VLAN up on a parent that is down (ENETDOWN)
            LOG.info("Bringing %s up for %s", vlan.parent, name)
            run(["ip", "link", "set", "dev", vlan.parent, "up"])
        run(["ip", "link", "set", "dev", name, "up"])
    except CommandError as exc:
        LOG.warning("%s entry %r: cannot bring up %s: %s", OPTION, vlan.entry, name, exc)
        return None
    return name


def bring_up(value: str, interfaces: Sequence[str], lldp_timeout: float,
             sys_class_net: Path = Path("/sys/class/net"),
             proc_net_vlan: Path = Path("/proc/net/vlan")) -> list[str]:
    """Apply an ``ipa-enable-vlan-interfaces`` value; the names of the VLANs it made.

    *interfaces* are the possible parents (what ``all`` listens on). Nothing
    here raises for bad input or a failing ``ip``: each is logged. VLANs that
    already existed are set up but not in the answer (upstream's).
    """
    request = parse(value)
    for error in request.errors:
        LOG.warning("%s", error)
    found, problems = wanted(request, interfaces, lldp_timeout, sys_class_net=sys_class_net)
    for problem in problems:
        LOG.warning("%s", problem)
    before = existing_vlans(proc_net_vlan)
    made: list[str] = []
    for vlan in found:
        name = create(vlan, existing_vlans(proc_net_vlan), sys_class_net)
        if name is not None and name not in before and name not in made:
            made.append(name)
    return made


def applied_before(value: str, marker: Path = APPLIED_MARKER) -> bool:
    """Whether lean-ipa-network already applied this very value during boot."""
    try:
        return marker.read_text().strip() == value.strip()
    except OSError:
        return False


def record_applied(value: str, marker: Path = APPLIED_MARKER) -> None:
    """lean-ipa-network's note for the agent (failures only logged)."""
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(value.strip() + "\n")
    except OSError as exc:
        LOG.warning("Cannot write %s: %s", marker, exc)
