# SPDX-License-Identifier: Apache-2.0
"""PCI devices from sysfs, as the ``pci_devices`` inspection key."""

from __future__ import annotations

import logging
from pathlib import Path

LOG = logging.getLogger(__name__)

PCI_DEVICES = Path("/sys/bus/pci/devices")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _hex(value: str | None) -> str | None:
    if value is None:
        return None
    return value[2:] if value.lower().startswith("0x") else value


def list_pci_devices(root: Path = PCI_DEVICES) -> list[dict[str, str | None]]:
    """One entry per device under *root*, sorted by bus address.

    ``vendor_id``/``product_id``/``class``/``revision`` are the sysfs hex
    values without ``0x``; ``numa_node_id`` is the ``numa_node`` file as read
    (``"-1"`` on machines without NUMA), or null when absent.
    """
    devices = []
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        LOG.warning("Cannot list PCI devices in %s: %s", root, exc)
        return []
    for entry in entries:
        vendor = _hex(_read(entry / "vendor"))
        product = _hex(_read(entry / "device"))
        if vendor is None or product is None:
            continue
        devices.append({
            "vendor_id": vendor,
            "product_id": product,
            "class": _hex(_read(entry / "class")),
            "revision": _hex(_read(entry / "revision")),
            "bus": entry.name,
            "numa_node_id": _read(entry / "numa_node"),
        })
    return devices
