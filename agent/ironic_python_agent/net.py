# SPDX-License-Identifier: Apache-2.0
"""Network facts the agent needs before the inventory: MACs and its own address."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Sequence

from ironic_python_agent import errors

LOG = logging.getLogger(__name__)


def bootif_mac(value: str | None) -> str | None:
    """The MAC in a ``BOOTIF`` parameter (``01-52-54-00-12-34-56`` or a plain MAC)."""
    if not value:
        return None
    value = value.strip().lower().replace("-", ":")
    parts = value.split(":")
    if len(parts) == 7 and parts[0] == "01":
        parts = parts[1:]
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        return None
    try:
        [int(p, 16) for p in parts]
    except ValueError:
        return None
    return ":".join(parts)


def list_macs(sys_class_net: str = "/sys/class/net", bootif: str | None = None) -> list[str]:
    """MACs of the Ethernet interfaces (BOOTIF's first), without loopback and zero MACs."""
    macs: list[str] = []
    try:
        names = sorted(os.listdir(sys_class_net))
    except OSError:
        names = []
    for name in names:
        base = os.path.join(sys_class_net, name)
        try:
            with open(os.path.join(base, "type"), encoding="ascii") as f:
                if f.read().strip() != "1":  # ARPHRD_ETHER
                    continue
            with open(os.path.join(base, "address"), encoding="ascii") as f:
                mac = f.read().strip().lower()
        except OSError:
            continue
        if mac and mac != "00:00:00:00:00:00" and mac not in macs:
            macs.append(mac)
    first = bootif_mac(bootif)
    if first:
        macs = [first] + [m for m in macs if m != first]
    return macs


def wait_for_macs(timeout: float = 60.0, interval: float = 1.0, bootif: str | None = None,
                  sleep: Callable[[float], object] = time.sleep) -> list[str]:
    """Wait until at least one interface has a MAC (drivers may load late)."""
    deadline = time.monotonic() + timeout
    while True:
        macs = list_macs(bootif=bootif)
        if macs or time.monotonic() >= deadline:
            return macs
        sleep(interval)


def source_address(host: str, port: int = 80) -> str | None:
    """The local address the kernel would use to reach *host* (no packet is sent)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    for family, _, _, _, sockaddr in infos:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            try:
                s.connect(sockaddr)
            except OSError:
                continue
            addr = s.getsockname()[0]
        ip = ipaddress.ip_address(addr.split("%")[0])
        if not ip.is_link_local and not ip.is_unspecified:
            return str(ip)
    return None


def advertise_address(urls: Sequence[str], attempts: int = 6, delay: float = 10.0,
                      sleep: Callable[[float], object] = time.sleep) -> str:
    """The address of the interface that routes to the (first reachable) API host."""
    hosts = [urllib.parse.urlsplit(u).hostname for u in urls]
    for attempt in range(max(attempts, 1)):
        for host in hosts:
            if host:
                addr = source_address(host)
                if addr:
                    return addr
        if attempt + 1 < attempts:
            LOG.info("No route to %s yet; retrying in %s s", ", ".join(map(str, hosts)), delay)
            sleep(delay)
    raise errors.LookupAgentIPError(f"no local address routes to {', '.join(map(str, hosts))}")


def interface_address(name: str) -> str | None:
    """The first global IPv4 (else IPv6) address of interface *name*."""
    import json

    from ironic_python_agent.run import CommandError, run

    try:
        data = json.loads(run(["ip", "-j", "addr", "show", "dev", name]).stdout or "[]")
    except (CommandError, ValueError) as exc:
        LOG.warning("Cannot read the address of %s: %s", name, exc)
        return None
    addrs = [a for link in data for a in link.get("addr_info", [])
             if a.get("scope") == "global"]
    addrs.sort(key=lambda a: a.get("family") != "inet")
    return addrs[0]["local"] if addrs else None


def url_host(host: str) -> str:
    """*host* as it goes in a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
