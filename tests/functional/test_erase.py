# SPDX-License-Identifier: Apache-2.0
"""Cleaning on real loop devices: bytes are checked before and after.

Every device here is a sparse file of the test's own attached with losetup, and
the generic manager only sees them (block_device_allowlist). Hardware erase
tools (hdparm, nvme, smartctl) are fakes replaying captured output, so the
methods they drive are exercised without real drives; shred, blkdiscard,
wipefs and the safeguards run for real.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ironic_python_agent import errors, hardware
from ironic_python_agent.extensions.clean import CleanExtension
from ironic_python_agent.hardware import erase
from tests.hwfixtures import MiB, fake_tools_env, hardware_conf, loop_device, reset_hardware

PATTERN = bytes(range(256)) * 4096  # 1 MiB, never all-zero


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    reset_hardware()
    for key, value in fake_tools_env(tmp_path / "fake-state", "hdparm=none").items():
        monkeypatch.setenv(key, value)
    yield
    reset_hardware()


def scenario(monkeypatch, text):
    monkeypatch.setenv("FAKE_HW_SCENARIO", text)


def fill(dev: str, size: int) -> None:
    with open(dev, "r+b") as f:
        for _ in range(size // MiB):
            f.write(PATTERN)
        f.flush()
        os.fsync(f.fileno())


def chunks(dev: str, size: int):
    subprocess.run(["blockdev", "--flushbufs", dev], check=True)
    with open(dev, "rb") as f:
        for offset in range(0, size, MiB):
            yield offset, f.read(MiB)


def all_zero(dev: str, size: int) -> bool:
    return all(c.count(0) == len(c) for _, c in chunks(dev, size))


def untouched(dev: str, size: int) -> bool:
    return all(c == PATTERN for _, c in chunks(dev, size))


def node(**dii):
    return {"uuid": "4b1b2e2c-5b8f-4b5e-9d2a-2c8f0e1d7a11", "properties": {},
            "instance_info": {}, "driver_internal_info": dii}


# --- metadata ---------------------------------------------------------------------------

def test_erase_devices_metadata_removes_signatures_only(tmp_path):
    size = 64 * MiB
    with loop_device(tmp_path, size, partitions=2) as dev:
        kname = os.path.basename(dev)
        parts = sorted(p for p in os.listdir(f"/sys/class/block/{kname}")
                       if p.startswith(kname))
        assert len(parts) == 2, "partx did not create the partitions"
        subprocess.run(["mkfs.ext4", "-q", "-F", f"/dev/{parts[0]}"], check=True)
        with open(dev, "r+b") as f:  # a known pattern in the middle, away from metadata
            f.seek(40 * MiB)
            f.write(PATTERN)
        before = subprocess.run(["wipefs", "--no-act", "--noheadings", f"/dev/{parts[0]}"],
                                capture_output=True, text=True).stdout
        assert "ext4" in before
        hardware_conf(allow=[dev])
        report = hardware.dispatch_to_managers("erase_devices_metadata", node(), [])
        assert set(report) == {dev, *(f"/dev/{p}" for p in parts)}
        assert all(line["outcome"] == "erased" and line["method"] == "metadata"
                   for line in report.values())
        # No signature left anywhere on the disk, both GPT copies gone.
        probe = subprocess.run(["wipefs", "--no-act", "--noheadings", dev],
                               capture_output=True, text=True)
        assert probe.stdout.strip() == ""
        with open(dev, "rb") as f:
            head = f.read(MiB)
            f.seek(size - MiB)
            tail = f.read(MiB)
            f.seek(40 * MiB)
            middle = f.read(MiB)
        assert head.count(0) == MiB and tail.count(0) == MiB
        assert middle == PATTERN  # fast: not a full erase


# --- full erase methods -----------------------------------------------------------------

def test_shred_with_final_zeroing(tmp_path):
    size = 16 * MiB
    with loop_device(tmp_path, size) as dev:
        fill(dev, size)
        hardware_conf(allow=[dev])
        report = hardware.dispatch_to_managers(
            "erase_devices", node(agent_erase_devices_iterations=1,
                                  agent_erase_devices_zeroize=True), [])
        assert report[dev]["method"] == "shred" and report[dev]["outcome"] == "erased"
        assert report[dev]["bytes"] == 2 * size
        assert all_zero(dev, size)


def test_shred_without_zeroing_leaves_random_data(tmp_path):
    size = 8 * MiB
    with loop_device(tmp_path, size) as dev:
        fill(dev, size)
        hardware_conf(allow=[dev])
        report = hardware.dispatch_to_managers(
            "erase_devices", node(agent_erase_devices_iterations=1,
                                  agent_erase_devices_zeroize=False), [])
        assert report[dev]["method"] == "shred"
        for _, chunk in chunks(dev, size):
            assert chunk != PATTERN and chunk.count(0) < len(chunk) // 2


def test_blkdiscard_when_discard_reads_back_zero(tmp_path):
    size = 32 * MiB
    with loop_device(tmp_path, size) as dev:
        if not erase.discard_supported(os.path.basename(dev)):
            pytest.fail("loop devices over a local filesystem support discard")
        fill(dev, size)
        hardware_conf(allow=[dev])
        report = hardware.dispatch_to_managers(
            "erase_devices", node(agent_enable_discard_erase=True), [])
        assert report[dev]["method"] == "blkdiscard", report
        assert all_zero(dev, size)


def test_disks_erase_in_parallel_each_reported(tmp_path):
    size = 8 * MiB
    with loop_device(tmp_path, size, "a.img") as a, loop_device(tmp_path, size, "b.img") as b, \
            loop_device(tmp_path, size, "c.img") as c:
        for dev in (a, b, c):
            fill(dev, size)
        hardware_conf(allow=[a, b, c])
        report = hardware.dispatch_to_managers("erase_devices",
                                               node(disk_erasure_concurrency=2), [])
        assert sorted(report) == sorted([a, b, c])
        for dev in (a, b, c):
            assert report[dev]["method"] == "shred" and report[dev]["seconds"] >= 0
            assert all_zero(dev, size)


# --- hardware methods through the fake tools ----------------------------------------------

def _device(dev: str, **changes):
    hardware_conf(allow=[dev])
    found = hardware.dispatch_to_managers("list_block_devices")
    assert [d.name for d in found] == [dev]
    for key, value in changes.items():
        setattr(found[0], key, value)
    return found[0]


@pytest.mark.parametrize("kind, method", [("crypto", "nvme-crypto-erase"),
                                          ("user-data", "nvme-user-data-erase")])
def test_nvme_format(tmp_path, monkeypatch, kind, method):
    scenario(monkeypatch, f"nvme={kind}")
    with loop_device(tmp_path, 4 * MiB) as dev:
        device = _device(dev, tran="nvme")
        assert erase.erase_block_device(node(), device)["method"] == method


def test_nvme_without_format_support_fails_unless_fallback_allowed(tmp_path, monkeypatch):
    scenario(monkeypatch, "nvme=no-format")
    size = 4 * MiB
    with loop_device(tmp_path, size) as dev:
        fill(dev, size)
        device = _device(dev, tran="nvme")
        with pytest.raises(errors.BlockDeviceEraseError) as info:
            erase.erase_block_device(node(), device)
        assert dev in str(info.value) and "Format NVM" in str(info.value)
        assert untouched(dev, size)
        line = erase.erase_block_device(node(agent_continue_if_secure_erase_failed=True),
                                        device)
        assert line["method"] == "shred" and "Format NVM" in line["outcome"]
        assert all_zero(dev, size)


@pytest.mark.parametrize("kind", ["not-enabled", "locked"])
def test_ata_secure_erase(tmp_path, monkeypatch, kind):
    scenario(monkeypatch, f"hdparm={kind}")
    with loop_device(tmp_path, 4 * MiB) as dev:
        device = _device(dev)
        line = erase.erase_block_device(node(), device)
        assert line["method"] == "ata-secure-erase-enhanced" and line["outcome"] == "erased"


@pytest.mark.parametrize("kind, why", [("frozen", "frozen"), ("stuck", "still enabled"),
                                       ("erase-fails", "security-erase-enhanced failed")])
def test_ata_failures_name_the_disk_and_why(tmp_path, monkeypatch, kind, why):
    scenario(monkeypatch, f"hdparm={kind}")
    size = 4 * MiB
    with loop_device(tmp_path, size) as dev:
        fill(dev, size)
        hardware_conf(allow=[dev])
        with pytest.raises(errors.BlockDeviceEraseError) as info:
            hardware.dispatch_to_managers("erase_devices", node(), [])
        assert dev in str(info.value) and why in str(info.value)
        assert untouched(dev, size)


def test_ata_disabled_goes_to_shred(tmp_path, monkeypatch):
    scenario(monkeypatch, "hdparm=frozen")
    size = 4 * MiB
    with loop_device(tmp_path, size) as dev:
        fill(dev, size)
        hardware_conf(allow=[dev])
        report = hardware.dispatch_to_managers(
            "erase_devices", node(agent_enable_ata_secure_erase=False), [])
        assert report[dev]["method"] == "shred" and all_zero(dev, size)


def test_express_uses_nvme_or_metadata(tmp_path):
    size = 8 * MiB
    with loop_device(tmp_path, size) as dev:
        fill(dev, size)
        hardware_conf(allow=[dev])
        report = hardware.dispatch_to_managers("erase_devices_express", node(), [])
        assert report[dev]["method"] == "metadata"
        with open(dev, "rb") as f:
            assert f.read(MiB).count(0) == MiB


# --- safeguards -------------------------------------------------------------------------------

def test_read_only_device_is_never_erased(tmp_path):
    size = 4 * MiB
    with loop_device(tmp_path, size) as dev:
        fill(dev, size)
        subprocess.run(["blockdev", "--setro", dev], check=True)
        try:
            hardware_conf(allow=[dev])
            with pytest.raises(errors.BlockDeviceEraseError, match=f"{dev} is read-only"):
                hardware.dispatch_to_managers("erase_devices", node(), [])
            report = hardware.dispatch_to_managers(
                "erase_devices", node(agent_erase_skip_read_only=True), [])
            assert report[dev]["outcome"] == "skipped: read-only device"
            report = hardware.dispatch_to_managers(
                "erase_devices_metadata", node(agent_erase_skip_read_only=True), [])
            assert report[dev]["outcome"] == "skipped: read-only device"
        finally:
            subprocess.run(["blockdev", "--setrw", dev], check=True)
        assert untouched(dev, size)


def test_skip_block_devices_are_left_alone(tmp_path):
    size = 4 * MiB
    with loop_device(tmp_path, size, "keep.img") as keep, \
            loop_device(tmp_path, size, "wipe.img") as wipe:
        fill(keep, size)
        fill(wipe, size)
        hardware_conf(allow=[keep, wipe])
        n = node()
        n["properties"]["skip_block_devices"] = [{"name": keep}]
        report = hardware.dispatch_to_managers("erase_devices", n, [])
        assert report[keep]["outcome"] == "skipped: in skip_block_devices"
        assert report[wipe]["method"] == "shred"
        assert untouched(keep, size) and all_zero(wipe, size)
        hardware.dispatch_to_managers("erase_devices_metadata", n, [])
        assert untouched(keep, size)


def test_virtual_media_boot_device_is_skipped(tmp_path):
    size = 8 * MiB
    with loop_device(tmp_path, size) as dev:
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "ir-vfd-dev", dev], check=True)
        with open(dev, "rb") as f:
            before = f.read(2 * MiB)
        hardware_conf(allow=[dev])
        for step in ("erase_devices", "erase_devices_metadata", "erase_devices_express"):
            report = hardware.dispatch_to_managers(step, node(), [])
            assert report[dev]["outcome"] == "skipped: virtual media boot device"
        with open(dev, "rb") as f:
            assert f.read(2 * MiB) == before


def test_mounted_device_is_refused(tmp_path):
    size = 16 * MiB
    with loop_device(tmp_path, size) as dev:
        subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True)
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        subprocess.run(["mount", dev, str(mnt)], check=True)
        try:
            (mnt / "keep.txt").write_text("precious")
            hardware_conf(allow=[dev])
            for step in ("erase_devices", "erase_devices_metadata"):
                with pytest.raises(errors.BlockDeviceEraseError) as info:
                    hardware.dispatch_to_managers(step, node(), [])
                assert f"{dev} is in use (mounted at {mnt})" in str(info.value)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
        subprocess.run(["mount", "-o", "ro", dev, str(mnt)], check=True)
        try:
            assert (mnt / "keep.txt").read_text() == "precious"
        finally:
            subprocess.run(["umount", str(mnt)], check=True)


def test_special_filesystem_guard():
    flags = erase.EraseFlags()
    device = hardware.BlockDevice("/dev/sdb", None, 10 * MiB, False)
    vmfs = erase.parse_blkid_export(open(
        os.path.join(os.path.dirname(__file__), "..", "samples", "blkid",
                     "vmfs_partition.txt")).read())
    tree = {"sdb": [{"kname": "sdb", "fstype": None, "label": None, "mounts": []},
                    {"kname": "sdb1", "fstype": None, "label": None, "mounts": [],
                     "parttype": vmfs["PART_ENTRY_TYPE"]}]}
    with pytest.raises(errors.ProtectedDeviceError, match="VMware VMFS"):
        erase.check_device(device, tree, flags)
    assert erase.check_device(device, tree, erase.EraseFlags(guard_special=False)) is None


def test_blkid_samples():
    base = os.path.join(os.path.dirname(__file__), "..", "samples", "blkid")
    iso = erase.parse_blkid_export(open(os.path.join(base, "iso_boot_media.txt")).read())
    raid = erase.parse_blkid_export(open(os.path.join(base, "raid_member.txt")).read())
    device = hardware.BlockDevice("/dev/sdc", None, 10 * MiB, False)
    flags = erase.EraseFlags()
    entry = {"kname": "sdc", "fstype": iso["TYPE"], "label": iso["LABEL"], "mounts": []}
    assert erase.check_device(device, {"sdc": [entry]}, flags) == "virtual media boot device"
    entry = {"kname": "sdc", "fstype": raid["TYPE"], "label": raid["LABEL"], "mounts": []}
    assert erase.check_device(device, {"sdc": [entry]}, flags).startswith(
        "software RAID member")


# --- through the clean extension ---------------------------------------------------------------

def test_clean_step_result_carries_the_report(tmp_path):
    size = 4 * MiB
    with loop_device(tmp_path, size) as dev:
        fill(dev, size)
        hardware_conf(allow=[dev])
        ext = CleanExtension()
        steps = ext.get_clean_steps(node=node(), ports=[]).command_result
        version = steps["hardware_manager_version"]
        result = ext.execute_clean_step(
            step={"step": "erase_devices", "interface": "deploy", "priority": 10},
            node=node(), ports=[], clean_version=version).join(120)
        body = json.loads(json.dumps(result.serialize()))
        assert body["command_status"] == "SUCCEEDED", body
        line = body["command_result"]["clean_result"][dev]
        assert line["method"] == "shred" and line["outcome"] == "erased"
        assert set(line) == {"method", "seconds", "bytes", "outcome"}
        assert all_zero(dev, size)


# --- multipath without multipathd ------------------------------------------------------

def test_two_paths_to_one_lun_are_erased_once(tmp_path):
    """One backing file attached twice is one LUN seen through two paths; with the same
    WWN and serial (as SCSI reports them) only the first is erased, the other is
    reported as skipped, and the LUN ends all zero. A disk with another WWN is erased."""
    size = 8 * MiB
    with loop_device(tmp_path, size, "lun.img") as a, loop_device(tmp_path, size, "c.img") as c:
        b = subprocess.run(["losetup", "--find", "--show", str(tmp_path / "lun.img")],
                           check=True, capture_output=True, text=True).stdout.strip()
        try:
            fill(a, size)
            fill(c, size)
            hardware_conf(allow=[a, b, c])
            found = {d.name: d for d in hardware.dispatch_to_managers("list_block_devices")}
            for name, wwn in ((a, "0x5000c500a1b2c3d4"), (b, "0x5000c500a1b2c3d4"),
                              (c, "0x5000c500ffffffff")):
                found[name].wwn, found[name].serial = wwn, "LUN-SERIAL"
            devices = [found[a], found[b], found[c]]
            report = erase.erase_devices(node(), devices, devices,
                                         hardware.dispatch_to_managers)
            assert report[b]["method"] == "none", report
            assert report[b]["outcome"].startswith(f"skipped: another path to the LUN of {a}")
            assert report[a]["method"] == "shred" and report[c]["method"] == "shred"
            assert all_zero(b, size) and all_zero(c, size)
            meta = erase.erase_metadata(node(), devices)
            assert meta[b]["method"] == "none" and meta[a]["method"] == "metadata"
        finally:
            subprocess.run(["losetup", "-d", b], check=False)
