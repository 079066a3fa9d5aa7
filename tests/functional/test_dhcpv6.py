# SPDX-License-Identifier: Apache-2.0
"""The DHCPv6 client against dnsmasq, across a veth pair between two network
namespaces this test makes (``server`` runs dnsmasq on fd00:150::1, ``client``
runs :mod:`ironic_python_agent.netconfig.dhcpv6_client` as lean-ipa-network
starts it in tinyipa).

The link-local addresses are set by hand without duplicate address detection,
so that no test waits the second DAD takes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for ip netns")

CLIENT_MAC = "02:00:00:00:15:02"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True,
                          timeout=30).stdout


@dataclass
class Net:
    server: str
    client: str
    tmp: Path


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    tag = f"{os.getpid()}"
    server, client = f"lipa-d6s-{tag}", f"lipa-d6c-{tag}"
    ip("netns", "add", server)
    ip("netns", "add", client)
    try:
        ip("-n", server, "link", "add", "v6s", "type", "veth", "peer", "name", "v6c",
           "netns", client, "address", CLIENT_MAC)
        for ns, link, ll in ((server, "v6s", "fe80::1"), (client, "v6c", "fe80::2")):
            ip("-n", ns, "link", "set", "dev", link, "addrgenmode", "none")
            ip("-n", ns, "addr", "add", f"{ll}/64", "dev", link, "nodad")
            ip("-n", ns, "link", "set", "dev", link, "up")
        ip("-n", server, "addr", "add", "fd00:150::1/64", "dev", "v6s", "nodad")
        yield Net(server, client, tmp_path)
    finally:
        subprocess.run(["ip", "netns", "delete", client], check=False, timeout=30)
        subprocess.run(["ip", "netns", "delete", server], check=False, timeout=30)


@pytest.fixture
def dnsmasq(net: Net, request: pytest.FixtureRequest) -> Iterator[Path]:
    """dnsmasq on v6s: *request.param* is its dhcp-range; DNS server and search list."""
    leases = net.tmp / "dnsmasq.leases"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", net.server, "dnsmasq", "--keep-in-foreground",
         "--conf-file=/dev/null", "--port=0", "--interface=v6s", "--bind-interfaces",
         f"--dhcp-range={request.param}", f"--dhcp-leasefile={leases}",
         f"--pid-file={net.tmp / 'dnsmasq.pid'}", "--log-dhcp", "--log-facility=-",
         "--dhcp-option=option6:dns-server,[fd00:150::53]",
         "--dhcp-option=option6:domain-search,test.lan"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.3)
        assert proc.poll() is None, proc.communicate()[0]
        yield leases
    finally:
        proc.terminate()
        log = proc.communicate(timeout=10)[0]
        print(log)


def client(net: Net, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", net.client, sys.executable, "-m",
         "ironic_python_agent.netconfig.dhcpv6_client", "--resolv-conf",
         str(net.tmp / "resolv.conf"), *args, "v6c"],
        capture_output=True, text=True, timeout=timeout)


def client_addresses(net: Net) -> list[str]:
    out = ip("-n", net.client, "-6", "-o", "addr", "show", "dev", "v6c", "scope", "global")
    return [line.split()[3] for line in out.splitlines()]


@pytest.mark.parametrize("dnsmasq", ["fd00:150::100,fd00:150::1ff,64,1h"], indirect=True)
def test_stateful_lease_address_and_dns(net: Net, dnsmasq: Path) -> None:
    (net.tmp / "resolv.conf").write_text("nameserver 10.0.2.3\n")
    done = client(net, "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    addrs = client_addresses(net)
    assert len(addrs) == 1 and addrs[0].startswith("fd00:150::1") and addrs[0].endswith("/128")
    assert f"v6c has {addrs[0]} (DHCPv6" in done.stdout
    lease = dnsmasq.read_text()
    assert addrs[0].split("/")[0] in lease, lease
    assert (net.tmp / "resolv.conf").read_text() == \
        "search test.lan\nnameserver 10.0.2.3\nnameserver fd00:150::53\n"
    # the lifetimes are the lease's, not forever
    detail = ip("-n", net.client, "-6", "addr", "show", "dev", "v6c", "scope", "global")
    assert "valid_lft forever" not in detail and "valid_lft 3" in detail, detail


@pytest.mark.parametrize("dnsmasq", ["fd00:150::,ra-stateless,64"], indirect=True)
def test_stateless_asks_only_for_dns(net: Net, dnsmasq: Path) -> None:
    del dnsmasq
    done = client(net, "--stateless", "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (net.tmp / "resolv.conf").read_text() == \
        "search test.lan\nnameserver fd00:150::53\n"
    assert "v6c: DNS fd00:150::53 test.lan (DHCPv6)" in done.stdout
    # the address is SLAAC's business: the client adds none (no RA handling here:
    # the client namespace's kernel takes them, with its own default settings)
    assert not [a for a in client_addresses(net) if a.endswith("/128")]


@pytest.mark.parametrize("dnsmasq", ["fd00:150::100,fd00:150::1ff,64,1h"], indirect=True)
def test_background_as_lean_ipa_network_starts_it(net: Net, dnsmasq: Path) -> None:
    del dnsmasq
    pidfile, log = net.tmp / "dhcpv6.v6c.pid", net.tmp / "dhcpv6.log"
    start = time.monotonic()
    done = client(net, "--background", "--pidfile", str(pidfile), "--log", str(log),
                  timeout=10)
    assert done.returncode == 0 and time.monotonic() - start < 5, done.stderr
    pid = int(pidfile.read_text())
    try:
        deadline = time.monotonic() + 20
        while not client_addresses(net) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client_addresses(net), log.read_text()
        assert os.path.exists(f"/proc/{pid}"), "the client went away after its lease"
    finally:
        os.kill(pid, 15)
    assert "v6c has fd00:150::1" in log.read_text()


def test_no_such_link_is_said(net: Net) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", net.client, sys.executable, "-m",
         "ironic_python_agent.netconfig.dhcpv6_client", "--once", "nosuch0"],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "lean-ipa-dhcpv6: nosuch0:" in done.stdout and "Traceback" not in done.stderr


# A server with a 4 s lease (dnsmasq's shortest is 2 min): T1 1 s, T2 2 s. It
# writes each message type it gets to argv[1] and answers Renew only once, so
# that the second renewal has to fall back to Rebind.
SHORT_LEASE_SERVER = r"""
import socket, struct, sys, ipaddress
log = open(sys.argv[1], "a", buffering=1)
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"v6s")
sock.bind(("::", 547))
group = socket.inet_pton(socket.AF_INET6, "ff02::1:2") + struct.pack("@I",
                                                                     socket.if_nametoindex("v6s"))
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
def opt(code, data):
    return struct.pack("!HH", code, len(data)) + data
