# SPDX-License-Identifier: Apache-2.0
"""Block devices from sysfs and the udev database.

Nothing here runs a program: ``/sys/class/block`` gives the devices, their size,
sectors, rotation, model and vendor; the udev database (``/run/udev/data``, the
files libudev and pyudev read) gives serials and WWNs; ``/dev/disk/by-path``
gives the stable path. Every function takes its roots as arguments so the
tests can point them at a tree they built.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from ironic_python_agent.hardware.devices import BlockDevice

LOG = logging.getLogger(__name__)

SKIPPED_PREFIXES = ("ram", "zram", "fd")
# Kinds kept in the disk list, besides anything whose kind contains "raid".
KEPT_KINDS = {"disk", "md", "mpath"}


@dataclasses.dataclass(frozen=True)
class Roots:
    sys: Path = Path("/sys")
    dev: Path = Path("/dev")
    udev: Path = Path("/run/udev/data")


def parse_udev_db(text: str) -> tuple[dict[str, str], list[str]]:
    """Properties (``E:`` lines) and symlinks (``S:`` lines) of one udev db file."""
    props: dict[str, str] = {}
    links: list[str] = []
    for line in text.splitlines():
        tag, _, value = line.partition(":")
        if tag == "E":
            key, _, val = value.partition("=")
            props[key] = val
        elif tag == "S":
            links.append(value)
    return props, links


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def normalize_wwid(wwid: str | None) -> str | None:
    """sysfs ``wwid`` → the form lsblk and udev use (``naa.5000…`` → ``0x5000…``)."""
    if not wwid:
        return None
    wwid = wwid.strip()
    if wwid.startswith("naa."):
        return "0x" + wwid[4:].lower()
    if wwid.startswith("eui."):
        return wwid.lower()
    return None


def mpath_wwn(dm_uuid: str | None) -> str | None:
    """A multipath map's WWN from its device-mapper UUID (``mpath-3<NAA>`` → ``0x<NAA>``,
    SCSI page 0x83 type 3, what multipath names maps by)."""
    if not dm_uuid or not dm_uuid.startswith("mpath-3"):
        return None
    naa = dm_uuid[len("mpath-3"):].lower()
    return "0x" + naa if naa and all(c in "0123456789abcdef" for c in naa) else None


def _slaves(block_dir: Path) -> list[str]:
    try:
        return sorted(os.listdir(block_dir / "slaves"))
    except OSError:
        return []


def device_kind(block_dir: Path, name: str) -> str:
    """The lsblk-style TYPE of a /sys/class/block entry."""
    if (block_dir / "partition").exists():
        return "part"
    if name.startswith("loop"):
        return "loop"
    if name.startswith("sr") or _read(block_dir / "removable") == "1" and \
            (block_dir / "device" / "media").exists():
        return "rom"
    level = _read(block_dir / "md" / "level")
    if level is not None:
        return level if "raid" in level else "md"
    dm_uuid = _read(block_dir / "dm" / "uuid")
    if dm_uuid is not None:
        if dm_uuid.startswith("mpath-"):
            return "mpath"
        if dm_uuid.startswith("LVM-"):
            return "lvm"
        if dm_uuid.startswith("CRYPT-"):
            return "crypt"
        return "dm"
    return "disk"


def transport(block_dir: Path, name: str) -> str | None:
    """lsblk's TRAN, from where the device sits in the device tree."""
    if name.startswith("nvme"):
        return "nvme"
    try:
        path = os.path.realpath(block_dir / "device")
    except OSError:
        return None
    if "/usb" in path:
        return "usb"
    if "/session" in path:
        return "iscsi"
    if "/rport-" in path:
        return "fc"
    if "/end_device-" in path or "/expander-" in path:
        return "sas"
    if "/ata" in path:
        return "sata"
    return None


def _by_path_map(roots: Roots) -> dict[str, str]:
    """Kernel name → its /dev/disk/by-path link (first one, sorted)."""
    found: dict[str, str] = {}
    base = roots.dev / "disk" / "by-path"
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        try:
            target = os.path.basename(os.readlink(entry.path))
        except OSError:
            continue
        found.setdefault(target, str(base / entry.name))
    return found


def _udev_props(roots: Roots, block_dir: Path) -> dict[str, str]:
    dev = _read(block_dir / "dev")
    if not dev:
        return {}
    text = _read(roots.udev / f"b{dev}")
    return parse_udev_db(text)[0] if text else {}


def _first_scsi_device(block_dir: Path) -> str | None:
    try:
        names = sorted(os.listdir(block_dir / "device" / "scsi_device"))
    except OSError:
        return None
    return names[0] if names else None


