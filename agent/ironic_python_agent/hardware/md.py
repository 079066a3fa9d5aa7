# SPDX-License-Identifier: Apache-2.0
"""Software RAID (md) devices: upstream's helpers (for hardware managers) and the
arrays the kernel has, read from sysfs, with the mdadm actions on them.

``mdadm`` output is parsed in pure functions; a missing mdadm means "no md".
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shlex
import stat
from collections.abc import Sequence

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


def md_restart(raid_device: str) -> None:
    """Stop the md device *raid_device* and assemble it again from its components."""
    components = get_component_devices(raid_device)
    LOG.debug("Restarting software RAID device %s (%s)", raid_device, components)
    try:
        run.run(["mdadm", "--stop", raid_device], timeout=60)
        run.run(["mdadm", "--assemble", raid_device, *components], timeout=120)
    except run.CommandError as exc:
        msg = f"Could not restart md device {raid_device}: {exc}"
        LOG.error(msg)
        raise errors.CommandExecutionError(msg) from None


def parse_examine_scan(text: str) -> dict[str, dict[str, str]]:
    """``mdadm --examine --scan`` lines (``ARRAY <dev> key=value ...``) by device."""
    found: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) < 2 or words[0] != "ARRAY":
            continue
        found[words[1]] = dict(w.split("=", 1) for w in words[2:] if "=" in w)
    return found


def md_get_raid_devices() -> dict[str, dict[str, str]]:
    """The md arrays the disks' superblocks describe, as upstream's helper returns them."""
    return parse_examine_scan(_mdadm("--examine", "--scan") or "")


# --- md arrays on this machine ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Array:
    device: str              # /dev/md0
    level: str               # raid1, raid0, ... ("" while inactive)
    members: tuple[str, ...]  # /dev/vda2, ...


def list_arrays(sys_root: str = "/sys") -> list[Array]:
    """The md devices the kernel has (not partitions on them), from sysfs."""
    base = f"{sys_root}/class/block"
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    found = []
    for name in names:
        md_dir = f"{base}/{name}/md"
        if not os.path.isdir(md_dir) or os.path.exists(f"{base}/{name}/partition"):
            continue
        members = []
        for entry in sorted(os.listdir(md_dir)):
            if entry.startswith("dev-"):
                members.append("/dev/" + entry[4:])
        found.append(Array(f"/dev/{name}", _read(f"{md_dir}/level"), tuple(members)))
    return found


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def holder_disks(members: Sequence[str], sys_root: str = "/sys") -> list[str]:
    """The disks under member partitions (a whole-disk member is its own disk)."""
    disks = []
    for member in members:
        name = os.path.basename(member)
        block = f"{sys_root}/class/block/{name}"
        if os.path.exists(f"{block}/partition"):
            disk = "/dev/" + os.path.basename(os.path.dirname(os.path.realpath(block)))
        else:
            disk = member
        if disk not in disks:
            disks.append(disk)
    return disks


def parse_volume_name(detail: str) -> str | None:
    """The volume name in ``mdadm --detail``/``--examine`` output (without the
    ``host:`` prefix and the ``(local to host ...)`` note)."""
    match = re.search(r"^\s*Name\s*:\s*(\S+)", detail, re.MULTILINE)
    if not match:
        return None
    return match.group(1).split(":")[-1] or None


def volume_name(device: str) -> str | None:
    try:
        out = run.run(["mdadm", "--detail", device], timeout=60, log=False).stdout
    except run.CommandError:
        return None
    return parse_volume_name(out)


def _mdadm_checked(*args: str, what: str) -> str:
    try:
        return run.run(["mdadm", *args], timeout=300).stdout
    except run.CommandError as exc:
        raise errors.SoftwareRAIDError(f"{what}: {exc}") from None


def assemble_scan() -> None:
    """Start the arrays whose members are present (``mdadm --assemble --scan``)."""
    try:
        run.run(["mdadm", "--assemble", "--scan"], check=False, timeout=120)
    except run.CommandError as exc:
        LOG.info("mdadm --assemble --scan: %s", exc)


def has_superblock(device: str) -> bool:
    """Whether *device* carries an md superblock (any metadata version)."""
    try:
        proc = run.run(["mdadm", "--examine", device], check=False, timeout=60, log=False)
    except run.CommandError:
        return False
    # On a disk with a partition table mdadm describes the table and exits 0 too.
    return proc.returncode == 0 and parse_examine_magic(proc.stdout)


def parse_examine_magic(text: str) -> bool:
    """Whether ``mdadm --examine`` output shows an md superblock (native metadata)."""
    return re.search(r"^\s*Magic\s*:\s*a92b4efc\s*$", text, re.MULTILINE) is not None


def stop_array(array: Array, wipe: bool = True) -> None:
    """Wipe the array's signatures (its partition table, file systems), stop it and
    zero the superblock of every member."""
    if wipe:
        run.run(["wipefs", "-af", array.device], check=False, timeout=120)
    _mdadm_checked("--stop", array.device, what=f"Cannot stop {array.device}")
    for member in array.members:
        zero_superblock(member)


def zero_superblock(device: str) -> None:
    if not has_superblock(device):
        return
    _mdadm_checked("--zero-superblock", device, what=f"Cannot remove the md superblock of {device}")
    if has_superblock(device):
        raise errors.SoftwareRAIDError(f"{device} still has an md superblock after "
                                       "mdadm --zero-superblock")


def free_md_devices(count: int, sys_root: str = "/sys") -> list[str]:
    used = set(os.listdir(f"{sys_root}/class/block")) if os.path.isdir(
        f"{sys_root}/class/block") else set()
    names = [f"/dev/md{n}" for n in range(128) if f"md{n}" not in used]
    if len(names) < count:
        raise errors.SoftwareRAIDError("No free md (RAID) devices are left")
    return names[:count]


# mdadm level -> the kernel module of its personality
PERSONALITIES = {"0": "raid0", "1": "raid1", "10": "raid10", "5": "raid456", "6": "raid456"}
DATA_OFFSET_MIB = 2  # md 1.2: superblock, bad-block log and bitmap fit before the data


def ensure_md_driver(levels: Sequence[str], proc: str = "/proc") -> None:
    """Load the md driver and the personalities of *levels* (mdadm's names); refuse,
    before any disk is touched, on a kernel without md (no ``/proc/mdstat``)."""
    modules = ["md_mod", *dict.fromkeys(PERSONALITIES[lv] for lv in levels)]
    try:
        run.run(["modprobe", "-a", *modules], check=False, timeout=60)
    except run.CommandError as exc:
        LOG.debug("%s", exc)
    if not os.path.exists(f"{proc}/mdstat"):
        raise errors.SoftwareRAIDError(
            f"This kernel has no md (software RAID) driver: {proc}/mdstat is missing and "
            f"modprobe {' '.join(modules)} did not add it")


def create_array(device: str, level: str, name: str, members: Sequence[str],
                 metadata: str = "1.2") -> None:
    """``mdadm --create`` (*level* in mdadm's names); then re-add members the kernel
    left out (as upstream)."""
    argv = ["--create", device, "--run", "--force", f"--metadata={metadata}",
            f"--level={level}", f"--name={name}", "--homehost=any",
            f"--raid-devices={len(members)}"]
    if metadata.startswith("1.2"):
        argv.append(f"--data-offset={DATA_OFFSET_MIB}M")
    _mdadm_checked(*argv, *members,
                   what=f"Failed to create md device {device} on {' '.join(members)}")
    present = {a.device: a for a in list_arrays()}.get(device)
    present_members = set(present.members) if present else set()
    for member in members:
        if present and member not in present_members:
            LOG.warning("%s is missing from %s, re-adding it", member, device)
            _mdadm_checked("--add", device, member, what=f"Failed to re-add {member} to {device}")
