# SPDX-License-Identifier: Apache-2.0
"""A DHCPv6 client for one link, for images without one (tinyipa).

Stateful: Solicit, Request, then Renew at T1 and Rebind at T2 for as long as
it runs; the address goes on the link as ``/128`` with the lease's lifetimes
(the on-link prefix and the default route come from router advertisements, as
with every DHCPv6 client). ``--stateless``: Information-Request only (the
address comes from SLAAC). Both add the DNS servers and search list to
/etc/resolv.conf. ``lean-ipa-network`` starts it with ``--background``.

The messages are :mod:`.dhcpv6`'s pure functions; this module is the socket,
the timers and the ``ip`` commands.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ironic_python_agent.netconfig import dhcpv6
from ironic_python_agent.netconfig.dhcpv6 import IaNa, Message
from ironic_python_agent.run import CommandError, run

LOG = logging.getLogger("lean-ipa-dhcpv6")
MIN_REFRESH = 600  # §21.23: INF_MIN_REFRESH_TIME
DEFAULT_REFRESH = 86400


def say(text: str) -> None:
    print(f"lean-ipa-dhcpv6: {text}", flush=True)


def open_socket(link: str) -> socket.socket:
    """UDP port 546 on *link* only, multicasting out of it."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, link.encode())
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex(link))
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
    sock.bind(("::", dhcpv6.CLIENT_PORT))
    return sock


class Client:
    """One link's DHCPv6 client: its identity, its socket, what it holds."""

    def __init__(self, link: str, mac: str, sock: socket.socket, *,
                 runner: Callable[..., Any] = run, resolv_conf: Path | None = None) -> None:
        self.link = link
        self.ifindex = socket.if_nametoindex(link)
        self.duid = dhcpv6.duid_ll(mac)
        self.iaid = dhcpv6.iaid_for(mac)
        self.sock = sock
        self.runner = runner
        self.resolv = resolv_conf
        self.held: tuple[dhcpv6.IaAddress, ...] = ()
        self.send_failed = False

    # -- one exchange (§15) ------------------------------------------------------------

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, (dhcpv6.ALL_SERVERS, dhcpv6.SERVER_PORT, 0, self.ifindex))
            self.send_failed = False
        except OSError as exc:  # no link-local address yet (still tentative), link down
            if not self.send_failed:
                say(f"{self.link}: cannot send yet ({exc.strerror or exc}); retrying")
            self.send_failed = True

    def receive(self, timeout: float) -> Message | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, peer = self.sock.recvfrom(4096)
        except (TimeoutError, socket.timeout):
            return None
        try:
            return dhcpv6.parse(data)
        except dhcpv6.MessageError as exc:
            LOG.warning("%s: ignored a message from %s: %s", self.link, peer[0], exc)
            return None

    def exchange(self, make: Callable[[int, float], bytes], kinds: tuple[int, ...], *,
                 irt: float, mrt: float, mrc: int = 0, mrd: float = 0.0,
                 accept: Callable[[Message], bool] = lambda m: True,
                 collect: bool = False) -> Message | None:
        """Send ``make(xid, elapsed)`` until an answer *accept* takes, or *mrc* tries or
        *mrd* seconds pass (None then). *collect*: the best answer of a timeout (Solicit)."""
        xid = random.getrandbits(24)
        start = time.monotonic()
        rt: float | None = None
        count = 0
        while True:
            now = time.monotonic()
            self.send(make(xid, now - start))
            count += 1
            rt = dhcpv6.next_timeout(rt, irt, mrt, random.uniform(-0.1, 0.1))
            deadline = now + rt if not mrd else min(now + rt, start + mrd)
            got = []
            while (left := deadline - time.monotonic()) > 0:
                msg = self.receive(left)
                if msg is None or not dhcpv6.answers(msg, xid, self.duid, kinds) \
                        or not accept(msg):
                    continue
                if not collect or msg.preference == 255:
                    return msg
                got.append(msg)
            if got:
                return dhcpv6.best_advertise(got)
            if (mrc and count >= mrc) or (mrd and time.monotonic() - start >= mrd):
                return None

    # -- the messages -------------------------------------------------------------------

    def solicit(self) -> Message:
        msg = self.exchange(
            lambda xid, el: dhcpv6.build(dhcpv6.SOLICIT, xid, self.duid, elapsed=el,
                                         ia_na=dhcpv6.ia_na_option(self.iaid)),
            (dhcpv6.ADVERTISE,), irt=1, mrt=120, collect=True,
            accept=lambda m: dhcpv6.usable_advertise(m, self.iaid))
        assert msg is not None  # no mrc/mrd: it tries until a server answers
        return msg

    def request(self, kind: int, server_id: bytes | None, mrc: int = 0, mrd: float = 0.0,
                irt: float = 1, mrt: float = 30) -> Message | None:
        """Request (from the Advertise's server), Renew (the same) or Rebind (any server)."""
        return self.exchange(
            lambda xid, el: dhcpv6.build(kind, xid, self.duid, elapsed=el, server_id=server_id,
                                         ia_na=dhcpv6.ia_na_option(self.iaid, self.held)),
            (dhcpv6.REPLY,), irt=irt, mrt=mrt, mrc=mrc, mrd=mrd)

    def information(self) -> Message:
        msg = self.exchange(
            lambda xid, el: dhcpv6.build(dhcpv6.INFORMATION_REQUEST, xid, self.duid, elapsed=el,
                                         wanted=dhcpv6.WANTED_STATELESS),
            (dhcpv6.REPLY,), irt=1, mrt=120)
        assert msg is not None
        return msg

    # -- what a reply changes -----------------------------------------------------------

    def bind(self, ia: IaNa, reply: Message) -> None:
        new = {a.address for a in ia.addresses}
        for old in self.held:
            if old.address not in new:
                self.runner(["ip", "-6", "addr", "del", f"{old.address}/128", "dev", self.link],
                            check=False)
        for a in ia.addresses:
            try:
                self.runner(["ip", "-6", "addr", "replace", f"{a.address}/128", "dev", self.link,
                             "valid_lft", dhcpv6.lifetime(a.valid),
                             "preferred_lft", dhcpv6.lifetime(a.preferred)])
            except CommandError as exc:
                say(f"{self.link}: {exc}")
        if {a.address for a in self.held} != new:
            say(f"{self.link} has {' '.join(f'{a.address}/128' for a in ia.addresses)} "
                f"(DHCPv6, valid {dhcpv6.lifetime(min(a.valid for a in ia.addresses))} s)")
        self.held = ia.addresses
        self.nameservers(reply)

    def unbind(self) -> None:
        for old in self.held:
            self.runner(["ip", "-6", "addr", "del", f"{old.address}/128", "dev", self.link],
                        check=False)
        if self.held:
            say(f"{self.link}: DHCPv6 lease expired; soliciting again")
        self.held = ()

    def nameservers(self, reply: Message) -> None:
        if self.resolv is None or not (reply.dns or reply.domains):
            return
        try:
            existing = self.resolv.read_text() if self.resolv.exists() else ""
            text = dhcpv6.resolv_conf(existing, reply.dns, reply.domains)
            if text != existing:
                tmp = self.resolv.with_name(f".{self.resolv.name}.{self.link}.tmp")
                tmp.write_text(text)
                os.replace(tmp, self.resolv)
                say(f"{self.link}: DNS {' '.join(reply.dns + reply.domains)} (DHCPv6)")
        except OSError as exc:
            say(f"{self.link}: cannot write {self.resolv}: {exc}")

    # -- the loops ----------------------------------------------------------------------

    def run_stateful(self, once: bool = False) -> None:
        while True:
            advertise = self.solicit()
            reply = self.request(dhcpv6.REQUEST, advertise.server_id, mrc=10)
            ia = reply.ia(self.iaid) if reply is not None else None
            if reply is None or ia is None or not ia.addresses:
                why = "no Reply" if reply is None else dhcpv6.STATUS_NAMES.get(
                    ia.status if ia else reply.status, "no address")
                say(f"{self.link}: DHCPv6 Request failed ({why}); soliciting again")
                time.sleep(1)
                continue
            self.bind(ia, reply)
            if once:
                return
            self.keep(ia, reply.server_id)

    def keep(self, ia: IaNa, server_id: bytes | None) -> None:
        """Renew at T1, rebind at T2, until the addresses run out."""
        while True:
            t1, t2 = dhcpv6.timers(ia)
            valid = float(max(a.valid for a in ia.addresses))
            bound = time.monotonic()
            time.sleep(t1)
            reply = self.request(dhcpv6.RENEW, server_id, mrd=max(t2 - t1, 1),
                                 irt=10, mrt=600)
            if _usable(reply, self.iaid) is None:
                reply = self.request(dhcpv6.REBIND, None, irt=10, mrt=600,
                                     mrd=max(valid - (time.monotonic() - bound), 1))
            new = _usable(reply, self.iaid)
            if reply is None or new is None:
                self.unbind()
                return
            ia, server_id = new, reply.server_id
            self.bind(ia, reply)

    def run_stateless(self, once: bool = False) -> None:
        while True:
            reply = self.information()
            self.nameservers(reply)
            if once:
                return
            time.sleep(max(reply.refresh or DEFAULT_REFRESH, MIN_REFRESH))


