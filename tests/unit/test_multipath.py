# SPDX-License-Identifier: Apache-2.0
"""Paths to one LUN recognised by WWN and serial when no multipath map exists."""

from __future__ import annotations

from ironic_python_agent import multipath
from ironic_python_agent.hardware.devices import BlockDevice


def disk(name: str, wwn: str | None, serial: str | None = "S1", kind: str = "disk"
         ) -> BlockDevice:
    return BlockDevice(name, "QEMU HARDDISK", 5 << 30, True, wwn=wwn, serial=serial, kind=kind)


def test_same_wwn_and_serial_is_a_second_path() -> None:
    devices = [disk("/dev/sda", "0x5000c500a1b2c3d4"), disk("/dev/sdb", "0x5000c500a1b2c3d4"),
               disk("/dev/sdc", "0x5000c500a1b2c3d4", serial="S2"),
               disk("/dev/sdd", None), disk("/dev/sde", None),
               disk("/dev/dm-0", "0x5000c500a1b2c3d4", kind="mpath")]
    assert multipath.duplicate_paths(devices) == {"/dev/sdb": "/dev/sda"}


def test_no_serial_on_both_still_pairs_by_wwn() -> None:
    devices = [disk("/dev/sda", "0x5", serial=None), disk("/dev/sdb", "0x5", serial=None)]
    assert multipath.duplicate_paths(devices) == {"/dev/sdb": "/dev/sda"}


def test_without_tools_enable_is_a_no_op(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(multipath.run, "which", lambda name: None)
    conf = tmp_path / "multipath.conf"
    assert multipath.enable(str(conf)) is False
    assert not conf.exists()
