# SPDX-License-Identifier: Apache-2.0
"""Hardware managers: the base class, loading, ordering and dispatch.

Managers come from the entry-point group ``ironic_python_agent.hardware_managers``.
Each says how well it supports this machine (:class:`HardwareSupport`); those
answering NONE are dropped and the rest are tried best first. A call is
*dispatched* to the first manager that has the method and does not raise
:class:`IncompatibleHardwareMethodError`.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from ironic_python_agent import config, errors

LOG = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ironic_python_agent.hardware_managers"


class HardwareSupport(enum.IntEnum):
    """How well a manager supports this machine; higher wins. Plugins may go beyond 3."""

    NONE = 0
    GENERIC = 1
    MAINLINE = 2
    SERVICE_PROVIDER = 3


class HardwareType:
    MAC_ADDRESS = "mac_address"


def _incompatible(*args: Any, **kwargs: Any) -> Any:
    raise errors.IncompatibleHardwareMethodError()


class HardwareManager:
    """Base of every manager. Only :meth:`evaluate_hardware_support` is required.

    Methods a manager does not implement raise
    :class:`IncompatibleHardwareMethodError`, which passes the call on to the next
    manager.
    """

    HARDWARE_MANAGER_NAME: str | None = None
    HARDWARE_MANAGER_VERSION: str | None = None

    def evaluate_hardware_support(self) -> int:
        raise NotImplementedError

    def initialize(self) -> None:
        """Called once on every active manager, best first, after all were probed."""

    # Everything a manager may answer for; the base abstains.
    list_network_interfaces = _incompatible
    collect_lldp_data = _incompatible
    get_interface_info = _incompatible
    get_cpus = _incompatible
    get_memory = _incompatible
    list_block_devices = _incompatible
    list_block_devices_check_skip_list = _incompatible
    get_skip_list_from_node_for_disks = _incompatible
    get_skip_list_from_node_for_raids = _incompatible
    get_os_install_device = _incompatible
    get_bmc_address = _incompatible
    get_bmc_mac = _incompatible
    get_bmc_v6address = _incompatible
    get_boot_info = _incompatible
    get_system_vendor_info = _incompatible
    generate_tls_certificate = _incompatible
    get_usb_devices = _incompatible
    erase_block_device = _incompatible
    collect_system_logs = _incompatible
    full_sync = _incompatible
    filter_device = _incompatible

    def erase_devices(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> Any:
        """Erase every disk, in parallel, each through ``erase_block_device``."""
        from ironic_python_agent.hardware import erase

        return erase.erase_devices(node, ports)

    def wait_for_disks(self) -> None:
        """Wait until a root device candidate shows up; only warn when none does."""
        conf = config.current()
        attempts = int(conf.disk_wait_attempts)
        if attempts <= 0:
            return
        delay = float(conf.disk_wait_delay)
        for attempt in range(1, attempts + 1):
            try:
                dispatch_to_managers("get_os_install_device")
                return
            except errors.RESTError as exc:
                LOG.debug("No root device yet (attempt %d of %d): %s", attempt, attempts, exc)
                if attempt < attempts:
                    time.sleep(delay)
        LOG.warning("No suitable root device found after %d attempts", attempts)

    def list_hardware_info(self) -> dict[str, Any]:
        """The inventory (contract §5) as plain JSON values."""
        from ironic_python_agent.hardware import inventory

        return inventory.build(self)

    def get_clean_steps(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> list[Any]:
        return []

    def get_deploy_steps(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> list[Any]:
        return []

    def get_service_steps(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> list[Any]:
        return []

    def get_version(self) -> dict[str, str]:
        return {"name": self.HARDWARE_MANAGER_NAME or type(self).__name__,
                "version": self.HARDWARE_MANAGER_VERSION or "1.0"}


# --- loading ------------------------------------------------------------------

_lock = threading.Lock()
_managers: list[HardwareManager] | None = None


def _load() -> list[HardwareManager]:
    scored: list[tuple[int, HardwareManager]] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            manager = ep.load()()
            support = int(manager.evaluate_hardware_support())
        except Exception:  # noqa: BLE001 - one broken plugin must not stop the agent
            LOG.exception("Cannot load hardware manager %s (%s)", ep.name, ep.value)
            continue
        LOG.info("Hardware manager %s: support %d", ep.name, support)
        if support > HardwareSupport.NONE:
            scored.append((support, manager))
    if not scored:
        raise errors.HardwareManagerNotFound()
    # Stable: entry-point order breaks ties.
    scored.sort(key=lambda pair: pair[0], reverse=True)
    managers = [m for _, m in scored]
    for manager in managers:
        manager.initialize()
    return managers


def get_managers() -> list[HardwareManager]:
    """The active managers, best first. Loaded once per process."""
    global _managers
    if _managers is None:
        with _lock:
            if _managers is None:
                _managers = _load()
    return _managers


def get_managers_detail() -> list[dict[str, Any]]:
    """Each active manager with its support level (best first)."""
    return [{"name": type(m).__name__, "manager": m, "version": m.get_version()["version"],
             "support": int(m.evaluate_hardware_support())} for m in get_managers()]


def clear_managers() -> None:
    """Forget the loaded managers (tests; after installing a plugin)."""
    global _managers
    with _lock:
        _managers = None


def dispatch_to_managers(method: str, *args: Any, **kwargs: Any) -> Any:
    """Call *method* on the best manager that handles it and return its answer.

    A manager without the method, or raising IncompatibleHardwareMethodError,
    passes; any returned value (None too) ends the walk; other errors go up.
    """
    for manager in get_managers():
        func: Callable[..., Any] | None = getattr(manager, method, None)
        if func is None or not callable(func):
            continue
        try:
            return func(*args, **kwargs)
        except errors.IncompatibleHardwareMethodError:
            LOG.debug("%s cannot %s, trying the next manager", type(manager).__name__, method)
    raise errors.HardwareManagerMethodNotFound(method)


def dispatch_to_all_managers(method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call *method* on every manager that handles it: ``{ClassName: answer}``."""
    answers: dict[str, Any] = {}
    for manager in get_managers():
        func = getattr(manager, method, None)
        if func is None or not callable(func):
            continue
        try:
            answers[type(manager).__name__] = func(*args, **kwargs)
        except errors.IncompatibleHardwareMethodError:
            LOG.debug("%s cannot %s", type(manager).__name__, method)
    if not answers:
        raise errors.HardwareManagerMethodNotFound(method)
    return answers


