# SPDX-License-Identifier: Apache-2.0
"""Erasing disks: metadata wipe, NVMe format, ATA secure erase, discard, shred.

Every disk gets the best method it supports, disks run in parallel, and each
gets a report line ``{"method", "seconds", "bytes", "outcome"}``. Before any
byte is written, :func:`check_device` refuses the devices that must never be
erased: read-only ones, the virtual-media boot device, mounted ones and
shared-storage filesystems; ``skip_block_devices`` removes devices from the list
altogether.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from ironic_python_agent import config, errors, run
from ironic_python_agent.hardware.devices import BlockDevice

LOG = logging.getLogger(__name__)

MiB = 1024 * 1024
BOOT_MEDIA_LABELS = {"ir-vfd-dev", "vmedia_boot_iso"}
# Shared-storage formats a clean must not destroy (guard_special_filesystems).
PROTECTED_PART_TYPES = {
    "37affc90-ef7d-4e96-91c3-2d7ae055b174": "IBM GPFS partition",
    "aa31e02a-400f-11db-9590-000c2911d1b8": "VMware VMFS partition (GPT)",
    "0xfb": "VMware VMFS partition (MBR)",
}
PROTECTED_FSTYPES = {"gfs2": "Red Hat GFS2 filesystem"}


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "t", "y")
    return bool(value)


@dataclasses.dataclass(frozen=True)
class EraseFlags:
    """The erase settings Ironic copies into ``driver_internal_info``."""

    iterations: int = 1
    zeroize: bool = True
    continue_if_failed: bool = False
    ata: bool = True
    nvme: bool = True
    discard: bool = False
    skip_read_only: bool = False
    concurrency: int | None = None
    guard_special: bool = True

    @classmethod
    def from_node(cls, node: dict[str, Any] | None) -> EraseFlags:
        dii = (node or {}).get("driver_internal_info") or {}
        cont = dii.get("agent_continue_if_secure_erase_failed",
                       dii.get("agent_continue_if_ata_erase_failed"))
        concurrency = dii.get("disk_erasure_concurrency")
        conf = config.current()
        return cls(
            iterations=int(dii.get("agent_erase_devices_iterations", 1)),
            zeroize=_flag(dii.get("agent_erase_devices_zeroize"), True),
            continue_if_failed=_flag(cont, False),
            ata=_flag(dii.get("agent_enable_ata_secure_erase"), True),
            nvme=_flag(dii.get("agent_enable_nvme_secure_erase"), True),
            discard=_flag(dii.get("agent_enable_discard_erase"),
                          bool(conf.enable_discard_erase)),
            skip_read_only=_flag(dii.get("agent_erase_skip_read_only"), False),
            concurrency=int(concurrency) if concurrency else None,
            guard_special=(_flag(dii.get("wipe_special_filesystems"), True)
                           and bool(conf.guard_special_filesystems)),
        )


# --- what is on each device --------------------------------------------------------------
#
# lsblk and /dev/disk/by-label depend on udev having run, which a small ramdisk
# may not do, so the safeguards probe with ``blkid -p`` (straight from the
# device) and walk sysfs for partitions and holders.


def parse_blkid_export(text: str) -> dict[str, str]:
    """``blkid -p -o export`` → ``{"TYPE": "ext4", "LABEL": ..., "PART_ENTRY_TYPE": ...}``."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.strip()] = value.strip()
    return found


def _probe(kname: str) -> dict[str, Any]:
    try:
        out = run.run(["blkid", "-p", "-o", "export", f"/dev/{kname}"], check=False,
                      timeout=60, log=False).stdout
    except run.CommandError:
        out = ""
    tags = parse_blkid_export(out)
    return {"kname": kname, "fstype": tags.get("TYPE"), "label": tags.get("LABEL"),
            "parttype": tags.get("PART_ENTRY_TYPE"), "mountpoint": None,
            "mounts": _mountpoints(kname)}


