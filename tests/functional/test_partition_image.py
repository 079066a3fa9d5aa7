# SPDX-License-Identifier: Apache-2.0
"""Partition images on real loop devices: table, sizes, types, UUIDs, config drive."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ironic_python_agent import errors, partition_image, partition_table
from ironic_python_agent.extensions import standby

from tests.functional.test_image_commands import FakeAgent
from tests.hwfixtures import reset_hardware
from tests.imageserver import ImageServer

from tests.imagetools import MIB, file_digest, loop_device, qcow2_copy, read_device

DISK = 768 * MIB


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[str]:
    with loop_device(tmp_path / "disk", DISK) as dev:
        try:
            yield dev
        finally:
            subprocess.run(["partx", "-d", dev], check=False, capture_output=True)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("root") / "root.img"
    with open(path, "wb") as f:
        f.truncate(32 * MIB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "img-root", str(path)], check=True)
    return path


def blkid(path: str, tag: str) -> str:
    return subprocess.run(["blkid", "-p", "-o", "value", "-s", tag, path],
                          capture_output=True, text=True, check=False).stdout.strip()


def copy_into(image: Path) -> object:
    def write(root: str) -> None:
        with open(root, "r+b") as f:
            f.write(image.read_bytes())
    return write


def test_uefi_layout_and_uuids(disk: str, rootfs: Path) -> None:
    layout = partition_image.layout_from_image_info(
        {"root_mb": 64, "swap_mb": 16, "ephemeral_mb": 32, "ephemeral_format": "ext4",
         "deploy_boot_mode": "uefi", "disk_label": "msdos"})
    cd = b"config-drive-bytes" * 1000
    uuids = partition_image.deploy(disk, layout, copy_into(rootfs), cd)
    table = partition_table.read_partition_table(disk)
    assert table is not None and table.label == "gpt"  # UEFI forces GPT
    roles = ["efi system partition", "ephemeral", "swap", "configdrive", "root"]
    assert list(uuids["partitions"]) == roles
    sizes = [p.size * 512 // MIB for p in table.partitions]
    assert sizes == [550, 32, 16, 1, 64]
    assert all(p.start % 2048 == 0 for p in table.partitions)
    assert table.partitions[0].type == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    assert [p.name for p in table.partitions] == [
        "efi-part", "ephemeral0", "swap1", "config-2", "root"]
    parts = uuids["partitions"]
    assert uuids["root uuid"] == blkid(parts["root"], "UUID") != ""
    assert blkid(parts["root"], "LABEL") == "img-root"
    assert uuids["efi system partition uuid"] == blkid(parts["efi system partition"], "UUID")
    assert blkid(parts["efi system partition"], "TYPE") == "vfat"
    assert uuids["PReP Boot partition uuid"] is None
    assert blkid(parts["swap"], "TYPE") == "swap"
    assert blkid(parts["ephemeral"], "TYPE") == "ext4"
    assert blkid(parts["ephemeral"], "LABEL") == "ephemeral0"
    assert read_device(parts["configdrive"], len(cd)) == cd


def test_bios_msdos_and_gpt(disk: str, rootfs: Path) -> None:
    layout = partition_image.layout_from_image_info(
        {"root_gb": 0, "root_mb": 64, "swap_mb": 8, "deploy_boot_mode": "bios"})
    uuids = partition_image.deploy(disk, layout, copy_into(rootfs))
    table = partition_table.read_partition_table(disk)
    assert table is not None and table.label == "dos"
    assert [p.type for p in table.partitions] == ["82", "83"]
    assert uuids["efi system partition uuid"] is None
    layout = partition_image.layout_from_image_info(
        {"root_mb": 64, "deploy_boot_mode": "bios", "disk_label": "gpt"})
    partition_image.deploy(disk, layout, copy_into(rootfs))
    table = partition_table.read_partition_table(disk)
    assert table is not None and table.label == "gpt"
    assert table.partitions[0].type == "21686148-6449-6E6F-744E-656564454649"
    assert table.partitions[0].size == 2048


def test_preserve_ephemeral_keeps_bytes(disk: str, rootfs: Path) -> None:
    info = {"root_mb": 64, "ephemeral_mb": 32, "deploy_boot_mode": "bios"}
    uuids = partition_image.deploy(
        disk, partition_image.layout_from_image_info(info), copy_into(rootfs))
    eph = uuids["partitions"]["ephemeral"]
    with open(eph, "r+b") as f:
        f.seek(8 * MIB)
        f.write(b"keep me" * 100)
    before = read_device(eph, 32 * MIB)
    again = partition_image.deploy(
        disk, partition_image.layout_from_image_info({**info, "preserve_ephemeral": True}),
        copy_into(rootfs))
    assert read_device(again["partitions"]["ephemeral"], 32 * MIB) == before
    # A changed layout cannot keep it, and says so.
    moved = {**info, "swap_mb": 8, "ephemeral_mb": 16, "preserve_ephemeral": "true"}
    with pytest.raises(errors.DeploymentError, match="preserve_ephemeral"):
        partition_image.deploy(disk, partition_image.layout_from_image_info(moved),
                               copy_into(rootfs))


def test_root_bigger_than_disk_writes_nothing(disk: str, rootfs: Path) -> None:
    layout = partition_image.layout_from_image_info({"root_gb": 1, "deploy_boot_mode": "bios"})
    with pytest.raises(errors.InvalidCommandParamsError, match="do not fit the 768 MiB disk"):
        partition_image.deploy(disk, layout, copy_into(rootfs))
    assert read_device(disk, MIB) == bytes(MIB)
    assert partition_table.read_partition_table(disk) is None


@pytest.mark.parametrize("info, match", [
    ({}, "root_mb or root_gb"),
    ({"root_mb": "x"}, "root_mb must be an integer"),
    ({"root_mb": 64, "disk_label": "bsd"}, "disk_label"),
    ({"root_mb": 64, "ephemeral_mb": 8, "ephemeral_format": "zfs"}, "ephemeral_format"),
])
def test_bad_layout_is_a_clear_error(info: dict, match: str) -> None:
    with pytest.raises(errors.InvalidCommandParamsError, match=match):
        partition_image.layout_from_image_info(info)


def test_prepare_image_partition_qcow2_over_http(server: ImageServer, disk: str, rootfs: Path,
                                                 tmp_path: Path) -> None:
    """As Ironic 39 sends it: a qcow2 partition image through the whole-disk pipeline."""
    qcow = qcow2_copy(rootfs, tmp_path / "root.qcow2")
    ext = standby.StandbyExtension(agent=FakeAgent())
    ext.device_finder = lambda: disk
    ext.cache_dir = str(tmp_path)
    info = {"id": "part-img", "urls": [server.serve("/root.qcow2", qcow)],
            "disk_format": "qcow2", "os_hash_algo": "sha256",
            "os_hash_value": file_digest(qcow), "node_uuid": "n-1", "image_type": "partition",
            "root_gb": 0, "root_mb": 64, "swap_mb": 8, "ephemeral_mb": 0,
            "ephemeral_format": None, "preserve_ephemeral": False,
            "deploy_boot_mode": "bios", "boot_option": "local", "disk_label": "gpt",
            "configdrive": "aGVsbG8gY29uZmlnIGRyaXZl"}
    try:
        result = ext.execute("prepare_image", image_info=info).join().serialize()
        assert result["command_status"] == "SUCCEEDED", result
        uuids = ext.execute("get_partition_uuids").command_result
        root = uuids["partitions"]["root"]
        assert uuids["root uuid"] == blkid(root, "UUID") and blkid(root, "LABEL") == "img-root"
        assert uuids["efi system partition uuid"] is None
        assert read_device(uuids["partitions"]["configdrive"], 18) == b"hello config drive"
        assert f"root_uuid={uuids['root uuid']}" in result["command_result"]["result"]
    finally:
        reset_hardware()
