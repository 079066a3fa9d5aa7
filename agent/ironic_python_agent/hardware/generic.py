# SPDX-License-Identifier: Apache-2.0
"""The generic hardware manager: inventory, root device, erase and deploy steps."""

from __future__ import annotations

import logging
import os
from typing import Any

from ironic_python_agent import config, errors, run
from ironic_python_agent.hardware import (
    disks,
    erase,
    inventory,
    managers,
    md,
    options,
    raid,
    root_hints,
)
from ironic_python_agent.hardware.devices import (
    CPU,
    BlockDevice,
    BootInfo,
    CPUCore,
    Memory,
    NetworkInterface,
    SystemVendorInfo,
)

LOG = logging.getLogger(__name__)


def _step(name: str, priority: int, interface: str = "deploy", abortable: bool | None = None,
          argsinfo: dict[str, Any] | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"step": name, "priority": priority, "interface": interface,
                            "reboot_requested": False}
    if abortable is not None:
        step["abortable"] = abortable
    if argsinfo is not None:
        step["argsinfo"] = argsinfo
    return step


WRITE_IMAGE_ARGS = {
    "image_info": {"description": "Information about the image to write (as sent by "
                                  "Ironic's direct deploy)", "required": True},
    "configdrive": {"description": "Config drive to write (base64 gzip or URL)",
                    "required": False},
}

RAID_APPLY_CONFIGURATION_ARGSINFO = {
    "raid_config": {"description": "The RAID configuration to apply.", "required": True},
    "delete_existing": {"description": "Setting this to 'True' indicates to delete existing "
                                       "RAID configuration prior to creating the new "
                                       "configuration. Default value is 'True'.",
                        "required": False},
}


