# SPDX-License-Identifier: Apache-2.0
"""The arm64 images: ./build.sh tinyipa --arch arm64 on this x86_64 host, then
booted under qemu-system-aarch64 (virt, Cortex-A57, TCG).

Every arm64 boot is in this one module (TCG emulating another architecture is
the slowest QEMU there is), two boots in all: the kernel booted directly, with
the device tree QEMU makes, as a node of the real Ironic 39 (inspect, provide
with automated cleaning, deploy, in one boot: the node's fast track), and the
UEFI ISO under edk2 (AAVMF), with the firmware's tables, against a fake Ironic.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.boot.agent_checks import (
    AgentAPI,
    agent_status,
    check_booted_agent,
    check_inventory,
    lookup_and_heartbeat,
)
from tests.boot.qemu import ARTEFACTS, Guest, GuestSpec
from tests.e2e import ironic, qemu_bmc
from tests.fake_ironic import FakeIronic
from tests.tinyipa_build import ensure_tinyipa
from tinyipa import cpio, elf

TOP = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("LEAN_IPA_OUT", TOP / "out"))
IMAGE = OUT / "tinyipa"
NAME = "tinyipa-arm64"
EM_AARCH64 = 183
ARM64_MAGIC = b"ARM\x64"   # offset 56 of an arm64 kernel Image


@pytest.fixture(scope="module")
def arm64_image() -> tuple[Path, Path]:
    """(kernel, initramfs) of the arm64 tinyipa, built unless the inputs are unchanged."""
    try:
        return ensure_tinyipa(OUT, NAME, ("--arch", "arm64"))
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def arm64_files(arm64_image: tuple[Path, Path]) -> dict[str, cpio.Entry]:
    data = subprocess.run(cpio.decompress_command(arm64_image[1]), check=True,
                          stdout=subprocess.PIPE).stdout
    return {entry.name: entry for entry in cpio.read_entries(data)}


def elf_machine(data: bytes) -> int | None:
    return struct.unpack_from("<H", data, 18)[0] if data[:4] == elf.MAGIC else None


@pytest.mark.build
def test_outputs_are_named_for_arm64(arm64_image: tuple[Path, Path]) -> None:
    kernel, initramfs = arm64_image
    assert (kernel.name, initramfs.name) == (f"{NAME}.kernel", f"{NAME}.initramfs")
    sums = dict(reversed(line.split("  ")) for line in
                (IMAGE / "sha256sums").read_text().splitlines())
    for path in arm64_image:
        assert sums[path.name] == hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = (IMAGE / f"{NAME}.manifest").read_text().splitlines()
    assert "input arch arm64" in manifest and f"input name {NAME}" in manifest
    assert any(line.startswith("deb linux-image-") and line.split()[1].endswith("-arm64")
               for line in manifest)
    # no stub libraries (they are compiled, and nothing is compiled for arm64)
    assert not any(line.startswith("stub ") for line in manifest)
    # Debian's arm64 kernel Image, gzip'd (GRUB, iPXE and QEMU unpack it)
    image = gzip.decompress(kernel.read_bytes())
    assert image[56:60] == ARM64_MAGIC


@pytest.mark.build
def test_every_program_and_wheel_is_aarch64(arm64_files: dict[str, cpio.Entry]) -> None:
    machines: dict[int | None, list[str]] = {}
    for name, entry in arm64_files.items():
        if entry.data[:4] == elf.MAGIC:
            machines.setdefault(elf_machine(entry.data), []).append(name)
    assert set(machines) == {EM_AARCH64}, {m: n[:3] for m, n in machines.items()}
    elves = set(machines[EM_AARCH64])
    for program in ("usr/bin/python3.11", "usr/bin/busybox", "usr/bin/ipmitool",
                    "usr/sbin/nvme", "usr/lib/aarch64-linux-gnu/libc.so.6",
                    "usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"):
        assert program in elves, program
    # the binary wheels are manylinux aarch64 ones (e.g. MarkupSafe's speedups)
    assert any(n.startswith("usr/lib/python3/dist-packages/") and n.endswith(".so")
               for n in elves)
    # the real libraries an x86_64 image replaces with stubs
    for lib in ("libfreeipmi.so.17", "libdbus-1.so.3"):
        assert any(n.endswith(f"/{lib}") for n in arm64_files), lib
    modules = [n for n in arm64_files if ".ko" in n]
    for wanted in ("virtio_net", "virtio_blk", "virtio_pci", "virtio_mmio", "nvme", "ext4"):
        assert any(f"/{wanted}.ko" in m for m in modules), wanted


def boot_spec(name: str, **kw: object) -> GuestSpec:
    return GuestSpec(name=name, arch="arm64", memory_mib=512, forward_ports=(9999,),
                     **kw)  # type: ignore[arg-type]


def wait_for_heartbeat(client: ironic.IronicClient, node: qemu_bmc.QemuNode,
                       timeout: float) -> dict[str, object]:
    """The node's driver_internal_info once Ironic has recorded a heartbeat."""
    deadline = time.monotonic() + timeout
    while True:
        info: dict[str, object] = client.node(node.uuid)["driver_internal_info"]
        if info.get("agent_url") and info.get("agent_last_heartbeat"):
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"no heartbeat recorded after {timeout:.0f} s: {info}\n"
                                 f"{node.console_tail()}")
        time.sleep(1)


