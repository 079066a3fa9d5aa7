# SPDX-License-Identifier: Apache-2.0
"""DHCPv6 messages: what the client sends, what it reads from servers."""

from __future__ import annotations

import ipaddress
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ironic_python_agent.netconfig import apply as applying
from ironic_python_agent.netconfig import dhcpv6
from ironic_python_agent.netconfig.plan import Dhcp

MAC = "52:54:00:12:34:56"
DUID = dhcpv6.duid_ll(MAC)
SERVER = bytes.fromhex("000100012c0c3e4a525400abcdef")  # a DUID-LLT, as dnsmasq sends


def opt(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def iaaddr(addr: str, preferred: int, valid: int, inner: bytes = b"") -> bytes:
    return opt(5, ipaddress.IPv6Address(addr).packed + struct.pack("!II", preferred, valid)
               + inner)


def server_message(kind: int, xid: int, *parts: bytes, client: bytes = DUID) -> bytes:
    return struct.pack("!I", kind << 24 | xid) + opt(1, client) + opt(2, SERVER) + b"".join(parts)


def test_identity_comes_from_the_mac() -> None:
    assert DUID == bytes.fromhex("00030001525400123456")
    assert dhcpv6.iaid_for(MAC) == 0x00123456


def test_solicit_layout() -> None:
    data = dhcpv6.build(dhcpv6.SOLICIT, 0xABCDEF, DUID, elapsed=1.5,
                        ia_na=dhcpv6.ia_na_option(7))
    assert data[:4] == bytes.fromhex("01abcdef")
    opts = dhcpv6.options(data[4:], "test")
    assert [c for c, _ in opts] == [1, 8, 6, 3]
    assert dict(opts)[1] == DUID
    assert dict(opts)[8] == struct.pack("!H", 150)
    assert dict(opts)[6] == struct.pack("!HH", 23, 24)
    assert dict(opts)[3] == struct.pack("!III", 7, 0, 0)


def test_renew_names_the_server_and_the_addresses_held() -> None:
    held = (dhcpv6.IaAddress(ipaddress.IPv6Address("fd00::10"), 100, 200),)
    data = dhcpv6.build(dhcpv6.RENEW, 1, DUID, server_id=SERVER,
                        ia_na=dhcpv6.ia_na_option(7, held))
    opts = dict(dhcpv6.options(data[4:], "test"))
    assert opts[2] == SERVER
    inner = dhcpv6.options(opts[3][12:], "IA_NA")
    assert inner == [(5, ipaddress.IPv6Address("fd00::10").packed + bytes(8))]


def test_elapsed_time_saturates() -> None:
    data = dhcpv6.build(dhcpv6.SOLICIT, 1, DUID, elapsed=10_000, wanted=())
    assert dict(dhcpv6.options(data[4:], "test"))[8] == b"\xff\xff"


def test_information_request_asks_for_the_refresh_time() -> None:
    data = dhcpv6.build(dhcpv6.INFORMATION_REQUEST, 5, DUID, wanted=dhcpv6.WANTED_STATELESS)
    assert data[0] == 11
    assert dict(dhcpv6.options(data[4:], "test"))[6] == struct.pack("!HHH", 23, 24, 32)
    assert 3 not in dict(dhcpv6.options(data[4:], "test"))


def test_advertise_with_address_dns_and_search_list() -> None:
    data = server_message(
        dhcpv6.ADVERTISE, 0x123456,
        opt(7, b"\x0a"),
        opt(3, struct.pack("!III", 0x00123456, 1800, 2880)
            + iaaddr("fd00:150::1c3", 3600, 7200)),
        opt(23, ipaddress.IPv6Address("fd00:150::1").packed
            + ipaddress.IPv6Address("fd00:150::2").packed),
        opt(24, b"\x04test\x03lan\x00\x03lab\x00"))
    msg = dhcpv6.parse(data)
    assert (msg.kind, msg.xid, msg.preference) == (dhcpv6.ADVERTISE, 0x123456, 10)
    assert msg.server_id == SERVER and msg.client_id == DUID
    ia = msg.ia(0x00123456)
    assert ia is not None and (ia.t1, ia.t2) == (1800, 2880)
    assert ia.addresses == (dhcpv6.IaAddress(ipaddress.IPv6Address("fd00:150::1c3"), 3600, 7200),)
    assert msg.dns == ["fd00:150::1", "fd00:150::2"]
    assert msg.domains == ["test.lan", "lab"]
    assert dhcpv6.answers(msg, 0x123456, DUID, (dhcpv6.ADVERTISE,))
    assert not dhcpv6.answers(msg, 0x123457, DUID, (dhcpv6.ADVERTISE,))
    assert not dhcpv6.answers(msg, 0x123456, dhcpv6.duid_ll("52:54:00:00:00:01"),
                              (dhcpv6.ADVERTISE,))
    assert not dhcpv6.answers(msg, 0x123456, DUID, (dhcpv6.REPLY,))
    assert dhcpv6.usable_advertise(msg, 0x00123456)


def test_no_addresses_available_is_not_usable() -> None:
    data = server_message(dhcpv6.ADVERTISE, 1,
                          opt(3, struct.pack("!III", 9, 0, 0)
                              + opt(13, struct.pack("!H", 2) + b"no addresses")))
    msg = dhcpv6.parse(data)
    ia = msg.ia(9)
    assert ia is not None and ia.status == dhcpv6.NO_ADDRS_AVAIL
    assert ia.status_text == "no addresses"
    assert not dhcpv6.usable_advertise(msg, 9)


def test_addresses_with_zero_or_inverted_lifetimes_are_dropped() -> None:
    data = server_message(dhcpv6.REPLY, 1, opt(3, struct.pack("!III", 9, 0, 0)
                                               + iaaddr("fd00::1", 10, 0)
                                               + iaaddr("fd00::2", 20, 10)
                                               + iaaddr("fd00::3", 10, 20)))
    ia = dhcpv6.parse(data).ia(9)
    assert ia is not None and [str(a.address) for a in ia.addresses] == ["fd00::3"]


def test_highest_preference_wins_first_among_equals() -> None:
    def adv(server: bytes, pref: int) -> dhcpv6.Message:
        return dhcpv6.Message(dhcpv6.ADVERTISE, 1, DUID, server, pref)
    a, b, c = adv(b"a", 0), adv(b"b", 5), adv(b"c", 5)
    assert dhcpv6.best_advertise([a, b, c]) is b
    assert dhcpv6.best_advertise([]) is None


@pytest.mark.parametrize("data, where", [
    (b"\x07\x00", "shorter than a DHCPv6 header"),
    (b"\x07\x00\x00\x01\x00\x01\x00\x09abc", "option 1 claims 9 bytes"),
    (b"\x07\x00\x00\x01\x00\x01", "truncated option header"),
    (b"\x07\x00\x00\x01" + opt(3, b"\x00" * 4), "IA_NA: shorter than 12 bytes"),
    (b"\x07\x00\x00\x01" + opt(23, b"\x00" * 17), "not a multiple of 16"),
    (b"\x07\x00\x00\x01" + opt(24, b"\x05ab"), "bad label length"),
    (b"\x07\x00\x00\x01" + opt(24, b"\x02ab"), "does not end with the root label"),
    (b"\x07\x00\x00\x01" + opt(3, bytes(12) + opt(5, bytes(10))), "IAADDR: shorter"),
])
def test_malformed_messages_say_where(data: bytes, where: str) -> None:
    with pytest.raises(dhcpv6.MessageError, match=where):
        dhcpv6.parse(data)


def test_domain_names_round_trip() -> None:
    names = ["example.org", "lab"]
    assert dhcpv6.domain_names(dhcpv6.encode_domain_names(names)) == names


def test_timers_from_the_server_or_the_preferred_lifetime() -> None:
    addr = dhcpv6.IaAddress(ipaddress.IPv6Address("fd00::1"), 1000, 2000)
    assert dhcpv6.timers(dhcpv6.IaNa(1, 300, 600, (addr,))) == (300, 600)
    assert dhcpv6.timers(dhcpv6.IaNa(1, 0, 0, (addr,))) == (500, 800)
    forever = dhcpv6.IaAddress(addr.address, dhcpv6.INFINITY, dhcpv6.INFINITY)
    assert dhcpv6.timers(dhcpv6.IaNa(1, 0, 0, (forever,))) == (dhcpv6.INFINITY,) * 2
    assert dhcpv6.lifetime(dhcpv6.INFINITY) == "forever" and dhcpv6.lifetime(60) == "60"


def test_retransmission_doubles_up_to_the_cap() -> None:
    rt, seen = None, []
    for _ in range(9):
        rt = dhcpv6.next_timeout(rt, 1, 120, 0.0)
        seen.append(rt)
    assert seen == [1, 2, 4, 8, 16, 32, 64, 120, 120]
    assert dhcpv6.next_timeout(None, 1, 120, 0.1) == pytest.approx(1.1)
    assert dhcpv6.next_timeout(100, 1, 120, -0.1) == pytest.approx(108)


def test_resolv_conf_adds_what_is_new() -> None:
    existing = "search lab\nnameserver 10.0.0.1\n"
    text = dhcpv6.resolv_conf(existing, ["fd00::1", "10.0.0.1", "fd00::1"], ["lab", "x.org"])
    assert text == "search lab x.org\nnameserver 10.0.0.1\nnameserver fd00::1\n"
    assert dhcpv6.resolv_conf(text, ["fd00::1"], ["x.org"]) == text
    assert dhcpv6.resolv_conf("", ["fd00::1"], []) == "nameserver fd00::1\n"


def test_lean_ipa_network_starts_its_own_client_without_another() -> None:
    argv = applying.dhcpv6_argv(Dhcp("eth0", 6), "/run", python="/usr/bin/python3")
    assert argv == ["/usr/bin/python3", "-m", "ironic_python_agent.netconfig.dhcpv6_client",
                    "--background", "--pidfile", "/run/dhcpv6.eth0.pid", "--log", "/dev/console",
                    "eth0"]
    assert "--stateless" in applying.dhcpv6_argv(Dhcp("eth0", 6, stateless=True))


def test_a_second_run_stops_the_clients_of_the_first(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "dhcpv6.eth0.pid").write_text(f"{child.pid}\n")
        (tmp_path / "udhcpc.eth0.pid").write_text("999999999\n")  # not this call's
        assert applying.stop_dhcp_clients(tmp_path, client="dhcpv6") == ["eth0"]
        assert child.wait(timeout=10) == -15
        assert not (tmp_path / "dhcpv6.eth0.pid").exists()
        assert (tmp_path / "udhcpc.eth0.pid").exists()
    finally:
        child.kill()
