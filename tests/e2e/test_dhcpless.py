# SPDX-License-Identifier: Apache-2.0
"""End to end with no DHCP anywhere: the real Ironic cleans and deploys a QEMU node
whose only network is static, from ``node.network_data``.

The network is a bridge in a network namespace the test creates (tests/netns.py),
192.168.150.1/24 on the bridge and nothing else: no DHCP server, no route out.
Ironic runs inside the namespace, its API on 192.168.150.1; the whole-disk image
is served there too. The guest (TCG, UEFI) has one virtio NIC on a tap of the
bridge, QEMU running inside the namespace.

The node is enrolled with ``network_data`` (API ≥ 1.66) giving the guest's MAC
192.168.150.50/24. What it boots is the ISO Ironic's own virtual-media code makes
(``images.create_esp_image_for_uefi`` with the node's network_data, read back from
the API, injected at ``openstack/latest/network_data.json``, as
``prepare_deploy_iso`` does), from the tinyipa ISO's ESP; the test plays the BMC
as in test_qemu_node (``qemu_bmc.drive``). On each boot the image applies
network_data.json before lookup and starts no DHCP client: a UDP socket on the
bridge bound to the DHCP server ports (67, and 547 in ff02::1:2) receives nothing
from first boot to the end. The agent's heartbeats carry
``https://192.168.150.50:9999`` (Ironic's default require_tls, auto-TLS), which
Ironic calls back: automated cleaning (erase_devices_metadata), then a raw
whole-disk deploy to ``active`` with the image on the guest's disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.boot.qemu import GuestSpec
from tests.e2e import ironic, qemu_bmc
from tests.netns import Namespace, network_namespace

pytestmark = [pytest.mark.e2e, pytest.mark.boot,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for ip netns")]

BRIDGE_ADDRESS = "192.168.150.1/24"
GUEST_ADDRESS = "192.168.150.50"
DHCP_SERVER_PORTS = ((socket.AF_INET, 67), (socket.AF_INET6, 547))
ALL_DHCP_SERVERS = "ff02::1:2"
MISSING_MAC = "52:54:00:99:99:99"

# What prepare_deploy_iso does with network_data (ironic/drivers/modules/image_utils.py):
# the JSON as bytes, injected at openstack/latest/network_data.json of the UEFI ISO.
IRONIC_BUILDS_VMEDIA_ISO = """
import json, sys
from ironic.common import images
out, kernel, ramdisk, deploy_iso, params, network_data = sys.argv[1:]
data = json.dumps(json.loads(network_data), indent=2).encode("utf-8")
images.create_esp_image_for_uefi(out, kernel, ramdisk, deploy_iso=deploy_iso,
                                 kernel_cmd_line=params,
                                 inject_files={data: "openstack/latest/network_data.json"})
