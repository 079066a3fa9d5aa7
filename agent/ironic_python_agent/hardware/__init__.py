# SPDX-License-Identifier: Apache-2.0
"""Hardware managers, with the names managers written for the upstream agent import.

``from ironic_python_agent import hardware`` then ``hardware.HardwareManager``,
``hardware.HardwareSupport``, ``hardware.dispatch_to_managers``,
``hardware.BlockDevice`` … work as they do upstream.
"""

from __future__ import annotations

import os
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
    USBInfo,
)
from ironic_python_agent.hardware import managers
from ironic_python_agent.hardware.erase import safety_check_block_device
from ironic_python_agent.hardware.generic import GenericHardwareManager
from ironic_python_agent.hardware.md import (
    get_component_devices,
    get_holder_disks,
    is_md_device,
    md_get_raid_devices,
    md_restart,
)
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
    "filter_devices", "get_component_devices", "get_holder_disks", "is_md_device",
    "safety_check_block_device", "get_os_install_device", "list_all_block_devices", "list_hardware_info",
    "save_api_client", "update_cached_node", "USBInfo", "md_restart", "md_get_raid_devices",
    "get_multipath_status",
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


def list_all_block_devices(block_type: str | list[str] = "disk", ignore_raid: bool = False,
                           ignore_floppy: bool = True, ignore_empty: bool = True,
                           ignore_multipath: bool = False, all_serial_and_wwn: bool = False
                           ) -> list[BlockDevice]:
    """Block devices of *block_type* (``disk``, ``part``, ``raid*``, ``md``, ``mpath`` or
    a list of them), with upstream's signature; ``block_device_allowlist`` applies."""
    from ironic_python_agent.hardware import disks, options

    wanted = {block_type} if isinstance(block_type, str) else set(block_type)
    found = disks.list_all_block_devices(include_partitions="part" in wanted,
                                         allow=options.allowlist())
    kept = []
    for device in found:
        kind = device.kind
        if ignore_raid and ("raid" in kind or kind == "md"):
            continue
        if kind in wanted or ("disk" in wanted and kind not in ("part",)):
            kept.append(device)
    return kept


def get_multipath_status() -> bool:
    """Whether multipath devices are handled here: the multipath tools and dm_multipath."""
    from ironic_python_agent import run

    return run.which("multipath") is not None and os.path.isdir("/sys/module/dm_multipath")


def _get_device_info(dev: str, devclass: str, field: str) -> str | None:
    """``/sys/class/<devclass>/<dev>/device/<field>``, stripped (None when missing)."""
    try:
        with open(f"/sys/class/{devclass}/{os.path.basename(dev)}/device/{field}") as f:
            return f.read().strip()
    except OSError:
        return None


def __getattr__(name: str) -> Any:
    # Upstream's module global: the active managers as {"name", "manager", "support"}.
    if name == "_global_managers":
        return managers._managers  # noqa: SLF001
    raise AttributeError(name)