renews = 0
while True:
    data, peer = sock.recvfrom(4096)
    kind, xid = data[0], data[1:4]
    pos, opts = 4, {}
    while pos < len(data):
        code, length = struct.unpack_from("!HH", data, pos)
        opts[code] = data[pos + 4:pos + 4 + length]
        pos += 4 + length
    log.write(f"{kind}\n")
    if kind == 5:
        renews += 1
        if renews > 1:
            continue
    iaid = opts[3][:4]
    addr = ipaddress.IPv6Address("fd00:150::42").packed
    ia = opt(3, iaid + struct.pack("!II", 1, 2) + opt(5, addr + struct.pack("!II", 4, 4)))
    answer = bytes([2 if kind == 1 else 7]) + xid + opt(1, opts[1]) + opt(2, b"\0\3\0\1srvmac") + ia
    sock.sendto(answer, peer)
"""


def test_renew_then_rebind_keep_a_short_lease(net: Net) -> None:
    seen = net.tmp / "seen"
    server = subprocess.Popen(["ip", "netns", "exec", net.server, sys.executable, "-c",
                               SHORT_LEASE_SERVER, str(seen)])
    pid = None
    try:
        time.sleep(0.3)
        pidfile = net.tmp / "pid"
        done = client(net, "--background", "--pidfile", str(pidfile), "--log",
                      str(net.tmp / "log"), timeout=10)
        assert done.returncode == 0, done.stderr
        pid = int(pidfile.read_text())
        time.sleep(6.5)  # past two T1s and one lease: it only lives on by renewing
        kinds = seen.read_text().split()
        assert kinds[:2] == ["1", "3"], kinds  # Solicit, Request
        assert "5" in kinds and "6" in kinds, kinds  # Renew, then Rebind when unanswered
        assert client_addresses(net) == ["fd00:150::42/128"], (net.tmp / "log").read_text()
    finally:
        if pid is not None:
            os.kill(pid, 15)
        server.terminate()
        server.wait(timeout=10)
