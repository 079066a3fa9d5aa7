# SPDX-License-Identifier: Apache-2.0
"""The frame handling of the tests' VLAN switch (tests/vlan_switch.py): 802.1Q tags
taken off and put on, and QEMU's ``-netdev stream`` framing."""

from __future__ import annotations

import pytest

from tests.vlan_switch import message, split_messages, tag, untag, vlan_id

DESTINATION = bytes.fromhex("ffffffffffff")
SOURCE = bytes.fromhex("525400beef01")
# an ARP request, untagged: EtherType 0x0806 and a 28-byte payload
ARP = DESTINATION + SOURCE + b"\x08\x06" + bytes(range(28))


def test_tag_inserts_tpid_and_tci_after_the_addresses() -> None:
    tagged = tag(ARP, 100)
    assert tagged == DESTINATION + SOURCE + b"\x81\x00\x00\x64" + ARP[12:]
    assert vlan_id(tagged) == 100
    assert untag(tagged) == ARP


def test_priority_goes_into_the_top_three_bits() -> None:
    tagged = tag(ARP, 4094, priority=5)
    assert tagged[12:16] == b"\x81\x00\xaf\xfe"  # priority 5 (101), DEI 0, ID 0xffe
    assert vlan_id(tagged) == 4094  # the priority and DEI bits are not part of the ID


def test_untagged_and_short_frames_have_no_vlan() -> None:
    assert vlan_id(ARP) is None
    assert vlan_id(DESTINATION + SOURCE + b"\x81\x00") is None  # cut off inside the tag
    assert vlan_id(b"") is None
    with pytest.raises(ValueError, match="no 802.1Q tag"):
        untag(ARP)


def test_a_stacked_tag_keeps_the_inner_one() -> None:
    inner = tag(ARP, 7)
    outer = tag(inner, 100)
    assert vlan_id(outer) == 100
    assert untag(outer) == inner


@pytest.mark.parametrize("vid", [0, 4095, -1])
def test_bad_vlan_id_is_refused(vid: int) -> None:
    with pytest.raises(ValueError, match=f"VLAN ID {vid} is not in 1-4094"):
        tag(ARP, vid)


def test_bad_priority_and_short_frame_are_refused() -> None:
    with pytest.raises(ValueError, match="priority 8"):
        tag(ARP, 1, priority=8)
    with pytest.raises(ValueError, match="frame of 13 bytes is shorter"):
        tag(ARP[:13], 1)


def test_stream_framing_round_trip_with_a_partial_rest() -> None:
    data = message(ARP) + message(b"x") + message(b"") + message(ARP)[:7]
    frames, rest = split_messages(data)
    assert frames == [ARP, b"x", b""]
    assert rest == message(ARP)[:7]
    frames, rest = split_messages(rest + message(ARP)[7:])
    assert (frames, rest) == ([ARP], b"")
    assert split_messages(b"\x00\x00") == ([], b"\x00\x00")
    assert message(b"abc") == b"\x00\x00\x00\x03abc"
