# SPDX-License-Identifier: Apache-2.0
"""The built-in inspection collectors.

A collector is called as ``collector(data, failures)``: it adds keys to the
dict *data* that is posted to the inspection callback, and may record
non-fatal problems with ``failures.add(fmt, *args)``. That is upstream's call
contract, which third-party collectors (entry-point group
``ironic_python_agent.inspector.collectors``) keep. The built-ins take a third,
optional argument, the :class:`Context` (configuration and kernel
parameters); called without it they use defaults.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ironic_python_agent.inspection import dmi, lldp, logs, numa, pci, usb
from ironic_python_agent.run import run

LOG = logging.getLogger(__name__)

MIN_ROOT_DISK_BYTES = 4 * 1024**3
DHCP_POLL_INTERVAL = 2.0


class Failures(Protocol):
    def add(self, fmt: Any, *args: Any) -> None: ...


@dataclass(frozen=True)
class Context:
    """What the built-in collectors may read besides *data*."""

    conf: Any = None  # an oslo ConfigOpts, or None for defaults
    params: Mapping[str, str] = field(default_factory=dict)
    collectors: tuple[str, ...] = ()
    sysfs: Path = Path("/sys")

    def option(self, name: str, default: Any) -> Any:
        """``conf.<name>``, or *default* when there is no conf or no such option."""
        if self.conf is None:
            return default
        try:
            value = getattr(self.conf, name)
        except Exception:  # noqa: BLE001 - NoSuchOptError, or an unparsed ConfigOpts
            return default
        return default if value is None else value


DEFAULT_CONTEXT = Context()


# -- default --------------------------------------------------------------------

def normalize_mac(value: str) -> str:
    """BOOTIF as iPXE (``aa:bb:…``) or pxelinux (``01-aa-bb-…``) writes it, as ``aa:bb:…``."""
    value = value.strip().lower()
    if value.startswith("01-") and value.count("-") == 6:
        value = value[3:]
    return value.replace("-", ":")


def parse_ip_addr(text: str) -> dict[str, dict[str, Any]]:
    """``ip -j addr`` as ``{ifname: {"mac": ..., "ipv4": [...]}}`` (loopback left out)."""
    found: dict[str, dict[str, Any]] = {}
    for link in json.loads(text or "[]"):
        if link.get("link_type") == "loopback":
            continue
        ipv4 = [a["local"] for a in link.get("addr_info", [])
                if a.get("family") == "inet" and a.get("local")]
        found[link["ifname"]] = {"mac": (link.get("address") or "").lower(), "ipv4": ipv4}
    return found


_VLAN_NAME = re.compile(r"\.\d+$")


def is_candidate(name: str, sys_class_net: Path) -> bool:
    """Whether the inventory reports *name*: a physical NIC, a bond or a VLAN."""
    entry = sys_class_net / name
    return ((entry / "device").exists() or (entry / "bonding").is_dir()
            or bool(_VLAN_NAME.search(name)))


def missing_dhcp(links: Mapping[str, Mapping[str, Any]], pxe_mac: str | None,
                 all_interfaces: bool) -> list[str]:
    """Interfaces still waiting for an IPv4 address (all of them, or the PXE one)."""
    waiting = []
    for name, link in links.items():
        if not all_interfaces and link["mac"] != pxe_mac:
            continue
        if not link["ipv4"]:
            waiting.append(name)
    known = any(link["mac"] == pxe_mac for link in links.values())
    if not all_interfaces and pxe_mac and not known:
        waiting.append(pxe_mac)
    return waiting


def wait_for_dhcp(context: Context) -> bool:
    """Wait until the PXE interface (or every one) has an IPv4 address.

    Returns True when the addresses are there, False on timeout or when
    there is nothing to wait for (no BOOTIF and not all interfaces).
    """
    all_interfaces = bool(context.option("inspection_dhcp_all_interfaces", False))
    bootif = context.params.get("BOOTIF")
    pxe_mac = normalize_mac(bootif) if bootif else None
    if not all_interfaces and not pxe_mac:
        LOG.info("No PXE interface known (no BOOTIF): not waiting for DHCP")
        return False
    timeout = float(context.option("inspection_dhcp_wait_timeout", 60))
    deadline = time.monotonic() + timeout
    while True:
        try:
            links = parse_ip_addr(run(["ip", "-j", "addr"], log=False).stdout)
            net = context.sysfs / "class" / "net"
            # Like the inventory, "all interfaces" means NICs, bonds and VLANs, not
            # bridges, dummies or veths that will never see a DHCP server.
            links = {n: link for n, link in links.items() if is_candidate(n, net)}
            waiting = missing_dhcp(links, pxe_mac, all_interfaces)
        except Exception as exc:  # noqa: BLE001 - keep waiting through transient errors
            waiting = [f"({exc})"]
        if not waiting:
            return True
        if time.monotonic() >= deadline:
            LOG.warning("No IPv4 address after %.0f s on: %s", timeout, ", ".join(waiting))
            return False
        time.sleep(DHCP_POLL_INTERVAL)


def to_plain(value: Any) -> Any:
    """Inventory objects (``serialize()``/``serializable_fields``) as plain JSON values."""
    if hasattr(value, "serialize") and callable(value.serialize):
        return to_plain(value.serialize())
    fields = getattr(value, "serializable_fields", None)
    if fields is not None and not isinstance(value, type):
        return {name: to_plain(getattr(value, name, None)) for name in fields}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def guess_root_disk(disks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The smallest disk of at least 4 GiB, as upstream guesses it, or None."""
    big = [d for d in disks if (d.get("size") or 0) >= MIN_ROOT_DISK_BYTES]
    return min(big, key=lambda d: d["size"]) if big else None


