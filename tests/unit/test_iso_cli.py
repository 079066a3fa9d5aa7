# SPDX-License-Identifier: Apache-2.0
"""iso-image-create as a user runs it: clear errors, and the ISO/ESP it writes (no boot here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
TOOL = TOP / "iso" / "iso-image-create"


def run_tool(*args: str | Path, env: dict[str, str] | None = None,
             python: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    argv = [*python, str(TOOL), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False,
                          timeout=120)


def fake_kernel(path: Path) -> Path:
    """A file with an x86 bzImage header (enough for the magic check, not to boot)."""
    head = bytearray(4096)
    head[0:2] = b"MZ"
    head[0x1FE:0x200] = b"\x55\xaa"
    head[0x202:0x206] = b"HdrS"
    path.write_bytes(bytes(head))
    return path


def fake_initrd(path: Path) -> Path:
    path.write_bytes(b"070701" + bytes(2042))
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    return fake_kernel(tmp_path / "vmlinuz"), fake_initrd(tmp_path / "initrd")


def xorriso_report(iso: Path) -> str:
    # xorriso puts the volume id among its messages on stderr.
    return subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain",
                           "-report_system_area", "plain"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=True).stdout


def extract(iso: Path, dest: Path) -> Path:
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(dest)],
                   capture_output=True, check=True)
    return dest


def test_builds_hybrid_bios_uefi_iso_and_esp(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    kernel, initrd = inputs
    iso, esp = tmp_path / "out.iso", tmp_path / "esp.img"
    done = run_tool("-o", iso, "-k", kernel, "-i", initrd, "--esp", esp,
                    "--append", "ipa-api-url=http://10.0.2.2:6385 ipa-insecure=1")
    assert done.returncode == 0, done.stderr
    report = xorriso_report(iso)
    assert "Volume id    : 'VMEDIA_BOOT_ISO'" in report
    assert "El Torito img path :   1  /isolinux/isolinux.bin" in report
    assert "El Torito img path :   2  /boot/grub/efiboot.img" in report
    assert "MBR isohybrid" in report and "GPT" in report
    # The plain ISO 9660 names (no Rock Ridge) are the ones Ironic's pycdlib
    # walk sees when it looks for efiboot.img and grub.cfg in a deploy ISO.
    iso9660_names = subprocess.run(["isoinfo", "-i", str(iso), "-f"], capture_output=True,
                                   text=True, check=True).stdout.split()
    assert "/boot/grub/efiboot.img" in iso9660_names
    assert "/EFI/BOOT/grub.cfg" in iso9660_names
    tree = extract(iso, tmp_path / "tree")
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()) == [
        "EFI/BOOT/grub.cfg", "boot/grub/efiboot.img", "initrd", "isolinux/boot.cat",
        "isolinux/isolinux.bin", "isolinux/isolinux.cfg", "isolinux/ldlinux.c32", "vmlinuz"]
    assert (tree / "vmlinuz").read_bytes() == kernel.read_bytes()
    assert (tree / "initrd").read_bytes() == initrd.read_bytes()
    isolinux_cfg = (tree / "isolinux/isolinux.cfg").read_text()
    assert ("APPEND initrd=/initrd boot_method=vmedia ipa-api-url=http://10.0.2.2:6385 "
            "ipa-insecure=1 --") in isolinux_cfg
    grub_cfg = (tree / "EFI/BOOT/grub.cfg").read_text()
    assert "linux /vmlinuz boot_method=vmedia ipa-api-url=http://10.0.2.2:6385" in grub_cfg
    assert (tree / "isolinux/ldlinux.c32").read_bytes()[:4] == b"\x7fELF"
    # The ESP on its own and the one inside the ISO are both FAT images with GRUB.
    assert (tree / "boot/grub/efiboot.img").read_bytes() == esp.read_bytes()
    listing = subprocess.run(["mdir", "-b", "-i", str(esp), "::/EFI/BOOT"],
                             capture_output=True, text=True, check=True).stdout
    assert "::/EFI/BOOT/BOOTX64.EFI" in listing
    efi = subprocess.run(["mtype", "-i", str(esp), "::/EFI/BOOT/BOOTX64.EFI"],
                         capture_output=True, check=True).stdout
    assert efi[:2] == b"MZ"
    assert not list(tmp_path.glob(".*partial"))


def test_esp_alone_needs_no_kernel(tmp_path: Path) -> None:
    done = run_tool("--esp", tmp_path / "esp.img")
    assert done.returncode == 0, done.stderr
    assert "EFI/BOOT/grub.cfg" in done.stderr
    assert (tmp_path / "esp.img").stat().st_size == 4 << 20


def test_label(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    kernel, initrd = inputs
    done = run_tool("-o", tmp_path / "x.iso", "-k", kernel, "-i", initrd, "--label", "config-2")
    assert done.returncode == 0, done.stderr
    assert "Volume id    : 'config-2'" in xorriso_report(tmp_path / "x.iso")


@pytest.mark.parametrize("args, message", [
    ((), "-o OUT.iso is required"),
    (("-o", "x.iso", "-k", "vmlinuz"), "-o needs -i INITRD"),
    (("-o", "x.iso"), "-o needs -i INITRD and -k KERNEL"),
    (("-o", "x.iso", "-k", "vmlinuz", "-i", "initrd", "--label", "no spaces"), "--label"),
])
def test_usage_errors(tmp_path: Path, inputs: tuple[Path, Path], args: tuple[str, ...],
                      message: str) -> None:
    done = run_tool(*(str(tmp_path / a) if a in ("x.iso", "vmlinuz", "initrd") else a
                      for a in args))
    assert done.returncode == 2
    assert message in done.stderr


def error_of(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stderr


def test_missing_inputs(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    kernel, initrd = inputs
    out = tmp_path / "x.iso"
    assert f"kernel {tmp_path}/nope (-k): no such file" in error_of(
        run_tool("-o", out, "-k", tmp_path / "nope", "-i", initrd))
    assert f"initrd {tmp_path}/nope (-i): no such file" in error_of(
        run_tool("-o", out, "-k", kernel, "-i", tmp_path / "nope"))
    assert "not a regular file" in error_of(run_tool("-o", out, "-k", tmp_path, "-i", initrd))
    assert not out.exists()


def test_inputs_that_are_not_what_they_claim(tmp_path: Path,
                                             inputs: tuple[Path, Path]) -> None:
    kernel, initrd = inputs
    out = tmp_path / "x.iso"
    swapped = error_of(run_tool("-o", out, "-k", initrd, "-i", kernel))
    assert "does not look like a kernel" in swapped and "swapped" in swapped
    html = tmp_path / "page.html"
    html.write_text("<html><body>404 Not Found</body></html>\n" * 40)
    assert "HdrS" in error_of(run_tool("-o", out, "-k", html, "-i", initrd))
    assert "initrd" in error_of(run_tool("-o", out, "-k", kernel, "-i", html))
    empty = tmp_path / "empty"
    empty.touch()
    assert "empty file" in error_of(run_tool("-o", out, "-k", kernel, "-i", empty))
    assert not out.exists()


def test_output_directory_problems(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    kernel, initrd = inputs
    assert "does not exist" in error_of(
        run_tool("-o", tmp_path / "no" / "x.iso", "-k", kernel, "-i", initrd))
    assert "is not a directory" in error_of(
        run_tool("-o", kernel / "x.iso", "-k", kernel, "-i", initrd))
    assert "is a directory" in error_of(run_tool("-o", tmp_path, "-k", kernel, "-i", initrd))
    # Nobody, not even root, can create files in /proc.
    assert "output directory /proc (-o) is not writable" in error_of(
        run_tool("-o", "/proc/lean-ipa-test.iso", "-k", kernel, "-i", initrd))
    assert "output directory /proc (--esp) is not writable" in error_of(
        run_tool("--esp", "/proc/lean-ipa-test.img"))


def test_missing_host_tools_name_apt_packages(tmp_path: Path,
                                              inputs: tuple[Path, Path]) -> None:
    kernel, initrd = inputs
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {**os.environ, "PATH": str(empty_bin)}
    stderr = error_of(run_tool("-o", tmp_path / "x.iso", "-k", kernel, "-i", initrd, env=env))
    assert "xorriso (package xorriso)" in stderr
    assert "grub-mkimage (package grub-common)" in stderr
    assert "mkfs.fat (package dosfstools)" in stderr
    assert "hint: apt-get install dosfstools grub-common mtools xorriso" in stderr


def test_missing_jinja2_is_named(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    kernel, initrd = inputs
    # -S: no site/dist-packages, so Debian's python3-jinja2 is out of reach.
    stderr = error_of(run_tool("-o", tmp_path / "x.iso", "-k", kernel, "-i", initrd,
                               python=("/usr/bin/python3", "-S")))
    assert "jinja2 is missing" in stderr and "python3-jinja2" in stderr


def test_conflicting_boot_method(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    kernel, initrd = inputs
    assert "conflicts with boot_method=vmedia" in error_of(
        run_tool("-o", tmp_path / "x.iso", "-k", kernel, "-i", initrd,
                 "--append", "boot_method=pxe"))


# --- --secure-boot: Debian's signed chain (booted in tests/boot/test_secure_boot.py) ---------

SIGNED_FILES = {
    "usr/lib/shim/shimx64.efi.signed": b"MZ shim",
    "usr/lib/shim/mmx64.efi.signed": b"MZ mokmanager",
    "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed": b"MZ grub",
    "usr/share/shim/debian-uefi-ca.der": b"0\x82 not a certificate",
}


def fake_efi_root(root: Path, skip: str = "") -> Path:
    for path, data in SIGNED_FILES.items():
        if path != skip:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
    return root


def test_secure_boot_names_the_missing_packages(tmp_path: Path,
                                                inputs: tuple[Path, Path]) -> None:
    kernel, initrd = inputs
    root = fake_efi_root(tmp_path / "root", skip="usr/lib/shim/shimx64.efi.signed")
    done = run_tool("-o", tmp_path / "out.iso", "-k", kernel, "-i", initrd, "--secure-boot",
                    "--efi-root", root)
    assert done.returncode == 1
    assert "shimx64.efi.signed (package shim-signed)" in done.stderr
    assert "grub-efi-amd64-signed" not in done.stderr.split("error:")[1].split("hint")[0]
    assert "hint: apt-get install shim-signed" in done.stderr
    assert not (tmp_path / "out.iso").exists()


def test_secure_boot_esp_layout_and_an_unsigned_kernel(tmp_path: Path,
                                                       inputs: tuple[Path, Path]) -> None:
    """shim as BOOTX64.EFI beside grubx64.efi and mmx64.efi, Debian GRUB's config in
    /EFI/debian; a kernel without Debian's signature is built but marked in the manifest."""
    kernel, initrd = inputs
    root = fake_efi_root(tmp_path / "root")
    iso, esp, manifest = tmp_path / "out.iso", tmp_path / "esp.img", tmp_path / "out.manifest"
    done = run_tool("-o", iso, "-k", kernel, "-i", initrd, "--esp", esp, "--secure-boot",
                    "--efi-root", root, "--manifest", manifest)
    assert done.returncode == 0, done.stderr
    assert "will not boot with Secure Boot enforced" in done.stderr

    def esp_file(path: str) -> bytes:
        return subprocess.run(["mtype", "-i", str(esp), "::" + path], capture_output=True,
                              check=True).stdout
    assert esp_file("/EFI/BOOT/BOOTX64.EFI") == b"MZ shim"
    assert esp_file("/EFI/BOOT/grubx64.efi") == b"MZ grub"
    assert esp_file("/EFI/BOOT/mmx64.efi") == b"MZ mokmanager"
    assert b"/EFI/BOOT/grub.cfg" in esp_file("/EFI/debian/grub.cfg")
    lines = manifest.read_text().splitlines()
    assert lines == sorted(lines) and "input secure-boot true" in lines
    assert [line for line in lines if line.startswith("secure_boot ")] == [
        next(line for line in lines if line.startswith("secure_boot false kernel not signed "
                                                       "by Debian's CA: "))]


def test_without_secure_boot_the_manifest_says_so(tmp_path: Path,
                                                  inputs: tuple[Path, Path]) -> None:
    kernel, initrd = inputs
    manifest = tmp_path / "out.manifest"
    done = run_tool("-o", tmp_path / "out.iso", "-k", kernel, "-i", initrd,
                    "--manifest", manifest)
    assert done.returncode == 0, done.stderr
    assert "secure_boot false unsigned GRUB built here (no --secure-boot)" in (
        manifest.read_text().splitlines())

