# SPDX-License-Identifier: Apache-2.0
"""In-band inspection driven by the real Ironic 39, our agent running as a host process.

enroll (inspect_interface=agent) → manage → inspect: Ironic waits in ``inspect wait``;
the test starts the agent with ``ipa-inspection-callback-url`` pointing at Ironic's
``/v1/continue_inspection`` (Ironic's fake boot interface boots nothing, so the test
passes the parameter Ironic would put on the kernel command line). The agent posts
its inventory and collectors; Ironic's hooks set the node's properties and the node
returns to ``manageable``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e import host
from tests.e2e.conftest import Flow, Ironic

pytestmark = pytest.mark.e2e

GIB = 1 << 30


@pytest.fixture
def root_disk(tmp_path: Path) -> Iterator[host.LoopDevice]:
    """A 5 GiB sparse loop device: big enough for the agent's root-disk guess (>= 4 GiB)."""
    with host.loop_device(tmp_path, 5 * GIB) as loop:
        yield loop


def test_inspect_sets_properties(ironic_plain: Ironic, flow_factory: Callable[[Ironic], Flow],
                                 root_disk: host.LoopDevice) -> None:
    flow = flow_factory(ironic_plain)
    flow.enroll(inspect_interface="agent")
    flow.manage()
    callback = f"{flow.ironic.service.url}/v1/continue_inspection"
    node = flow.run_to(
        "inspect", {"manageable"}, auto_tls=False, wait_state="inspect wait", timeout=180,
        options={"block_device_allowlist": Path(root_disk.device).name},
        cmdline=(f"ipa-inspection-callback-url={callback} "
                 "ipa-inspection-collectors=default,pci-devices,numa-topology,usb-devices"))
    assert node["last_error"] is None, flow.explain(f"last_error: {node['last_error']}")
    props = node["properties"]
    assert props.get("cpus") == os.cpu_count(), flow.explain(f"properties: {props}")
    # root-device hook: the 5 GiB disk, minus 1 GiB of partitioning spacing.
    assert props.get("local_gb") == 4, flow.explain(f"properties: {props}")
    assert props.get("cpu_arch") == os.uname().machine, flow.explain(f"properties: {props}")

    stored = flow.client.call("GET", f"/v1/nodes/{flow.uuid}/inventory")
    inventory, plugin_data = stored["inventory"], stored["plugin_data"]
    # memory hook: memory_mb is the inventory's physical_mb (from dmidecode; null on a
    # host without SMBIOS tables, such as a VM whose firmware provides none).
    physical_mb = inventory["memory"]["physical_mb"]
    assert props.get("memory_mb") == physical_mb, flow.explain(f"properties: {props}")
    assert physical_mb is None or physical_mb > 0
    assert [i["mac_address"] for i in inventory["interfaces"]].count(flow.link.mac) == 1
    assert [d["name"] for d in inventory["disks"]] == [root_disk.device]
    assert plugin_data["root_disk"]["name"] == root_disk.device
    assert plugin_data["configuration"]["collectors"] == ["default", "pci-devices",
                                                         "numa-topology", "usb-devices"]
    assert isinstance(plugin_data["pci_devices"], list)
    assert plugin_data["numa_topology"]["ram"]
    assert plugin_data.get("error") is None
