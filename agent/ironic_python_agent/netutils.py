# SPDX-License-Identifier: Apache-2.0
"""Network helpers with upstream's names, for hardware managers (Mellanox-style)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any

from ironic_python_agent.hardware import inventory

INFINIBAND_ADDR_LEN = 59


def get_mac_addr(interface_id: str) -> str | None:
    """The interface's current hardware address, lower case (None when unreadable)."""
    address = inventory._read(f"/sys/class/net/{interface_id}/address")  # noqa: SLF001
    return address.lower() if address else None


def get_ipv4_addr(interface_id: str) -> str | None:
    return inventory.ipv4_address(interface_id)


def get_ipv6_addr(interface_id: str) -> str | None:
    ipv6 = inventory.parse_if_inet6(inventory._read("/proc/net/if_inet6") or "")  # noqa: SLF001
    return next(iter(ipv6.get(interface_id) or []), None)


def interface_has_carrier(interface_name: str) -> bool:
    return inventory._read(f"/sys/class/net/{interface_name}/carrier") == "1"  # noqa: SLF001


def list_interfaces() -> list[str]:
    """Physical interfaces, VLANs and bonds (not lo), as the inventory lists them."""
    return inventory.interface_candidates()


def get_hostname() -> str:
    return socket.gethostname()


def is_vlan(interface_name: str) -> bool:
    return os.path.exists(f"/proc/net/vlan/{interface_name}")


def bring_up_vlan_interfaces(interfaces_list: Iterable[Any]) -> list[str]:
    """Upstream's name: apply ``enable_vlan_interfaces`` on these parents (see vlans.py).

    *interfaces_list* holds interface names or objects with a ``name`` (the
    inventory's). Returns the VLAN interfaces made.
    """
    from ironic_python_agent import config, vlans

    conf = config.current()
    names = [getattr(i, "name", i) for i in interfaces_list]
    return vlans.bring_up(conf.enable_vlan_interfaces or "",
                          vlans.parent_candidates(names, vlans.existing_vlans()),
                          conf.lldp_timeout)