"""


def network_data(mac: str) -> dict[str, Any]:
    """What an operator sets on the node: one NIC, one static address, no gateway; and a
    NIC the machine does not have, which is logged and skipped while the rest applies."""
    return {"links": [{"id": "port-0", "type": "phy", "ethernet_mac_address": mac,
                       "mtu": 1500},
                      {"id": "port-9", "type": "phy", "ethernet_mac_address": MISSING_MAC}],
            "networks": [{"id": "net-0", "type": "ipv4", "link": "port-0",
                          "network_id": "provisioning",
                          "ip_address": GUEST_ADDRESS, "netmask": "255.255.255.0",
                          "routes": []}],
            "services": []}


@dataclass
class VmediaIso:
    """The ISO Ironic builds for a virtual-media boot, on a tap of the namespace's bridge.

    Built once, when the node first boots, with the parameters Ironic's virtual
    media would give (``boot_method=vmedia``, the API URL) and *network_data*
    (set by the test from the node as Ironic stores it).
    """

    kernel: Path
    initrd: Path
    deploy_iso: Path
    ironic_python: Path
    netns: Namespace
    tap: str
    name: str = "ironic-vmedia-iso"
    network_data: dict[str, Any] | None = None
    iso: Path | None = None

    def build(self, node: qemu_bmc.QemuNode, workdir: Path) -> Path:
        assert self.network_data is not None, "set network_data from the node first"
        iso = workdir / f"{node.name}-vmedia.iso"
        params = f"console=ttyS0 panic=-1 boot_method=vmedia ipa-api-url={node.api_url}"
        done = subprocess.run(
            [str(self.ironic_python), "-c", IRONIC_BUILDS_VMEDIA_ISO, str(iso), str(self.kernel),
             str(self.initrd), str(self.deploy_iso), params, json.dumps(self.network_data)],
            capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"Ironic's create_esp_image_for_uefi failed: "
                               f"{done.stderr[-3000:]}")
        return iso

    def spec(self, node: qemu_bmc.QemuNode, params: str, workdir: Path) -> GuestSpec:
        assert not params, "the vmedia ISO takes no per-flow parameters here"
        if self.iso is None:
            self.iso = self.build(node, workdir)
        return GuestSpec(name=node.name, iso=self.iso, firmware="uefi",
                         memory_mib=node.memory_mib, mac=node.mac,
                         disk_size=qemu_bmc.DISK_SIZE, forward_ports=(),
                         netns=self.netns.name, netdev=Namespace.netdev(self.tap))


@contextlib.contextmanager
def dhcp_watch(ns: Namespace) -> Iterator[list[socket.socket]]:
    """UDP sockets on the DHCP and DHCPv6 server ports inside *ns*: any client's
    DISCOVER or SOLICIT on the bridge lands in one of them."""
    socks = []
    try:
        for family, port in DHCP_SERVER_PORTS:
            sock = ns.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.bind(("0.0.0.0" if family == socket.AF_INET else "::", port))
            sock.setblocking(False)
        index = ns.enter(lambda: socket.if_nametoindex("br0"))
        socks[1].setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                            socket.inet_pton(socket.AF_INET6, ALL_DHCP_SERVERS)
                            + index.to_bytes(4, "little"))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def received(socks: list[socket.socket]) -> list[tuple[Any, int]]:
    """(sender, size) of every datagram waiting on *socks*."""
    got = []
    for sock in socks:
        with contextlib.suppress(BlockingIOError):
            while True:
                data, sender = sock.recvfrom(4096)
                got.append((sender, len(data)))
    return got


@pytest.fixture(scope="module")
def artefacts(e2e_artifacts: Path) -> Path:
    path = e2e_artifacts / "dhcpless"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def tinyipa_iso() -> tuple[Path, Path, Path]:
    """(kernel, initramfs, the tinyipa ISO whose ESP Ironic reuses)."""
    out = ironic.out_dir()
    kernel, initrd = qemu_bmc.tinyipa_image(out)
    subprocess.run([str(qemu_bmc.TOP / "build.sh"), "iso"], check=True, capture_output=True)
    return kernel, initrd, out / "iso" / "tinyipa.iso"


@pytest.mark.timeout(1800)
def test_dhcpless_vmedia_node_cleans_and_deploys(
        tinyipa_iso: tuple[Path, Path, Path], artefacts: Path, tmp_path: Path) -> None:
    kernel, initrd, deploy_iso = tinyipa_iso
    ironic_python = ironic.ensure_venv(ironic.out_dir() / "venv-ironic",
                                       ironic.IRONIC_REQUIREMENT) / "python"
    served = tmp_path / "served"
    served.mkdir()
    image, content = qemu_bmc.make_whole_disk_image(served, "raw")
    for old in artefacts.glob("vm-dhcpless-*"):
        old.unlink()
    settings = ironic.IronicSettings(require_tls=True, callback_timeout=600)
    with network_namespace(BRIDGE_ADDRESS) as ns, dhcp_watch(ns) as watch, \
            ironic.running_ironic(settings, tmp_path / "ironic", ns) as (service, client), \
            qemu_bmc.ImageServer(served, ns) as server:
        media = VmediaIso(kernel, initrd, deploy_iso, ironic_python, ns, ns.tap())
        node = qemu_bmc.QemuNode("vm-dhcpless", media, service.api_port, tmp_path, artefacts,
                                 api_url=service.api_url)
        flows = qemu_bmc.NodeFlows(node, service, client)
        try:
            flows.enroll(inspect_interface="no-inspect",
                         network_data=network_data(node.mac))
            media.network_data = client.node(node.uuid)["network_data"]
            assert media.network_data["links"][0]["ethernet_mac_address"] == node.mac
            flows.provide()
            deployed = flows.deploy(server, image, "raw", oob_power_off=True)
            assert deployed.node["provision_state"] == "active"
            assert deployed.node["last_error"] is None
            assert node.read_disk(len(content)) == content, "the disk does not hold the image"
        finally:
            node.close()
            flows.retire()
            service.stop()
            with contextlib.suppress(OSError):
                shutil.copyfile(service.log, artefacts / "ironic.log")
            dhcp = received(watch)
    assert not dhcp, f"DHCP packets on a network without DHCP: {dhcp}"
    consoles = sorted(artefacts.glob("vm-dhcpless-*.console.log"))
    assert [c.name.split("-")[2] for c in consoles] == ["1", "2"], consoles
    for console in consoles:
        text = console.read_text(errors="replace")
        assert "network_data.json from /dev/sr0" in text, console
        assert f"up {GUEST_ADDRESS}/24" in text, console
        assert ("ignored links[1].ethernet_mac_address: no interface has MAC "
                f"{MISSING_MAC}") in text, console
        # no DHCP client: /init's and udhcpc's lease lines (tinyipa/udhcpc.script)
        assert "starting DHCP" not in text, console
        assert not re.search(r"tinyipa: \S+ has ", text), console
    log = (artefacts / "ironic.log").read_text(errors="replace")
    assert f"callback_url': 'https://{GUEST_ADDRESS}:9999'" in log
    assert f"{GUEST_ADDRESS} - GET /v1/lookup?addresses={node.mac}" in log
