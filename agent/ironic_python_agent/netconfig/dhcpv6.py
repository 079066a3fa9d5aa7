# SPDX-License-Identifier: Apache-2.0
"""DHCPv6 messages (RFC 8415): building and parsing, no I/O.

Only what a deploy ramdisk's client needs: one IA_NA with its addresses
(Solicit, Advertise, Request, Renew, Rebind, Reply), Information-Request for
stateless DHCPv6, the DNS servers (option 23) and search list (option 24).
The client that sends them is :mod:`.dhcpv6_client`.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

CLIENT_PORT = 546
SERVER_PORT = 547
ALL_SERVERS = "ff02::1:2"  # All_DHCP_Relay_Agents_and_Servers

SOLICIT, ADVERTISE, REQUEST, RENEW, REBIND, REPLY, INFORMATION_REQUEST = 1, 2, 3, 5, 6, 7, 11
MESSAGE_NAMES = {SOLICIT: "Solicit", ADVERTISE: "Advertise", REQUEST: "Request",
                 RENEW: "Renew", REBIND: "Rebind", REPLY: "Reply",
                 INFORMATION_REQUEST: "Information-Request"}

OPT_CLIENTID, OPT_SERVERID, OPT_IA_NA, OPT_IAADDR, OPT_ORO = 1, 2, 3, 5, 6
OPT_PREFERENCE, OPT_ELAPSED_TIME, OPT_STATUS_CODE = 7, 8, 13
OPT_DNS_SERVERS, OPT_DOMAIN_LIST, OPT_INFORMATION_REFRESH_TIME = 23, 24, 32

SUCCESS, UNSPEC_FAIL, NO_ADDRS_AVAIL, NO_BINDING, NOT_ON_LINK, USE_MULTICAST = range(6)
STATUS_NAMES = {SUCCESS: "Success", UNSPEC_FAIL: "UnspecFail", NO_ADDRS_AVAIL: "NoAddrsAvail",
                NO_BINDING: "NoBinding", NOT_ON_LINK: "NotOnLink",
                USE_MULTICAST: "UseMulticast"}

INFINITY = 0xFFFFFFFF
WANTED_OPTIONS = (OPT_DNS_SERVERS, OPT_DOMAIN_LIST)
WANTED_STATELESS = (OPT_DNS_SERVERS, OPT_DOMAIN_LIST, OPT_INFORMATION_REFRESH_TIME)


class MessageError(ValueError):
    """A datagram that is no well-formed DHCPv6 message (the text says where)."""


@dataclass(frozen=True)
class IaAddress:
    address: ipaddress.IPv6Address
    preferred: int
    valid: int


@dataclass(frozen=True)
class IaNa:
    iaid: int
    t1: int
    t2: int
    addresses: tuple[IaAddress, ...] = ()
    status: int = SUCCESS
    status_text: str = ""


@dataclass
class Message:
    kind: int
    xid: int
    client_id: bytes | None = None
    server_id: bytes | None = None
    preference: int = 0
    status: int = SUCCESS
    status_text: str = ""
    ia_na: list[IaNa] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    refresh: int | None = None

    def ia(self, iaid: int) -> IaNa | None:
        return next((ia for ia in self.ia_na if ia.iaid == iaid), None)


def duid_ll(mac: str) -> bytes:
    """DUID-LL (type 3, Ethernet) of a MAC ``aa:bb:cc:dd:ee:ff``: stable across boots."""
    return struct.pack("!HH", 3, 1) + bytes.fromhex(mac.replace(":", ""))


def iaid_for(mac: str) -> int:
    """The IAID: the last four bytes of the MAC, unique per NIC of the machine."""
    return int.from_bytes(bytes.fromhex(mac.replace(":", ""))[-4:], "big")


def option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def ia_na_option(iaid: int, addresses: tuple[IaAddress, ...] = ()) -> bytes:
    """An IA_NA with T1/T2 0 (the server chooses) and the addresses held (to renew)."""
    inner = b"".join(option(OPT_IAADDR, a.address.packed + struct.pack("!II", 0, 0))
                     for a in addresses)
    return option(OPT_IA_NA, struct.pack("!III", iaid, 0, 0) + inner)


def build(kind: int, xid: int, client_id: bytes, *, elapsed: float = 0.0,
          server_id: bytes | None = None, ia_na: bytes | None = None,
          wanted: tuple[int, ...] = WANTED_OPTIONS) -> bytes:
    """A client message; *elapsed* (s since the exchange began) goes in centiseconds."""
    if not 0 <= xid < 1 << 24:
        raise ValueError(f"transaction id {xid} is not 24 bits")
    out = [struct.pack("!I", kind << 24 | xid), option(OPT_CLIENTID, client_id)]
    if server_id is not None:
        out.append(option(OPT_SERVERID, server_id))
    out.append(option(OPT_ELAPSED_TIME, struct.pack("!H", min(int(elapsed * 100), 0xFFFF))))
    if wanted:
        out.append(option(OPT_ORO, struct.pack(f"!{len(wanted)}H", *wanted)))
    if ia_na is not None:
        out.append(ia_na)
    return b"".join(out)


def options(data: bytes, where: str) -> list[tuple[int, bytes]]:
    """``[(code, data)]`` of a run of options; a truncated one raises :class:`MessageError`."""
    out = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise MessageError(f"{where}: truncated option header at byte {pos}")
        code, length = struct.unpack_from("!HH", data, pos)
        if pos + 4 + length > len(data):
            raise MessageError(f"{where}: option {code} claims {length} bytes, "
                               f"{len(data) - pos - 4} left")
        out.append((code, data[pos + 4:pos + 4 + length]))
        pos += 4 + length
    return out


def status_of(data: bytes) -> tuple[int, str]:
    if len(data) < 2:
        raise MessageError("status code: shorter than 2 bytes")
    return struct.unpack_from("!H", data)[0], data[2:].decode("utf-8", errors="replace")


def domain_names(data: bytes) -> list[str]:
    """The names of a DNS search list (RFC 1035 wire format, no compression)."""
    names, labels, pos = [], [], 0
    while pos < len(data):
        length = data[pos]
        pos += 1
        if length == 0:
            if labels:
                names.append(".".join(labels))
            labels = []
            continue
        if length > 63 or pos + length > len(data):
            raise MessageError(f"domain list: bad label length {length} at byte {pos - 1}")
        labels.append(data[pos:pos + length].decode("ascii", errors="replace"))
        pos += length
    if labels:
        raise MessageError("domain list: a name does not end with the root label")
    return names


def encode_domain_names(names: list[str]) -> bytes:
    return b"".join(b"".join(bytes([len(p)]) + p.encode("ascii")
                             for p in name.strip(".").split(".") if p) + b"\0"
                    for name in names)


def _ia_na(data: bytes) -> IaNa:
    if len(data) < 12:
        raise MessageError("IA_NA: shorter than 12 bytes")
    iaid, t1, t2 = struct.unpack_from("!III", data)
    addresses = []
    status, text = SUCCESS, ""
    for code, value in options(data[12:], "IA_NA"):
        if code == OPT_IAADDR:
            if len(value) < 24:
                raise MessageError("IAADDR: shorter than 24 bytes")
            preferred, valid = struct.unpack_from("!II", value, 16)
            addr_status = SUCCESS
            for sub, subvalue in options(value[24:], "IAADDR"):
                if sub == OPT_STATUS_CODE:
                    addr_status = status_of(subvalue)[0]
            if addr_status == SUCCESS and valid and preferred <= valid:  # §18.2.10.1
                addresses.append(IaAddress(ipaddress.IPv6Address(value[:16]), preferred, valid))
        elif code == OPT_STATUS_CODE:
            status, text = status_of(value)
    return IaNa(iaid, t1, t2, tuple(addresses), status, text)


def parse(data: bytes) -> Message:
    """A server's message (Advertise, Reply...); :class:`MessageError` when malformed."""
    if len(data) < 4:
        raise MessageError(f"{len(data)} bytes: shorter than a DHCPv6 header")
    header = struct.unpack_from("!I", data)[0]
    msg = Message(kind=header >> 24, xid=header & 0xFFFFFF)
    for code, value in options(data[4:], MESSAGE_NAMES.get(msg.kind, f"message {msg.kind}")):
        if code == OPT_CLIENTID:
            msg.client_id = value
        elif code == OPT_SERVERID:
            msg.server_id = value
        elif code == OPT_PREFERENCE and value:
            msg.preference = value[0]
        elif code == OPT_STATUS_CODE:
            msg.status, msg.status_text = status_of(value)
        elif code == OPT_IA_NA:
            msg.ia_na.append(_ia_na(value))
        elif code == OPT_DNS_SERVERS:
            if len(value) % 16:
                raise MessageError(f"DNS servers: {len(value)} bytes, not a multiple of 16")
            msg.dns += [str(ipaddress.IPv6Address(value[i:i + 16]))
                        for i in range(0, len(value), 16)]
        elif code == OPT_DOMAIN_LIST:
            msg.domains += domain_names(value)
        elif code == OPT_INFORMATION_REFRESH_TIME and len(value) == 4:
            msg.refresh = struct.unpack("!I", value)[0]
    return msg


