# SPDX-License-Identifier: Apache-2.0
"""tinyipa reads EFI system partitions on real (virtio, SCSI, NVMe) disks.

The functional tests read ESPs on loop devices from the host; these boot the
image under OVMF with disks holding a GPT and an ESP made by ``mkfs.vfat`` as
distributions make them. The first has the agent in the guest run
``image.install_bootloader`` for a whole-disk image: it must list the ESP with
mtools, read shim's ``BOOTX64.CSV`` and write the NVRAM entry, which then sits
in OVMF's variable store. The second starts a probe instead of the agent (an
archive appended to the initramfs, ``rdinit=``) that reads the ESPs of six
disks on the three buses, FAT16 and FAT32, 512-byte and 4K sectors, with the
agent's own code and the image's mtools, and powers off: about a minute.
"""

from __future__ import annotations

import gzip
import json
import stat
import subprocess
from pathlib import Path

import pytest

from tests import bootdisk
from tests.boot.agent_checks import AgentAPI, lookup_and_heartbeat
from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic
from tinyipa import cpio

DISK_SIZE = 8 << 30  # agents ignore disks under 4 GiB as root devices
ESP_START_MIB, ESP_MIB = 1, 64
LABEL = "lean-ipa ESP test"


def make_disk(path: Path) -> None:
    """GPT with a FAT32 ESP (shim layout) and a Linux partition, sparse."""
    with open(path, "wb") as disk:
        disk.truncate(DISK_SIZE)
    subprocess.run(["sfdisk", "-q", str(path)], check=True, text=True, input=(
        "label: gpt\n"
        f"start={ESP_START_MIB * 2048}, size={ESP_MIB}MiB, "
        "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
        "size=512MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"))
    esp = path.with_name("esp.img")
    with open(esp, "wb") as f:
        f.truncate(ESP_MIB << 20)
    subprocess.run(["mkfs.vfat", "-F", "32", "-n", "EFI", str(esp)], check=True,
                   capture_output=True)
    loader = path.with_name("loader.efi")
    loader.write_bytes(b"MZ not really a loader\n")
    csv = path.with_name("BOOTX64.CSV")
    csv.write_bytes(f"shimx64.efi,{LABEL},,This is the boot entry\n".encode("utf-16"))
    subprocess.run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT", "::/EFI/debian"],
                   check=True)
    for src, dest in ((loader, "::/EFI/BOOT/BOOTX64.EFI"), (loader, "::/EFI/debian/shimx64.efi"),
                      (csv, "::/EFI/debian/BOOTX64.CSV")):
        subprocess.run(["mcopy", "-i", str(esp), str(src), dest], check=True)
    subprocess.run(["dd", f"if={esp}", f"of={path}", "bs=1M", f"seek={ESP_START_MIB}",
                    "conv=notrunc,sparse", "status=none"], check=True)


@pytest.mark.boot
def test_install_bootloader_reads_esp_on_virtio_disk(tinyipa_image: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    kernel, initramfs = tinyipa_image
    disk = tmp_path / "disk.img"
    make_disk(disk)
    with FakeIronic() as ironic:
        spec = GuestSpec(
            name="tinyipa-esp", kernel=kernel, initrd=initramfs, firmware="uefi",
            memory_mib=512, disk_size=DISK_SIZE, disk_image=disk,
            append=(f"console=ttyS0 panic=-1 ipa-api-url=http://10.0.2.2:{ironic.port} "
                    "ipa-insecure=1"))
        with Guest(spec) as guest:
            beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=300, heartbeat_timeout=180)
            api = AgentAPI.from_heartbeat(guest, beat, ironic.agent_token)
            result = api.command("image.install_bootloader",
                                 {"root_uuid": "0x00000000", "target_boot_mode": "uefi"})
            assert result["command_status"] == "SUCCEEDED", result
            # efibootmgr wrote the entry through efivarfs into OVMF's variable store
            nvram = (guest.disk_path.parent / "OVMF_VARS.fd").read_bytes()
            assert LABEL.encode("utf-16-le") in nvram
            assert "\\EFI\\debian\\shimx64.efi".encode("utf-16-le") in nvram


