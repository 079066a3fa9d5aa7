# SPDX-License-Identifier: Apache-2.0
"""USB devices from sysfs, as the ``usb_devices`` inspection key.

Upstream asks lshw, which only sees USB devices when debugfs is mounted
(it reads ``/sys/kernel/debug/usb/devices``). sysfs has the same facts
without a tool: one entry per device that is not a hub, with lshw's field
names and handle format (``USB:<bus>:<device number>``).
"""

from __future__ import annotations

from pathlib import Path

USB_DEVICES = Path("/sys/bus/usb/devices")
HUB_CLASS = "09"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def list_usb_devices(root: Path = USB_DEVICES) -> list[dict[str, str | None]]:
    """``[{"product", "vendor", "handle"}]`` for every USB device except hubs."""
    devices = []
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError:
        return []  # no USB bus at all
    for entry in entries:
        if _read(entry / "idVendor") is None:
            continue  # an interface (1-1:1.0), not a device
        if _read(entry / "bDeviceClass") == HUB_CLASS:
            continue
        devices.append({
            "product": _read(entry / "product"),
            "vendor": _read(entry / "manufacturer"),
            "handle": f"USB:{_read(entry / 'busnum')}:{_read(entry / 'devnum')}",
        })
    return sorted(devices, key=lambda d: d["handle"] or "")
