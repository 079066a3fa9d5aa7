# SPDX-License-Identifier: Apache-2.0
"""Direct deploy driven by the real Ironic 39, our agent running as a host process.

enroll → manage → provide (cleaning) → deploy a raw image → deleted (cleaning)
→ deploy a qcow2 image: each deploy must leave the image's bytes on the agent's
only disk (a loop device), the cleaning must wipe its partition table.

The agent would run ``hwclock --systohc`` and ``poweroff`` at the end of a
deploy (``standby.power_off``); on this host those are shims on the agent's
PATH that only log, and they exit 0 so the sysrq fallback never runs.
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

SHIMMED = ("poweroff", "reboot", "hwclock", "udevadm")


def power_shims(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in SHIMMED:
        shim = directory / name
        shim.write_text(f'#!/bin/sh\necho "e2e shim: {name} $*" >> "{directory}/calls.log"\n'
                        "exit 0\n")
        shim.chmod(0o755)
    return directory


def start_agent(flow: Flow, shims: Path) -> host.AgentProcess:
    """Flow.start_agent, with the power shims first on PATH."""
    flow.runs += 1
    agent = host.AgentProcess(
        host.our_agent_command(), flow.artifacts, flow.ironic.service.url, auto_tls=False,
        extra={"block_device_allowlist": Path(flow.disk.device).name},
        name=f"agent-{flow.runs}", path_prefix=[shims])
    flow.agent = agent.start()
    return agent


def run_flow(flow: Flow, shims: Path, target: str, wait_state: str,
             end: str) -> dict[str, object]:
    flow.client.set_provision_state(flow.uuid, target)
    flow.wait({wait_state}, timeout=90)
    start_agent(flow, shims)
    try:
        return flow.wait({end}, timeout=240)
    finally:
        flow.stop_agent()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_deploy_raw_and_qcow2_then_clean(ironic_plain: Ironic,
                                         flow_factory: Callable[[Ironic], Flow],
                                         tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    raw = make_disk_image(images / "disk.raw", 48 * MIB, "gpt", seed=11)
    other = make_disk_image(tmp_path / "other.raw", 48 * MIB, "dos", seed=12)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(other),
                    str(images / "disk.qcow2")], check=True)
    shims = power_shims(tmp_path / "shims")

    flow = flow_factory(ironic_plain)
    # fake management only takes the pxe boot device; Ironic skips setting "disk"
    # for this vendor in UEFI mode (real-ironic.md), and calls install_bootloader.
    flow.enroll(properties={"vendor": "lenovo", "capabilities": "boot_mode:uefi"})
    flow.manage()
    node = run_flow(flow, shims, "provide", "clean wait", "available")
    assert node["last_error"] is None

    with host.ImageServer(images) as server:
        for name, fmt, expected in (("disk.raw", "raw", raw), ("disk.qcow2", "qcow2", other)):
            data = (images / name).read_bytes()
            flow.client.patch_node(flow.uuid, instance_info={
                "image_source": server.url(name), "image_os_hash_algo": "sha256",
                "image_os_hash_value": digest(data), "image_disk_format": fmt,
                "root_gb": 1})
            node = run_flow(flow, shims, "active", "wait call-back", "active")
            assert node["last_error"] is None, flow.explain(f"deploy of {name}")
            want = expected.read_bytes()
            got = flow.disk.read(len(want))
            assert digest(got) == digest(want), flow.explain(f"{name} not on the disk")
            log = (flow.artifacts / f"agent-{flow.runs}.log").read_text(errors="replace")
            assert "written to" in log and "MiB/s" in log, flow.explain("no write figures")
            assert "e2e shim: poweroff" in (shims / "calls.log").read_text()

            if fmt == "raw":  # one tear-down + cleaning is enough; qcow2 ends active
                node = run_flow(flow, shims, "deleted", "clean wait", "available")
                assert node["last_error"] is None, flow.explain(f"cleaning after {name}")
                assert flow.disk.read(8, 512) != b"EFI PART", flow.explain(
                    "GPT survived cleaning")
