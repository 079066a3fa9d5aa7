# SPDX-License-Identifier: Apache-2.0
"""Hardware managers, with the names managers written for the upstream agent import.

``from ironic_python_agent import hardware`` then ``hardware.HardwareManager``,
``hardware.HardwareSupport``, ``hardware.dispatch_to_managers``,
``hardware.BlockDevice`` … work as they do upstream.
"""

from __future__ import annotations

from typing import Any

from ironic_python_agent.hardware.devices import (
    CPU,
    BlockDevice,
    BootInfo,
    CPUCore,
    Memory,
    NetworkInterface,
    SystemFirmware,
    SystemVendorInfo,
)
from ironic_python_agent.hardware.generic import GenericHardwareManager
from ironic_python_agent.hardware.managers import (
    ENTRY_POINT_GROUP,
    HardwareManager,
    HardwareSupport,
    HardwareType,
    cache_node,
    check_versions,
    clear_managers,
    dispatch_to_all_managers,
    dispatch_to_managers,
    filter_devices,
    get_cached_node,
    get_current_versions,
    get_managers,
    get_managers_detail,
    list_hardware_info,
    save_api_client,
    update_cached_node,
)

__all__ = [
    "BlockDevice", "BootInfo", "CPU", "CPUCore", "ENTRY_POINT_GROUP",
    "GenericHardwareManager", "HardwareManager", "HardwareSupport", "HardwareType", "Memory",
    "NetworkInterface", "SystemFirmware", "SystemVendorInfo", "cache_node", "check_versions",
    "clear_managers", "deduplicate_steps", "dispatch_to_all_managers", "dispatch_to_managers",
    "get_cached_node", "get_current_versions", "get_managers", "get_managers_detail",
    "filter_devices", "get_os_install_device", "list_all_block_devices", "list_hardware_info",
    "save_api_client", "update_cached_node",
]


def deduplicate_steps(candidate_steps: dict[str, list[dict[str, Any]]]
                      ) -> dict[str, list[dict[str, Any]]]:
    """Upstream's merge of steps from several managers (see hardware/steps.py)."""
    from ironic_python_agent.hardware import steps

    support = {d["name"]: d["support"] for d in get_managers_detail()}
    return steps.deduplicate(candidate_steps, support)


def get_os_install_device(permit_refresh: bool = False) -> str:
    """The install disk chosen by the managers (root device hints honoured)."""
    return dispatch_to_managers(  # type: ignore[no-any-return]
        "get_os_install_device", permit_refresh=permit_refresh)


def list_all_block_devices(block_type: str = "disk", include_partitions: bool = False,
                           **kwargs: Any) -> list[BlockDevice]:
    from ironic_python_agent.hardware import disks, options

    return disks.list_all_block_devices(include_partitions=include_partitions,
                                        allow=options.allowlist())
