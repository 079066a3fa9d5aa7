# SPDX-License-Identifier: Apache-2.0
"""Static networks under QEMU (TCG): the ``ip=``, ``bond=`` and ``vlan=`` kernel
parameters, and IPv6. (The ISO Ironic's virtual-media code builds with
``node.network_data`` is booted by tests/e2e/test_dhcpless.py, on a network
without DHCP, against the real Ironic.)

The guests sit on QEMU user networking; its DHCP server would hand out
10.0.2.15, so a lookup and a heartbeat whose callback URL names 10.0.2.50
prove the static address is the one in use (the image never asked for a lease:
the console shows no "has 10.0.2.15" line from the DHCP hook). The bond test's
guest has no user network: a VLAN on its bond reaches a namespace this test makes.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot.agent_checks import AGENT_PORT, AgentAPI, hardware_inventory, lookup_and_heartbeat
from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic
from tests.netns import network_namespace
from tests.vlan_switch import VlanSwitch, open_tap

pytestmark = pytest.mark.boot

TOP = Path(__file__).resolve().parents[2]
OUT = TOP / "out"
# the bond test's VLAN: the guest's address on it, and the namespace's bridge (Ironic)
BOND_VLAN = 100
BOND_ADDRESS = "192.168.160.10"
BOND_GATEWAY = "192.168.160.1"


@pytest.fixture
def ironic() -> Iterator[FakeIronic]:
    with FakeIronic() as server:
        yield server


@pytest.mark.parametrize("kind", ["static", "dhcp"])
def test_ip_parameter(kind: str, tinyipa_image: tuple[Path, Path], ironic: FakeIronic) -> None:
    kernel, initrd = tinyipa_image
    ip = {"static": "ip=10.0.2.51::10.0.2.2:255.255.255.0:node:eth0:none",
          "dhcp": "ip=eth0:dhcp"}[kind]
    append = (f"console=ttyS0 net.ifnames=0 {ip} ipa-api-url=http://10.0.2.2:{ironic.port} "
              "ipa-insecure=1")
    with Guest(GuestSpec(name=f"net-ip-{kind}", kernel=kernel, initrd=initrd,
                         append=append)) as guest:
        beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=300, heartbeat_timeout=120)
        want = "10.0.2.51" if kind == "static" else "10.0.2.15"
        assert beat["callback_url"].split("://")[1].startswith(f"{want}:"), beat


def monitor(sock: Path, command: str) -> None:
    """One human-monitor command to QEMU on its unix socket."""
    import socket
    import time

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.settimeout(5)
        time.sleep(0.5)  # the banner
        s.sendall(command.encode() + b"\n")
        time.sleep(0.5)


def test_active_backup_bond_and_vlan_survive_a_cut_link(
        tinyipa_image: tuple[Path, Path]) -> None:
    """Two virtio NICs in an active-backup bond, VLAN 100 on the bond with a static
    address, and no other way out: both NICs are ports of a userspace switch
    (tests/vlan_switch.py) that takes VLAN 100 to a tap on the bridge of a namespace
    this test makes, where the fake Ironic listens. Lookup and heartbeats come over
    the VLAN, the inventory lists bond0.100 with its address, and after the active
    NIC's link is cut, heartbeats keep coming through the other port."""
    kernel, initrd = tinyipa_image
    with network_namespace(f"{BOND_GATEWAY}/24", prefix="lipa-bond") as ns, \
            VlanSwitch(ns.enter(lambda: open_tap(ns.tap())), vlan_id=BOND_VLAN) as switch:
        monitor_socket = switch.directory / "monitor"
        ironic = ns.enter(lambda: FakeIronic(host=ns.address, heartbeat_timeout=10).start())
        try:
            append = ("console=ttyS0 net.ifnames=0 bond=bond0:eth0,eth1:mode=active-backup,"
                      f"miimon=100,primary=eth0 vlan=bond0.{BOND_VLAN}:bond0 "
                      f"ip={BOND_ADDRESS}::{BOND_GATEWAY}:24::bond0.{BOND_VLAN}:none "
                      f"ipa-api-url=http://{BOND_GATEWAY}:{ironic.port} ipa-insecure=1")
            second = ("-netdev", f"{switch.netdev(1)},id=net1",
                      "-device", "virtio-net-pci,netdev=net1,mac=52:54:00:be:ef:02",
                      "-monitor", f"unix:{monitor_socket},server=on,wait=off")
            spec = GuestSpec(name="net-bond-vlan", kernel=kernel, initrd=initrd, append=append,
                             netdev=switch.netdev(0), extra_args=second)
            with Guest(spec) as guest:
                beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=300,
                                            heartbeat_timeout=120)
                assert beat["callback_url"].split("://")[1].startswith(f"{BOND_ADDRESS}:"), beat
                guest.wait_for_console(rf"lean-ipa-network: bond0\.{BOND_VLAN} up "
                                       rf"{re.escape(BOND_ADDRESS)}/24", timeout=5)
                with ns.relay(AGENT_PORT, BOND_ADDRESS) as relay:
                    api = AgentAPI(f"https://127.0.0.1:{relay.port}", beat.get("agent_verify_ca"),
                                   ironic.agent_token)
                    interfaces = {i["name"]: i for i in hardware_inventory(api)["interfaces"]}
                vlan = interfaces.get(f"bond0.{BOND_VLAN}")
                assert vlan is not None, interfaces
                assert vlan["ipv4_address"] == BOND_ADDRESS, vlan
                assert vlan["mac_address"] == spec.mac, vlan  # the bond's: its first slave's
                assert {"bond0", "eth0", "eth1"} <= set(interfaces), interfaces
                assert switch.forwarded[0] > 0 and switch.forwarded[1] == 0, switch.forwarded

                monitor(monitor_socket, "set_link net0 off")
                count = len(ironic.heartbeats)
                guest.wait_for_console(r"bond0: .*(link status definitely down|making "
                                       r"interface eth1 the new active one)", timeout=60)
                ironic.wait_for_heartbeat(timeout=60, count=count + 2)
                assert switch.forwarded[1] > 0, switch.forwarded  # the VLAN, now on eth1
        finally:
            ironic.stop()