def _below(kname: str, sys: str = "/sys/class/block") -> list[str]:
    """Partitions and holders (dm, md) of *kname*, recursively."""
    names: list[str] = []
    base = f"{sys}/{kname}"
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return names
    for entry in entries:
        if os.path.exists(f"{base}/{entry}/partition"):
            names.append(entry)
    try:
        names += sorted(os.listdir(f"{base}/holders"))
    except OSError:
        pass
    for name in list(names):
        names += [n for n in _below(name, sys) if n not in names]
    return names


def collect_device_tree(devices: list[BlockDevice] | None = None
                        ) -> dict[str, list[dict[str, Any]]]:
    """Kernel name → entries for the device and everything on or above it."""
    tree: dict[str, list[dict[str, Any]]] = {}
    for device in devices or []:
        kname = os.path.basename(device.name)
        tree[kname] = [_probe(n) for n in [kname, *_below(kname)]]
    return tree


def _by_label_targets(dev: str = "/dev") -> set[str]:
    """Devices udev linked as boot media labels (when udev runs)."""
    targets = set()
    for label in BOOT_MEDIA_LABELS:
        for name in (label, label.upper()):
            path = f"{dev}/disk/by-label/{name}"
            if os.path.exists(path):
                targets.add(os.path.basename(os.path.realpath(path)))
    return targets


def _mountpoints(kname: str) -> list[str]:
    """Where the device is mounted (/proc/self/mountinfo, by major:minor) or swapped on."""
    numbers = None
    try:
        with open(f"/sys/class/block/{kname}/dev") as f:
            numbers = f.read().strip()
    except OSError:
        pass
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if numbers and len(parts) > 4 and parts[2] == numbers:
                    found.append(parts[4])
    except OSError:
        pass
    try:
        with open("/proc/swaps") as f:
            for line in f.readlines()[1:]:
                if line.split()[:1] == [f"/dev/{kname}"]:
                    found.append("[swap]")
    except OSError:
        pass
    return found


def other_paths(devices: list[BlockDevice]) -> dict[str, str]:
    """Disks that are a second path to a LUN in *devices* → why they are skipped."""
    from ironic_python_agent import multipath

    return {name: f"another path to the LUN of {first} (same WWN and serial; "
                  "no multipath map)"
            for name, first in multipath.duplicate_paths(devices).items()}


def check_device(device: BlockDevice, tree: dict[str, list[dict[str, Any]]],
                 flags: EraseFlags) -> str | None:
    """Refuse or skip a device before erasing it.

    Returns a reason to skip it (None: go ahead) or raises when erasing it would
    be wrong: read-only (unless ``agent_erase_skip_read_only``), mounted or in use,
    shared-storage filesystems (unless ``wipe_special_filesystems`` is false).
    """
    kname = os.path.basename(device.name)
    entries = tree.get(kname)
    if entries is None:
        entries = collect_device_tree([device])[kname]
    labels = {str(e.get("label") or "").lower() for e in entries}
    if kname in _by_label_targets() or labels & BOOT_MEDIA_LABELS or any(
            e.get("fstype") == "iso9660" for e in entries):
        return "virtual media boot device"
    if entries and entries[0].get("fstype") == "linux_raid_member":
        return "software RAID member (erased through its md device)"
    ro = device.read_only or _sysfs_ro(kname)
    if ro:
        if flags.skip_read_only:
            return "read-only device"
        raise errors.BlockDeviceEraseError(
            f"{device.name} is read-only and cannot be erased; set "
            "agent_erase_skip_read_only to skip read-only devices")
    mounts = [f"{m} ({e['kname']})" if e["kname"] != kname else m
              for e in entries for m in e.get("mounts") or []]
    if mounts:
        raise errors.BlockDeviceEraseError(
            f"{device.name} is in use (mounted at {', '.join(sorted(set(mounts)))}); "
            "refusing to erase it")
    if flags.guard_special:
        for e in entries:
            ptype = str(e.get("parttype") or "").lower()
            if ptype in PROTECTED_PART_TYPES:
                raise errors.ProtectedDeviceError(device.name, PROTECTED_PART_TYPES[ptype])
            if e.get("fstype") in PROTECTED_FSTYPES:
                raise errors.ProtectedDeviceError(device.name,
                                                  PROTECTED_FSTYPES[str(e.get("fstype"))])
    return None