def answers(msg: Message, xid: int, client_id: bytes, kinds: tuple[int, ...]) -> bool:
    """Whether *msg* is a server's answer to our transaction *xid* (§16)."""
    return (msg.kind in kinds and msg.xid == xid and msg.server_id is not None
            and msg.client_id == client_id)


def usable_advertise(msg: Message, iaid: int) -> bool:
    """An Advertise offering us at least one address (§18.2.9 ignores the others)."""
    ia = msg.ia(iaid)
    return (msg.status == SUCCESS and ia is not None and ia.status == SUCCESS
            and bool(ia.addresses))


def best_advertise(received: list[Message]) -> Message | None:
    """The highest preference wins; among equals the first one received."""
    best = None
    for msg in received:
        if best is None or msg.preference > best.preference:
            best = msg
    return best


def timers(ia: IaNa) -> tuple[float, float]:
    """T1 and T2 in seconds, as §21.4 has the client choose them when the server sent 0."""
    shortest = min((a.preferred for a in ia.addresses), default=0)
    if shortest == INFINITY:
        return float(INFINITY), float(INFINITY)
    t1 = ia.t1 if 0 < ia.t1 else shortest * 0.5
    t2 = ia.t2 if 0 < ia.t2 and ia.t2 >= t1 else max(t1, shortest * 0.8)
    return float(t1), float(t2)


