# SPDX-License-Identifier: Apache-2.0
"""Multipath: two paths to one LUN are one disk.

A LUN reached through two HBAs (or two SCSI targets) appears as two disks with
the same WWN. With multipath-tools in the image, the agent starts multipathd
before its first inventory, with a configuration that groups every device
seen through two or more paths (``find_multipaths yes``) and names maps by
their WWID. The disk list then shows the ``dm-N`` map (kind ``mpath``) and
hides its paths (:mod:`hardware.disks`), so writes, erasure and root device
hints all use the map.

Without multipath-tools the paths stay separate disks; :func:`duplicate_paths`
recognises them by WWN and serial, so that erasure does each LUN once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from ironic_python_agent import run
from ironic_python_agent.hardware.devices import BlockDevice

LOG = logging.getLogger(__name__)

CONFIG = "/etc/multipath.conf"
CONFIG_TEXT = """\
# Written by lean-ipa: every device seen through two or more paths is one map,
# named by its WWID (the agent reports WWNs, not mpathN aliases).
defaults {
    find_multipaths yes
    user_friendly_names no
}
"""


def enable(config_path: str = CONFIG) -> bool:
    """Start multipathd (or make a running one reread its configuration) and build
    the maps; False when the image has no multipath-tools."""
    if run.which("multipathd") is None or run.which("multipath") is None:
        LOG.debug("No multipath-tools in this image; multipath paths stay separate disks")
        return False
    if not os.path.exists(config_path):
        with open(config_path, "w", encoding="utf-8") as f:
            f.write(CONFIG_TEXT)
    run.run(["modprobe", "dm_multipath"], check=False, timeout=60)
    running = run.run(["multipathd", "show", "daemon"], check=False, timeout=30)
    if running.returncode == 0 and "running" in running.stdout:
        run.run(["multipathd", "reconfigure"], check=False, timeout=60)
    else:
        started = run.run(["multipathd"], check=False, timeout=60)
        if started.returncode:
            LOG.warning("multipathd did not start: %s", started.stderr.strip())
    run.run(["multipath"], check=False, timeout=120)  # build the maps now, not on the next uevent
    run.run(["udevadm", "settle", "--timeout=30"], check=False, timeout=60)
    maps = run.run(["multipath", "-ll"], check=False, timeout=60).stdout
    LOG.info("multipath maps:%s", ("\n" + maps.rstrip()) if maps.strip() else " none")
    return True


def duplicate_paths(devices: Iterable[BlockDevice]) -> dict[str, str]:
    """Disks that are another path to a LUN listed before them: name → the first path.

    Two disks are one LUN when they report the same WWN and the same serial (or
    both no serial); disks without a WWN are never taken for paths.
    """
    first: dict[tuple[str, str], str] = {}
    dupes: dict[str, str] = {}
    for device in devices:
        if device.kind != "disk" or not device.wwn:
            continue
        key = (device.wwn, device.serial or "")
        if key in first:
            dupes[device.name] = first[key]
        else:
            first[key] = device.name
    return dupes