def _usable(reply: Message | None, iaid: int) -> IaNa | None:
    ia = reply.ia(iaid) if reply is not None else None
    return ia if ia is not None and ia.status == dhcpv6.SUCCESS and ia.addresses else None


def mac_of(link: str, sys_class_net: Path = Path("/sys/class/net")) -> str:
    return (sys_class_net / link / "address").read_text().strip().lower()


def daemonize(log: Path, pidfile: Path | None) -> bool:
    """Fork into the background (True in the child); its output goes to *log*."""
    if os.fork():
        return False
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOCTTY, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    if pidfile is not None:
        pidfile.write_text(f"{os.getpid()}\n")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lean-ipa-dhcpv6", description=__doc__.split("\n")[0])
    parser.add_argument("link", help="the interface")
    parser.add_argument("--stateless", action="store_true",
                        help="only ask for DNS servers (Information-Request)")
    parser.add_argument("--background", action="store_true",
                        help="fork; the parent exits at once")
    parser.add_argument("--log", type=Path, default=Path(os.devnull),
                        help="with --background: where the messages go (e.g. /dev/console)")
    parser.add_argument("--pidfile", type=Path)
    parser.add_argument("--resolv-conf", type=Path, default=Path("/etc/resolv.conf"))
    parser.add_argument("--once", action="store_true",
                        help="exit after the first lease (no renewals)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="lean-ipa-dhcpv6: %(message)s")
    try:
        mac = mac_of(args.link)
        sock = open_socket(args.link)
    except OSError as exc:
        say(f"{args.link}: {exc.strerror or exc}")
        return 1
    if args.background and not daemonize(args.log, args.pidfile):
        return 0
    client = Client(args.link, mac, sock, resolv_conf=args.resolv_conf)
    try:
        if args.stateless:
            client.run_stateless(args.once)
        else:
            client.run_stateful(args.once)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