def _is_mpath_member(roots: Roots, block_dir: Path) -> bool:
    try:
        holders = os.listdir(block_dir / "holders")
    except OSError:
        return False
    for holder in holders:
        uuid = _read(roots.sys / "class" / "block" / holder / "dm" / "uuid")
        if uuid and uuid.startswith("mpath-"):
            return True
    return False


def _unique(values: Iterable[str | None]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return out


def read_device(roots: Roots, name: str, kind: str, by_path: dict[str, str]) -> BlockDevice:
    block_dir = roots.sys / "class" / "block" / name
    dev_dir = block_dir / "device"
    props = _udev_props(roots, block_dir)
    sysfs_serial = _read(dev_dir / "serial") or _read(block_dir / "serial")
    serials = _unique([props.get("ID_SERIAL_SHORT"), sysfs_serial, props.get("ID_SERIAL"),
                       props.get("DM_SERIAL")])
    wwns = _unique([props.get("ID_WWN"), normalize_wwid(_read(dev_dir / "wwid")),
                    props.get("DM_WWN")])
    sectors = _read_int(block_dir / "size") or 0
    rotational = _read(block_dir / "queue" / "rotational")
    vendor = _read(dev_dir / "vendor")
    model = _read(dev_dir / "model") or props.get("ID_MODEL") or None
    if kind == "mpath":  # the map has no device of its own: its paths name the LUN
        wwns = _unique([*wwns, mpath_wwn(_read(block_dir / "dm" / "uuid"))])
        for path in _slaves(block_dir):
            path_dir = roots.sys / "class" / "block" / path
            # the paths' own serial first: the map's ID_SERIAL is its WWID
            serials = _unique([_udev_props(roots, path_dir).get("ID_SERIAL_SHORT"),
                               _read(path_dir / "device" / "serial"), *serials])
            model = model or _read(path_dir / "device" / "model")
            vendor = vendor or _read(path_dir / "device" / "vendor")
    device = BlockDevice(
        name=str(roots.dev / name),
        model=model or None,
        size=sectors * 512,
        rotational=rotational == "1",
        wwn=wwns[0] if wwns else None,
        serial=serials[0] if serials else None,
        vendor=vendor or None,
        wwn_with_extension=props.get("ID_WWN_WITH_EXTENSION") or None,
        wwn_vendor_extension=props.get("ID_WWN_VENDOR_EXTENSION") or None,
        hctl=_first_scsi_device(block_dir),
        by_path=by_path.get(name),
        uuid=props.get("ID_FS_UUID") or None,
        partuuid=props.get("ID_PART_ENTRY_UUID") or None,
        logical_sectors=_read_int(block_dir / "queue" / "logical_block_size"),
        physical_sectors=_read_int(block_dir / "queue" / "physical_block_size"),
        tran=transport(block_dir, name),
        read_only=_read(block_dir / "ro") == "1",
        kind=kind,
        serials=serials,
        wwns=wwns,
    )
    return device


def list_all_block_devices(include_partitions: bool = False,
                           allow: set[str] | frozenset[str] = frozenset(),
                           roots: Roots = Roots()) -> list[BlockDevice]:
    """Disks (and, if asked, partitions) sorted by name, filtered like upstream.

    Dropped: ram/zram/fd devices, empty devices, loops, LVM/crypt/dm, ROMs and
    multipath member paths. *allow*, when not empty, restricts the list to the
    named devices (and their partitions); a loop device named there is kept as a
    disk, which is how the tests give the agent a disk of their own.
    """
    base = roots.sys / "class" / "block"
    try:
        names = sorted(os.listdir(base))
    except OSError:
        LOG.warning("Cannot list %s; no block devices reported", base)
        return []
    by_path = _by_path_map(roots)
    devices: list[BlockDevice] = []
    for name in names:
        if name.startswith(SKIPPED_PREFIXES):
            continue
        block_dir = base / name
        kind = device_kind(block_dir, name)
        parent = None
        if kind == "part":
            if not include_partitions:
                continue
            parent = os.path.basename(os.path.dirname(os.path.realpath(block_dir)))
        if allow:
            if name not in allow and (parent is None or parent not in allow):
                continue
            if kind == "loop":
                kind = "disk"
        if kind != "part" and kind not in KEPT_KINDS and "raid" not in kind:
            continue
        if _read(block_dir / "hidden") == "1" or _is_mpath_member(roots, block_dir):
            continue
        device = read_device(roots, name, kind, by_path)
        if device.size == 0:
            continue
        devices.append(device)
    return devices
