# SPDX-License-Identifier: Apache-2.0
"""The tests' VLAN switch (tests/vlan_switch.py) between two "guest" ports and a tap on
the bridge of a network namespace this test makes, with real frames.

The guest side is this test speaking QEMU's ``-netdev stream`` framing on the
switch's unix sockets: a UDP datagram tagged with VLAN 100 reaches a socket on
the bridge's address; untagged and other-VLAN frames do not; a datagram sent
from the namespace to the guest's address (its MAC as a static neighbour)
arrives tagged on both ports.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from tests.netns import Namespace, ip, network_namespace
from tests.vlan_switch import VlanSwitch, message, open_tap, split_messages, tag, untag, vlan_id

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for ip netns")

BRIDGE_ADDRESS = "192.168.161.1"
GUEST_ADDRESS = "192.168.161.10"
GUEST_MAC = bytes.fromhex("525400beef01")
VLAN = 100


def checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total & 0xFFFF) + (total >> 16)
    return ~(total + (total >> 16)) & 0xFFFF


def udp_frame(destination_mac: bytes, port: int, payload: bytes) -> bytes:
    """An untagged Ethernet frame: UDP from the guest's address to the bridge's."""
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload  # no checksum
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                         socket.inet_aton(GUEST_ADDRESS), socket.inet_aton(BRIDGE_ADDRESS))
    header = header[:10] + checksum(header).to_bytes(2, "big") + header[12:]
    return destination_mac + GUEST_MAC + b"\x08\x00" + header + udp


def frame_to_guest(sock: socket.socket, timeout: float = 5) -> bytes | None:
    """The first frame for the guest's MAC that arrives on a guest port, or None."""
    rest = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return None
        frames, rest = split_messages(rest + data)
        for frame in frames:
            if frame[:6] == GUEST_MAC:
                return frame
    return None


@pytest.fixture
def ns() -> Iterator[Namespace]:
    with network_namespace(f"{BRIDGE_ADDRESS}/24", prefix="lipa-vsw") as namespace:
        yield namespace


def test_switch_carries_one_vlan_between_ports_and_tap(ns: Namespace) -> None:
    with VlanSwitch(ns.enter(lambda: open_tap(ns.tap())), vlan_id=VLAN) as switch:
        ports = []
        for port in (0, 1):
            guest = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            guest.connect(os.fspath(switch.path(port)))
            ports.append(guest)
        bridge_mac = bytes.fromhex(ip("-n", ns.name, "-br", "link", "show", "br0")
                                   .split()[2].replace(":", ""))
        server = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind((BRIDGE_ADDRESS, 0))
        server.settimeout(5)
        number = server.getsockname()[1]

        # guest -> namespace: only the frames on VLAN 100 arrive
        ports[1].sendall(message(udp_frame(bridge_mac, number, b"untagged")))
        ports[1].sendall(message(tag(udp_frame(bridge_mac, number, b"vlan 7"), 7)))
        ports[1].sendall(message(tag(udp_frame(bridge_mac, number, b"vlan 100"), VLAN)))
        data, sender = server.recvfrom(100)
        assert (data, sender[0]) == (b"vlan 100", GUEST_ADDRESS)
        assert (switch.forwarded, switch.dropped) == ([0, 1], [0, 2])

        # namespace -> guest: tagged, on both ports
        ip("-n", ns.name, "neigh", "replace", GUEST_ADDRESS, "lladdr", GUEST_MAC.hex(":"),
           "dev", "br0")
        server.sendto(b"answer", (GUEST_ADDRESS, 40000))
        for guest in ports:
            frame = frame_to_guest(guest)
            assert frame is not None, "no frame to the guest's MAC"
            assert vlan_id(frame) == VLAN
            assert untag(frame).endswith(b"answer")
        server.close()

        # a port whose guest went away no longer gets frames; the other one still does
        ports[0].close()
        server = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.sendto(b"again", (GUEST_ADDRESS, 40000))
        frame = frame_to_guest(ports[1])
        assert frame is not None and untag(frame).endswith(b"again")
        assert list(switch.connections) == [1]
        server.close()
        ports[1].close()