def next_timeout(previous: float | None, irt: float, mrt: float, rand: float) -> float:
    """The next retransmission timeout of §15: *irt* first, then doubled, capped at
    *mrt* (0: no cap); *rand* is the random factor in [-0.1, 0.1]."""
    if previous is None:
        return irt + rand * irt
    rt = 2 * previous + rand * previous
    return mrt + rand * mrt if mrt and rt > mrt else rt


def lifetime(seconds: int) -> str:
    """An ``ip addr`` lifetime: ``forever`` for infinity."""
    return "forever" if seconds == INFINITY else str(seconds)


def resolv_conf(existing: str, nameservers: list[str], domains: list[str]) -> str:
    """/etc/resolv.conf with *nameservers* and *domains* added to what it already says."""
    lines = existing.splitlines()
    have = {ln.split()[1] for ln in lines if ln.startswith("nameserver ") and len(ln.split()) > 1}
    search: list[str] = []
    kept = []
    for ln in lines:
        if ln.startswith(("search ", "domain ")):
            search += ln.split()[1:]
        elif ln.strip():
            kept.append(ln)
    search += [d for d in domains if d not in search]
    kept += [f"nameserver {n}" for n in dict.fromkeys(nameservers) if n not in have]
    return "".join(f"{ln}\n" for ln in ([f"search {' '.join(search)}"] if search else []) + kept)
