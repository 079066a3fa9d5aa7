# SPDX-License-Identifier: Apache-2.0
"""Finding Ironic services through multicast DNS, without a zeroconf library.

Ironic (and ironic-inspector) announce themselves as DNS-SD services
``<service>._openstack._tcp.local.`` (``baremetal``,
``baremetal-introspection``). To find one, the agent sends a single DNS
question for the SRV and TXT records of that instance name to the mDNS group,
from an ordinary UDP port. By RFC 6762 §6.7 responders answer such "legacy
unicast" queries directly to the sender, so no group membership or port 5353
binding is needed. The SRV record gives port and host, A/AAAA records (in the
same answer, or asked for next) the address, and TXT keys ``protocol`` and
``path`` complete the URL. Other TXT keys come back as parameters;
``ipa_<option>`` ones may override agent options (see :func:`config_overrides`).

The packet functions are pure and symmetric so that tests can play the
responder on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ironic_python_agent import errors

LOG = logging.getLogger(__name__)

MDNS_GROUP = ("224.0.0.251", 5353)
SERVICE_DOMAIN = "_openstack._tcp.local."

TYPE_A = 1
TYPE_PTR = 12
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_SRV = 33
CLASS_IN = 1
UNICAST_RESPONSE = 0x8000  # top bit of a question's class ("QU")
CACHE_FLUSH = 0x8000  # top bit of a record's class
FLAG_RESPONSE = 0x8400  # QR + AA


@dataclass(frozen=True)
class Record:
    name: str
    rtype: int
    ttl: int
    data: bytes
    # Decoded forms, filled for the types we use.
    address: str | None = None
    target: str | None = None
    port: int | None = None
    texts: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Message:
    ident: int
    flags: int
    questions: tuple[tuple[str, int], ...]
    records: tuple[Record, ...]


# -- encoding -----------------------------------------------------------------

def encode_name(name: str) -> bytes:
    """A domain name as DNS labels (no compression)."""
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode()
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label {label!r} in {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def encode_query(ident: int, questions: Iterable[tuple[str, int]], *,
                 unicast: bool = True) -> bytes:
    qs = list(questions)
    qclass = CLASS_IN | (UNICAST_RESPONSE if unicast else 0)
    body = b"".join(encode_name(n) + struct.pack("!HH", t, qclass) for n, t in qs)
    return struct.pack("!HHHHHH", ident, 0, len(qs), 0, 0, 0) + body


def encode_txt(properties: dict[str, str]) -> bytes:
    out = b""
    for key, value in properties.items():
        item = f"{key}={value}".encode()
        out += bytes([len(item)]) + item
    return out or b"\0"


def encode_record(name: str, rtype: int, rdata: bytes, ttl: int = 120) -> bytes:
    return encode_name(name) + struct.pack("!HHIH", rtype, CLASS_IN | CACHE_FLUSH, ttl,
                                           len(rdata)) + rdata


def encode_srv(target: str, port: int, priority: int = 0, weight: int = 0) -> bytes:
    return struct.pack("!HHH", priority, weight, port) + encode_name(target)


def encode_address(address: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(address)
    return (TYPE_A if ip.version == 4 else TYPE_AAAA), ip.packed


def encode_response(ident: int, questions: Sequence[tuple[str, int]],
                    answers: Sequence[bytes], additional: Sequence[bytes] = ()) -> bytes:
    """A response packet; *answers*/*additional* come from :func:`encode_record`."""
    head = struct.pack("!HHHHHH", ident, FLAG_RESPONSE, len(questions), len(answers), 0,
                       len(additional))
    qs = b"".join(encode_name(n) + struct.pack("!HH", t, CLASS_IN) for n, t in questions)
    return head + qs + b"".join(answers) + b"".join(additional)


# -- decoding -----------------------------------------------------------------

def _read_name(packet: bytes, offset: int) -> tuple[str, int]:
    """The name at *offset* (following compression pointers) and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    seen = 0
    while True:
        if offset >= len(packet):
            raise ValueError("DNS name runs past the end of the packet")
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(packet):
                raise ValueError("truncated DNS compression pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | packet[offset + 1]
            seen += 1
            if seen > 64:
                raise ValueError("DNS compression loop")
            continue
        offset += 1
        if length == 0:
            break
        labels.append(packet[offset:offset + length].decode(errors="replace"))
        offset += length
    return ".".join(labels) + ".", (end if end is not None else offset)


def _decode_rdata(packet: bytes, rtype: int, start: int, length: int) -> dict[str, object]:
    data = packet[start:start + length]
    if rtype == TYPE_A and length == 4:
        return {"address": str(ipaddress.IPv4Address(data))}
    if rtype == TYPE_AAAA and length == 16:
        return {"address": str(ipaddress.IPv6Address(data))}
    if rtype == TYPE_SRV and length >= 7:
        _prio, _weight, port = struct.unpack_from("!HHH", packet, start)
        target, _ = _read_name(packet, start + 6)
        return {"port": port, "target": target}
    if rtype == TYPE_PTR:
        target, _ = _read_name(packet, start)
        return {"target": target}
    if rtype == TYPE_TXT:
        texts, pos = [], 0
        while pos < len(data):
            size = data[pos]
            texts.append(data[pos + 1:pos + 1 + size])
            pos += 1 + size
        return {"texts": tuple(t for t in texts if t)}
    return {}


def decode_message(packet: bytes) -> Message:
    """Parse a DNS message; raises ``ValueError`` on malformed input."""
    if len(packet) < 12:
        raise ValueError("DNS message shorter than its header")
    ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", packet)
    offset = 12
    questions = []
    for _ in range(qd):
        name, offset = _read_name(packet, offset)
        qtype, _qclass = struct.unpack_from("!HH", packet, offset)
        offset += 4
        questions.append((name, qtype))
    records = []
    for _ in range(an + ns + ar):
        name, offset = _read_name(packet, offset)
        if offset + 10 > len(packet):
            raise ValueError("truncated DNS record header")
        rtype, _rclass, ttl, length = struct.unpack_from("!HHIH", packet, offset)
        offset += 10
        if offset + length > len(packet):
            raise ValueError("truncated DNS record data")
        decoded = _decode_rdata(packet, rtype, offset, length)
        records.append(Record(name=name, rtype=rtype, ttl=ttl,
                              data=packet[offset:offset + length], **decoded))  # type: ignore[arg-type]
        offset += length
    return Message(ident, flags, tuple(questions), tuple(records))


def parse_txt(texts: Iterable[bytes]) -> dict[str, str]:
    props: dict[str, str] = {}
    for raw in texts:
        key, _, value = raw.decode(errors="replace").partition("=")
        if key and key not in props:  # RFC 6763 §6.4: the first occurrence wins
            props[key] = value
    return props


# -- building the endpoint ----------------------------------------------------

def _choose_address(addresses: Sequence[str]) -> str | None:
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if not ip.is_loopback and not ip.is_link_local:
            return address
    return addresses[0] if addresses else None


def endpoint_from_records(service: str, records: Iterable[Record]
                          ) -> tuple[str, dict[str, str]] | None:
    """``(url, txt params)`` for *service* from the records seen, or None if incomplete."""
    instance = f"{service}.{SERVICE_DOMAIN}".lower()
    records = list(records)
    srv = next((r for r in records if r.rtype == TYPE_SRV and r.name.lower() == instance), None)
    if srv is None or srv.target is None or srv.port is None:
        return None
    props: dict[str, str] = {}
    for r in records:
        if r.rtype == TYPE_TXT and r.name.lower() == instance:
            props = parse_txt(r.texts)
            break
    addresses = [r.address for r in records
                 if r.rtype in (TYPE_A, TYPE_AAAA) and r.address
                 and r.name.lower() == srv.target.lower()]
    host = _choose_address(addresses)
    if host is None:
        return None
    if ":" in host:
        host = f"[{host}]"
    protocol = props.pop("protocol", None) or ("http" if srv.port == 80 else "https")
    path = props.pop("path", "")
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{protocol}://{host}:{srv.port}{path}".rstrip("/"), props


def config_overrides(params: dict[str, str], allowed: Iterable[str]) -> dict[str, str]:
    """Agent option overrides from ``ipa_<option>`` TXT keys, limited to *allowed* names."""
    permitted = set(allowed)
    found = {}
    for key, value in params.items():
        if not key.startswith("ipa_"):
            continue
        option = key[len("ipa_"):]
        if option in permitted:
            found[option] = value
        else:
            LOG.warning("mDNS asks to override %s, which [mdns]allowed_overrides does not permit",
                        option)
    return found


# -- the network part ---------------------------------------------------------

def _ask(sock: socket.socket, server: tuple[str, int], questions: list[tuple[str, int]],
         timeout: float, done: Callable[[list[Record]], bool]) -> list[Record]:
    """Send one query; collect answers until *done* says so or *timeout* passes."""
    ident = random.randrange(1, 0xFFFF)
    sock.sendto(encode_query(ident, questions), server)
    seen: list[Record] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            packet, _ = sock.recvfrom(9000)
        except TimeoutError:
            break
        try:
            message = decode_message(packet)
        except (ValueError, struct.error) as exc:
            LOG.debug("Ignoring malformed mDNS packet: %s", exc)
            continue
        if not message.flags & 0x8000:
            continue  # a query (ours looped back, or someone else's)
        seen.extend(message.records)
        if done(seen):
            break
    return seen


def _srv(records: Iterable[Record], instance: str) -> Record | None:
    return next((r for r in records if r.rtype == TYPE_SRV and r.target
                 and r.name.lower() == instance.lower()), None)


def _has_address_of(host: str) -> Callable[[list[Record]], bool]:
    return lambda seen: any(r.rtype in (TYPE_A, TYPE_AAAA) and r.name.lower() == host.lower()
                            for r in seen)


def get_endpoint(service: str, *, attempts: int = 3, timeout: float = 2.0,
                 server: tuple[str, int] = MDNS_GROUP) -> tuple[str, dict[str, str]]:
    """URL and TXT parameters of the ``<service>._openstack._tcp.local.`` service.

    Tries *attempts* times, waiting *timeout* seconds for answers each time
    and backing off from 0.1 s in between. *server* is the mDNS group unless
    a test points it at a responder on 127.0.0.1.

    :raises ServiceLookupFailure: when no complete answer arrived.
    """
    instance = f"{service}.{SERVICE_DOMAIN}"
    delay = 0.1
    last_error = "no answer"
    for attempt in range(1, attempts + 1):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
                sock.bind(("", 0))
                records = _ask(sock, server, [(instance, TYPE_SRV), (instance, TYPE_TXT)],
                               timeout, lambda seen: _srv(seen, instance) is not None)
                found = endpoint_from_records(service, records)
                srv = _srv(records, instance)
                if found is None and srv is not None and srv.target is not None:
                    # The responder named the host but left its address out.
                    records += _ask(sock, server, [(srv.target, TYPE_A), (srv.target, TYPE_AAAA)],
                                    timeout, _has_address_of(srv.target))
                    found = endpoint_from_records(service, records)
        except OSError as exc:
            found, last_error = None, str(exc)
        if found is not None:
            LOG.info("Found %s through mDNS at %s", service, found[0])
            return found
        LOG.debug("mDNS lookup of %s, attempt %d of %d: %s", instance, attempt, attempts,
                  last_error)
        if attempt < attempts:
            time.sleep(delay)
            delay *= 2
    raise errors.ServiceLookupFailure(
        f"no mDNS answer for {instance} after {attempts} attempts ({last_error})")