class GenericHardwareManager(managers.HardwareManager):
    HARDWARE_MANAGER_NAME = "generic_hardware_manager"
    HARDWARE_MANAGER_VERSION = "1.2"

    def __init__(self) -> None:
        self._dmi: list[tuple[str, dict[str, str]]] | None = None
        self._dmi_read = False
        self._bmc = inventory.BMCProbe()
        # md device -> is_root_volume of the volumes this process created (upstream's
        # _raid_root_device_mapping).
        self._raid_roots: dict[str, bool | None] = {}

    def evaluate_hardware_support(self) -> int:
        return managers.HardwareSupport.GENERIC

    def initialize(self) -> None:
        # Start the arrays already on the disks, so that they are listed, erased as
        # arrays and found by root device hints (as upstream). Not when the
        # allowlist confines the agent to some devices (tests on a shared host).
        if not options.allowlist():
            md.assemble_scan()

    # --- inventory -----------------------------------------------------------------

    def _dmi_sections(self) -> list[tuple[str, dict[str, str]]] | None:
        # DMI tables do not change while the ramdisk runs: read them once.
        if not self._dmi_read:
            self._dmi = inventory.collect_dmi()
            self._dmi_read = True
        return self._dmi

    def list_network_interfaces(self) -> list[NetworkInterface]:
        """Each interface through ``get_interface_info`` of the best manager that
        answers (a vendor manager may describe its NICs), LLDP from
        ``collect_lldp_data`` when ``ipa-collect-lldp`` is set, then ``filter_device``."""
        names = inventory.interface_candidates()
        lldp: dict[str, Any] = {}
        if config.current().collect_lldp:
            try:
                lldp = managers.dispatch_to_managers("collect_lldp_data",
                                                     interface_names=names) or {}
            except errors.HardwareManagerMethodNotFound:
                lldp = {}
        found = []
        for name in names:
            try:
                iface = managers.dispatch_to_managers("get_interface_info",
                                                      interface_name=name)
            except errors.HardwareManagerMethodNotFound:
                LOG.debug("No hardware manager describes interface %s", name)
                continue
            iface.lldp = lldp.get(name) if lldp else None
            found.append(iface)
        return managers.filter_devices(found)

    def collect_lldp_data(self, interface_names: list[str] | None = None
                          ) -> dict[str, list[list[Any]]]:
        """``{ifname: [[type, "<hex>"], ...]}`` heard within ``lldp_timeout`` (upstream's)."""
        from ironic_python_agent.inspection import lldp

        if interface_names is None:
            interface_names = inventory.interface_candidates()
        return lldp.collect(interface_names, float(config.current().lldp_timeout))

    def get_interface_info(self, interface_name: str) -> NetworkInterface:
        ipv6 = {interface_name: [a] if (a := self.get_ipv6_addr(interface_name)) else []}
        found = inventory.read_interface(interface_name, ipv6)
        if found is None:
            raise errors.IncompatibleHardwareMethodError(
                f"interface {interface_name} has no usable MAC address")
        return found

    def get_ipv4_addr(self, interface_id: str) -> str | None:
        return inventory.ipv4_address(interface_id)

    def get_ipv6_addr(self, interface_id: str) -> str | None:
        """The interface's first IPv6 address, global ones before link-local ones."""
        ipv6 = inventory.parse_if_inet6(inventory._read("/proc/net/if_inet6") or "")
        return next(iter(ipv6.get(interface_id) or []), None)

    def get_bios_given_nic_name(self, interface_name: str) -> str | None:
        return inventory.bios_given_name(interface_name)

    def get_cpus(self) -> CPU:
        return inventory.collect_cpu()

    # Upstream's per-core helpers, for managers that call them.
    @staticmethod
    def create_cpu_info_dict(lines: str) -> dict[str, str]:
        """``key: value`` lines (lscpu, or one /proc/cpuinfo block) as a dict, keys lowered."""
        return {k.strip().lower(): v.strip() for k, _, v in
                (line.partition(":") for line in lines.split("\n") if ":" in line)}

    def read_cpu_info(self) -> list[str]:
        """The /proc/cpuinfo blocks (one per logical CPU), tabs removed; [] if unreadable."""
        text = inventory._read("/proc/cpuinfo")
        if not text:
            LOG.warning("Failed to get CPU information from /proc/cpuinfo")
            return []
        return [b for b in text.replace("\t", "").split("\n\n") if b.strip()]

    def get_cpu_cores(self) -> list[CPUCore]:
        """One :class:`CPUCore` per logical CPU of /proc/cpuinfo (the inventory's own)."""
        cores = inventory.collect_cpu().cpus
        if not cores:
            LOG.warning("No per-core CPU information found")
        return cores

    def get_memory(self) -> Memory:
        return inventory.collect_memory(self._dmi_sections())

    def get_system_vendor_info(self) -> SystemVendorInfo:
        return inventory.collect_system_vendor(self._dmi_sections())

    def any_ipmi_device_exists(self) -> bool:
        return inventory.ipmi_device_exists()

    def get_bmc_address(self) -> str | None:
        return self._bmc.address()

    def get_bmc_mac(self) -> str | None:
        return self._bmc.mac()

    def get_bmc_v6address(self) -> str | None:
        return self._bmc.v6address()

    def get_boot_info(self) -> BootInfo:
        return inventory.collect_boot_info()

    def filter_device(self, device: BlockDevice) -> BlockDevice | None:
        return device

    def list_block_devices(self, include_partitions: bool = False,
                           all_serial_and_wwn: bool = False) -> list[BlockDevice]:
        found = disks.list_all_block_devices(include_partitions=include_partitions,
                                             allow=options.allowlist())
        return managers.filter_devices(found)

    def get_skip_list_from_node_for_disks(self, node: dict[str, Any] | None,
                                          block_devices: list[BlockDevice] | None = None
                                          ) -> set[str]:
        """Names of the disks ``properties.skip_block_devices`` protects."""
        skip = ((node or {}).get("properties") or {}).get("skip_block_devices") or []
        if not skip:
            return set()
        devices = block_devices if block_devices is not None else self.list_block_devices()
        kept = {d.name for d in root_hints.remove_skipped(devices, skip)}
        return {d.name for d in devices if d.name not in kept}

    def get_skip_list_from_node_for_raids(self, node: dict[str, Any] | None) -> set[str]:
        skip = ((node or {}).get("properties") or {}).get("skip_block_devices") or []
        return {str(e["volume_name"]) for e in skip if isinstance(e, dict) and
                "volume_name" in e}

    def list_block_devices_check_skip_list(self, node: dict[str, Any] | None,
                                           include_partitions: bool = False,
                                           all_serial_and_wwn: bool = False,
                                           include_wipe: bool = False) -> list[BlockDevice]:
        devices = self.list_block_devices(include_partitions=include_partitions)
        skipped = self.get_skip_list_from_node_for_disks(node, devices)
        raid_names = self.get_skip_list_from_node_for_raids(node)
        if raid_names:
            # md devices the skip list keeps (and, with include_wipe, their neighbours
            # that are only wiped) are left out, as upstream.
            actions = raid.decide(raid.describe_arrays(md.list_arrays()), raid_names)
            dropped = {"keep", "wipe"} if include_wipe else {"keep"}
            skipped |= {dev for dev, action in actions.items() if action in dropped}
        if not skipped:
            return devices
        # A partition goes with its disk.
        return [d for d in devices
                if not any(d.name == s or (d.kind == "part" and d.name.startswith(s))
                           for s in skipped)]

    def get_os_install_device(self, permit_refresh: bool = False) -> str:
        """The root device: the software RAID root volume (``is_root_volume`` of the
        volumes created in this process, else of the node's ``raid_config``) wins
        over hints; otherwise the hints, or the smallest disk of 4 GiB or more that is
        not an md member (volumes marked ``is_root_volume: false`` and their members
        are never chosen)."""
        node = managers.get_cached_node() or {}
        hints = ((node.get("instance_info") or {}).get("root_device")
                 or (node.get("properties") or {}).get("root_device"))
        devices = self.list_block_devices_check_skip_list(node, all_serial_and_wwn=True)
        arrays = {a.device: a for a in md.list_arrays()}
        roots = dict(self._raid_roots) or self._raid_roots_from_node(node, arrays)
        for device, is_root in roots.items():
            if device not in arrays:
                continue
            if is_root:
                if hints:
                    LOG.warning("Both root device hints (%s) and a root volume from the "
                                "RAID configuration are defined; using the RAID root "
                                "volume %s", hints, device)
                return device
            if is_root is False:
                excluded = {device, *arrays[device].members,
                            *md.holder_disks(arrays[device].members)}
                devices = [d for d in devices if d.name not in excluded]
        if not hints:
            members = {m for a in arrays.values() for m in a.members}
            holders = set(md.holder_disks(sorted(members)))
            devices = [d for d in devices if d.name not in members | holders]
        return root_hints.choose_root_device(devices, hints).name

    @staticmethod
    def _raid_roots_from_node(node: dict[str, Any], arrays: dict[str, Any]
                              ) -> dict[str, bool | None]:
        """``is_root_volume`` of the node's current ``raid_config`` (Ironic saves the
        result of create_configuration there), matched to arrays by volume name."""
        logical = raid.software_disks(node.get("raid_config"))
        if not logical or not arrays:
            return {}
        by_name = {md.volume_name(device): device for device in arrays}
        found: dict[str, bool | None] = {}
        for index, disk in enumerate(logical):
            name = disk.get("volume_name") or f"md{index}"
            if name in by_name and "is_root_volume" in disk:
                found[by_name[name]] = disk.get("is_root_volume")
        return found

    def get_usb_devices(self) -> list[dict[str, Any]]:
        found = []
        base = "/sys/bus/usb/devices"
        try:
            names = sorted(os.listdir(base))
        except OSError:
            return []
        for name in names:
            product = inventory._read(f"{base}/{name}/product")
            if product is None:
                continue
            found.append({"product": product,
                          "vendor": inventory._read(f"{base}/{name}/manufacturer"),
                          "handle": name})
        return found

    def full_sync(self) -> None:
        try:
            run.run(["sync"], timeout=600)
        except run.CommandError as exc:
            raise errors.CommandExecutionError(f"sync failed: {exc}") from None
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3")
        except OSError as exc:
            LOG.warning("Cannot drop caches: %s", exc)
        for device in self.list_block_devices():
            run.run(["blockdev", "--flushbufs", device.name], check=False, timeout=60)

    # --- erasing ---------------------------------------------------------------------

    def erase_block_device(self, node: dict[str, Any], block_device: BlockDevice
                           ) -> dict[str, Any]:
        return erase.erase_block_device(node, block_device)

    def _dismantle_raid(self, node: dict[str, Any]) -> None:
        """Stop the md arrays on the disks about to be erased (but those
        ``skip_block_devices`` keeps) and zero their members' superblocks, so the
        members are erased as plain disks."""
        devices = self.list_block_devices_check_skip_list(node, include_partitions=True)
        disks = {d.name for d in devices if d.kind == "disk"}
        if raid.dismantle(self.get_skip_list_from_node_for_raids(node), allowed=disks):
            devices = self.list_block_devices_check_skip_list(node, include_partitions=True)
        raid.zero_stray_superblocks(devices)
        self._raid_roots = {}

    def erase_devices(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> Any:
        self._dismantle_raid(node)
        return super().erase_devices(node, ports)

    def erase_devices_metadata(self, node: dict[str, Any], ports: list[dict[str, Any]]
                               ) -> dict[str, Any]:
        self._dismantle_raid(node)
        devices = managers.dispatch_to_managers("list_block_devices_check_skip_list", node,
                                                include_partitions=True, include_wipe=True)
        return erase.erase_metadata(node, devices)

    def erase_devices_express(self, node: dict[str, Any], ports: list[dict[str, Any]]
                              ) -> dict[str, Any]:
        self._dismantle_raid(node)
        devices = managers.dispatch_to_managers("list_block_devices_check_skip_list", node)
        return erase.erase_express(node, devices)

    # --- software RAID (see raid.py) -------------------------------------------------

    def validate_configuration(self, raid_config: dict[str, Any], node: dict[str, Any]
                               ) -> None:
        raid.validate(raid_config, (node or {}).get("uuid"),
                      self.get_skip_list_from_node_for_raids(node))

    def create_configuration(self, node: dict[str, Any], ports: list[dict[str, Any]],
                             create_root_volume: bool = True,
                             create_nonroot_volumes: bool = True) -> dict[str, Any]:
        """Build the software RAID of ``node.target_raid_config``; the configuration.

        The step arguments of Ironic's ``create_configuration`` (which the conductor
        passes on in the step) leave out the root or the other volumes, as
        Ironic's ``filter_target_raid_config``.
        """
        raid_config = (node or {}).get("target_raid_config") or {}
        if not raid_config:
            LOG.info("No target_raid_config found")
            return {}
        logical = raid_config.get("logical_disks") or []
        if not create_root_volume:
            logical = [d for d in logical if not d.get("is_root_volume")]
        if not create_nonroot_volumes:
            logical = [d for d in logical if d.get("is_root_volume")]
        if not logical:
            raise errors.SoftwareRAIDError(
                "The target RAID configuration is empty after skipping the "
                + ("root volume" if not create_root_volume else "non-root volumes"))
        return self._create_raid(node, {**raid_config, "logical_disks": logical})

    def apply_configuration(self, node: dict[str, Any], ports: list[dict[str, Any]],
                            raid_config: dict[str, Any], delete_existing: bool = True
                            ) -> dict[str, Any]:
        """The ``apply_configuration`` deploy step: build *raid_config*, after
        deleting the existing software RAID unless *delete_existing* is false."""
        self.validate_configuration(raid_config, node)
        if delete_existing not in (False, "false", "False", 0):
            self.delete_configuration(node, ports)
        return self._create_raid(node, raid_config)

    def _create_raid(self, node: dict[str, Any], raid_config: dict[str, Any]
                     ) -> dict[str, Any]:
        if not raid.software_disks(raid_config):
            LOG.info("No software RAID logical disks in %s", raid_config)
            return {}
        devices = self.list_block_devices_check_skip_list(node)
        result, roots = raid.create(node, raid_config, devices,
                                    self.get_skip_list_from_node_for_raids(node))
        self._raid_roots.update({d: r for d, r in roots.items() if r is not None})
        return result

    def delete_configuration(self, node: dict[str, Any], ports: list[dict[str, Any]]
                             ) -> None:
        """Remove every software RAID device (but those ``skip_block_devices`` keeps by
        ``volume_name``), every md superblock and the holder disks' partition tables."""
        raid.delete(lambda: self.list_block_devices(include_partitions=True),
                    self.get_skip_list_from_node_for_raids(node),
                    scan=not options.allowlist())
        self._raid_roots = {}

    def erase_pstore(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> list[str]:
        """Delete the kernel crash records kept in the pstore filesystem."""
        removed: list[str] = []
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[2:3] == ["pstore"]]
        for mount in mounts:
            for name in sorted(os.listdir(mount)):
                os.unlink(os.path.join(mount, name))
                removed.append(os.path.join(mount, name))
        return removed

    def clean_uefi_nvram(self, node: dict[str, Any], ports: list[dict[str, Any]],
                         match_patterns: list[str] | None = None) -> None:
        """Remove UEFI boot entries matching *match_patterns* (see nvram.py)."""
        from ironic_python_agent.hardware import nvram

        nvram.clean_uefi_nvram(match_patterns)

    # --- burn-in (see burnin.py) ---------------------------------------------------------

    def burnin_cpu(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> None:
        from ironic_python_agent.hardware import burnin

        burnin.stress_ng(node, "cpu")

    def burnin_gpu(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> None:
        from ironic_python_agent.hardware import burnin

        burnin.gpu_burn(node)

    def burnin_memory(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> None:
        from ironic_python_agent.hardware import burnin

        burnin.stress_ng(node, "vm")

    def burnin_disk(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> None:
        from ironic_python_agent.hardware import burnin

        devices = self.list_block_devices_check_skip_list(node)
        burnin.fio_disk(node, [d.name for d in devices if d.kind != "part"])

    def burnin_network(self, node: dict[str, Any], ports: list[dict[str, Any]]) -> None:
        from ironic_python_agent.hardware import burnin

        burnin.fio_network(node)

    # --- deploy ----------------------------------------------------------------------

    def write_image(self, node: dict[str, Any], ports: list[dict[str, Any]],
                    image_info: dict[str, Any], configdrive: str | None = None) -> Any:
        """The ``write_image`` deploy step: ``standby.prepare_image``, waited for."""
        from ironic_python_agent.extensions import base

        standby = base.get_extension("standby")
        prepare = getattr(standby, "prepare_image")  # noqa: B009 - an extension command
        result = prepare(image_info=image_info, configdrive=configdrive)
        result.join()
        if result.command_error is not None:
            raise result.command_error
        return result.command_result

    def execute_bootc_install(self, node: dict[str, Any], ports: list[dict[str, Any]],
                              image_source: str, configdrive: str | None = None,
                              oci_pull_secret: str | None = None) -> Any:
        """The ``execute_bootc_install`` deploy step (Ironic's bootc deploy interface):
        ``standby.execute_bootc_install``, waited for."""
        from ironic_python_agent.extensions import base

        standby = base.get_extension("standby")
        install = getattr(standby, "execute_bootc_install")  # noqa: B009 - a command
        result = install(image_source=image_source, instance_info=node.get("instance_info"),
                         pull_secret=oci_pull_secret, configdrive=configdrive)
        result.join()
        if result.command_error is not None:
            raise result.command_error
        return result.command_result

    def inject_files(self, node: dict[str, Any], ports: list[dict[str, Any]],
                     files: list[dict[str, Any]] | None = None, verify_ca: bool = True) -> None:
        """The ``inject_files`` deploy/service step (see inject_files.py)."""
        from ironic_python_agent import download, inject_files

        conf = config.current()
        opts = download.DownloadOptions(
            connect_timeout=float(conf.image_download_connection_timeout),
            retries=0, insecure=bool(conf.insecure) or not verify_ca,
            cafile=conf.cafile, certfile=conf.certfile, keyfile=conf.keyfile)
        inject_files.inject_files(
            node, ports, files,
            lambda: managers.dispatch_to_managers("get_os_install_device"), opts)

    # --- steps -----------------------------------------------------------------------

    def get_clean_steps(self, node: dict[str, Any], ports: list[dict[str, Any]]
                        ) -> list[dict[str, Any]]:
        return [
            _step("erase_devices", 10, abortable=True),
            _step("erase_devices_metadata", 99, abortable=True),
            _step("erase_devices_express", 0, abortable=True),
            _step("erase_pstore", 0, abortable=True),
            _clean_uefi_nvram_step(abortable=True),
            _step("delete_configuration", 0, "raid", abortable=True),
            _step("create_configuration", 0, "raid", abortable=True),
            *(_step(f"burnin_{what}", 0, abortable=True)
              for what in ("cpu", "gpu", "disk", "memory", "network")),
        ]

    def get_deploy_steps(self, node: dict[str, Any], ports: list[dict[str, Any]]
                         ) -> list[dict[str, Any]]:
        return [
            _step("erase_devices_metadata", 0),
            _step("apply_configuration", 0, "raid", argsinfo=RAID_APPLY_CONFIGURATION_ARGSINFO),
            _step("write_image", 0, argsinfo=WRITE_IMAGE_ARGS),
            _clean_uefi_nvram_step(),
            _inject_files_step(),
            _step("execute_bootc_install", 0),
        ]

    def get_service_steps(self, node: dict[str, Any], ports: list[dict[str, Any]]
                          ) -> list[dict[str, Any]]:
        # burnin_disk is left out, as upstream: it would destroy the instance's data.
        return [_step("delete_configuration", 0, "raid", abortable=True),
                _step("apply_configuration", 0, "raid",
                      argsinfo=RAID_APPLY_CONFIGURATION_ARGSINFO),
                _step("create_configuration", 0, "raid", abortable=True),
                *(_step(f"burnin_{what}", 0, abortable=True)
                  for what in ("cpu", "gpu", "memory", "network")),
                _step("write_image", 0, argsinfo=WRITE_IMAGE_ARGS), _inject_files_step(),
                _step("execute_bootc_install", 0)]


def _inject_files_step() -> dict[str, Any]:
    from ironic_python_agent import inject_files

    return _step("inject_files", int(config.current().inject_files_priority or 0),
                 argsinfo=inject_files.ARGSINFO)


def _clean_uefi_nvram_step(abortable: bool | None = None) -> dict[str, Any]:
    from ironic_python_agent.hardware import nvram

    return _step("clean_uefi_nvram", 0, abortable=abortable, argsinfo=nvram.ARGSINFO)
