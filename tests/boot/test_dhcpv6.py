# SPDX-License-Identifier: Apache-2.0
"""tinyipa on an IPv6-only network with stateful DHCPv6, under QEMU (TCG).

The guest's NIC is a tap on a bridge in a network namespace this test makes
(tests/netns.py); dnsmasq there serves DHCPv6 addresses from
fd00:150::100-1ff and router advertisements (managed flag, the prefix on-link
but not for SLAAC), nothing for IPv4. A FakeIronic listens inside the
namespace on [fd00:150::1]: the agent's lookup and heartbeat reach it over
IPv6 only, and the callback URL names the address DHCPv6 gave (``ip=dhcp6``,
tinyipa's own client :mod:`ironic_python_agent.netconfig.dhcpv6_client`).
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot.agent_checks import lookup_and_heartbeat
from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic
from tests.netns import Namespace, ip, network_namespace

pytestmark = pytest.mark.boot

SERVER = "fd00:150::1"
POOL = (ipaddress.IPv6Address("fd00:150::100"), ipaddress.IPv6Address("fd00:150::1ff"))


@pytest.fixture
def ns() -> Iterator[Namespace]:
    # the IPv4 address is the bridge's only to satisfy network_namespace: nothing
    # serves IPv4 and the guest never gets any
    with network_namespace("192.0.2.1/24", prefix="lipa-d6") as ns:
        ip("-n", ns.name, "addr", "add", f"{SERVER}/64", "dev", "br0", "nodad")
        yield ns


@pytest.fixture
def dnsmasq(ns: Namespace, tmp_path: Path) -> Iterator[Path]:
    leases = tmp_path / "dnsmasq.leases"
    proc = subprocess.Popen(ns.command(
        ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
         "--interface=br0", "--bind-interfaces", "--enable-ra",
         f"--dhcp-range={POOL[0]},{POOL[1]},64,1h", f"--dhcp-leasefile={leases}",
         f"--pid-file={tmp_path / 'dnsmasq.pid'}", "--log-dhcp", "--log-facility=-",
         f"--dhcp-option=option6:dns-server,[{SERVER}]"]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield leases
    finally:
        proc.terminate()
        print(proc.communicate(timeout=10)[0][-4000:])


def test_stateful_dhcpv6_only(ns: Namespace, dnsmasq: Path,
                              tinyipa_image: tuple[Path, Path]) -> None:
    kernel, initrd = tinyipa_image
    ironic = FakeIronic(host=SERVER)
    ns.enter(ironic.start)  # its socket lives in the namespace, its thread anywhere
    try:
        tap = ns.tap()
        append = (f"console=ttyS0 net.ifnames=0 ip=dhcp6 ipa-api-url=http://[{SERVER}]:"
                  f"{ironic.port} ipa-insecure=1")
        with Guest(GuestSpec(name="net-dhcpv6", kernel=kernel, initrd=initrd, append=append,
                             netns=ns.name, netdev=ns.netdev(tap))) as guest:
            beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=400,
                                        heartbeat_timeout=120)
            console = guest.console_path.read_text(errors="replace")
    finally:
        ironic.stop()
    url = beat["callback_url"]
    assert url.startswith("https://[fd00:150::") and url.endswith("]:9999"), url
    address = ipaddress.IPv6Address(url.split("[")[1].split("]")[0])
    assert POOL[0] <= address <= POOL[1], url
    assert str(address) in dnsmasq.read_text()
    assert f"lean-ipa-dhcpv6: eth0 has {address}/128 (DHCPv6" in console, console[-3000:]
    summary = [ln for ln in console.splitlines() if "lean-ipa-network: eth0 up" in ln]
    assert summary and f" {address}/128" in summary[-1], console[-3000:]
    assert "no DHCP client in this image" not in console
