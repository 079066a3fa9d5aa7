# SPDX-License-Identifier: Apache-2.0
"""Software RAID (md) helpers with upstream's names, for hardware managers.

``mdadm`` output is parsed in pure functions; a missing mdadm means "no md".
"""

from __future__ import annotations

import logging
import os
import re
import stat

from ironic_python_agent import errors, run

LOG = logging.getLogger(__name__)


def parse_md_uuid(text: str) -> str | None:
    """The array UUID in ``mdadm --detail`` (or ``--examine``) output."""
    match = re.search(r"^\s*(?:Array )?UUID\s*:\s*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else None


def parse_detail_members(text: str) -> list[str]:
    """The /dev paths of the member devices listed by ``mdadm --detail``."""
    members: list[str] = []
    for line in text.splitlines()[1:]:
        if "Events" in line or "Name" in line:
            continue
        members += re.findall(r"/dev/[\w/-]+", line)
    return members


def disk_of(partition: str) -> str | None:
    """``/dev/sda1`` → ``/dev/sda``, ``/dev/nvme0n1p2`` → ``/dev/nvme0n1``."""
    match = re.match(r"^(?:(.*\d)p|(.*\D))(?:\d+)$", partition)
    return (match.group(1) or match.group(2)) if match else None


def _mdadm(*args: str) -> str | None:
    try:
        return run.run(["mdadm", *args], timeout=60, log=False,
                       env={"LC_ALL": "C"}).stdout
    except run.CommandError as exc:
        LOG.debug("mdadm %s: %s", " ".join(args), exc)
        return None


def is_md_device(raid_device: str) -> bool:
    """Whether *raid_device* is a Software RAID (md) device."""
    return _mdadm("--detail", raid_device) is not None


def get_holder_disks(raid_device: str) -> list[str]:
    """The disks under the md device *raid_device* (partitions mapped to their disk)."""
    if not raid_device:
        return []
    out = _mdadm("--detail", raid_device)
    if out is None:
        return []
    disks: list[str] = []
    for part in parse_detail_members(out):
        if (not part[-1].isdigit() and os.path.exists(part)
                and stat.S_ISBLK(os.stat(part).st_mode)):
            disks.append(part)
            continue
        disk = disk_of(part)
        if not disk:
            raise errors.SoftwareRAIDError(
                f"Could not get holder disks of {raid_device}: unexpected pattern for "
                f"partition {part}")
        disks.append(disk)
    return disks


def get_component_devices(raid_device: str) -> list[str]:
    """Disks and partitions carrying a superblock of the md device *raid_device*."""
    from ironic_python_agent.hardware import disks, options

    if not raid_device:
        return []
    detail = _mdadm("--detail", raid_device)
    md_uuid = parse_md_uuid(detail) if detail else None
    if not md_uuid:
        return []
    found = []
    for device in disks.list_all_block_devices(include_partitions=True,
                                               allow=options.allowlist()):
        if device.kind not in ("disk", "part"):
            continue
        out = _mdadm("--examine", device.name)
        if out and md_uuid in out:
            found.append(device.name)
    return found