def _managers() -> list[dict[str, Any]]:
    from ironic_python_agent import hardware

    found = []
    for manager in hardware.get_managers():
        try:
            version = manager.get_version()
        except Exception:  # noqa: BLE001
            version = {"name": type(manager).__name__}
        found.append({"name": version.get("name"), "version": version.get("version")})
    return found


def collect_default(data: dict[str, Any], failures: Failures,
                    context: Context = DEFAULT_CONTEXT) -> None:
    """``inventory``, ``root_disk``, ``boot_interface`` and ``configuration``."""
    from ironic_python_agent import hardware

    wait_for_dhcp(context)
    inventory = to_plain(hardware.dispatch_to_managers("list_hardware_info"))
    data["inventory"] = inventory
    root_disk = guess_root_disk(inventory.get("disks") or [])
    if root_disk is not None:
        data["root_disk"] = root_disk
    else:
        LOG.warning("No disk of at least 4 GiB: no root_disk in the inspection data")
    data["boot_interface"] = context.params.get("BOOTIF")
    try:
        managers = _managers()
    except Exception as exc:  # noqa: BLE001
        failures.add("Cannot list hardware managers: %s", exc)
        managers = []
    data["configuration"] = {"collectors": list(context.collectors), "managers": managers}


# -- the others -----------------------------------------------------------------

def collect_logs(data: dict[str, Any], failures: Failures,
                 context: Context = DEFAULT_CONTEXT) -> None:
    """``logs``: base64 tar.gz of the journal (last 10000 lines) and system state."""
    data["logs"] = logs.collect_logs_b64()


def collect_pci_devices(data: dict[str, Any], failures: Failures,
                        context: Context = DEFAULT_CONTEXT) -> None:
    data["pci_devices"] = pci.list_pci_devices(context.sysfs / "bus" / "pci" / "devices")


def collect_numa_topology(data: dict[str, Any], failures: Failures,
                          context: Context = DEFAULT_CONTEXT) -> None:
    nodes = context.sysfs / "devices" / "system" / "node"
    if not nodes.is_dir():
        LOG.warning("No NUMA information in %s, not collecting it", nodes)
        return
    data["numa_topology"] = numa.numa_topology(nodes, context.sysfs / "class" / "net")


def collect_dmidecode(data: dict[str, Any], failures: Failures,
                      context: Context = DEFAULT_CONTEXT) -> None:
    data["dmi"] = dmi.collect_dmi()


def collect_usb_devices(data: dict[str, Any], failures: Failures,
                        context: Context = DEFAULT_CONTEXT) -> None:
    data["usb_devices"] = usb.list_usb_devices(context.sysfs / "bus" / "usb" / "devices")


def lldp_interfaces(data: Mapping[str, Any], sys_class_net: Path) -> list[str]:
    """Interfaces to listen on: the inventory's, else every non-loopback one in sysfs."""
    names = [i.get("name") for i in (data.get("inventory") or {}).get("interfaces") or []
             if i.get("name")]
    if names:
        return names
    try:
        return sorted(p.name for p in sys_class_net.iterdir() if p.name != "lo")
    except OSError:
        return []


def collect_lldp(data: dict[str, Any], failures: Failures,
                 context: Context = DEFAULT_CONTEXT) -> None:
    """``lldp_raw``: ``{ifname: [[type, hex], ...]}`` captured on all interfaces at once."""
    net = context.sysfs / "class" / "net"
    timeout = float(context.option("lldp_timeout", 30.0))
    data["lldp_raw"] = lldp.collect(lldp_interfaces(data, net), timeout, net)


def collect_extra_hardware(data: dict[str, Any], failures: Failures,
                           context: Context = DEFAULT_CONTEXT) -> None:
    """``data``: what ``hardware-detect`` (python-hardware) reports, as upstream posts it.

    ``ipa-inspection-benchmarks=cpu,disk,mem`` adds its benchmarks.
    """
    argv = ["hardware-detect"]
    benchmarks = context.params.get("ipa-inspection-benchmarks") or context.option(
        "inspection_benchmarks", None)
    if benchmarks:
        argv += ["--benchmark", *[b.strip() for b in str(benchmarks).split(",") if b.strip()]]
    try:
        out = run(argv, timeout=3600).stdout
    except Exception as exc:  # noqa: BLE001
        failures.add("extra-hardware: hardware-detect failed (is python-hardware installed?): "
                     "%s", exc)
        return
    try:
        data["data"] = json.loads(out)
    except ValueError as exc:
        failures.add("extra-hardware: hardware-detect printed no JSON: %s", exc)


Collector = Callable[..., None]

BUILTIN: dict[str, Collector] = {
    "default": collect_default,
    "logs": collect_logs,
    "extra-hardware": collect_extra_hardware,
    "pci-devices": collect_pci_devices,
    "numa-topology": collect_numa_topology,
    "dmi-decode": collect_dmidecode,
    "lldp": collect_lldp,
    "usb-devices": collect_usb_devices,
}