# name: (QEMU device, mkfs.vfat FAT size, sector size, ESP MiB, hidden sectors)
DISKS = {
    "virtio-fat16-512": ("virtio-blk-pci", 16, 512, 100, 2048),
    "virtio-fat32-4k": ("virtio-blk-pci", 32, 4096, 260, 0),
    "scsi-fat32-512": ("scsi-hd", 32, 512, 64, 0),
    "scsi-fat32-4k": ("scsi-hd", 32, 4096, 260, 2048),
    "nvme-fat32-512": ("nvme", 32, 512, 64, 2048),
    "nvme-fat16-4k": ("nvme", 16, 4096, 100, 0),
}
PROBE = r"""#!/bin/sh
export PATH=/usr/sbin:/usr/bin LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for m in virtio_pci virtio_blk virtio_scsi sd_mod nvme; do modprobe -q $m; done
python3 - <<'PY'
import json, os, time
from ironic_python_agent import efi, partition_table, run
want = int(open("/proc/cmdline").read().split("esp_probe.disks=")[1].split()[0])
def disks():
    return sorted(d for d in os.listdir("/sys/block") if d.startswith(("vd", "sd", "nvme")))
deadline = time.monotonic() + 120
while len(disks()) < want and time.monotonic() < deadline:
    time.sleep(1)
for name in disks():
    dev = "/dev/" + name
    found = {"disk": name, "sector_size":
             int(open(f"/sys/block/{name}/queue/logical_block_size").read())}
    try:
        table = partition_table.read_partition_table(dev)
        esp = efi.find_esp(table)
        image = efi._mtools_image(dev, table, esp)
        loaders = efi.find_loaders(efi.list_esp(image), lambda p: efi.read_esp_file(image, p))
        found["loaders"] = [[l.label, l.path] for l in loaders]
    except run.CommandError as exc:
        found["error"] = efi.mtools_failure(exc)
    except Exception as exc:
        found["error"] = repr(exc)
    print("ESP-PROBE " + json.dumps(found), flush=True)
PY
echo ESP-PROBE-DONE
poweroff -f
"""


def probe_initramfs(initramfs: Path, out: Path) -> None:
    """tinyipa's initramfs with the probe appended (the kernel unpacks both)."""
    probe = cpio.archive([cpio.Entry("lean-ipa-esp-probe", stat.S_IFREG | 0o755,
                                     PROBE.encode())], mtime=0)
    out.write_bytes(initramfs.read_bytes() + gzip.compress(probe, mtime=0))


@pytest.mark.boot
def test_esps_read_on_virtio_scsi_and_nvme_disks(tinyipa_image: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    kernel, initramfs = tinyipa_image
    initrd = tmp_path / "probe.initramfs"
    probe_initramfs(initramfs, initrd)
    args = ["-device", "virtio-scsi-pci,id=scsi0"]
    for n, (name, (device, fat, sector, esp_mib, hidden)) in enumerate(DISKS.items()):
        disk = tmp_path / f"{name}.img"
        bootdisk.esp_disk(disk, name, fat=fat, sector_size=sector, esp_mib=esp_mib,
                          hidden=hidden)
        blocks = f"logical_block_size={sector},physical_block_size={sector}"
        bus = ",bus=scsi0.0" if device == "scsi-hd" else ""
        serial = f",serial=esp{n}" if device == "nvme" else ""
        args += ["-drive", f"file={disk},if=none,id=esp{n},format=raw,cache=unsafe",
                 "-device", f"{device},drive=esp{n},{blocks}{bus}{serial}"]
    # the guest's own (blank) virtio disk counts too
    spec = GuestSpec(name="tinyipa-esp-buses", kernel=kernel, initrd=initrd, firmware="uefi",
                     memory_mib=512, disk_size=1 << 30, extra_args=tuple(args),
                     append=("console=ttyS0 panic=-1 rdinit=/lean-ipa-esp-probe "
                             f"esp_probe.disks={len(DISKS) + 1}"))
    with Guest(spec) as guest:
        guest.wait_for_console("ESP-PROBE-DONE", timeout=600)
        lines = [json.loads(line.split("ESP-PROBE ", 1)[1]) for line in
                 guest.console().splitlines() if line.startswith("ESP-PROBE {")]
    read = {}
    for found in lines:
        if found["disk"] == "vda":  # the guest's blank disk: no partition table
            assert "error" in found, found
            continue
        assert "error" not in found, found
        label, path = found["loaders"][0]
        read[label] = (found["disk"], found["sector_size"])
        assert path == f"\\EFI\\{bootdisk.VENDOR}\\shimx64.efi", found
    assert set(read) == set(DISKS), lines
    for name, (disk, sector) in read.items():
        assert sector == DISKS[name][2], (name, disk)
        prefix = {"virtio-blk-pci": "vd", "scsi-hd": "sd", "nvme": "nvme"}[DISKS[name][0]]
        assert disk.startswith(prefix), (name, disk)
