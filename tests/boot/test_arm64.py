# SPDX-License-Identifier: Apache-2.0
"""The arm64 images: ./build.sh tinyipa --arch arm64 on this x86_64 host, then
booted under qemu-system-aarch64 (virt, Cortex-A57, TCG) against a fake Ironic.

Every arm64 boot is in this one module (TCG emulating another architecture is
the slowest QEMU there is): the kernel booted directly, with the device tree
QEMU makes, and the UEFI ISO under edk2 (AAVMF), with the firmware's tables.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import subprocess
from pathlib import Path

import pytest

from tests.boot.agent_checks import AgentAPI, check_booted_agent, lookup_and_heartbeat
from tests.boot.qemu import Guest, GuestSpec
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


@pytest.mark.boot
def test_kernel_boot_lookup_heartbeat_inventory(arm64_image: tuple[Path, Path]) -> None:
    kernel, initramfs = arm64_image
    with FakeIronic() as ironic:
        spec = boot_spec("tinyipa-arm64", kernel=kernel, initrd=initramfs,
                         append=(f"console=ttyAMA0 panic=-1 ipa-api-url=http://10.0.2.2:"
                                 f"{ironic.port} ipa-insecure=1"))
        with Guest(spec) as guest:
            beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=300,
                                        heartbeat_timeout=180)
            print(f"arm64 kernel boot: heartbeat {guest.elapsed:.1f}s after QEMU started")
            api = AgentAPI.from_heartbeat(guest, beat, ironic.agent_token)
            inventory = check_booted_agent(api, spec, check_serial=True)
            assert inventory["cpu"]["architecture"] == "aarch64", inventory["cpu"]
            # no SMBIOS without UEFI: the device tree QEMU made names the machine
            assert inventory["system_vendor"]["product_name"] == "linux,dummy-virt"
            assert inventory["boot"]["current_boot_mode"] == "bios"


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