def _sysfs_ro(kname: str) -> bool:
    try:
        with open(f"/sys/class/block/{kname}/ro") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


# --- metadata ------------------------------------------------------------------------

def _zero(path: str, offset: int, length: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        zeros = b"\0" * min(length, MiB)
        left = length
        while left > 0:
            left -= os.write(fd, zeros[:min(left, len(zeros))])
        os.fsync(fd)
    finally:
        os.close(fd)


def destroy_disk_metadata(path: str, size: int) -> None:
    """Remove every signature, both GPT copies, the MBR and md/LVM superblocks."""
    try:
        run.run(["wipefs", "--force", "--all", path], timeout=120)
    except run.CommandError as exc:
        if exc.returncode is None:
            raise errors.BlockDeviceEraseError(f"{path}: wipefs is not installed") from None
        run.run(["wipefs", "--all", path], timeout=120)
    # The first and last MiB hold the MBR, both GPT headers and tables, md 0.90/1.x
    # and LVM labels: zero them even where wipefs found nothing.
    span = min(MiB, size)
    _zero(path, 0, span)
    if size > span:
        _zero(path, max(span, size - MiB), min(MiB, size - span))


def erase_metadata(node: dict[str, Any], devices: list[BlockDevice]) -> dict[str, Any]:
    """Wipe metadata on *devices*, disks and partitions (partitions first)."""
    flags = EraseFlags.from_node(node)
    tree = collect_device_tree(devices)
    report: dict[str, Any] = {}
    failures: list[str] = []
    paths = other_paths(devices)
    for device in sorted(devices, key=lambda d: d.name, reverse=True):
        start = time.monotonic()
        try:
            reason = paths.get(device.name) or check_device(device, tree, flags)
            if reason:
                report[device.name] = _line("none", start, 0, f"skipped: {reason}")
                continue
            destroy_disk_metadata(device.name, device.size)
            report[device.name] = _line("metadata", start, min(device.size, 2 * MiB),
                                        "erased")
        except (errors.RESTError, run.CommandError, OSError) as exc:
            failures.append(f"{device.name}: {exc}")
    _reread_partitions([d for d in devices if d.kind != "part"])
    if failures:
        raise errors.BlockDeviceEraseError("; ".join(failures))
    return report


def _reread_partitions(devices: list[BlockDevice]) -> None:
    for device in devices:
        try:
            run.run(["blockdev", "--rereadpt", device.name], check=False, timeout=30)
        except run.CommandError:
            pass


def _line(method: str, start: float, nbytes: int, outcome: str) -> dict[str, Any]:
    return {"method": method, "seconds": round(time.monotonic() - start, 3),
            "bytes": nbytes, "outcome": outcome}


# --- NVMe ------------------------------------------------------------------------------

def parse_nvme_id_ctrl(text: str) -> tuple[bool, bool]:
    """``nvme id-ctrl -o json`` → (Format NVM supported, crypto erase supported)."""
    data = json.loads(text)
    oacs = int(data.get("oacs", 0))
    fna = int(data.get("fna", 0))
    return bool(oacs & 0x2), bool(fna & 0x4)


def is_nvme(device: BlockDevice) -> bool:
    return os.path.basename(device.name).startswith("nvme") or device.tran == "nvme"


def nvme_format(path: str) -> str:
    """Format the namespace: crypto erase when supported, else user-data erase."""
    try:
        out = run.run(["nvme", "id-ctrl", path, "-o", "json"], timeout=60).stdout
        can_format, crypto = parse_nvme_id_ctrl(out)
    except (run.CommandError, ValueError) as exc:
        raise errors.BlockDeviceEraseError(f"{path}: cannot query the NVMe controller: "
                                           f"{exc}") from None
    if not can_format:
        raise errors.BlockDeviceEraseError(f"{path}: the NVMe controller does not support "
                                           "the Format NVM command")
    ses = "2" if crypto else "1"
    try:
        run.run(["nvme", "format", path, "-s", ses, "-f"], timeout=None)
    except run.CommandError as exc:
        raise errors.BlockDeviceEraseError(f"{path}: nvme format failed: {exc}") from None
    return "nvme-crypto-erase" if crypto else "nvme-user-data-erase"


# --- ATA secure erase ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ATASecurity:
    supported: bool
    enabled: bool
    locked: bool
    frozen: bool
    enhanced: bool


def parse_hdparm_security(text: str) -> ATASecurity | None:
    """The ``Security:`` section of ``hdparm -I`` (None when there is none)."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Security:")
    except StopIteration:
        return None
    section = []
    for line in lines[start + 1:]:
        if line and not line[0].isspace():
            break
        section.append(re.sub(r"\s+", " ", line.strip()))

    def state(word: str) -> bool:
        return word in section

    return ATASecurity(supported="supported" in section, enabled=state("enabled"),
                       locked=state("locked"), frozen=state("frozen"),
                       enhanced="supported: enhanced erase" in section)


class _Unsupported(Exception):
    """The disk has no ATA security feature set (not an error: use another method)."""


def _hdparm_security(path: str) -> ATASecurity:
    try:
        out = run.run(["hdparm", "-I", path], timeout=60).stdout
    except run.CommandError as exc:
        raise _Unsupported(f"hdparm -I failed: {exc}") from None
    security = parse_hdparm_security(out)
    if security is None or not security.supported:
        raise _Unsupported("no ATA security feature set")
    return security


def _smartctl_says_unavailable(path: str) -> bool:
    if run.which("smartctl") is None:
        return False
    try:
        out = run.run(["smartctl", "-d", "ata", path, "-g", "security"], timeout=60).stdout
    except run.CommandError:
        return True
    return "Unavailable" in out


def ata_secure_erase(path: str) -> str:
    """ATA secure erase (enhanced when offered), verified afterwards."""
    security = _hdparm_security(path)
    if _smartctl_says_unavailable(path):
        raise _Unsupported("smartctl reports ATA security unavailable")
    if security.frozen:
        raise errors.BlockDeviceEraseError(
            f"{path}: ATA security is frozen (a suspend/resume cycle or a hot-plug "
            "usually unfreezes it)")
    if security.locked:
        for password in ("NULL", ""):
            run.run(["hdparm", "--user-master", "u", "--security-unlock", password, path],
                    check=False, timeout=60)
            security = _hdparm_security(path)
            if not security.locked:
                break
        else:
            raise errors.BlockDeviceEraseError(f"{path}: ATA security is locked and could "
                                               "not be unlocked with the NULL password")
    if not security.enabled:
        run.run(["hdparm", "--user-master", "u", "--security-set-pass", "NULL", path],
                timeout=60)
    option = "--security-erase-enhanced" if security.enhanced else "--security-erase"
    try:
        run.run(["hdparm", "--user-master", "u", option, "NULL", path], timeout=None)
    except run.CommandError as exc:
        raise errors.BlockDeviceEraseError(f"{path}: hdparm {option} failed: {exc}") from None
    after = _hdparm_security(path)
    if after.enabled:
        raise errors.BlockDeviceEraseError(
            f"{path}: ATA security is still enabled after {option}; the erase did not "
            "complete")
    return "ata-secure-erase-enhanced" if security.enhanced else "ata-secure-erase"


# --- discard ------------------------------------------------------------------------------

MARKER = b"\xa5" * MiB
SAMPLES = 10


def discard_supported(kname: str) -> bool:
    try:
        with open(f"/sys/class/block/{kname}/queue/discard_max_bytes") as f:
            return int(f.read().strip() or 0) > 0
    except (OSError, ValueError):
        return False


def sample_offsets(size: int, count: int = SAMPLES) -> list[int]:
    """*count* MiB-aligned offsets spread over the device, the last MiB included."""
    if size < MiB:
        return [0]
    last = (size - MiB) // MiB
    return sorted({(last * i // max(1, count - 1)) * MiB for i in range(count)})


def discard_erase(path: str, size: int) -> bool:
    """blkdiscard, trusted only when sampled markers read back as zeroes."""
    offsets = sample_offsets(size)
    fd = os.open(path, os.O_RDWR)
    try:
        for off in offsets:
            os.pwrite(fd, MARKER[:min(MiB, size - off)], off)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        run.run(["blkdiscard", "--secure", path], timeout=None)
    except run.CommandError:
        try:
            run.run(["blkdiscard", path], timeout=None)
        except run.CommandError as exc:
            LOG.info("%s: blkdiscard failed: %s", path, exc)
            return False
    run.run(["blockdev", "--flushbufs", path], check=False, timeout=60)
    fd = os.open(path, os.O_RDONLY)
    try:
        for off in offsets:
            data = os.pread(fd, min(MiB, size - off), off)
            if data.count(0) != len(data):
                LOG.info("%s: discard left data at offset %d; not using it", path, off)
                return False
    finally:
        os.close(fd)
    return True


# --- shred ---------------------------------------------------------------------------------

def shred(path: str, iterations: int, zeroize: bool) -> None:
    argv = ["shred", "--force"]
    if zeroize:
        argv.append("--zero")
    argv += ["--verbose", "--iterations", str(iterations), path]
    try:
        run.run(argv, timeout=None)
    except run.CommandError as exc:
        raise errors.BlockDeviceEraseError(f"{path}: shred failed: {exc}") from None


# --- one disk, all disks --------------------------------------------------------------------

def erase_block_device(node: dict[str, Any] | None, device: BlockDevice,
                       tree: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Erase one disk with the best method it supports; return its report line."""
    flags = EraseFlags.from_node(node)
    start = time.monotonic()
    reason = check_device(device, {} if tree is None else tree, flags)
    if reason:
        return _line("none", start, 0, f"skipped: {reason}")
    path = device.name
    failed: Exception | None = None
    if is_nvme(device) and flags.nvme:
        try:
            return _line(nvme_format(path), start, device.size, "erased")
        except errors.BlockDeviceEraseError as exc:
            failed = exc
    elif flags.ata and not is_nvme(device):
        try:
            return _line(ata_secure_erase(path), start, device.size, "erased")
        except _Unsupported as exc:
            LOG.debug("%s: no ATA secure erase: %s", path, exc)
        except (errors.BlockDeviceEraseError, run.CommandError) as exc:
            failed = exc
    if flags.discard and discard_supported(os.path.basename(path)):
        if discard_erase(path, device.size):
            return _line("blkdiscard", start, device.size, "erased")
    if failed is not None and not flags.continue_if_failed:
        raise errors.BlockDeviceEraseError(
            f"{path}: secure erase failed ({failed}) and falling back to shred is not "
            "allowed (agent_continue_if_secure_erase_failed is false)")
    shred(path, flags.iterations, flags.zeroize)
    return _line("shred", start, device.size * (flags.iterations + int(flags.zeroize)),
                 "erased" if failed is None else f"erased (after: {failed})")


Dispatch = Callable[..., Any]


def erase_devices(node: dict[str, Any], devices: list[BlockDevice],
                  everything: list[BlockDevice], dispatch: Dispatch) -> dict[str, Any]:
    """Erase *devices*, ``disk_erasure_concurrency`` at a time (default: all at once).

    Each disk goes through ``dispatch("erase_block_device", node, device)`` (the
    managers' dispatch); the disks of *everything* not in *devices* are
    reported as skipped by ``skip_block_devices``.
    """
    flags = EraseFlags.from_node(node)
    kept = {d.name for d in devices}
    report: dict[str, Any] = {}
    for device in everything:
        if device.name not in kept:
            report[device.name] = {"method": "none", "seconds": 0.0, "bytes": 0,
                                   "outcome": "skipped: in skip_block_devices"}
    tree = collect_device_tree(devices)
    to_erase: list[BlockDevice] = []
    failures: dict[str, str] = {}
    paths = other_paths(devices)
    for device in devices:
        try:
            reason = paths.get(device.name) or check_device(device, tree, flags)
        except errors.RESTError as exc:
            failures[device.name] = str(exc)
            continue
        if reason:
            report[device.name] = {"method": "none", "seconds": 0.0, "bytes": 0,
                                   "outcome": f"skipped: {reason}"}
        else:
            to_erase.append(device)
    if not failures and to_erase:
        workers = flags.concurrency or len(to_erase)
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                                   thread_name_prefix="erase") as pool:
            futures = {pool.submit(_erase_one, dispatch, node, d): d for d in to_erase}
            for future, device in futures.items():
                try:
                    report[device.name] = future.result()
                except Exception as exc:  # noqa: BLE001 - reported per disk below
                    failures[device.name] = str(exc)
    if failures:
        raise errors.BlockDeviceEraseError(
            "; ".join(f"{name}: {why}" for name, why in sorted(failures.items())))
    return dict(sorted(report.items()))


