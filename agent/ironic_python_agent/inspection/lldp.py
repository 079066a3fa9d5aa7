# SPDX-License-Identifier: Apache-2.0
"""LLDP: raw TLVs captured from every interface at once.

The one LLDP parser of the agent: the inventory (``interfaces[].lldp`` with
``ipa-collect-lldp=1``) and the ``lldp`` inspection collector (``lldp_raw``)
both come through :func:`collect`.

Capture opens one ``AF_PACKET`` socket per interface for ethertype 0x88cc,
asks the kernel for promiscuous reception on it (a socket membership, so it
ends when the socket closes and leaves the interface flags alone), and waits
with one ``select`` over all sockets. As upstream, each wait lasts up to the
timeout and restarts after every frame; the first wait in which no remaining
interface hears anything ends the capture, and those interfaces get an empty
list. The TLVs go to Ironic as ``[type, "<hex>"]`` pairs, the End TLV
included as upstream sends it; Ironic's LLDP hooks decode them.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ironic_python_agent.run import run

LOG = logging.getLogger(__name__)

ETH_P_LLDP = 0x88CC
ETH_HEADER_LEN = 14
LLDP_MULTICAST = bytes.fromhex("0180c200000e")
TLV_END = 0
TLV_ORG_SPECIFIC = 127
OUI_IEEE_8021 = bytes.fromhex("0080c2")
SUBTYPE_VLAN_NAME = 3

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4
IFF_UP = 0x1
MAX_FRAME = 1600

Tlv = tuple[int, str]


def parse_tlvs(frame: bytes) -> list[Tlv]:
    """TLVs of one Ethernet frame carrying LLDP, as ``(type, hex value)`` pairs.

    Each TLV starts with a 16-bit header: 7 bits of type, 9 bits of length.
    The End TLV is the last pair (as upstream reports it); what follows it is
    Ethernet padding and is not read. Parsing also stops at the first TLV that
    runs past the end of the frame.
    """
    tlvs: list[Tlv] = []
    offset = ETH_HEADER_LEN
    while offset + 2 <= len(frame):
        (header,) = struct.unpack_from("!H", frame, offset)
        tlv_type, length = header >> 9, header & 0x1FF
        offset += 2
        if offset + length > len(frame):
            LOG.warning("Truncated LLDP TLV of type %d (length %d, %d bytes left)",
                        tlv_type, length, len(frame) - offset)
            break
        tlvs.append((tlv_type, frame[offset:offset + length].hex()))
        offset += length
        if tlv_type == TLV_END:
            break
    return tlvs


def encode_tlv(tlv_type: int, value: bytes) -> bytes:
    """One TLV, the inverse of :func:`parse_tlvs` for a single entry."""
    if not 0 <= tlv_type < 128 or len(value) > 0x1FF:
        raise ValueError(f"LLDP TLV type {tlv_type} / length {len(value)} out of range")
    return struct.pack("!H", (tlv_type << 9) | len(value)) + value


def encode_frame(source_mac: bytes, tlvs: Iterable[tuple[int, bytes]]) -> bytes:
    """An LLDP Ethernet frame (End TLV appended) from raw ``(type, value)`` pairs."""
    body = b"".join(encode_tlv(t, v) for t, v in tlvs) + encode_tlv(TLV_END, b"")
    return LLDP_MULTICAST + source_mac + struct.pack("!H", ETH_P_LLDP) + body


def vlan_ids(tlvs: Iterable[Tlv]) -> list[int]:
    """VLAN IDs named by IEEE 802.1 VLAN-name TLVs (OUI 00-80-c2, subtype 3)."""
    found: list[int] = []
    for tlv_type, value_hex in tlvs:
        value = bytes.fromhex(value_hex)
        if (tlv_type == TLV_ORG_SPECIFIC and len(value) >= 6
                and value[:3] == OUI_IEEE_8021 and value[3] == SUBTYPE_VLAN_NAME):
            vid = struct.unpack_from("!H", value, 4)[0] & 0x0FFF
            if vid not in found:
                found.append(vid)
    return found


def _open(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_LLDP))
    try:
        sock.bind((ifname, ETH_P_LLDP))
        index = socket.if_nametoindex(ifname)
        # struct packet_mreq: int ifindex, u16 type, u16 alen, u8 address[8]
        mreq = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def capture(interfaces: Sequence[str], timeout: float) -> dict[str, list[Tlv]]:
    """One LLDP frame from each of *interfaces*, waiting up to *timeout* s at a time.

    Every wait covers all interfaces still silent and lasts up to *timeout*
    seconds; a frame restarts it, a wait without any frame ends the capture
    (upstream's semantics). Interfaces that stayed silent map to ``[]``;
    interfaces that could not be opened are left out (and logged).
    """
    sockets: dict[socket.socket, str] = {}
    for name in interfaces:
        try:
            sockets[_open(name)] = name
        except OSError as exc:
            LOG.warning("Cannot listen for LLDP on %s: %s", name, exc)
    found: dict[str, list[Tlv]] = {}
    try:
        while sockets:
            LOG.info("Waiting up to %.1f s for LLDP on %s", timeout,
                     ", ".join(sorted(sockets.values())))
            readable, _, _ = select.select(list(sockets), [], [], timeout)
            if not readable:
                break
            for sock in readable:
                try:
                    frame, address = sock.recvfrom(MAX_FRAME)
                except BlockingIOError:
                    continue
                # Frames this host sends itself show up too; only received ones count.
                if address[2] == PACKET_OUTGOING:
                    continue
                name = sockets.pop(sock)
                sock.close()
                found[name] = parse_tlvs(frame)
    finally:
        for sock, name in sockets.items():
            LOG.warning("No LLDP frame on %s within %.1f s", name, timeout)
            found[name] = []
            sock.close()
    return found


def collect(interfaces: Sequence[str], timeout: float,
            sys_class_net: Path = Path("/sys/class/net")) -> dict[str, list[list[Any]]]:
    """``{ifname: [[type, "<hex>"], ...]}`` for *interfaces* (``lo`` never listened on).

    Interfaces that are down are brought up first, since a down interface
    hears nothing. This is what the inventory's ``lldp`` fields and the
    ``lldp`` collector's ``lldp_raw`` hold.
    """
    names = [n for n in interfaces if n != "lo"]
    if not names:
        return {}
    bring_up(names, sys_class_net)
    return {name: [list(t) for t in tlvs] for name, tlvs in capture(names, timeout).items()}


def is_up(ifname: str, sys_class_net: Path = Path("/sys/class/net")) -> bool:
    """Whether the interface is administratively up (IFF_UP in its flags)."""
    try:
        return bool(int((sys_class_net / ifname / "flags").read_text().strip(), 16) & IFF_UP)
    except (OSError, ValueError):
        return False


def bring_up(interfaces: Iterable[str], sys_class_net: Path = Path("/sys/class/net")) -> None:
    """Set interfaces up so they can receive LLDP; failures are logged, not raised."""
    for name in interfaces:
        if is_up(name, sys_class_net):
            continue
        LOG.info("Bringing %s up to listen for LLDP", name)
        try:
            run(["ip", "link", "set", name, "up"])
        except Exception as exc:  # noqa: BLE001 - one bad interface must not stop the rest
            LOG.warning("Cannot bring %s up: %s", name, exc)
