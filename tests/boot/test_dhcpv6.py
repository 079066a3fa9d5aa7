# SPDX-License-Identifier: Apache-2.0
"""tinyipa on an IPv6-only network with DHCPv6, under QEMU (TCG).

The guest's NIC is a tap on a bridge in a network namespace this test makes
(tests/netns.py); dnsmasq there serves router advertisements and DHCPv6,
nothing for IPv4. A FakeIronic listens inside the namespace on
[fd00:150::1]: the agent's lookup and heartbeat reach it over IPv6 only.

* stateful (``ip=dhcp6``): addresses from fd00:150::100-1ff, the RAs with the
  managed flag and the prefix on-link but not for SLAAC: the callback URL names
  the address DHCPv6 gave;
* stateless (``network_data.json`` on a ``config-2`` CD, ``ipv6_dhcpv6-stateless``):
  the address is SLAAC's, the DNS server comes from an Information-Request.

Both go through tinyipa's own client (:mod:`ironic_python_agent.netconfig.dhcpv6_client`).
"""

from __future__ import annotations

import ipaddress
import json
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


RANGES = {"stateful": f"{POOL[0]},{POOL[1]},64,1h", "stateless": "fd00:150::,ra-stateless,64"}


@pytest.fixture
def dnsmasq(ns: Namespace, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """dnsmasq on the bridge, with the dhcp-range of RANGES[request.param]."""
    leases = tmp_path / "dnsmasq.leases"
    proc = subprocess.Popen(ns.command(
        ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
         "--interface=br0", "--bind-interfaces", "--enable-ra",
         f"--dhcp-range={RANGES[request.param]}", f"--dhcp-leasefile={leases}",
         f"--pid-file={tmp_path / 'dnsmasq.pid'}", "--log-dhcp", "--log-facility=-",
         f"--dhcp-option=option6:dns-server,[{SERVER}]"]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield leases
    finally:
        proc.terminate()
        print(proc.communicate(timeout=10)[0][-4000:])


def config_drive(path: Path, mac: str) -> Path:
    """An ISO labelled config-2 whose network_data.json asks for stateless DHCPv6."""
    data = {"links": [{"id": "port-0", "type": "phy", "ethernet_mac_address": mac}],
            "networks": [{"id": "net-0", "type": "ipv6_dhcpv6-stateless", "link": "port-0"}],
            "services": []}
    tree = path.with_suffix(".d") / "openstack" / "latest"
    tree.mkdir(parents=True)
    (tree / "network_data.json").write_text(json.dumps(data))
    subprocess.run(["xorriso", "-as", "mkisofs", "-V", "config-2", "-J", "-R", "-o", str(path),
                    str(path.with_suffix(".d"))], check=True, capture_output=True)
    return path


@pytest.mark.parametrize("dnsmasq", ["stateful", "stateless"], indirect=True)
def test_dhcpv6_only(ns: Namespace, dnsmasq: Path, tinyipa_image: tuple[Path, Path],
                     tmp_path: Path, request: pytest.FixtureRequest) -> None:
    kernel, initrd = tinyipa_image
    kind = request.node.callspec.params["dnsmasq"]
    ironic = FakeIronic(host=SERVER)
    ns.enter(ironic.start)  # its socket lives in the namespace, its thread anywhere
    try:
        tap = ns.tap()
        spec = GuestSpec(name=f"net-dhcpv6-{kind}", kernel=kernel, initrd=initrd,
                         netns=ns.name, netdev=ns.netdev(tap))
        spec.append = (f"console=ttyS0 net.ifnames=0 ipa-api-url=http://[{SERVER}]:"
                       f"{ironic.port} ipa-insecure=1" + (" ip=dhcp6" if kind == "stateful"
                                                          else ""))
        if kind == "stateless":
            drive = config_drive(tmp_path / "config-2.iso", spec.mac)
            spec.extra_args = ("-drive", f"file={drive},media=cdrom,format=raw,readonly=on")
        with Guest(spec) as guest:
            beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=400,
                                        heartbeat_timeout=120)
            console = guest.console_path.read_text(errors="replace")
    finally:
        ironic.stop()
    url = beat["callback_url"]
    assert url.startswith("https://[fd00:150::") and url.endswith("]:9999"), url
    address = ipaddress.IPv6Address(url.split("[")[1].split("]")[0])
    summary = [ln for ln in console.splitlines() if "lean-ipa-network: eth0 up" in ln]
    assert "no DHCP client in this image" not in console
    if kind == "stateless":
        assert "network_data.json from /dev/sr" in console, console[-3000:]
        # SLAAC's address (the MAC's EUI-64), the DNS server from DHCPv6
        assert address.packed[11:13] == b"\xff\xfe", url
        assert summary and f" {address}/64" in summary[-1], console[-3000:]
        assert f"lean-ipa-dhcpv6: eth0: DNS {SERVER} (DHCPv6)" in console, console[-3000:]
        return
    assert POOL[0] <= address <= POOL[1], url
    assert str(address) in dnsmasq.read_text()
    assert f"lean-ipa-dhcpv6: eth0 has {address}/128 (DHCPv6" in console, console[-3000:]
    assert summary and f" {address}/128" in summary[-1], console[-3000:]
