# SPDX-License-Identifier: Apache-2.0
"""Inspection inside the tinyipa image under QEMU: the collectors against real (virtual)
hardware, the post to a loopback inspector, then lookup with the UUID it answered."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

import pytest

from tests.boot.qemu import Guest, GuestSpec
from tests.fake_inspector import FakeInspector
from tests.fake_ironic import FakeIronic

DISK_SIZE = 5 << 30  # sparse; at least 4 GiB so that it is the guessed root disk
COLLECTORS = "default,pci-devices,numa-topology,dmi-decode,usb-devices,lldp,logs"


@pytest.mark.boot
def test_tinyipa_inspects_then_looks_up(tinyipa_image: tuple[Path, Path]) -> None:  # noqa: F811
    kernel, initramfs = tinyipa_image
    with FakeInspector() as inspector, FakeIronic() as ironic:
        spec = GuestSpec(name="tinyipa-inspect", kernel=kernel, initrd=initramfs,
                         memory_mib=512, disk_size=DISK_SIZE,
                         extra_args=("-device", "qemu-xhci", "-device", "usb-tablet"))
        bootif = "01-" + spec.mac.replace(":", "-")
        spec.append = (f"console=ttyS0 panic=-1 ipa-insecure=1 BOOTIF={bootif} "
                       f"ipa-api-url=http://10.0.2.2:{ironic.port} "
                       f"ipa-inspection-callback-url={inspector.url(host='10.0.2.2')} "
                       f"ipa-inspection-collectors={COLLECTORS} ipa-lldp-timeout=3")
        with Guest(spec) as guest:
            inspector.wait_for_posts(1, timeout=300)
            lookup = ironic.wait_for_lookup(timeout=120)
            console = guest.console()
    assert lookup.node_uuid == inspector.node_uuid, "lookup did not use the inspector's UUID"
    post = inspector.posts[0]
    assert post.path == "/v1/continue"
    data = post.body
    assert data["error"] is None, f"{data['error']}\n--- console tail ---\n{console[-3000:]}"

    inventory = data["inventory"]
    nic = next(i for i in inventory["interfaces"] if i["mac_address"] == spec.mac)
    assert nic["ipv4_address"] == "10.0.2.15"  # the DHCP wait for BOOTIF saw it
    assert inventory["cpu"]["architecture"] == "x86_64"
    assert data["root_disk"]["name"] == "/dev/vda"
    assert data["root_disk"]["size"] == DISK_SIZE
    assert data["boot_interface"] == bootif
    assert data["configuration"]["collectors"] == COLLECTORS.split(",")

    vendors = {d["vendor_id"] for d in data["pci_devices"]}
    assert {"8086", "1af4"} <= vendors  # q35 chipset, virtio devices
    assert [r["numa_node"] for r in data["numa_topology"]["ram"]] == [0]
    assert data["dmi"]["bios"]["Vendor"] == "SeaBIOS"
    assert data["dmi"]["memory"]["devices"]
    assert {"product": "QEMU USB Tablet", "vendor": "QEMU"}.items() <= next(
        iter(data["usb_devices"]), {}).items(), data["usb_devices"]
    # user networking sends no LLDP: each interface listened on heard nothing
    assert data["lldp_raw"] and all(tlvs == [] for tlvs in data["lldp_raw"].values())
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(data["logs"]))) as tar:
        assert {"dmesg", "ip_addr"} <= set(tar.getnames())
