# SPDX-License-Identifier: Apache-2.0
"""The hardware inventory: pure parsers of tool and /proc output, thin collectors.

Sources: /proc and sysfs for CPU, memory, NICs and boot mode; one ``dmidecode``
run for physical memory and the system vendor (sysfs DMI files when it cannot
run); ``ipmitool`` for the BMC, only when an IPMI device exists. No ``lshw``.
A missing tool or an unreadable field gives null and one warning, never a
failed inventory.
"""

from __future__ import annotations

import array
import fcntl
import glob
import ipaddress
import logging
import os
import platform
import re
import socket
import stat
import struct
from pathlib import Path
from typing import Any

from ironic_python_agent import config, run
from ironic_python_agent.hardware import node_cache
from ironic_python_agent.inspection import dmi
from ironic_python_agent.hardware.devices import (
    CPU,
    BootInfo,
    CPUCore,
    Memory,
    NetworkInterface,
    SystemFirmware,
    SystemVendorInfo,
)

LOG = logging.getLogger(__name__)

_warned: set[str] = set()


def warn_once(key: str, message: str, *args: Any) -> None:
    """Log *message* once per process for *key* (a tool or field name)."""
    if key not in _warned:
        _warned.add(key)
        LOG.warning(message, *args)


def _read(path: str | Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


# --- CPU --------------------------------------------------------------------------

def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per processor block."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return [b for b in blocks if "processor" in b]


_FLAG_RE = re.compile(r"^[a-z0-9_.]+$")


def cpu_from_cpuinfo(blocks: list[dict[str, str]], architecture: str,
                     max_khz: int | None = None,
                     packages: set[str] | None = None) -> CPU:
    """The CPU summary from parsed cpuinfo blocks and a few sysfs values."""
    first = blocks[0] if blocks else {}
    model = (first.get("model name") or first.get("Model Name") or first.get("cpu model")
             or first.get("Processor") or first.get("cpu") or "")
    if max_khz:
        frequency = f"{max_khz / 1000:.4f}"
    else:
        frequency = first.get("cpu MHz", "")
    raw_flags = (first.get("flags") or first.get("Features") or "").split()
    # Upstream drops a flag list with odd characters (e.g. from firmware quirks).
    flags = raw_flags if all(_FLAG_RE.match(f) for f in raw_flags) else []
    if packages is None:
        packages = {b["physical id"] for b in blocks if "physical id" in b}
    cores = [CPUCore(model_name=b.get("model name", model), frequency=b.get("cpu MHz", ""),
                     architecture=architecture,
                     core_id=int(b["core id"]) if b.get("core id", "").isdigit() else None,
                     flags=(b.get("flags") or "").split()) for b in blocks]
    return CPU(model_name=model, frequency=frequency, count=len(blocks),
               architecture=architecture, flags=flags,
               socket_count=len(packages) if packages else (1 if blocks else None),
               cpus=cores)


def collect_cpu(proc: str = "/proc", sys: str = "/sys") -> CPU:
    text = _read(f"{proc}/cpuinfo") or ""
    if not text:
        warn_once("cpuinfo", "Cannot read %s/cpuinfo; CPU fields are empty", proc)
    blocks = parse_cpuinfo(text)
    khz_text = _read(f"{sys}/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    max_khz = int(khz_text) if khz_text and khz_text.isdigit() else None
    packages: set[str] = set()
    for path in glob.glob(f"{sys}/devices/system/cpu/cpu[0-9]*/topology/physical_package_id"):
        value = _read(path)
        if value is not None:
            packages.add(value)
    return cpu_from_cpuinfo(blocks, platform.machine(), max_khz, packages or None)


# --- memory and DMI -------------------------------------------------------------

def parse_meminfo_total(text: str) -> int | None:
    """MemTotal of ``/proc/meminfo`` in bytes."""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def parse_dmidecode(text: str) -> list[tuple[str, dict[str, str]]]:
    """``dmidecode`` output as ``[(section title, {field: value})]``: the records of
    the one dmidecode parser (:func:`inspection.dmi.parse_records`), text fields only."""
    return [(title, {k: v for k, v in fields.items() if isinstance(v, str)})
            for title, fields in dmi.parse_records(text)]


_SIZE_UNITS = {"kB": 1 / 1024, "KB": 1 / 1024, "MB": 1, "GB": 1024, "TB": 1024 * 1024}


def physical_memory_mb(sections: list[tuple[str, dict[str, str]]]) -> int:
    """Sum of the installed DIMMs (``Memory Device`` sections) in MiB."""
    total = 0.0
    for title, fields in sections:
        if title != "Memory Device":
            continue
        m = re.match(r"^(\d+)\s*(kB|KB|MB|GB|TB)$", fields.get("Size", ""))
        if m:
            total += int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    return int(total)


_DMI_EMPTY = {"", "Not Specified", "Not Present", "To Be Filled By O.E.M.", "None",
              "Default string"}


def _dmi_value(value: str | None) -> str | None:
    return None if value is None or value.strip() in _DMI_EMPTY else value.strip()


def system_vendor_from_dmi(sections: list[tuple[str, dict[str, str]]]) -> SystemVendorInfo:
    system = next((f for t, f in sections if t == "System Information"), {})
    bios = next((f for t, f in sections if t == "BIOS Information"), {})
    return SystemVendorInfo(
        product_name=_dmi_value(system.get("Product Name")),
        serial_number=_dmi_value(system.get("Serial Number")),
        manufacturer=_dmi_value(system.get("Manufacturer")),
        firmware=SystemFirmware(vendor=_dmi_value(bios.get("Vendor")),
                                version=_dmi_value(bios.get("Version")),
                                build_date=_dmi_value(bios.get("Release Date"))))


def system_vendor_from_sysfs(sys: str = "/sys") -> SystemVendorInfo:
    base = f"{sys}/class/dmi/id"

    def read(name: str) -> str | None:
        return _dmi_value(_read(f"{base}/{name}"))

    return SystemVendorInfo(
        product_name=read("product_name"), serial_number=read("product_serial"),
        manufacturer=read("sys_vendor"),
        firmware=SystemFirmware(vendor=read("bios_vendor"), version=read("bios_version"),
                                build_date=read("bios_date")))


def collect_dmi() -> list[tuple[str, dict[str, str]]] | None:
    """One ``dmidecode`` run for BIOS (0), system (1) and memory devices (17)."""
    if run.which("dmidecode") is None:
        warn_once("dmidecode", "dmidecode is not installed: physical_mb and the system "
                  "vendor come from sysfs")
        return None
    try:
        out = run.run([run.which("dmidecode") or "dmidecode", "-t", "0,1,17"],
                      timeout=30, log=False).stdout
    except run.CommandError as exc:
        warn_once("dmidecode", "dmidecode failed (%s): physical_mb and the system vendor "
                  "come from sysfs", exc)
        return None
    return parse_dmidecode(out)


def memory_blocks_mb(block_size_hex: str | None, online: list[str | None]) -> int | None:
    """Installed memory from the kernel's memory blocks: block size x online blocks, in MiB."""
    try:
        size = int((block_size_hex or "").strip(), 16)
    except ValueError:
        return None
    count = sum(1 for state in online if (state or "").strip() == "1")
    return size * count // (1024 * 1024) if size and count else None


def collect_memory_blocks(sys: str = "/sys") -> int | None:
    """``physical_mb`` without SMBIOS (VMs without tables, some ARM boards)."""
    base = f"{sys}/devices/system/memory"
    try:
        names = [n for n in os.listdir(base) if n.startswith("memory") and n[6:].isdigit()]
    except OSError:
        return None
    return memory_blocks_mb(_read(f"{base}/block_size_bytes"),
                            [_read(f"{base}/{n}/online") for n in names])


def collect_memory(dmi: list[tuple[str, dict[str, str]]] | None,
                   proc: str = "/proc", sys: str = "/sys") -> Memory:
    total = parse_meminfo_total(_read(f"{proc}/meminfo") or "")
    if total is None:
        warn_once("meminfo", "Cannot read MemTotal from %s/meminfo", proc)
    physical = physical_memory_mb(dmi) if dmi is not None else None
    if not physical:
        # Ironic's memory hook needs physical_mb; the kernel's block map is exact enough.
        physical = collect_memory_blocks(sys)
    return Memory(total=total, physical_mb=physical)


def device_tree_string(raw: bytes | None) -> str | None:
    """A device-tree string property: NUL-terminated (a list of strings gives
    its first); empty or absent is None."""
    if raw is None:
        return None
    return _dmi_value(raw.split(b"\0", 1)[0].decode("utf-8", errors="replace"))


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def system_vendor_from_device_tree(proc: str = "/proc") -> SystemVendorInfo:
    """Machines booted with a device tree instead of SMBIOS (arm64 boards, QEMU's
    ``virt`` without UEFI) name themselves in its root node: ``model`` is the
    product, ``serial-number`` (where the firmware sets it) the serial; the
    device tree names no manufacturer."""
    base = f"{proc}/device-tree"
    return SystemVendorInfo(product_name=device_tree_string(_read_bytes(f"{base}/model")),
                            serial_number=device_tree_string(
                                _read_bytes(f"{base}/serial-number")),
                            manufacturer=None, firmware=SystemFirmware(None, None, None))


def collect_system_vendor(dmi: list[tuple[str, dict[str, str]]] | None,
                          sys: str = "/sys", proc: str = "/proc") -> SystemVendorInfo:
    """SMBIOS (dmidecode), else sysfs' DMI files, else the device tree."""
    info = system_vendor_from_dmi(dmi) if dmi is not None else None
    if info is None or (info.product_name is None and info.manufacturer is None):
        info = system_vendor_from_sysfs(sys)
    if info.product_name is None and info.manufacturer is None:
        tree = system_vendor_from_device_tree(proc)
        if tree.product_name is not None or tree.serial_number is not None:
            info = SystemVendorInfo(product_name=tree.product_name,
                                    serial_number=info.serial_number or tree.serial_number,
                                    manufacturer=None, firmware=info.firmware)
    return info


# --- BMC ------------------------------------------------------------------------------

def parse_ipmi_lan(text: str) -> dict[str, str]:
    """``ipmitool lan print`` as ``{field: value}`` (continuation lines ignored)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields.setdefault(key.strip(), value.strip())
    return fields


def parse_ipmi_lan6(text: str) -> tuple[bool, list[str]]:
    """``ipmitool lan6 print``: (IPv6 enabled, active enabled addresses in order).

    Link-local addresses are left out: nobody can reach the BMC there.
    """
    enabled = False
    addresses: list[str] = []
    block: dict[str, str] | None = None

    def flush() -> None:
        if block is None:
            return
        addr = block.get("Address", "")
        status = block.get("Status", "").lower()
        on = block.get("Enabled", "yes").lower() in ("yes", "true")
        if addr and status == "active" and on:
            ip = addr.split("/")[0]
            if ip not in ("::", "") and not ip.lower().startswith("fe80"):
                addresses.append(ip)

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if re.match(r"IPv6 (Static|Dynamic) Address \d+:", stripped):
            flush()
            block = {}
            continue
        key, sep, value = stripped.partition(":")
        if not sep:
            continue
        if not line.startswith((" ", "\t")):
            flush()
            block = None
            if key.strip() == "IPv6/IPv4 Addressing Enables":
                enabled = value.strip().lower() in ("ipv6", "both")
            continue
        if block is not None:
            block[key.strip()] = value.strip()
    flush()
    return enabled, addresses


def ipmi_device_exists(dev: str = "/dev") -> bool:
    for pattern in ("ipmi*", "ipmi/*", "ipmidev/*"):
        for path in glob.glob(f"{dev}/{pattern}"):
            try:
                if stat.S_ISCHR(os.stat(path).st_mode):
                    return True
            except OSError:
                continue
    return False


_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
IPMI_CHANNELS = range(1, 12)


class BMCProbe:
    """The BMC addresses, asked of ipmitool once per process."""

    def __init__(self, dev: str = "/dev") -> None:
        self._dev = dev
        self._v4: tuple[str | None, str | None] | None = None
        self._v6: str | None | bool = False  # False: not asked yet

    def _ipmitool(self, *args: str) -> str | None:
        try:
            return run.run(["ipmitool", *args], timeout=15, log=False).stdout
        except run.CommandError as exc:
            if exc.returncode is None:
                warn_once("ipmitool", "ipmitool is not installed: BMC addresses are null")
            else:
                LOG.debug("ipmitool %s failed: %s", " ".join(args), exc)
            return None

    def _probe_v4(self) -> tuple[str | None, str | None]:
        if self._v4 is None:
            address: str | None = None
            mac: str | None = None
            for channel in IPMI_CHANNELS:
                out = self._ipmitool("lan", "print", str(channel))
                if out is None:
                    if run.which("ipmitool") is None:
                        break
                    continue
                fields = parse_ipmi_lan(out)
                ip = fields.get("IP Address")
                if ip and ip != "0.0.0.0":
                    address = ip
                    found_mac = fields.get("MAC Address", "").lower()
                    mac = found_mac if _MAC_RE.match(found_mac) else None
                    break
                if ip and address is None:
                    address = ip
            self._v4 = (address, mac)
        return self._v4

    def address(self) -> str | None:
        if skip_bmc() or not ipmi_device_exists(self._dev):
            return None
        return self._probe_v4()[0]

    def mac(self) -> str | None:
        if skip_bmc() or not ipmi_device_exists(self._dev):
            return None
        return self._probe_v4()[1]

    def v6address(self) -> str | None:
        if skip_bmc() or not ipmi_device_exists(self._dev):
            return None
        if self._v6 is False:
            found: str | None = None
            for channel in IPMI_CHANNELS:
                out = self._ipmitool("lan6", "print", str(channel))
                if out is None:
                    if run.which("ipmitool") is None:
                        break
                    continue
                enabled, addresses = parse_ipmi_lan6(out)
                if enabled:
                    found = addresses[0] if addresses else "::/0"
                    if addresses:
                        break
            self._v6 = found
        return self._v6  # type: ignore[return-value]


def skip_bmc() -> bool:
    """Lookup's ``agent_skip_bmc_detect`` (set on the cached node) or the option."""
    node = node_cache.get() or {}
    if node.get("skip_bmc_detect"):
        return True
    return bool(config.current().skip_bmc_detect)


# --- network interfaces -------------------------------------------------------------

SIOCETHTOOL = 0x8946
ETHTOOL_GPERMADDR = 0x00000020
SIOCGIFADDR = 0x8915


def permanent_mac(name: str) -> str | None:
    """The factory MAC (ETHTOOL_GPERMADDR), or None when the driver has none."""
    size = 32
    try:
        buf = array.array("B", struct.pack("II", ETHTOOL_GPERMADDR, size) + b"\0" * size)
        ifreq = struct.pack("16sP", name.encode()[:15], buf.buffer_info()[0])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
    except OSError:
        return None
    cmd, length = struct.unpack_from("II", buf.tobytes())
    raw = buf.tobytes()[8:8 + length]
    if not raw or not any(raw):
        return None
    return ":".join(f"{b:02x}" for b in raw)


def ipv4_address(name: str) -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            res = fcntl.ioctl(s.fileno(), SIOCGIFADDR,
                              struct.pack("256s", name.encode()[:15]))
    except OSError:
        return None
    return socket.inet_ntoa(res[20:24])


def parse_if_inet6(text: str) -> dict[str, list[str]]:
    """``/proc/net/if_inet6`` → interface → addresses, global ones first."""
    found: dict[str, list[tuple[int, str]]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6:
            continue
        try:
            addr = str(ipaddress.IPv6Address(bytes.fromhex(parts[0])))
            scope = int(parts[3], 16)
        except ValueError:
            continue
        found.setdefault(parts[5], []).append((0 if scope == 0 else 1, addr))
    return {k: [a for _, a in sorted(v, key=lambda p: p[0])] for k, v in found.items()}


def interface_candidates(net: str = "/sys/class/net") -> list[str]:
    try:
        names = sorted(os.listdir(net))
    except OSError:
        return []
    keep = []
    for name in names:
        if name == "lo":
            continue
        base = f"{net}/{name}"
        # VLANs by upstream's <parent>.<vid> name, or by the kernel's list (vlan<vid>
        # when that name is too long: lean-ipa-network and vlans.py both name them so)
        if (re.search(r"\.\d+$", name) or os.path.exists(f"{base}/device")
                or os.path.isdir(f"{base}/bonding") or os.path.exists(f"/proc/net/vlan/{name}")):
            keep.append(name)
    return keep


def infiniband_client_id(address: str, vendor: str | None) -> tuple[str, str | None]:
    """Mellanox InfiniBand: (MAC built from the GUID, DHCP client id); else unchanged."""
    if vendor == "0x15b3" and len(address) == 59:
        mac = address[36:-14] + address[51:]
        return mac, "ff:00:00:00:00:00:02:00:00:02:c9:00:" + address[36:]
    return address, None


def read_interface(name: str, ipv6: dict[str, list[str]],
                   net: str = "/sys/class/net") -> NetworkInterface | None:
    base = f"{net}/{name}"
    vendor = _read(f"{base}/device/vendor")
    current = _read(f"{base}/address") or ""
    mac = permanent_mac(name) or current
    mac, client_id = infiniband_client_id(mac.lower(), vendor)
    if not mac or mac.startswith("fa:") or mac == "00:00:00:00:00:00":
        return None
    speed = _read(f"{base}/speed")
    try:
        speed_mbps: int | None = int(speed) if speed else None
    except ValueError:
        speed_mbps = None
    if speed_mbps is not None and speed_mbps <= 0:
        speed_mbps = None
    device = os.path.realpath(f"{base}/device") if os.path.exists(f"{base}/device") else None
    driver = (os.path.basename(os.path.realpath(f"{base}/device/driver"))
              if os.path.exists(f"{base}/device/driver") else None)
    return NetworkInterface(
        name=name, mac_addr=mac, ipv4_address=ipv4_address(name),
        ipv6_address=next(iter(ipv6.get(name) or []), None),
        has_carrier=_read(f"{base}/carrier") == "1", lldp=None,
        vendor=vendor, product=_read(f"{base}/device/device"), client_id=client_id,
        biosdevname=bios_given_name(name), speed_mbps=speed_mbps,
        pci_address=os.path.basename(device) if device else None, driver=driver)


def bios_given_name(name: str) -> str | None:
    if re.search(r"\.\d+$", name) or run.which("biosdevname") is None:
        return None
    try:
        out = run.run(["biosdevname", "-i", name], timeout=10, log=False).stdout.strip()
    except run.CommandError:
        return None  # exit code 4 in a VM, among others
    return out or None


def collect_interfaces(net: str = "/sys/class/net", proc: str = "/proc",
                       lldp_data: Any = None) -> list[NetworkInterface]:
    """The interfaces; with *lldp_data* (``{ifname: [[type, hex], ...]}``) their ``lldp``.

    As upstream, an interface missing from *lldp_data* (or all of them when it
    is empty) gets ``lldp: null``; one that stayed silent gets ``[]``.
    """
    ipv6 = parse_if_inet6(_read(f"{proc}/net/if_inet6") or "")
    found = []
    for name in interface_candidates(net):
        iface = read_interface(name, ipv6, net)
        if iface is not None:
            if lldp_data:
                iface.lldp = lldp_data.get(name)
            found.append(iface)
    return found


# --- boot ------------------------------------------------------------------------------

# The firmware's global variable: 1 while it enforces Secure Boot (UEFI 2.x, 3.3).
SECURE_BOOT_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def parse_efi_bool_var(data: bytes) -> bool | None:
    """An efivarfs file holding a one-byte variable: 4 bytes of attributes, then the
    value. None when it is not that shape."""
    if len(data) != 5 or data[4] not in (0, 1):
        return None
    return data[4] == 1


def read_secure_boot(sys: str = "/sys") -> bool | None:
    """Whether the firmware enforces Secure Boot: None on BIOS or when efivarfs is
    not mounted (nothing to tell), False when the variable is absent (no Secure
    Boot support) or 0."""
    efivars = f"{sys}/firmware/efi/efivars"
    try:
        if not os.listdir(efivars):
            return None
    except OSError:
        return None
    try:
        data = Path(efivars, SECURE_BOOT_VAR).read_bytes()
    except FileNotFoundError:
        return False
    except OSError as exc:
        LOG.warning("Cannot read the SecureBoot EFI variable: %s", exc)
        return None
    return parse_efi_bool_var(data)


def collect_boot_info(sys: str = "/sys") -> BootInfo:
    """``current_boot_mode`` as upstream; ``secure_boot`` (the name of Ironic's node
    capability) from the SecureBoot EFI variable, null when unknown or BIOS."""
    mode = "uefi" if os.path.isdir(f"{sys}/firmware/efi") else "bios"
    secure = read_secure_boot(sys) if mode == "uefi" else None
    return BootInfo(current_boot_mode=mode, pxe_interface=config.params().get("BOOTIF"),
                    secure_boot=secure)


def describe_boot(info: BootInfo) -> str:
    """One line for the log: "UEFI, Secure Boot on"."""
    if info.current_boot_mode != "uefi":
        return "BIOS (legacy) boot"
    state = {True: "on", False: "off", None: "unknown"}[info.secure_boot]
    return f"UEFI, Secure Boot {state}"
