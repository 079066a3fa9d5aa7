# SPDX-License-Identifier: Apache-2.0
"""Value objects of the inventory, with upstream's names and constructor order.

Managers written for the upstream agent build these positionally
(``BlockDevice(name, model, size, rotational, ...)``) and the inventory sends
only ``serializable_fields`` of each, so both are kept exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


class Serializable:
    """``serialize()`` gives the JSON form: the ``serializable_fields`` only."""

    serializable_fields: ClassVar[tuple[str, ...]] = ()

    def serialize(self) -> dict[str, Any]:
        return {name: to_json(getattr(self, name, None)) for name in self.serializable_fields}


def to_json(value: Any) -> Any:
    """Turn inventory objects (and containers of them) into plain JSON values."""
    if isinstance(value, Serializable):
        return value.serialize()
    if hasattr(value, "serialize") and callable(value.serialize):
        return to_json(value.serialize())
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


@dataclasses.dataclass(eq=True)
class BlockDevice(Serializable):
    name: str
    model: str | None
    size: int
    rotational: bool
    wwn: Any = None
    serial: Any = None
    vendor: str | None = None
    wwn_with_extension: str | None = None
    wwn_vendor_extension: str | None = None
    hctl: str | None = None
    by_path: str | None = None
    uuid: str | None = None
    partuuid: str | None = None
    logical_sectors: int | None = None
    physical_sectors: int | None = None
    tran: str | None = None
    # Ours, not serialized: what the erase code and the safeguards need.
    read_only: bool = dataclasses.field(default=False, compare=False)
    kind: str = dataclasses.field(default="disk", compare=False)
    # Every serial and WWN known for the device; root device hints match any.
    serials: list[str] = dataclasses.field(default_factory=list, compare=False)
    wwns: list[str] = dataclasses.field(default_factory=list, compare=False)

    serializable_fields: ClassVar[tuple[str, ...]] = (
        "name", "model", "size", "rotational", "wwn", "serial", "vendor",
        "wwn_with_extension", "wwn_vendor_extension", "hctl", "by_path",
        "logical_sectors", "physical_sectors", "tran")


@dataclasses.dataclass(eq=True)
class NetworkInterface(Serializable):
    name: str
    mac_addr: str | None
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    has_carrier: bool = True
    lldp: Any = None
    vendor: str | None = None
    product: str | None = None
    client_id: str | None = None
    biosdevname: str | None = None
    speed_mbps: int | None = None
    pci_address: str | None = None
    driver: str | None = None

    serializable_fields: ClassVar[tuple[str, ...]] = (
        "name", "mac_address", "ipv4_address", "ipv6_address", "has_carrier", "lldp",
        "vendor", "product", "client_id", "biosdevname", "speed_mbps", "pci_address",
        "driver")

    @property
    def mac_address(self) -> str | None:
        return self.mac_addr


@dataclasses.dataclass(eq=True)
class CPUCore(Serializable):
    # Upstream's positional order: (model_name, frequency, architecture, core_id, flags).
    model_name: str
    frequency: str
    architecture: str = ""
    core_id: int | str | None = None
    flags: list[str] = dataclasses.field(default_factory=list)

    serializable_fields: ClassVar[tuple[str, ...]] = ("model_name", "frequency",
                                                      "architecture", "core_id", "flags")


@dataclasses.dataclass(eq=True)
class CPU(Serializable):
    model_name: str
    frequency: str
    count: int
    architecture: str
    flags: list[str] = dataclasses.field(default_factory=list)
    socket_count: int | None = None
    # Per-core entries: kept for managers that want them, never serialized.
    cpus: list[CPUCore] = dataclasses.field(default_factory=list, compare=False)

    serializable_fields: ClassVar[tuple[str, ...]] = (
        "model_name", "frequency", "count", "architecture", "flags", "socket_count")


@dataclasses.dataclass(eq=True)
class Memory(Serializable):
    total: int | None
    physical_mb: int | None = None

    serializable_fields: ClassVar[tuple[str, ...]] = ("total", "physical_mb")


@dataclasses.dataclass(eq=True)
class SystemFirmware(Serializable):
    vendor: str | None
    version: str | None
    build_date: str | None

    serializable_fields: ClassVar[tuple[str, ...]] = ("vendor", "version", "build_date")


@dataclasses.dataclass(eq=True)
class SystemVendorInfo(Serializable):
    product_name: str | None
    serial_number: str | None
    manufacturer: str | None
    firmware: SystemFirmware | None = None

    serializable_fields: ClassVar[tuple[str, ...]] = (
        "product_name", "serial_number", "manufacturer", "firmware")


@dataclasses.dataclass(eq=True)
class USBInfo(Serializable):
    product: str | None
    vendor: str | None
    handle: str | None

    serializable_fields: ClassVar[tuple[str, ...]] = ("product", "vendor", "handle")


@dataclasses.dataclass(eq=True)
class BootInfo(Serializable):
    current_boot_mode: str
    pxe_interface: str | None = None
    secure_boot: bool | None = None  # ours; upstream 13.0.0 has the first two

    serializable_fields: ClassVar[tuple[str, ...]] = ("current_boot_mode", "pxe_interface",
                                                      "secure_boot")
