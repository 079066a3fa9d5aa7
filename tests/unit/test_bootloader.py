# SPDX-License-Identifier: Apache-2.0
"""Where a partition image keeps its EFI loaders, and what goes onto the ESP."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironic_python_agent import bootloader, efi, errors

UUID = "2f0b5a2e-8d0c-4e0a-9d8e-1c2b3a4d5e6f"


def touch(root: Path, *paths: str, text: str = "x") -> None:
    for rel in paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def debian_root(root: Path) -> Path:
    touch(root, "usr/lib/shim/shimx64.efi.signed", "usr/lib/shim/mmx64.efi.signed",
          "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "boot/grub/grub.cfg")
    touch(root, "etc/os-release", text='PRETTY_NAME="Debian GNU/Linux 12"\nID=debian\n')
    return root


def test_debian_layout(tmp_path: Path) -> None:
    assets = bootloader.find_efi_assets(str(debian_root(tmp_path)), "x64")
    assert assets == bootloader.EfiAssets(
        "debian", "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
        "usr/lib/shim/shimx64.efi.signed", "usr/lib/shim/mmx64.efi.signed")


def test_rhel_layout_is_the_image_own_efi_tree(tmp_path: Path) -> None:
    touch(tmp_path, "boot/efi/EFI/BOOT/BOOTX64.EFI", "boot/efi/EFI/redhat/shimx64.efi",
          "boot/efi/EFI/redhat/grubx64.efi", "boot/efi/EFI/redhat/BOOTX64.CSV",
          "boot/grub2/grub.cfg")
    assets = bootloader.find_efi_assets(str(tmp_path), "x64")
    assert assets is not None and assets.vendor == "redhat"
    assert assets.tree == "boot/efi/EFI/redhat" and assets.shim.endswith("shimx64.efi")
    assert bootloader.grub_dir(str(tmp_path)) == "/boot/grub2"
    files = bootloader.esp_files(str(tmp_path), assets, UUID, "/boot/grub2", "x64")
    assert files["/EFI/redhat/BOOTX64.CSV"] == bootloader.boot_csv("shimx64.efi", "redhat")
    assert files["/EFI/BOOT/BOOTX64.EFI"] == "boot/efi/EFI/redhat/shimx64.efi"


def test_unsigned_grub_only_and_arm64(tmp_path: Path) -> None:
    touch(tmp_path, "usr/lib/grub/arm64-efi/monolithic/grubaa64.efi", "boot/grub/grub.cfg")
    assets = bootloader.find_efi_assets(str(tmp_path), "aa64")
    assert assets == bootloader.EfiAssets("linux", "usr/lib/grub/arm64-efi/monolithic/grubaa64.efi")
    files = bootloader.esp_files(str(tmp_path), assets, UUID, "/boot/grub", "aa64")
    assert files["/EFI/BOOT/BOOTAA64.EFI"] == assets.grub
    assert "/EFI/BOOT/grubaa64.efi" not in files
    assert bootloader.find_efi_assets(str(tmp_path), "x64") is None


def test_esp_files_make_shim_first_and_a_fallback(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    assets = bootloader.find_efi_assets(str(root), "x64")
    files = bootloader.esp_files(str(root), assets, UUID, "/boot/grub", "x64")
    assert sorted(files) == sorted([
        "/EFI/debian/shimx64.efi", "/EFI/debian/grubx64.efi", "/EFI/debian/mmx64.efi",
        "/EFI/debian/grub.cfg", "/EFI/debian/BOOTX64.CSV", "/EFI/BOOT/BOOTX64.EFI",
        "/EFI/BOOT/grubx64.efi", "/EFI/BOOT/mmx64.efi", "/EFI/BOOT/grub.cfg"])
    stub = files["/EFI/debian/grub.cfg"].decode()
    assert f"search --no-floppy --fs-uuid --set=root {UUID}" in stub
    assert "configfile $prefix/grub.cfg" in stub and "($root)/boot/grub" in stub
    # what efi.py makes NVRAM entries from: shim, labelled by the CSV
    listing = [p for p in files] + ["/EFI/", "/EFI/debian/"]
    loaders = efi.find_loaders(listing, lambda p: files[p] if isinstance(files[p], bytes)
                               else b"", arch="x64")
    assert loaders == [efi.Loader("debian", "\\EFI\\debian\\shimx64.efi")]


def test_no_grub_config_means_nothing_to_point_at(tmp_path: Path) -> None:
    touch(tmp_path, "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
    assert bootloader.grub_dir(str(tmp_path)) is None


def test_grub_flavour(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidImage, match="neither grub-install nor grub2-install"):
        bootloader.grub_flavour(str(tmp_path))
    touch(tmp_path, "usr/sbin/grub-install")
    assert bootloader.grub_flavour(str(tmp_path)) == "grub"
    touch(tmp_path, "usr/sbin/grub2-install")
    assert bootloader.grub_flavour(str(tmp_path)) == "grub2"


def test_fstab_gets_the_esp_once(tmp_path: Path) -> None:
    touch(tmp_path, "etc/fstab", text="UUID=abc / ext4 defaults 0 1")
    for _ in range(2):
        bootloader.add_esp_to_fstab(str(tmp_path), "ABCD-1234")
    assert (tmp_path / "etc/fstab").read_text() == (
        "UUID=abc / ext4 defaults 0 1\nUUID=ABCD-1234\t/boot/efi\tvfat\tumask=0077\t0\t1\n")
    touch(tmp_path, "etc/fstab", text="# /boot/efi was on /dev/sda1\n/dev/sda1 /boot/efi vfat d 0 1\n")
    bootloader.add_esp_to_fstab(str(tmp_path), "ABCD-1234")
    assert "ABCD-1234" not in (tmp_path / "etc/fstab").read_text()


def test_os_id_defaults(tmp_path: Path) -> None:
    assert bootloader.os_id(str(tmp_path)) == "linux"
    touch(tmp_path, "usr/lib/os-release", text='ID="ubuntu"\n')
    assert bootloader.os_id(str(tmp_path)) == "ubuntu"


def test_software_raid_root_needs_the_image_mdadm(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidImage, match="no mdadm.*RAID /dev/md126"):
        bootloader.check_raid_capable(str(tmp_path), "/dev/md126")
    (tmp_path / "sbin").mkdir()
    (tmp_path / "sbin/mdadm").write_bytes(b"")
    bootloader.check_raid_capable(str(tmp_path), "/dev/md126")
