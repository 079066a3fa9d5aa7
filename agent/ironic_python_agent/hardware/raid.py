# SPDX-License-Identifier: Apache-2.0
"""Software RAID (mdadm) from Ironic's ``target_raid_config``, as upstream's agent.

The generic manager's ``create_configuration`` / ``apply_configuration`` /
``delete_configuration`` steps call :func:`create` and :func:`delete`. The
checks (:func:`validate`) and the partition layout (:func:`plan`) are pure
functions; the rest runs sfdisk, partx and mdadm.

Layout of every member disk (upstream's, with the boot partitions made at once
rather than left as a gap for the boot loader step):

* UEFI (always GPT): partition 1 is a 550 MiB EFI system partition
  (``uefi-holder-<n>``) at 1 MiB; the RAID partitions follow at 551 MiB.
* BIOS on GPT: partition 1 is a 2 MiB BIOS boot partition (``bios-boot-part-<n>``)
  at 1 MiB; the RAID partitions follow at 8 MiB.
* BIOS on MBR: the RAID partitions start at 1 MiB.

Each logical disk gets one partition on each of its disks, in the order of
the logical disks (a ``MAX`` one last); the arrays use metadata 1.2 with a
fixed 2 MiB data offset, so a ``size_gb`` array is exactly that size. The ESPs
become a RAID-1 with metadata 1.0 (superblock at the end, so firmware reads a
plain FAT) in :func:`prepare_boot_partitions`, which the boot loader step calls.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from typing import Any

from ironic_python_agent import errors, run
from ironic_python_agent.hardware import erase, md, root_hints
from ironic_python_agent.hardware.md import DATA_OFFSET_MIB, Array
from ironic_python_agent.hardware.devices import BlockDevice
from ironic_python_agent.partition_table import partition_path

LOG = logging.getLogger(__name__)

MiB = 1 << 20
GiB = 1 << 30
# Ironic's schema spells RAID-10 "1+0"; mdadm calls it 10.
LEVELS = {"0": "0", "1": "1", "1+0": "10", "5": "5", "6": "6"}
MIN_DISKS = {"0": 2, "1": 2, "1+0": 2, "5": 3, "6": 4}
ESP_MIB = 550  # upstream's (and diskimage-builder's) ESP size
BIOS_BOOT_MIB = 2
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_BOOT_TYPE = "21686148-6449-6E6F-744E-656564454649"
GPT_RAID_TYPE = "A19D880F-05FC-4D3B-A006-743F0F84911E"
MBR_RAID_TYPE = "fd"
ESP_VOLUME_NAME = "esp"


# --- what the node asks for -------------------------------------------------------------

def parse_capabilities(value: Any) -> dict[str, str]:
    """``"boot_mode:uefi,disk_label:gpt"`` (or a dict) → a dict."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    found: dict[str, str] = {}
    for item in str(value or "").split(","):
        key, sep, val = item.partition(":")
        if sep and key.strip():
            found[key.strip()] = val.strip()
    return found


def node_boot_mode(node: dict[str, Any], ramdisk_uefi: bool | None = None) -> str:
    """``uefi`` or ``bios`` for the instance, in the order Ironic gives it (as upstream):
    secure boot, ``instance_info.deploy_boot_mode``, the ``boot_mode`` capability,
    ``driver_internal_info.deploy_boot_mode``, then how the ramdisk booted."""
    if ramdisk_uefi is None:
        ramdisk_uefi = os.path.isdir("/sys/firmware/efi")
    ramdisk = "uefi" if ramdisk_uefi else "bios"
    iinfo = node.get("instance_info") or {}
    icaps = parse_capabilities(iinfo.get("capabilities"))
    ncaps = parse_capabilities((node.get("properties") or {}).get("capabilities"))
    if "true" in (icaps.get("secure_boot", "").lower(), ncaps.get("secure_boot", "").lower()):
        return "uefi"
    mode = str(iinfo.get("deploy_boot_mode") or ncaps.get("boot_mode")
               or (node.get("driver_internal_info") or {}).get("deploy_boot_mode")
               or ramdisk).lower()
    return mode if mode in ("uefi", "bios") else ramdisk


