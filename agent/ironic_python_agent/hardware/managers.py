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
import socket
import threading
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from ironic_python_agent import config, errors
from ironic_python_agent.hardware import erase, node_cache
from ironic_python_agent.hardware.devices import to_json

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


_warned: set[str] = set()


def _field(what: str, func: Callable[[], Any], empty: Any = None) -> Any:
    """One inventory field from *func* as plain JSON.

    IncompatibleHardwareMethodError goes up (the whole inventory then falls
    through to the next manager, as upstream's); any other failure nulls the
    field with one warning per field, so one broken tool never loses the rest.
    """
    try:
        return to_json(func())
    except errors.IncompatibleHardwareMethodError:
        raise
    except Exception as exc:  # noqa: BLE001 - the inventory must never fail as a whole
        if what not in _warned:
            _warned.add(what)
            LOG.warning("Cannot collect %s (reported as %r): %s", what, empty, exc)
        return empty


class HardwareManager:
    """Base of every manager, with upstream 13.0.0's methods and semantics.

    Only :meth:`evaluate_hardware_support` is required. Every per-item method
    raises :class:`IncompatibleHardwareMethodError` here, which passes the call
    on to the next manager; the composite methods (:meth:`list_hardware_info`,
    :meth:`erase_devices`, :meth:`wait_for_disks`) are built from the per-item
    methods *of the same manager*, so on a manager that lacks them they raise
    too and the call falls through to the next manager as a whole.
    """

    def evaluate_hardware_support(self) -> int:
        raise NotImplementedError

    def initialize(self) -> None:
        """Called once on every active manager, best first, after all were probed."""

    # The per-item methods; the base abstains from each.
    list_network_interfaces = _incompatible
    collect_lldp_data = _incompatible
    get_cpus = _incompatible
    list_block_devices = _incompatible
    get_skip_list_from_node_for_disks = _incompatible
    get_skip_list_from_node_for_raids = _incompatible
    list_block_devices_check_skip_list = _incompatible
    get_memory = _incompatible
    get_os_install_device = _incompatible
    get_bmc_address = _incompatible
    get_bmc_mac = _incompatible
    get_bmc_v6address = _incompatible
    get_boot_info = _incompatible
    get_interface_info = _incompatible
    generate_tls_certificate = _incompatible
    get_usb_devices = _incompatible
    erase_block_device = _incompatible
    collect_system_logs = _incompatible
    full_sync = _incompatible
    filter_device = _incompatible
    # Not in upstream's base class, but dispatched by upstream code all the same.
    get_system_vendor_info = _incompatible

    def erase_devices(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> Any:
        """Erase every disk this manager lists, in parallel, each through
        ``dispatch_to_managers("erase_block_device")``; ``{device: report}``."""
        devices = self.list_block_devices_check_skip_list(node)
        try:
            everything = self.list_block_devices()
        except errors.IncompatibleHardwareMethodError:
            everything = devices
        return erase.erase_devices(node, devices, everything, dispatch_to_managers)

    def wait_for_disks(self) -> None:
        """Wait until this manager finds a root device; only warn when none shows up."""
        conf = config.current()
        attempts = int(conf.disk_wait_attempts)
        if attempts <= 0:
            return
        delay = float(conf.disk_wait_delay)
        for attempt in range(1, attempts + 1):
            try:
                self.get_os_install_device()
                return
            except errors.DeviceNotFound as exc:
                LOG.debug("No root device yet (attempt %d of %d): %s", attempt, attempts, exc)
                if attempt < attempts:
                    time.sleep(delay)
        LOG.warning("No suitable root device found after %d attempts", attempts)

    def list_hardware_info(self) -> dict[str, Any]:
        """The inventory (contract §5) as plain JSON values, from this manager's methods."""
        start = time.monotonic()
        info: dict[str, Any] = {
            "interfaces": _field("interfaces", self.list_network_interfaces, []),
            "cpu": _field("cpu", self.get_cpus),
            "disks": _field("disks", self.list_block_devices, []),
            "memory": _field("memory", self.get_memory),
        }
        node = get_cached_node() or {}
        skip_bmc = bool(node.get("skip_bmc_detect"))
        if skip_bmc:
            info["bmc_address"] = info["bmc_v6address"] = None
        else:
            info["bmc_address"] = _field("bmc_address", self.get_bmc_address)
            info["bmc_v6address"] = _field("bmc_v6address", self.get_bmc_v6address)
        info["system_vendor"] = _field("system_vendor", self.get_system_vendor_info)
        info["boot"] = _field("boot", self.get_boot_info)
        info["hostname"] = _field("hostname", socket.gethostname)
        if not skip_bmc:
            try:
                mac = _field("bmc_mac", self.get_bmc_mac)
            except errors.IncompatibleHardwareMethodError:
                mac = None  # upstream leaves the key out
            if mac:
                info["bmc_mac"] = mac
        LOG.info("Inventory collected in %.2f s", time.monotonic() - start)
        return info

    def get_clean_steps(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> list[Any]:
        return []

    def get_deploy_steps(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> list[Any]:
        return []

    def get_service_steps(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> list[Any]:
        return []

    def get_version(self) -> dict[str, str]:
        """``HARDWARE_MANAGER_NAME`` (default: the class name) and ``_VERSION`` (``1.0``)."""
        return {"name": getattr(self, "HARDWARE_MANAGER_NAME", type(self).__name__),
                "version": getattr(self, "HARDWARE_MANAGER_VERSION", "1.0")}


# --- loading ------------------------------------------------------------------

_lock = threading.Lock()
_managers: list[dict[str, Any]] | None = None


def _load() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            manager = ep.load()()
            support = int(manager.evaluate_hardware_support())
        except Exception:  # noqa: BLE001 - one broken plugin must not stop the agent
            LOG.exception("Cannot load hardware manager %s (%s)", ep.name, ep.value)
            continue
        LOG.info("Hardware manager %s: support %d", ep.name, support)
        if support > HardwareSupport.NONE:
            found.append({"name": type(manager).__name__, "manager": manager,
                          "support": support})
    if not found:
        raise errors.HardwareManagerNotFound()
    # Stable: entry-point order breaks ties, as upstream's sort does.
    found.sort(key=lambda d: d["support"], reverse=True)
    return found


def get_managers_detail() -> list[dict[str, Any]]:
    """``{"name", "manager", "support", "version"}`` of each active manager, best first.

    Probed once per process; every manager's ``initialize()`` runs (best first)
    after all were probed, as upstream's.
    """
    global _managers
    if _managers is None:
        with _lock:
            if _managers is None:
                found = _load()
                _managers = found
                for detail in found:
                    detail["manager"].initialize()
    return [{**d, "version": d["manager"].get_version().get("version")} for d in _managers]


def get_managers() -> list[HardwareManager]:
    """The active managers, best first."""
    get_managers_detail()
    assert _managers is not None
    return [d["manager"] for d in _managers]


def clear_managers() -> None:
    """Forget the loaded managers (tests; after installing a plugin)."""
    global _managers, _cached_hw_info
    with _lock:
        _managers = None
        _cached_hw_info = None


def dispatch_to_managers(method: str, *args: Any, **kwargs: Any) -> Any:
    """Call *method* on the best manager that handles it and return its answer.

    A manager without the method, or raising IncompatibleHardwareMethodError,
    passes; any returned value (None too) ends the walk; other errors go up.
    HardwareManagerMethodNotFound when no manager handled it.
    """
    for manager in get_managers():
        func: Callable[..., Any] | None = getattr(manager, method, None)
        if not func:
            LOG.debug("%s has no method %s", type(manager).__name__, method)
            continue
        try:
            return func(*args, **kwargs)
        except errors.IncompatibleHardwareMethodError:
            LOG.debug("%s cannot %s, trying the next manager", type(manager).__name__, method)
        except errors.HardwareManagerConfigurationError as exc:
            LOG.error("Configuration error in hardware manager %s: %s",
                      type(manager).__name__, exc)
            raise
        except Exception as exc:
            LOG.debug("Error dispatching %s to %s: %s", method, type(manager).__name__, exc)
            raise
    raise errors.HardwareManagerMethodNotFound(method)


def dispatch_to_all_managers(method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call *method* on every manager that handles it: ``{ClassName: answer}``.

    Managers without it or raising IncompatibleHardwareMethodError are left
    out; any other error goes up; HardwareManagerMethodNotFound when none answered.
    """
    answers: dict[str, Any] = {}
    for manager in get_managers():
        func = getattr(manager, method, None)
        if not func:
            LOG.debug("%s has no method %s", type(manager).__name__, method)
            continue
        try:
            answers[type(manager).__name__] = func(*args, **kwargs)
        except errors.IncompatibleHardwareMethodError:
            LOG.debug("%s does not support %s", type(manager).__name__, method)
    if not answers:
        raise errors.HardwareManagerMethodNotFound(method)
    return answers


_cached_hw_info: dict[str, Any] | None = None


def list_hardware_info(use_cache: bool = True) -> dict[str, Any]:
    """The inventory through the managers; the first one is kept and reused when
    *use_cache* (upstream's module-level helper)."""
    global _cached_hw_info
    if _cached_hw_info is None or not use_cache:
        info = dispatch_to_managers("list_hardware_info")
        if _cached_hw_info is None:
            _cached_hw_info = info
        return info  # type: ignore[no-any-return]
    return _cached_hw_info


def filter_devices(devices: list[Any]) -> list[Any]:
    """*devices* passed through every manager's ``filter_device`` (None drops one)."""
    kept = []
    for device in devices:
        try:
            device = dispatch_to_managers("filter_device", device)
        except errors.HardwareManagerMethodNotFound:
            pass
        if device is not None:
            kept.append(device)
    return kept


# --- versions -----------------------------------------------------------------

def get_current_versions() -> dict[str, str]:
    """``{name: version}`` of every manager answering ``get_version``, as sent to Ironic."""
    return {info.get("name"): info.get("version")
            for info in dispatch_to_all_managers("get_version").values()}


def check_versions(provided_version: Any = None) -> None:
    """Raise VersionMismatch when Ironic's map differs from ours (None: no check)."""
    if provided_version is None:
        return
    current = get_current_versions()
    if provided_version != current:
        LOG.warning("Hardware manager versions differ: agent %s, node %s", current,
                    provided_version)
        raise errors.VersionMismatch(agent_version=current, node_version=provided_version)


# --- the node this agent serves (stored in node_cache) ---------------------------

def cache_node(node: dict[str, Any] | None) -> None:
    """Remember *node*; when it is a different node, wait for its disks first."""
    if node is None:
        return
    if node_cache.put(node):
        LOG.info("Cached node %s; waiting for its root device", node.get("uuid"))
        try:
            dispatch_to_managers("wait_for_disks")
        except errors.HardwareManagerMethodNotFound:
            pass


def get_cached_node() -> dict[str, Any] | None:
    return node_cache.get()


def save_api_client(client: Any = None, timeout: float | None = None,
                    interval: float | None = None) -> None:
    """Keep the agent's Ironic client for :func:`update_cached_node` (first one wins)."""
    node_cache.save_client(client, timeout, interval)


def update_cached_node() -> dict[str, Any] | None:
    """Look the node up again through the saved client and cache the answer.

    Returns the new node, or the cached one when there is no client or the
    lookup fails (logged), as upstream's.
    """
    cached = get_cached_node()
    client, timeout, interval = node_cache.client()
    if client is None:
        return cached
    LOG.info("Refreshing the cached node from Ironic")
    uuid = cached.get("uuid") if cached else None
    try:
        if hasattr(client, "lookup_node"):  # an upstream-style client
            content = client.lookup_node(hardware_info=list_hardware_info(use_cache=True),
                                         timeout=timeout, starting_interval=interval,
                                         node_uuid=uuid)
            node = content["node"]
        else:
            from ironic_python_agent import net

            node = client.lookup(net.list_macs, timeout=timeout, interval=interval,
                                 node_uuid=uuid).node
    except Exception as exc:  # noqa: BLE001 - keep the cached node, as upstream
        LOG.warning("Failed to update the cached node: %s", exc)
        return cached
    if cached and cached.get("skip_bmc_detect"):
        node.setdefault("skip_bmc_detect", True)  # the lookup's config, not the node's
    cache_node(node)
    return node  # type: ignore[no-any-return]
