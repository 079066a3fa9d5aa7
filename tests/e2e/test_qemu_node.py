# SPDX-License-Identifier: Apache-2.0
"""End to end: the real Ironic 39 drives a QEMU node running the tinyipa image.

The test plays the node's BMC (see ``qemu_bmc.py``): it boots the guest (TCG,
one vCPU, 1 GiB, a 5 GiB sparse virtio disk, a virtio NIC with the port's MAC)
when Ironic waits for the ramdisk and cuts the power when Ironic powers the node
off. Ironic runs with ``[agent]require_tls=True`` (its default), so the agent in
the guest serves its API over auto-TLS with a certificate for the advertised
127.0.0.1.

Flows, once booting kernel + initramfs and once from the ISO (virtual-media
style): inspect → manageable with the guest's CPU, RAM and disk; provide →
automated cleaning (erase_devices_metadata) → available; deploy of a small
whole-disk image (raw, then qcow2, from a loopback server, sha256) → active,
with the image's bytes on the guest's disk; undeploy → cleaning → available.

The kernel-booted node is an Ironic ``pxe`` boot / ``noop`` management node with
``rescue_interface=agent`` (``driver_info`` names the tinyipa kernel and
initramfs as deploy and rescue images; Ironic stages them and writes the PXE
configuration, which nothing serves: the BMC boots the same files directly).
After its last deploy Ironic rescues it: the agent's heartbeat in ``rescue
wait`` gets ``rescue.finalize_rescue`` with Ironic's hash of the password, the
node reaches ``rescue``, and an SSH login as ``rescue`` with that password
(sshpass + OpenSSH, through a hostfwd to the guest's port 22) runs a command;
unrescue then returns the node to ``active``.

A second node with 512 MiB of RAM is deployed with a qcow2 whose file is
larger than its RAM (720 MiB): only the agent's streaming qcow2 writer can do
that (a cache copy in the ramdisk's /tmp cannot fit).

Each flow's wall time from the guest's start goes to
``out/test-artifacts/e2e/qemu-node/times.jsonl`` (the README figures).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot.agent_checks import rescue_ssh
from tests.e2e import ironic, qemu_bmc
from tests.e2e.conftest import Ironic, vm_ironic

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

GUEST_MEMORY_MIB = 1024
RESCUE_PASSWORD = "rescue-me-7Q"


def rescue_fields(kernel: Path, initrd: Path) -> dict[str, object]:
    """Interfaces and driver_info of a node Ironic can rescue with the agent.

    The agent rescue interface validates the boot interface's rescue support
    (``validate_rescue``), which the fake boot interface lacks; pxe checks for
    ``rescue_kernel`` and ``rescue_ramdisk`` and prepares them. Its unrescue sets
    the boot device to disk, which fake management refuses and noop accepts.
    """
    images = {"deploy_kernel": kernel, "deploy_ramdisk": initrd,
              "rescue_kernel": kernel, "rescue_ramdisk": initrd}
    return {"boot_interface": "pxe", "management_interface": "noop",
            "rescue_interface": "agent",
            "driver_info": {key: f"file://{path}" for key, path in images.items()}}


@pytest.fixture(scope="module")
def artefacts(e2e_artifacts: Path) -> Path:
    path = e2e_artifacts / "qemu-node"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def tinyipa() -> tuple[Path, Path]:
    return qemu_bmc.tinyipa_image(ironic.out_dir())


@pytest.fixture(scope="module")
def ironic_vm(tmp_path_factory: pytest.TempPathFactory, artefacts: Path) -> Iterator[Ironic]:
    yield from vm_ironic(tmp_path_factory, artefacts, "ironic-vm")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[qemu_bmc.ImageServer, dict[str, tuple[Path, bytes]]]]:
    served = tmp_path_factory.mktemp("qemu-images")
    made = {fmt: qemu_bmc.make_whole_disk_image(served, fmt) for fmt in ("raw", "qcow2")}
    with qemu_bmc.ImageServer(served) as server:
        yield server, made


def record(artefacts: Path, timings: list[qemu_bmc.FlowTiming]) -> None:
    with open(artefacts / "times.jsonl", "a") as f:
        f.writelines(json.dumps({"media": t.media, "flow": t.flow,
                                 "agent_started_s": t.agent_started,
                                 "finished_s": round(t.finished, 1),
                                 "powered_itself_off_s": t.powered_itself_off}) + "\n"
                     for t in timings)
    for t in timings:
        print(f"qemu-node {t.media:6} {t.flow:14} agent up {t.agent_started or 0:6.1f} s, "
              f"done {t.finished:6.1f} s after the guest started")


def mbr_signature(node: qemu_bmc.QemuNode) -> bytes:
    return node.read_disk(2, 510)


@pytest.mark.timeout(2400)
@pytest.mark.parametrize("media_name", ["kernel", "iso"])
def test_qemu_node_flows(media_name: str, tinyipa: tuple[Path, Path], ironic_vm: Ironic,
                         images: tuple[qemu_bmc.ImageServer, dict[str, tuple[Path, bytes]]],
                         artefacts: Path, tmp_path: Path) -> None:
    kernel, initrd = tinyipa
    media: qemu_bmc.Media = (qemu_bmc.KernelMedia(kernel, initrd) if media_name == "kernel"
                             else qemu_bmc.IsoMedia(kernel, initrd))
    node = qemu_bmc.QemuNode(f"vm-{media_name}", media, ironic_vm.service.api_port, tmp_path,
                             artefacts, memory_mib=GUEST_MEMORY_MIB)
    flows = qemu_bmc.NodeFlows(node, ironic_vm.service, ironic_vm.client)
    server, made = images
    try:
        flows.enroll(**(rescue_fields(kernel, initrd) if media_name == "kernel" else {}))

        # Inspection: Ironic's cpus/memory/root-device hooks fill the properties.
        inspected = flows.inspect().node
        props = inspected["properties"]
        assert props.get("cpus") == 1, props
        assert props.get("memory_mb") == GUEST_MEMORY_MIB, props
        assert props.get("local_gb") == qemu_bmc.DISK_SIZE // qemu_bmc.GIB - 1, props
        assert props.get("cpu_arch") == "x86_64", props
        inventory = ironic_vm.client.call("GET", f"/v1/nodes/{node.uuid}/inventory")["inventory"]
        disks = {d["name"]: d["size"] for d in inventory["disks"]}
        assert disks.get("/dev/vda") == qemu_bmc.DISK_SIZE, disks
        assert node.mac in [i["mac_address"] for i in inventory["interfaces"]]

        # Automated cleaning wipes the metadata of a disk that has a partition table.
        image, content = made["raw"]
        with open(node.disk, "r+b") as disk:
            disk.write(content[:1 << 20])
        assert mbr_signature(node) == b"\x55\xaa"
        flows.provide()
        assert mbr_signature(node) != b"\x55\xaa", "cleaning left the partition table"

        # Deploy raw, undeploy, deploy qcow2. On the kernel run the raw deploy ends with
        # the agent's standby.power_off; otherwise Ironic syncs and cuts the power.
        agent_power_off = media_name == "kernel"
        flows.deploy(server, image, "raw", oob_power_off=not agent_power_off)
        assert node.read_disk(len(content)) == content, "the disk does not hold the raw image"
        # Ironic checked the URL itself; the guest fetched it through the proxy.
        assert f"GET {server.url(image.name)} " in "\n".join(server.requests), server.requests
        flows.undeploy()
        assert mbr_signature(node) != b"\x55\xaa", "cleaning after undeploy left the image"
        image, content = made["qcow2"]
        deployed = flows.deploy(server, image, "qcow2", oob_power_off=True)
        assert node.read_disk(len(content)) == content, "the disk does not hold the qcow2 image"
        assert deployed.node["last_error"] is None

        if media_name == "kernel":
            check_rescue(flows)

        # The agent's callbacks named the forwarded port, over TLS only.
        log = ironic_vm.service.log.read_text(errors="replace")
        assert f"callback_url': 'https://127.0.0.1:{node.host_port}'" in log
        assert f"callback_url': 'http://127.0.0.1:{node.host_port}'" not in log
    finally:
        record(artefacts, flows.timings)
        node.close()
        flows.retire()


def check_rescue(flows: qemu_bmc.NodeFlows) -> None:
    """active → rescue (SSH login with the password) → unrescue → active."""
    node = flows.node
    rescued = flows.rescue(RESCUE_PASSWORD).node
    assert rescued["last_error"] is None
    # Ironic dropped the password once the agent confirmed the rescue.
    assert "rescue_password" not in rescued["instance_info"], rescued["instance_info"]
    assert node.guest is not None and node.guest.running()
    port = node.guest.forwards[qemu_bmc.SSH_PORT]
    assert rescue_ssh(port, RESCUE_PASSWORD, "id -u") == "0"  # tinyipa: rescue is uid 0
    with pytest.raises(AssertionError, match="Permission denied"):
        rescue_ssh(port, RESCUE_PASSWORD + "x", "true", attempts=1)
    active = flows.unrescue().node
    assert active["provision_state"] == "active" and active["last_error"] is None


SMALL_GUEST_MIB = 512
BIG_QCOW2_MIB = 720


def make_big_qcow2(directory: Path) -> tuple[Path, str, int]:
    """A qcow2 of BIG_QCOW2_MIB MiB of data (every cluster allocated, tables first,
    as qemu-img convert writes them): (file, sha256 of the guest disk, its size)."""
    raw = directory / "big.raw"
    size = (BIG_QCOW2_MIB + 8) << 20
    block = bytearray(hashlib.sha256(b"big").digest() * ((1 << 20) // 32))
    with open(raw, "wb") as f:
        for i in range(size >> 20):
            block[:8] = i.to_bytes(8, "little")  # no two MiB alike
            f.write(block)
    # The agent checks the written disk has a partition table.
    subprocess.run(["sfdisk", "--quiet", str(raw)], input="label: dos\nstart=2048, type=83\n",
                   text=True, check=True, capture_output=True)
    digest = hashlib.sha256()
    with open(raw, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    image = directory / "big.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)],
                   check=True, capture_output=True)
    raw.unlink()
    assert image.stat().st_size >= BIG_QCOW2_MIB << 20
    return image, digest.hexdigest(), size


@pytest.mark.timeout(1800)
def test_qemu_node_deploys_qcow2_larger_than_its_ram(
        tinyipa: tuple[Path, Path], ironic_vm: Ironic, artefacts: Path,
        tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    image, digest, size = make_big_qcow2(served)
    kernel, initrd = tinyipa
    node = qemu_bmc.QemuNode("vm-bigqcow2", qemu_bmc.KernelMedia(kernel, initrd),
                             ironic_vm.service.api_port, tmp_path, artefacts,
                             memory_mib=SMALL_GUEST_MIB)
    flows = qemu_bmc.NodeFlows(node, ironic_vm.service, ironic_vm.client)
    try:
        with qemu_bmc.ImageServer(served) as server:
            flows.enroll()
            flows.provide()
            deployed = flows.deploy(server, image, "qcow2", oob_power_off=True)
        assert deployed.node["last_error"] is None
        h = hashlib.sha256()
        with open(node.disk, "rb") as f:
            for _ in range(size >> 20):
                h.update(f.read(1 << 20))
        assert h.hexdigest() == digest, "the disk does not hold the qcow2's guest disk"
    finally:
        record(artefacts, flows.timings)
        node.close()
        flows.retire()