# --- versions -----------------------------------------------------------------

def get_current_versions() -> dict[str, str]:
    """``{name: version}`` of every active manager, as sent to Ironic."""
    versions: dict[str, str] = {}
    for manager in get_managers():
        info = manager.get_version()
        versions[str(info["name"])] = str(info["version"])
    return versions


def check_versions(provided_version: Any = None) -> None:
    """Raise VersionMismatch when Ironic's map differs from ours (None: no check)."""
    if not provided_version:
        return
    current = get_current_versions()
    if provided_version != current:
        raise errors.VersionMismatch(agent_version=current, node_version=provided_version)


# --- the node this agent serves -------------------------------------------------

_node: dict[str, Any] | None = None


def cache_node(node: dict[str, Any] | None) -> None:
    """Remember *node*; when it is a different node, wait for its disks first."""
    global _node
    if node is None:
        return
    changed = _node is None or _node.get("uuid") != node.get("uuid")
    _node = node
    if changed:
        try:
            dispatch_to_managers("wait_for_disks")
        except errors.HardwareManagerMethodNotFound:
            pass


def get_cached_node() -> dict[str, Any] | None:
    return _node


def update_cached_node(node: dict[str, Any]) -> None:
    """Replace the cached node without waiting for disks (after a lookup refresh)."""
    global _node
    _node = node
