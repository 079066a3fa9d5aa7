# SPDX-License-Identifier: Apache-2.0
"""Direct deploy with Ironic's default tear-down (``standby.power_off``).

``test_deploy.py`` covers raw and qcow2 deploys and undeploy with cleaning, ending
each deploy out-of-band. This one lets Ironic ask the agent to power off, as a
real deploy does, and serves a zstd-compressed raw image (``disk_format=raw``)
that the agent decompresses in the stream; the checksum is the compressed file's.

The agent runs on this machine: its PATH shadows poweroff, reboot, hwclock & co
with logging no-ops that exit 0 (``host.host_guards``), so neither the command
nor the sysrq fallback ever runs for real.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e import host
from tests.e2e.conftest import Flow, Ironic
from tests.imagetools import MIB, make_disk_image

pytestmark = pytest.mark.e2e


def test_deploy_zstd_raw_with_agent_power_off(ironic_plain: Ironic,
                                              flow_factory: Callable[[Ironic], Flow],
                                              tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    raw = make_disk_image(tmp_path / "disk.raw", 48 * MIB, "gpt", seed=11)
    subprocess.run(["zstd", "-q", "-3", str(raw), "-o", str(images / "disk.raw.zst")],
                   check=True)
    compressed = (images / "disk.raw.zst").read_bytes()

    flow = flow_factory(ironic_plain)
    # fake management only takes the pxe boot device; Ironic skips setting "disk"
    # for this vendor in UEFI mode (real-ironic.md) and calls install_bootloader.
    flow.enroll(properties={"vendor": "lenovo", "capabilities": "boot_mode:uefi"})
    flow.manage()
    node = flow.run_to("provide", {"available"}, auto_tls=False, wait_state="clean wait")
    assert node["last_error"] is None, flow.explain("cleaning before the deploy")

    with host.ImageServer(images) as server:
        flow.client.patch_node(flow.uuid, instance_info={
            "image_source": server.url("disk.raw.zst"), "image_os_hash_algo": "sha256",
            "image_os_hash_value": hashlib.sha256(compressed).hexdigest(),
            "image_disk_format": "raw", "root_gb": 1})
        node = flow.run_to("active", {"active"}, auto_tls=False, wait_state="wait call-back")
    assert node["last_error"] is None, flow.explain("deploy")
    want = raw.read_bytes()
    assert hashlib.sha256(flow.disk.read(len(want))).hexdigest() == \
        hashlib.sha256(want).hexdigest(), flow.explain("the image is not on the disk")
    log = (flow.artifacts / f"agent-{flow.runs}.log").read_text(errors="replace")
    assert "written to" in log and "MiB/s=" in log, flow.explain("no write figures logged")
    assert "Running poweroff" in log, flow.explain("Ironic did not ask the agent to power off")
