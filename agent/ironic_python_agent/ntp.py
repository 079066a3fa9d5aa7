# SPDX-License-Identifier: Apache-2.0
"""Clock sync with ``ntp_server`` (``ipa-ntp-server``): an SNTP query, then set the clock.

Upstream runs ``chronyd -q`` or ``ntpdate`` at agent start and before power
off / reboot; this agent asks the server itself (one SNTPv4 request over UDP
port 123, RFC 4330, a few tries) and sets the system clock with
``clock_settime``, so every image can sync without carrying an NTP program.
As upstream, the server must be an IP address or a host name, and failures
are logged and ignored unless ``fail_if_clock_not_set`` is true.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import struct
import time
from collections.abc import Callable

from ironic_python_agent import errors

LOG = logging.getLogger(__name__)

NTP_PORT = 123
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
PACKET = struct.Struct("!BBbbII4sQQQQ")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$")


def validate_server(server: str) -> str:
    """*server* if it is an IP address or a host name; else CommandExecutionError."""
    server = (server or "").strip()
    try:
        ipaddress.ip_address(server)
        return server
    except ValueError:
        pass
    if _HOSTNAME.match(server):
        return server
    raise errors.CommandExecutionError(f"Invalid NTP server address: {server!r}")


def _to_ntp(t: float) -> int:
    return int((t + NTP_EPOCH_OFFSET) * 2**32)


def _from_ntp(v: int) -> float:
    return v / 2**32 - NTP_EPOCH_OFFSET


def request(transmit: float) -> bytes:
    """A client request (LI 0, version 4, mode 3) stamped with *transmit*."""
    return PACKET.pack(0x23, 0, 0, 0, 0, 0, b"\0" * 4, 0, 0, 0, _to_ntp(transmit))


def offset_of(reply: bytes, sent: bytes, t1: float, t4: float) -> float:
    """Clock offset (seconds to add to ours) from a server *reply*; ValueError if unusable."""
    if len(reply) < PACKET.size:
        raise ValueError(f"short NTP reply ({len(reply)} bytes)")
    li_vn_mode, stratum, _poll, _prec, _delay, _disp, _ref, _reft, orig, recv, xmit = \
        PACKET.unpack_from(reply)
    mode = li_vn_mode & 0x7
    if mode not in (4, 5):
        raise ValueError(f"not a server reply (mode {mode})")
    if li_vn_mode >> 6 == 3 or stratum == 0 or stratum > 15:
        raise ValueError(f"server is not synchronised (stratum {stratum})")
    if orig != PACKET.unpack_from(sent)[-1]:
        raise ValueError("reply does not answer our request")
    t2, t3 = _from_ntp(recv), _from_ntp(xmit)
    return ((t2 - t1) + (t3 - t4)) / 2


def query(server: str, port: int = NTP_PORT, timeout: float = 2.0, tries: int = 3) -> float:
    """The offset of our clock to *server*'s, in seconds."""
    last: Exception | None = None
    for _ in range(tries):
        try:
            infos = socket.getaddrinfo(server, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise errors.CommandExecutionError(
                f"Cannot resolve NTP server {server}: {exc}") from None
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            t1 = time.time()
            sent = request(t1)
            try:
                sock.connect(address)  # so an ICMP "port unreachable" fails at once
                sock.send(sent)
                reply = sock.recv(512)
                t4 = time.time()
                return offset_of(reply, sent, t1, t4)
            except (OSError, ValueError) as exc:
                last = exc
    raise errors.CommandExecutionError(f"No usable answer from NTP server {server}: {last}")


def set_clock(offset: float) -> None:
    time.clock_settime(time.CLOCK_REALTIME, time.time() + offset)


def sync_clock(server: str | None, fail: bool = False, port: int = NTP_PORT,
               setter: Callable[[float], None] = set_clock) -> float | None:
    """Step the clock to *server*; the offset applied, or None (no server, or ignored failure)."""
    if not server:
        return None
    try:
        server = validate_server(server)
        offset = query(server, port)
        setter(offset)
    except (errors.CommandExecutionError, OSError) as exc:
        msg = f"Failed to sync the clock with NTP server {server}: {exc}"
        LOG.error(msg)
        if fail:
            raise errors.ClockSyncError(msg) from None
        return None
    LOG.info("Clock set from NTP server %s (offset %+.3f s)", server, offset)
    return offset