@pytest.mark.parametrize("kind", ["slaac", "static"])
def test_ipv6_only(kind: str, tinyipa_image: tuple[Path, Path]) -> None:
    """No IPv4 at all: lookup and heartbeat to Ironic at QEMU's fec0::2 (the host's ::1),
    with SLAAC from QEMU's router advertisements or a static address; the automatic
    TLS certificate names the IPv6 address the callback URL carries."""
    kernel, initrd = tinyipa_image
    ip = {"slaac": "ip=eth0:auto6", "static": "ip=[fec0::50]::[fec0::2]:64::eth0:none"}[kind]
    with FakeIronic(host="::1") as ironic:
        append = (f"console=ttyS0 net.ifnames=0 {ip} ipa-api-url=http://[fec0::2]:"
                  f"{ironic.port} ipa-insecure=1")
        with Guest(GuestSpec(name=f"net-ipv6-{kind}", kernel=kernel, initrd=initrd,
                             append=append)) as guest:
            beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=300,
                                        heartbeat_timeout=120)
    url = beat["callback_url"]
    assert url.startswith("https://[fec0::") and url.endswith("]:9999"), url
    address = url.split("[")[1].split("]")[0]
    if kind == "static":
        assert address == "fec0::50"
    text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"],
                          input=beat["agent_verify_ca"], capture_output=True, text=True,
                          check=True).stdout
    named = [ipaddress.ip_address(word.split(":", 1)[1]) for word in
             text.replace(",", " ").split() if word.startswith("Address:")]
    assert ipaddress.ip_address(address) in named, text
