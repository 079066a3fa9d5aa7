# SPDX-License-Identifier: Apache-2.0
"""LLDP: TLV parsing from a frame, and live capture of a frame sent on ``lo``.

The inventory and the ``lldp`` collector on veth pairs: tests/functional/test_lldp.py.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from ironic_python_agent.inspection import lldp

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "lldp"


def sample_frame() -> bytes:
    return bytes.fromhex((SAMPLES / "synthetic-switch.hex").read_text().strip())


def test_parse_tlvs_of_a_switch_frame() -> None:
    tlvs = lldp.parse_tlvs(sample_frame())
    types = [t for t, _ in tlvs]
    assert types == [1, 2, 3, 4, 5, 127, 127, 127, 127, 127, 0]  # End TLV last, as upstream
    assert tlvs[-1] == (0, "")
    assert tlvs[0] == (1, "0488e0f3b5a1c0")  # chassis id, subtype 4 = MAC
    assert bytes.fromhex(tlvs[1][1]) == b"\x05ge-0/0/7"  # port id, subtype 5 = ifname
    assert int(tlvs[2][1], 16) == 120
    assert bytes.fromhex(tlvs[4][1]) == b"tor-sw-01"
    assert all(isinstance(v, str) and v == v.lower() for _, v in tlvs)


def test_vlan_ids_from_8021_vlan_name_tlvs() -> None:
    assert lldp.vlan_ids(lldp.parse_tlvs(sample_frame())) == [100, 200]


def test_truncated_tlv_stops_parsing() -> None:
    frame = sample_frame()
    cut = frame[:14 + 9 + 2 + 3]  # chassis TLV whole, port TLV cut short
    assert lldp.parse_tlvs(cut) == [(1, "0488e0f3b5a1c0")]
    assert lldp.parse_tlvs(frame[:14]) == []


def test_encode_is_the_inverse_of_parse() -> None:
    raw = [(1, b"\x04\x02\x00\x00\x00\x00\x01"), (2, b"\x05eth9"), (3, b"\x00\x78"),
           (8, bytes(range(40)))]
    frame = lldp.encode_frame(bytes.fromhex("020000000001"), raw)
    assert lldp.parse_tlvs(frame) == [(t, v.hex()) for t, v in raw] + [(0, "")]
    # Ethernet padding after the End TLV is not read as more (0, "") TLVs.
    assert lldp.parse_tlvs(frame + bytes(20)) == lldp.parse_tlvs(frame)
    with pytest.raises(ValueError):
        lldp.encode_tlv(128, b"")


def _send_on_lo(frame: bytes, delay: float) -> threading.Thread:
    def send() -> None:
        time.sleep(delay)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind(("lo", 0))
            sock.send(frame)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_capture_on_loopback_gets_the_frame_and_skips_missing_interfaces() -> None:
    # Real AF_PACKET sockets: a frame sent on lo comes back in as received.
    frame = sample_frame()
    sender = _send_on_lo(frame, 0.3)
    try:
        found = lldp.capture(["lo", "nosuchif0"], timeout=10)
    finally:
        sender.join()
    assert found == {"lo": lldp.parse_tlvs(frame)}


def test_capture_times_out_with_nothing_heard() -> None:
    assert lldp.capture(["lo"], timeout=0.2) == {"lo": []}


def test_is_up_reads_the_flags(tmp_path: Path) -> None:
    (tmp_path / "eth0").mkdir()
    (tmp_path / "eth0" / "flags").write_text("0x1003\n")
    (tmp_path / "eth1").mkdir()
    (tmp_path / "eth1" / "flags").write_text("0x1002\n")
    assert lldp.is_up("eth0", tmp_path)
    assert not lldp.is_up("eth1", tmp_path)
    assert not lldp.is_up("eth2", tmp_path)
