# SPDX-License-Identifier: Apache-2.0
"""A vendor hardware manager ranked above the generic one, installed in the agent, with
the real Ironic 39: the node still inspects (its manager lacks the inventory methods,
which fall through to the generic manager) and cleans (its own clean step runs too).

The manager is tests/hwm_example, installed as its own distribution with pip and put
on the agent's PYTHONPATH; it claims the machine (SERVICE_PROVIDER) when
EXAMPLE_HWM_DEVICE names an existing file, standing in for a vendor device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Flow, Ironic

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parent.parent / "hwm_example"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("hwm-example-e2e")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
                   check=True)
    return target


def test_custom_manager_inspects_and_cleans(ironic_plain: Ironic,
                                            flow_factory: Callable[[Ironic], Flow],
                                            example_site: Path, tmp_path: Path) -> None:
    device = tmp_path / "vendor-device.json"
    device.write_text(json.dumps({"firmware": "1.0"}))
    env = {"PYTHONPATH": str(example_site), "EXAMPLE_HWM_DEVICE": str(device)}
    flow = flow_factory(ironic_plain)
    flow.enroll(inspect_interface="agent")
    flow.manage()
    callback = f"{flow.ironic.service.url}/v1/continue_inspection"
    node = flow.run_to("inspect", {"manageable"}, auto_tls=False, wait_state="inspect wait",
                       timeout=180, env=env,
                       cmdline=f"ipa-inspection-callback-url={callback}")
    assert node["last_error"] is None, flow.explain(f"last_error: {node['last_error']}")
    log = flow.agent.log_text() if flow.agent else ""
    assert "ExampleDeviceHardwareManager" in log or "example" in log, flow.explain(
        "the custom manager was not loaded")
    props = node["properties"]
    assert props.get("cpus") == os.cpu_count(), flow.explain(f"properties: {props}")
    assert props.get("memory_mb"), flow.explain(f"properties: {props}")
    inventory = flow.client.call("GET", f"/v1/nodes/{flow.uuid}/inventory")["inventory"]
    assert inventory["cpu"]["count"] == os.cpu_count()
    assert inventory["memory"]["total"] > 0

    flow.client.set_provision_state(flow.uuid, "provide")
    flow.wait({"clean wait"}, timeout=60)
    flow.start_agent(auto_tls=False, env=env)
    node = flow.wait({"available"})
    flow.stop_agent()
    assert node["last_error"] is None, flow.explain(f"last_error: {node['last_error']}")
    # The manager's own clean step (priority 10) ran in automated cleaning.
    assert json.loads(device.read_text()) == {"firmware": "2.0"}, flow.explain(
        "upgrade_firmware did not run")
    versions = node["driver_internal_info"].get("hardware_manager_version") or {}
    assert versions.get("ExampleDeviceHardwareManager") == "1.1", flow.explain(
        f"hardware_manager_version: {versions}")