def partition_table_type(node: dict[str, Any], boot_mode: str) -> str:
    """``gpt`` for UEFI, else the ``disk_label`` capability (``msdos`` by default)."""
    if boot_mode == "uefi":
        return "gpt"
    icaps = parse_capabilities((node.get("instance_info") or {}).get("capabilities"))
    ncaps = parse_capabilities((node.get("properties") or {}).get("capabilities"))
    return "gpt" if icaps.get("disk_label", ncaps.get("disk_label")) == "gpt" else "msdos"


def software_disks(raid_config: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The logical disks with ``controller: software``."""
    return [d for d in (raid_config or {}).get("logical_disks") or []
            if isinstance(d, dict) and d.get("controller") == "software"]


def validate(raid_config: dict[str, Any], node_uuid: str | None = None,
             skip_volume_names: set[str] | frozenset[str] = frozenset()) -> None:
    """Refuse a configuration the agent cannot build, naming every problem.

    Upstream's rules: one or two logical disks, all ``controller: software``;
    the first is RAID-1 (it holds the root and boot files); the second is 0, 1,
    1+0, 5 or 6; at most one ``MAX``; unique volume names (required for all when
    ``skip_block_devices`` names a volume); one ``is_root_volume``;
    ``physical_disks`` a list of at least two device-hint dicts.
    """
    logical = (raid_config or {}).get("logical_disks")
    if not isinstance(logical, list) or not logical:
        raise errors.SoftwareRAIDError("RAID config contains no logical disks")
    problems: list[str] = []
    if len(logical) not in (1, 2):
        problems.append(f"Software RAID configuration requires one or two logical disks, "
                        f"not {len(logical)}")
    names: list[str] = []
    roots = 0
    for number, disk in enumerate(logical):
        if not isinstance(disk, dict):
            problems.append(f"logical disk {number} is not an object")
            continue
        what = f"logical disk {number}"
        if disk.get("controller") != "software":
            problems.append(f"Software RAID configuration requires all logical disks to have "
                            f"'controller'='software' ({what} has "
                            f"{disk.get('controller')!r})")
        level = str(disk.get("raid_level"))
        if level not in LEVELS:
            problems.append(f"{what}: RAID level {disk.get('raid_level')!r} is not supported "
                            f"for software RAID (supported: {', '.join(LEVELS)})")
        elif number == 0 and level != "1":
            problems.append(f"Software RAID configuration requires RAID-1 for the first "
                            f"logical disk, not RAID-{level}")
        size = disk.get("size_gb")
        if size != "MAX" and (isinstance(size, bool) or not isinstance(size, (int, str))
                              or not str(size).isdigit() or int(size) <= 0):
            problems.append(f"{what}: size_gb must be a positive number of GiB or 'MAX', "
                            f"not {size!r}")
        name = disk.get("volume_name")
        if name is None:
            if skip_volume_names:
                problems.append("All logical disks are required to have a volume name "
                                "specified as a volume name is mentioned in the property "
                                "skip_block_devices")
        elif not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", name):
            problems.append(f"{what}: volume_name {name!r} must be 1-32 letters, digits, "
                            "'.', '_' or '-'")
        elif name in names:
            problems.append(f"Duplicate software RAID device name {name} detected")
        elif name == ESP_VOLUME_NAME:
            problems.append(f"{what}: volume_name {name!r} is reserved for the RAID of the "
                            "EFI system partitions")
        else:
            names.append(name)
        if disk.get("is_root_volume"):
            roots += 1
        physical = disk.get("physical_disks")
        if physical is not None:
            if not isinstance(physical, list) or len(physical) < 2:
                problems.append("The physical_disks parameter for software RAID must be a "
                                "list with at least 2 items, each specifying a disk in the "
                                "device hints format")
            elif any(not isinstance(item, dict) for item in physical):
                problems.append("The physical_disks parameter for software RAID must be a "
                                "list of device hints (dictionaries)")
            elif level in MIN_DISKS and len(physical) < MIN_DISKS[level]:
                problems.append(f"{what}: RAID-{level} needs at least {MIN_DISKS[level]} "
                                f"disks, physical_disks names {len(physical)}")
    if roots > 1:
        problems.append("Software RAID configuration allows only one logical disk to be "
                        "marked as is_root_volume")
    if sum(1 for d in logical if isinstance(d, dict) and d.get("size_gb") == "MAX") > 1:
        problems.append("Software RAID can have only one RAID device with size 'MAX'")
    if problems:
        raise errors.SoftwareRAIDError(
            f"Could not validate Software RAID config for {node_uuid or 'the node'}: "
            + "; ".join(problems))


# --- the layout -------------------------------------------------------------------------

@dataclasses.dataclass
class Volume:
    """One logical disk to build: its disks, member partitions and md device."""

    index: int               # position in the target configuration
    level: str               # Ironic's spelling ("1+0")
    size_gb: int | None      # None: MAX
    name: str                # volume name given to mdadm --name
    disks: list[str]
    is_root: bool | None
    logical_disk: dict[str, Any]
    members: list[str] = dataclasses.field(default_factory=list)
    device: str = ""


@dataclasses.dataclass(frozen=True)
class PartSpec:
    number: int
    start_mib: int
    size_mib: int | None     # None: to the end of the disk
    type: str
    name: str


def select_disks(logical_disks: Sequence[dict[str, Any]], devices: Sequence[BlockDevice]
                 ) -> list[list[str]]:
    """The disks of each logical disk: its ``physical_disks`` hints (each hint picks
    the first matching disk no earlier hint of that volume took), else all disks."""
    chosen: list[list[str]] = []
    for number, disk in enumerate(logical_disks):
        hints = disk.get("physical_disks")
        if not hints:
            chosen.append([d.name for d in devices])
            continue
        picked: list[str] = []
        for hint in hints:
            try:
                candidates = [d.name for d in root_hints.find_devices(devices, hint)]
            except ValueError as exc:
                raise errors.SoftwareRAIDError(
                    f"logical disk {number}: invalid physical_disks hint {hint}: {exc}"
                ) from None
            free = [c for c in candidates if c not in picked]
            if not free:
                raise errors.SoftwareRAIDError(
                    f"logical disk {number}: no disk left for physical_disks hint {hint} "
                    f"(matching: {', '.join(candidates) or 'none'}; already picked: "
                    f"{', '.join(picked) or 'none'}; disks: "
                    f"{', '.join(d.name for d in devices) or 'none'})")
            picked.append(free[0])
        chosen.append(picked)
    return chosen


def data_disks(level: str, members: int) -> float:
    """How many members' worth of data an array holds."""
    return {"0": members, "1": 1, "1+0": members / 2, "5": members - 1,
            "6": members - 2}[level]


def member_mib(level: str, size_gb: int, members: int) -> int:
    """The partition size on each member for an array of *size_gb* GiB."""
    return math.ceil(size_gb * 1024 / data_disks(level, members)) + DATA_OFFSET_MIB


def first_raid_mib(boot_mode: str, label: str) -> int:
    if boot_mode == "uefi":
        return 1 + ESP_MIB
    return 8 if label == "gpt" else 1


def plan(volumes: Sequence[Volume], disk_sizes: dict[str, int], boot_mode: str,
         label: str) -> dict[str, list[PartSpec]]:
    """The partitions of every disk; fills each volume's ``members``.

    Raises SoftwareRAIDError when a level has too few disks or the sizes do not fit.
    """
    raid_type = GPT_RAID_TYPE if label == "gpt" else MBR_RAID_TYPE
    disks = [d for v in volumes for d in v.disks]
    disks = list(dict.fromkeys(disks))
    layout: dict[str, list[PartSpec]] = {}
    next_mib: dict[str, int] = {}
    for number, disk in enumerate(disks):
        parts: list[PartSpec] = []
        if boot_mode == "uefi":
            parts.append(PartSpec(1, 1, ESP_MIB, ESP_TYPE, f"uefi-holder-{number}"))
        elif label == "gpt":
            parts.append(PartSpec(1, 1, BIOS_BOOT_MIB, BIOS_BOOT_TYPE,
                                  f"bios-boot-part-{number}"))
        layout[disk] = parts
        next_mib[disk] = first_raid_mib(boot_mode, label)
    problems = []
    for volume in sorted(volumes, key=lambda v: v.size_gb is None):  # MAX last
        if len(volume.disks) < MIN_DISKS[volume.level]:
            problems.append(f"RAID-{volume.level} volume {volume.name} needs at least "
                            f"{MIN_DISKS[volume.level]} disks, found {len(volume.disks)} "
                            f"({', '.join(volume.disks) or 'none'})")
            continue
        size = (None if volume.size_gb is None
                else member_mib(volume.level, volume.size_gb, len(volume.disks)))
        volume.members = []
        for disk in volume.disks:
            parts = layout[disk]
            if label == "msdos" and len(parts) >= 4:
                problems.append(f"{disk}: an MBR holds at most 4 partitions")
                continue
            parts.append(PartSpec(len(parts) + 1, next_mib[disk], size, raid_type,
                                  f"raid-{volume.name}"))
            volume.members.append(partition_path(disk, len(parts)))
            next_mib[disk] += size or 0
    for disk, parts in layout.items():
        # GPT keeps its backup table in the last 33 sectors: keep the last MiB free.
        usable = disk_sizes[disk] // MiB - 1
        end = next_mib[disk]
        open_ended = any(p.size_mib is None for p in parts)
        if end > usable or (open_ended and end + DATA_OFFSET_MIB + 1 > usable):
            asked = ", ".join(f"{v.name}: {v.size_gb if v.size_gb is not None else 'MAX'} "
                              f"GiB RAID-{v.level}" for v in volumes if disk in v.disks)
            problems.append(f"{disk} ({disk_sizes[disk] / GiB:.1f} GiB) is too small for "
                            f"the requested volumes ({asked}): they need "
                            f"{end + (DATA_OFFSET_MIB + 1 if open_ended else 0)} MiB of it "
                            f"and {usable} MiB are usable")
    if problems:
        raise errors.SoftwareRAIDError("; ".join(problems))
    return layout


def sfdisk_script(parts: Sequence[PartSpec], label: str) -> str:
    """The sfdisk input creating *parts* on an empty disk."""
    lines = [f"label: {'gpt' if label == 'gpt' else 'dos'}"]
    for p in parts:
        fields = [f"start={p.start_mib}MiB"]
        if p.size_mib is not None:
            fields.append(f"size={p.size_mib}MiB")
        fields.append(f"type={p.type}")
        if label == "gpt":
            fields.append(f'name="{p.name}"')
        lines.append(", ".join(fields))
    return "\n".join(lines) + "\n"


def rescan(disk: str) -> None:
    """Make the kernel see *disk*'s new partition table (also on kernels without
    partition-table parsers, through partx), then let udev settle."""
    for argv in (["partx", "-d", disk], ["blockdev", "--rereadpt", disk],
                 ["partx", "-a", disk], ["udevadm", "settle", "--timeout=30"]):
        try:
            run.run(argv, check=False, timeout=120)
        except run.CommandError as exc:
            LOG.debug("%s", exc)


def wait_for(paths: Sequence[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = [p for p in paths if not os.path.exists(p)]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise errors.SoftwareRAIDError(f"Partitions did not appear: {', '.join(missing)}")
        time.sleep(0.2)


# --- what to keep: skip_block_devices with volume_name (upstream's rules) ----------------

def decide(arrays: dict[str, tuple[str | None, list[str]]], skip_names: set[str]
           ) -> dict[str, str]:
    """``{md device: "delete" | "wipe" | "keep"}`` from ``{device: (volume name,
    holder disks)}``.

    An array whose volume name is on the skip list is kept; the other arrays on
    its disks are only wiped (their superblocks and partitions stay, so the kept
    one's disks keep their partition tables); the ESP array on those disks is kept.
    Everything else is deleted.
    """
    actions = {device: "delete" for device in arrays}
    kept = [d for d, (name, _) in arrays.items() if name and name in skip_names]
    for device in kept:
        actions[device] = "keep"
        disks = set(arrays[device][1])
        for other, (name, holders) in arrays.items():
            if other != device and actions[other] == "delete" and disks & set(holders):
                actions[other] = "keep" if name == ESP_VOLUME_NAME else "wipe"
    return actions


def describe_arrays(arrays: Sequence[Array]) -> dict[str, tuple[str | None, list[str]]]:
    return {a.device: (md.volume_name(a.device), md.holder_disks(a.members)) for a in arrays}


# --- the steps -----------------------------------------------------------------------------

def create(node: dict[str, Any], raid_config: dict[str, Any], devices: Sequence[BlockDevice],
           skip_names: set[str]) -> tuple[dict[str, Any], dict[str, bool | None]]:
    """Build the software RAID volumes of *raid_config* on *devices* (the node's disks).

    Returns the configuration (as upstream, for Ironic's ``raid_config``) and
    ``{md device: is_root_volume}``. Refuses, before writing anything, when the
    disks hold partitions or md superblocks (``delete_configuration`` first), or
    when an existing array is neither on the skip list nor asked for.
    """
    logical = software_disks(raid_config)
    if not logical:
        LOG.info("No software RAID logical disks in the configuration")
        return {}, {}
    validate(raid_config, node.get("uuid"), skip_names)
    boot_mode = node_boot_mode(node)
    label = partition_table_type(node, boot_mode)
    disks = [d for d in devices if d.kind in ("disk", "mpath")]

    existing = describe_arrays(md.list_arrays())
    actions = decide(existing, skip_names)
    wanted = {d.get("volume_name") for d in logical} - {None}
    # Arrays the skip list keeps, and (upstream) wiped neighbours of theirs that the
    # configuration asks for again by name, stay; any other array is in the way.
    foreign = [f"{dev} ({name or 'no volume name'})" for dev, (name, _) in existing.items()
               if actions[dev] == "delete" or (actions[dev] == "wipe" and name not in wanted)]
    if foreign:
        raise errors.SoftwareRAIDError(
            f"Existing Software RAID device(s) {', '.join(foreign)} detected that should "
            "not be there: run the delete_configuration clean step first, or name them "
            "in skip_block_devices (volume_name) to keep them")
    keep_names = {name for dev, (name, _) in existing.items() if name and
                  actions[dev] != "delete"}
    todo = [(n, d) for n, d in enumerate(logical) if d.get("volume_name") not in keep_names]
    for disk in logical:
        if disk.get("volume_name") in keep_names:
            LOG.info("Software RAID volume %s exists and is kept (skip_block_devices)",
                     disk.get("volume_name"))
    if not todo:
        return raid_config, {}
    held = {h for _, holders in existing.values() for h in holders}
    disks = [d for d in disks if d.name not in held]
    chosen = select_disks([d for _, d in todo], disks)
    free = md.free_md_devices(len(todo))
    volumes = [Volume(index=n, level=str(d["raid_level"]),
                      size_gb=None if d.get("size_gb") == "MAX" else int(d["size_gb"]),
                      name=str(d.get("volume_name") or free[i].removeprefix("/dev/")),
                      disks=chosen[i], is_root=d.get("is_root_volume"), logical_disk=d,
                      device=free[i])
               for i, (n, d) in enumerate(todo)]
    sizes = {d.name: d.size for d in disks}
    layout = plan(volumes, sizes, boot_mode, label)
    busy = [disk for disk in layout if _in_use(disk)]
    if busy:
        raise errors.SoftwareRAIDError(
            f"Partitions or md superblocks detected on {', '.join(busy)} during RAID config: "
            "run the delete_configuration (or erase_devices_metadata) clean step first")
    LOG.info("Creating software RAID (%s, %s): %s", boot_mode, label,
             "; ".join(f"{v.device} RAID-{v.level} {v.size_gb or 'MAX'} GiB on "
                       f"{', '.join(v.members)}" for v in volumes))
    md.ensure_md_driver([LEVELS[v.level] for v in volumes])
    partition_disks(layout, label)
    wait_for([m for v in volumes for m in v.members])
    roots: dict[str, bool | None] = {}
    for volume in volumes:
        for member in volume.members:
            # Stale signatures where a partition now starts would make mdadm ask.
            run.run(["wipefs", "-af", member], check=False, timeout=60)
        md.create_array(volume.device, LEVELS[volume.level], volume.name, volume.members)
        roots[volume.device] = volume.is_root
    run.run(["udevadm", "settle", "--timeout=30"], check=False, timeout=60)
    LOG.info("Successfully created Software RAID")
    return raid_config, roots


def partition_disks(layout: dict[str, list[PartSpec]], label: str) -> None:
    """Write the planned partition table on each disk and make the kernel see it."""
    for disk, parts in layout.items():
        try:
            run.run(["sfdisk", "--quiet", "--wipe", "always", disk],
                    input=sfdisk_script(parts, label), timeout=120)
        except run.CommandError as exc:
            raise errors.SoftwareRAIDError(f"Failed to partition {disk}: {exc}") from None
        rescan(disk)


def _in_use(disk: str) -> bool:
    """Whether *disk* has a partition table, partitions or an md superblock."""
    name = os.path.basename(disk)
    base = f"/sys/class/block/{name}"
    try:
        if any(os.path.exists(f"{base}/{e}/partition") for e in os.listdir(base)):
            return True
    except OSError:
        pass
    probe = run.run(["blkid", "-p", "-o", "export", disk], check=False, timeout=60, log=False)
    return any(line.split("=", 1)[0] in ("PTTYPE", "TYPE") for line in
               probe.stdout.splitlines()) or md.has_superblock(disk)


def delete(devices_with_partitions: Any, skip_names: set[str], scan: bool = True
           ) -> dict[str, str]:
    """Stop and remove every md array (but those the skip list keeps), zero every md
    superblock left on any device, and wipe the partition tables of the holder disks.

    *devices_with_partitions* is called for the current disks and partitions. Two
    passes (an array can hide behind another); raises when arrays remain.
    """
    actions: dict[str, str] = {}
    for attempt in range(3):
        if scan:
            md.assemble_scan()
        arrays = md.list_arrays()
        actions = decide(describe_arrays(arrays), skip_names)
        remaining = [a for a in arrays if actions[a.device] == "delete"]
        # The first pass always runs: it also zeroes superblocks no array uses.
        if attempt and not remaining:
            return actions
        if attempt == 2:
            raise errors.SoftwareRAIDError(
                "Unable to clean all software RAID devices; remaining: "
                + ", ".join(a.device for a in remaining))
        _delete_pass(remaining, [a for a in arrays if actions[a.device] != "delete"],
                     actions, devices_with_partitions)
    return actions


def _delete_pass(arrays: Sequence[Array], others: Sequence[Array], actions: dict[str, str],
                 devices_with_partitions: Any) -> None:
    keep_members = {m for a in others for m in a.members}
    keep_disks = set(md.holder_disks(sorted(keep_members)))
    for array in others:
        if actions[array.device] == "wipe":
            LOG.warning("Software RAID device %s shares disks with a kept one: wiping its "
                        "content only", array.device)
            run.run(["wipefs", "-af", array.device], check=False, timeout=120)
    holders: list[str] = []
    for array in arrays:
        LOG.info("Deleting software RAID device %s (%s on %s)", array.device, array.level,
                 ", ".join(array.members))
        holders += [d for d in md.holder_disks(array.members) if d not in holders]
        md.stop_array(array)
    # Superblocks of arrays that are not assembled (a missing member, another
    # machine's array): any disk or partition, partitions first.
    for device in sorted(devices_with_partitions(), key=lambda d: d.name, reverse=True):
        if device.name in keep_members or device.name in keep_disks or device.kind not in (
                "disk", "part"):
            continue
        if device.kind == "part" and md.holder_disks([device.name])[0] in keep_disks:
            continue
        if md.has_superblock(device.name):
            LOG.info("Removing the md superblock of %s", device.name)
            md.zero_superblock(device.name)
    for disk in holders:
        if disk in keep_disks:
            LOG.warning("Holder disk %s also holds a kept RAID device: its partition "
                        "table stays", disk)
            continue
        LOG.info("Removing the partition table of holder disk %s", disk)
        try:
            erase.destroy_disk_metadata(disk, _size(disk))
        except (errors.RESTError, run.CommandError, OSError) as exc:
            raise errors.SoftwareRAIDError(f"Cannot wipe holder disk {disk}: {exc}") from None
        rescan(disk)


def _size(disk: str) -> int:
    """Bytes, from sysfs (512-byte units whatever the sector size)."""
    return int(md._read(f"/sys/class/block/{os.path.basename(disk)}/size") or 0) * 512


def dismantle(skip_names: set[str], allowed: Any = None) -> list[str]:
    """Before an erase: stop the arrays the skip list does not keep (after wiping
    their content) and zero their members' superblocks, so that the members are
    erased as plain disks. *allowed* (a set of disk paths), when given, limits
    this to arrays whose holder disks are all in it. Returns the stopped devices."""
    arrays = md.list_arrays()
    if not arrays:
        return []
    described = describe_arrays(arrays)
    actions = decide(described, skip_names)
    stopped: list[str] = []
    for array in arrays:
        if actions[array.device] != "delete":
            continue
        if allowed is not None and not set(described[array.device][1]) <= set(allowed):
            continue
        LOG.info("Taking software RAID device %s apart before erasing its members",
                 array.device)
        md.stop_array(array)
        stopped.append(array.device)
    return stopped


def zero_stray_superblocks(devices: Sequence[BlockDevice]) -> list[str]:
    """Zero the md superblocks on *devices* (disks and partitions) that no running
    array uses: members of arrays that are not assembled (a missing member,
    another machine's array, a kernel without md). Returns the devices zeroed."""
    members = {m for a in md.list_arrays() for m in a.members}
    zeroed = []
    for device in sorted(devices, key=lambda d: d.name, reverse=True):
        if device.kind not in ("disk", "part") or device.name in members:
            continue
        if md.has_superblock(device.name):
            LOG.info("Removing the md superblock of %s (no running array uses it)",
                     device.name)
            md.zero_superblock(device.name)
            zeroed.append(device.name)
    return zeroed


# --- boot partitions for the boot loader step ------------------------------------------------

def find_esp_array() -> str | None:
    """The md device of the RAIDed ESPs (volume name ``esp``), if assembled."""
    for array in md.list_arrays():
        if md.volume_name(array.device) == ESP_VOLUME_NAME:
            return array.device
    return None


def esp_partitions(disks: Sequence[str]) -> list[str]:
    """The ESPs ``create`` made on *disks* (GPT type EF00 named ``uefi-holder-*``)."""
    from ironic_python_agent import partition_table

    found = []
    for disk in disks:
        table = partition_table.read_partition_table(disk)
        for part in table.partitions if table else ():
            if part.type.upper() == ESP_TYPE and (part.name or "").startswith("uefi-holder-"):
                found.append(partition_path(disk, part.number))
    return found


def prepare_boot_partitions(root_md: str, boot_mode: str) -> str | None:
    """Get the boot partitions of a software RAID root ready for the boot loader.

    UEFI: a RAID-1 of the members' ESPs with metadata 1.0 (superblock at the end,
    so each member's firmware reads a plain FAT), volume name ``esp``; made once
    and found again on a rebuild. Returns its md device, which the caller formats
    and fills. BIOS: the BIOS boot partitions are already there (GPT) or GRUB
    uses the MBR gap; returns None.
    """
    if boot_mode != "uefi":
        return None
    existing = find_esp_array()
    if existing:
        LOG.info("Found RAIDed ESP %s, not creating another", existing)
        return existing
    arrays = {a.device: a for a in md.list_arrays()}
    if root_md not in arrays:
        raise errors.SoftwareRAIDError(f"{root_md} is not an assembled md device")
    disks = md.holder_disks(arrays[root_md].members)
    parts = esp_partitions(disks)
    if len(parts) < 2:
        raise errors.SoftwareRAIDError(
            f"Expected an EFI system partition on each of {', '.join(disks)} (made by "
            f"create_configuration), found {', '.join(parts) or 'none'}")
    device = md.free_md_devices(1)[0]
    md.create_array(device, "1", ESP_VOLUME_NAME, parts, metadata="1.0")
    run.run(["udevadm", "settle", "--timeout=30"], check=False, timeout=60)
    return device
