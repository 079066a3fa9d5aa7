# SPDX-License-Identifier: Apache-2.0
"""A partition image's own loaders copied onto a real FAT ESP with mtools, then found by
the code that makes the NVRAM entries (the mounts and the disk's partitions need a
kernel with partition parsers: the QEMU tests cover those)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ironic_python_agent import bootloader, efi

UUID = "2f0b5a2e-8d0c-4e0a-9d8e-1c2b3a4d5e6f"


def test_loaders_land_on_the_esp_and_make_one_entry(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel, data in (("usr/lib/shim/shimx64.efi.signed", b"MZ shim"),
                      ("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", b"MZ grub"),
                      ("boot/grub/grub.cfg", b"menuentry x {}\n"),
                      ("etc/os-release", b"ID=debian\n")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    esp = tmp_path / "esp.fat"
    with open(esp, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.vfat", "-F", "32", "-n", "EFI-PART", str(esp)], check=True,
                   capture_output=True)
    for _ in range(2):  # a second run (a rebuild) overwrites, it does not fail
        assert bootloader.install_efi_files(str(root), str(esp), UUID, arch="x64")
    files = efi.list_esp(str(esp))
    assert efi.read_esp_file(str(esp), "/EFI/debian/shimx64.efi") == b"MZ shim"
    assert efi.read_esp_file(str(esp), "/EFI/BOOT/BOOTX64.EFI") == b"MZ shim"
    assert efi.read_esp_file(str(esp), "/EFI/BOOT/grubx64.efi") == b"MZ grub"
    assert UUID.encode() in efi.read_esp_file(str(esp), "/EFI/debian/grub.cfg")
    loaders = efi.find_loaders(files, lambda p: efi.read_esp_file(str(esp), p), arch="x64")
    assert loaders == [efi.Loader("debian", "\\EFI\\debian\\shimx64.efi")]


def test_an_image_without_loaders_changes_nothing(tmp_path: Path) -> None:
    esp = tmp_path / "esp.fat"
    with open(esp, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.vfat", "-F", "32", str(esp)], check=True, capture_output=True)
    (tmp_path / "root/boot/grub").mkdir(parents=True)
    assert not bootloader.install_efi_files(str(tmp_path / "root"), str(esp), UUID, arch="x64")
    assert efi.list_esp(str(esp)) == []


def test_an_esp_copied_file_by_file_onto_another(tmp_path: Path) -> None:
    """A whole-disk image's ESP onto the RAIDed ESP of a software RAID root."""
    source, dest = tmp_path / "image-esp.fat", tmp_path / "raid-esp.fat"
    for path in (source, dest):
        with open(path, "wb") as f:
            f.truncate(64 << 20)
        subprocess.run(["mkfs.vfat", "-F", "32", str(path)], check=True, capture_output=True)
    files = {"/EFI/debian/shimx64.efi": b"MZ shim", "/EFI/debian/BOOTX64.CSV": b"csv",
             "/EFI/BOOT/BOOTX64.EFI": b"MZ fallback"}
    efi.write_esp_files(str(source), files)
    assert efi.copy_esp(str(source), str(dest)) == 3
    assert {p: efi.read_esp_file(str(dest), p) for p in files} == files
