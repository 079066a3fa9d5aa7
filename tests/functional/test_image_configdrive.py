# SPDX-License-Identifier: Apache-2.0
"""Config drive partitions on real loop devices holding GPT and MBR images."""

from __future__ import annotations

import base64
import gzip
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ironic_python_agent import configdrive, errors

from tests.imagetools import MIB, loop_device, make_disk_image, read_device

DISK = 160 * MIB


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("cd")
    (d / "tree/openstack/latest").mkdir(parents=True)
    (d / "tree/openstack/latest/meta_data.json").write_text('{"uuid": "n1"}')
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "config-2", "-r", "-J",
                    "-o", str(d / "cd.iso"), str(d / "tree")], check=True)
    return (d / "cd.iso").read_bytes()


@pytest.fixture(params=["gpt", "dos"])
def imaged_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    image = make_disk_image(tmp_path / "img", 32 * MIB, label=request.param)
    with loop_device(tmp_path / "disk", DISK) as dev:
        with open(dev, "r+b") as f:
            f.write(image.read_bytes())
        yield dev


def blkid(path: str, tag: str) -> str:
    return subprocess.run(["blkid", "-p", "-o", "value", "-s", tag, path],
                          capture_output=True, text=True, check=False).stdout.strip()


def test_configdrive_partition_at_disk_end(imaged_disk: str, iso: bytes) -> None:
    encoded = base64.b64encode(gzip.compress(iso)).decode()
    part = configdrive.write_configdrive(imaged_disk, configdrive.decode(encoded))
    table = configdrive.read_partition_table(imaged_disk)
    assert table is not None and len(table.partitions) == 3
    new = table.partitions[-1]
    assert part == configdrive.partition_path(imaged_disk, new.number)
    end = (new.start + new.size) * 512
    assert DISK - end < 2 * MIB and new.size * 512 >= 62 * MIB
    assert read_device(imaged_disk, len(iso), new.start * 512) == iso
    assert blkid(part, "LABEL") == "config-2" and blkid(part, "TYPE") == "iso9660"
    if table.label == "gpt":
        assert new.name == "config-2"
    # The image's own partitions are untouched.
    assert [p.start for p in table.partitions[:2]] == [2048, 18432]

    # A second deploy reuses the partition rather than adding one.
    again = configdrive.write_configdrive(imaged_disk, iso)
    assert again == part
    table2 = configdrive.read_partition_table(imaged_disk)
    assert table2 is not None and len(table2.partitions) == 3


def test_configdrive_needs_a_partition_table(tmp_path: Path, iso: bytes) -> None:
    with loop_device(tmp_path / "disk", 32 * MIB) as dev, \
            pytest.raises(errors.DeploymentError, match="no partitions"):
        configdrive.write_configdrive(dev, iso)


def test_configdrive_no_room(tmp_path: Path, iso: bytes) -> None:
    image = make_disk_image(tmp_path / "img", 64 * MIB, label="gpt")
    with loop_device(tmp_path / "disk", 80 * MIB) as dev:
        with open(dev, "r+b") as f:
            f.write(image.read_bytes())
        with pytest.raises(errors.DeploymentError, match="no room"):
            configdrive.write_configdrive(dev, iso)


def test_decode_variants(iso: bytes) -> None:
    assert configdrive.decode(base64.b64encode(gzip.compress(iso)).decode()) == iso
    assert configdrive.decode(base64.b64encode(iso).decode()) == iso
    assert configdrive.decode("not base64 at all!") == b"not base64 at all!"
    assert configdrive.decode("http://h/cd", fetch=lambda u: gzip.compress(iso)) == iso
    with pytest.raises(errors.DeploymentError, match="larger"):
        configdrive.decode(base64.b64encode(gzip.compress(bytes(65 * MIB))).decode())


def test_volume_label_and_disk_identifier(iso: bytes, tmp_path: Path) -> None:
    assert configdrive.volume_label(iso[:0x8800]) == "config-2"
    assert configdrive.volume_label(bytes(0x8800)) is None
    image = make_disk_image(tmp_path / "img", 16 * MIB, label="dos")
    assert configdrive.disk_identifier(str(image)) == "0x1a2b3c4d"