def _erase_one(dispatch: Dispatch, node: dict[str, Any], device: BlockDevice
               ) -> dict[str, Any]:
    result = dispatch("erase_block_device", node, device)
    if isinstance(result, dict) and "method" in result:
        return result
    return {"method": "custom", "seconds": None, "bytes": device.size,
            "outcome": "erased", "result": result}


def erase_express(node: dict[str, Any], devices: list[BlockDevice]) -> dict[str, Any]:
    """NVMe format where the disk supports it, a metadata wipe everywhere else."""
    flags = EraseFlags.from_node(node)
    tree = collect_device_tree(devices)
    report: dict[str, Any] = {}
    failures: list[str] = []
    paths = other_paths(devices)
    for device in devices:
        start = time.monotonic()
        try:
            reason = paths.get(device.name) or check_device(device, tree, flags)
            if reason:
                report[device.name] = _line("none", start, 0, f"skipped: {reason}")
                continue
            if is_nvme(device) and flags.nvme:
                try:
                    method = nvme_format(device.name)
                    report[device.name] = _line(method, start, device.size, "erased")
                    continue
                except errors.BlockDeviceEraseError as exc:
                    LOG.info("%s: %s; wiping metadata instead", device.name, exc)
            destroy_disk_metadata(device.name, device.size)
            report[device.name] = _line("metadata", start, min(device.size, 2 * MiB),
                                        "erased")
        except (errors.RESTError, run.CommandError, OSError) as exc:
            failures.append(f"{device.name}: {exc}")
    if failures:
        raise errors.BlockDeviceEraseError("; ".join(failures))
    return report


def safety_check_block_device(node: dict[str, Any] | None, device: str) -> None:
    """Raise ProtectedDeviceError when *device* holds a shared-storage file system
    (GPFS, VMFS, GFS2), unless ``guard_special_filesystems`` is off or the node's
    ``driver_internal_info.wipe_special_filesystems`` is false (upstream's name)."""
    if not config.current().guard_special_filesystems:
        return
    dii = (node or {}).get("driver_internal_info") or {}
    if not _flag(dii.get("wipe_special_filesystems"), True):
        return
    entry = _probe(os.path.basename(device))
    ptype = str(entry.get("parttype") or "").lower()
    if ptype in PROTECTED_PART_TYPES:
        raise errors.ProtectedDeviceError(device, PROTECTED_PART_TYPES[ptype])
    if entry.get("fstype") in PROTECTED_FSTYPES:
        raise errors.ProtectedDeviceError(device, PROTECTED_FSTYPES[str(entry["fstype"])])