@pytest.mark.e2e
@pytest.mark.boot
@pytest.mark.timeout(1800)
def test_ironic_inspects_cleans_and_deploys_node(arm64_image: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    """The real Ironic drives an arm64 node booted once, kernel + initramfs.

    ``driver_info/fast_track``: inspection leaves the agent running; it looks the
    node up and heartbeats, cleans (erase_devices_metadata) and writes a small
    whole-disk image; only the deploy's tear-down (sync, then the BMC's power-off)
    ends the boot. Agent auto-TLS, as Ironic requires by default.
    """
    kernel, initramfs = arm64_image
    artefacts = ARTEFACTS / "arm64-node"
    settings = ironic.IronicSettings(require_tls=True, callback_timeout=600)
    served = tmp_path / "served"
    served.mkdir()
    image, content = qemu_bmc.make_whole_disk_image(served, "raw")
    with ironic.running_ironic(settings, tmp_path / "ironic") as (service, client), \
            qemu_bmc.ImageServer(served) as server:
        node = qemu_bmc.QemuNode("arm64-node", qemu_bmc.KernelMedia(kernel, initramfs),
                                 service.api_port, tmp_path, artefacts, memory_mib=512,
                                 arch="arm64")
        flows = qemu_bmc.NodeFlows(node, service, client, fast_track=True)
        try:
            flows.enroll()
            # A partition table for cleaning to erase, there before the guest reads the disk.
            with open(node.disk, "r+b") as disk:
                disk.write(content[:1 << 20])

            props = flows.inspect().node["properties"]
            assert props.get("cpu_arch") == "aarch64", props
            assert props.get("cpus") == 1, props
            assert props.get("local_gb") == qemu_bmc.DISK_SIZE // qemu_bmc.GIB - 1, props
            assert node.guest is not None and node.guest.running()
            inventory = client.call("GET", f"/v1/nodes/{node.uuid}/inventory")["inventory"]
            check_inventory(inventory, node.guest.spec)
            assert inventory["cpu"]["architecture"] == "aarch64", inventory["cpu"]
            # no SMBIOS without UEFI: the device tree QEMU made names the machine
            assert inventory["system_vendor"]["product_name"] == "linux,dummy-virt"
            assert inventory["boot"]["current_boot_mode"] == "bios"

            # After inspection the agent looked the node up (a token) and heartbeats
            # with its auto-TLS URL; its API answers over that TLS.
            info = wait_for_heartbeat(client, node, timeout=300)
            assert info["agent_url"] == f"https://127.0.0.1:{node.host_port}", info
            assert info.get("agent_secret_token"), info
            print(f"arm64 node: heartbeat {node.guest.elapsed:.1f}s after QEMU started")
            ca = info.get("agent_verify_ca")
            ca_pem = Path(str(ca)).read_text() if ca and Path(str(ca)).is_file() else None
            agent_status(AgentAPI(str(info["agent_url"]), ca_pem, ""))

            assert node.read_disk(2, 510) == b"\x55\xaa"
            flows.provide()
            assert node.read_disk(2, 510) != b"\x55\xaa", "cleaning left the partition table"
            assert node.guest is not None and node.guest.running(), "fast track: still up"

            deployed = flows.deploy(server, image, "raw", oob_power_off=True)
            assert deployed.node["last_error"] is None
            assert node.read_disk(len(content)) == content, "the disk does not hold the image"
            assert node.boots == 1, f"{node.boots} boots; fast track boots once"
        finally:
            for t in flows.timings:
                up = "-" if t.agent_started is None else f"{t.agent_started:.1f} s"
                print(f"arm64 node {t.flow:10} agent up {up:>7}, "
                      f"done {t.finished:6.1f} s after QEMU started")
            node.close()
            flows.retire()
            with contextlib.suppress(OSError):
                artefacts.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(service.log, artefacts / "ironic.log")


def make_iso(tmp_path: Path, kernel: Path, initrd: Path, append: str) -> Path:
    """iso-image-create --arch arm64 (GRUB arm64-efi from Debian's package)."""
    iso = tmp_path / f"{NAME}.iso"
    made = subprocess.run([str(TOP / "iso/iso-image-create"), "--arch", "arm64", "-o", str(iso),
                           "-k", str(kernel), "-i", str(initrd), "--append", append],
                          capture_output=True, text=True, timeout=600, check=False)
    assert made.returncode == 0, made.stderr
    return iso


@pytest.mark.build
def test_iso_is_uefi_only_with_grub_arm64(arm64_image: tuple[Path, Path],
                                          tmp_path: Path) -> None:
    iso = make_iso(tmp_path, *arm64_image, "console=ttyAMA0")
    report = subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain",
                             "-report_system_area", "plain"], capture_output=True, text=True,
                            check=True).stdout
    boots = [line for line in report.splitlines() if line.startswith("El Torito boot img :")]
    assert len(boots) == 1 and " UEFI " in boots[0], boots   # no BIOS (isolinux) entry
    # the ESP is also a GPT partition of type "EFI System" (a USB stick boots it)
    assert "28732ac11ff8d211ba4b00a0c93ec93b" in report
    esp = tmp_path / "esp.img"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract",
                    "/boot/grub/efiboot.img", str(esp)], check=True, capture_output=True)
    loader = subprocess.run(["mtype", "-i", str(esp), "::/EFI/BOOT/BOOTAA64.EFI"],
                            capture_output=True, check=True).stdout
    # a PE32+ image for arm64 (IMAGE_FILE_MACHINE_ARM64 = 0xaa64)
    pe = struct.unpack_from("<I", loader, 0x3C)[0]
    assert loader[:2] == b"MZ" and loader[pe:pe + 4] == b"PE\0\0"
    assert struct.unpack_from("<H", loader, pe + 4)[0] == 0xAA64
    # an x86_64 kernel (a bzImage's setup header) is refused by name
    bzimage = bytearray(4096)
    bzimage[0x1FE:0x200], bzimage[0x202:0x206] = b"\x55\xaa", b"HdrS"
    (tmp_path / "bzImage").write_bytes(bytes(bzimage))
    bad = subprocess.run([str(TOP / "iso/iso-image-create"), "--arch", "arm64", "-o",
                          str(tmp_path / "x.iso"), "-k", str(tmp_path / "bzImage"),
                          "-i", str(arm64_image[1])], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 1 and "x86 bzImage, not an arm64 kernel" in bad.stderr
    assert not (tmp_path / "x.iso").exists()


@pytest.mark.boot
def test_iso_uefi_boot_lookup_heartbeat(arm64_image: tuple[Path, Path],
                                        tmp_path: Path) -> None:
    with FakeIronic() as ironic:
        iso = make_iso(tmp_path, *arm64_image,
                       f"console=ttyAMA0 ipa-api-url=http://10.0.2.2:{ironic.port} "
                       "ipa-insecure=1")
        spec = boot_spec("tinyipa-arm64-iso", iso=iso, firmware="uefi")
        with Guest(spec) as guest:
            guest.wait_for_console(r"Welcome to GRUB", timeout=300)
            guest.wait_for_console(r"Booting `Deploy ramdisk", timeout=120)
            assert "Unknown command" not in guest.console()  # the early config ran whole
            beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=400,
                                        heartbeat_timeout=180)
            print(f"arm64 ISO (edk2, GRUB): heartbeat {guest.elapsed:.1f}s after QEMU started")
            api = AgentAPI.from_heartbeat(guest, beat, ironic.agent_token)
            inventory = check_booted_agent(api, spec)
            assert inventory["cpu"]["architecture"] == "aarch64"
            assert inventory["boot"]["current_boot_mode"] == "uefi"
            # edk2 gives SMBIOS tables: dmidecode names the machine
            assert inventory["system_vendor"]["manufacturer"] == "QEMU"
