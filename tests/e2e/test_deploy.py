# SPDX-License-Identifier: Apache-2.0
"""Direct deploy driven by the real Ironic 39, our agent running as a host process.

available → active: Ironic waits in ``wait call-back``, the test starts the agent,
Ironic calls ``deploy.get_deploy_steps``, ``deploy.execute_deploy_step(write_image)``
with an image on a loopback HTTP server (sha256), ``standby.get_partition_uuids``,
``image.install_bootloader`` and ``standby.power_off``; the loop device then holds
the image. deleted → cleaning → available with a fresh agent wipes its metadata.

The fake management interface only takes the ``pxe`` boot device; Ironic skips
setting ``disk`` for nodes with ``vendor=lenovo`` and ``boot_mode:uefi``, so the node
carries those properties (see real-ironic.md).

``driver_info.deploy_forces_oob_reboot`` makes Ironic end the deploy with
``standby.sync`` and a (fake) out-of-band power off instead of asking the agent to
run ``poweroff``: this agent runs on the test machine. (Its PATH shadows poweroff
and friends with no-ops as well, see ``host.host_guards``.)
"""

from __future__ import annotations

import hashlib
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e import host
from tests.e2e.conftest import Flow, Ironic

pytestmark = pytest.mark.e2e

IMAGE_SIZE = 24 << 20


def make_raw_image(path: Path) -> bytes:
    """A whole-disk image: an MBR with one partition, then stretches of random data.

    MBR rather than GPT so nothing the agent may legitimately do to a GPT (moving
    the backup header to the end of a bigger disk) changes the bytes compared.
    """
    rng = random.Random(20260401)
    data = bytearray(IMAGE_SIZE)
    for start in range(1 << 20, IMAGE_SIZE, 4 << 20):
        data[start:start + (1 << 20)] = rng.randbytes(1 << 20)
    path.write_bytes(bytes(data))
    subprocess.run(["sfdisk", "--quiet", str(path)], input="label: dos\nstart=2048, type=83\n",
                   text=True, check=True, capture_output=True)
    return path.read_bytes()


def make_image(directory: Path, disk_format: str) -> tuple[Path, bytes]:
    """The served file and the bytes the disk must hold afterwards."""
    raw = directory / "image.raw"
    content = make_raw_image(raw)
    if disk_format == "raw":
        return raw, content
    qcow2 = directory / "image.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)],
                   check=True, capture_output=True)
    raw.unlink()
    return qcow2, content


def first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)))


@pytest.mark.parametrize(("disk_format", "tls"), [("raw", False), ("qcow2", True)],
                         ids=["raw-plain", "qcow2-auto-tls"])
def test_deploy_and_undeploy(disk_format: str, tls: bool, request: pytest.FixtureRequest,
                             flow_factory: Callable[[Ironic], Flow], tmp_path: Path) -> None:
    ironic_: Ironic = request.getfixturevalue("ironic_tls" if tls else "ironic_plain")
    flow = flow_factory(ironic_)
    # No cleaning on the way to available (nothing to prove there, the clean tests
    # do); switched on before the undeploy, which must clean.
    flow.enroll(automated_clean=False, driver_info={"deploy_forces_oob_reboot": True},
                properties={"vendor": "lenovo", "capabilities": "boot_mode:uefi",
                            "cpu_arch": "x86_64", "local_gb": 4})
    flow.manage()
    flow.client.set_provision_state(flow.uuid, "provide")
    flow.wait({"available"}, timeout=60)

    served = tmp_path / "images"
    served.mkdir()
    image, content = make_image(served, disk_format)
    with host.ImageServer(served) as server:
        flow.client.patch_node(flow.uuid, instance_info={
            "image_source": server.url(image.name),
            "image_os_hash_algo": "sha256",
            "image_os_hash_value": hashlib.sha256(image.read_bytes()).hexdigest(),
            "image_disk_format": disk_format,
            "root_gb": 1,
        })
        flow.run_to("active", {"active"}, wait_state="wait call-back", auto_tls=tls)
        assert any(image.name in line for line in server.requests), (
            f"the agent never fetched the image; server saw {server.requests}")

    on_disk = flow.disk.read(len(content))
    assert on_disk == content, flow.explain(
        f"{flow.disk.device} does not hold the {disk_format} image: first difference at byte "
        f"{first_difference(on_disk, content)}")

    flow.client.patch_node(flow.uuid, automated_clean=True)
    flow.run_to("deleted", {"available"}, wait_state="clean wait", auto_tls=tls)
    assert flow.disk.read(2, 510) != b"\x55\xaa", flow.explain(
        "cleaning after undeploy left the image's partition table")
