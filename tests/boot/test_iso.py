# SPDX-License-Identifier: Apache-2.0
"""iso-image-create's ISO booted under QEMU (TCG): SeaBIOS from -cdrom and OVMF (UEFI).

Two kinds of payload:

* a marker initramfs (static busybox whose /init prints the kernel command line
  and the firmware type, then powers off) with Debian's kernel: proves the boot
  loaders and the command line, fast, without the agent;
* the tinyipa image from ``./build.sh iso``: the agent reaches the fake Ironic's
  lookup with the ipa-api-url from ``--append``, or, with nothing appended, from
  ``parameters.txt`` on a USB stick labelled ``ir-vfd-dev`` (boot_method=vmedia).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot.qemu import Guest
from tests.boot.qemu import GuestSpec
# The session fixture that rebuilds the tinyipa image when its inputs changed.
from tests.fake_ironic import FakeIronic

pytestmark = pytest.mark.boot

TOP = Path(__file__).resolve().parents[2]
TOOL = TOP / "iso" / "iso-image-create"
OUT = Path(os.environ.get("LEAN_IPA_OUT", TOP / "out"))
CACHE = Path(os.environ.get("LEAN_IPA_CACHE", TOP / ".cache"))

MARKER_INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox echo "ISO-MARKER-CMDLINE: $(/bin/busybox cat /proc/cmdline)"
if [ -d /sys/firmware/efi ]; then fw=uefi; else fw=bios; fi
/bin/busybox echo "ISO-MARKER-FIRMWARE=$fw"
/bin/busybox poweroff -f
"""


def make_iso(tmp_path: Path, kernel: Path, initrd: Path, append: str,
             name: str = "test.iso") -> Path:
    iso = tmp_path / name
    subprocess.run([str(TOOL), "-o", str(iso), "-k", str(kernel), "-i", str(initrd),
                    "--append", append], check=True, capture_output=True, text=True)
    return iso


@pytest.fixture(scope="session")
def debian_kernel() -> Path:
    """Debian bookworm's amd64 kernel (the one tinyipa ships), from the apt mirror, cached."""
    cache = CACHE / "iso-test-kernel"
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("boot/vmlinuz-*"))
    if found:
        return found[-1]
    subprocess.run(["apt-get", "download", "linux-image-amd64"], cwd=cache, check=True,
                   capture_output=True)
    meta = next(cache.glob("linux-image-amd64_*.deb"))
    depends = subprocess.run(["dpkg-deb", "-f", str(meta), "Depends"], check=True,
                             capture_output=True, text=True).stdout
    package = depends.split(",")[0].split()[0]
    subprocess.run(["apt-get", "download", package], cwd=cache, check=True, capture_output=True)
    deb = next(cache.glob(f"{package}_*.deb"))
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                         capture_output=True).stdout
    subprocess.run(["tar", "-x", "--wildcards", "./boot/vmlinuz-*"], cwd=cache, input=tar,
                   check=True)
    for stale in cache.glob("*.deb"):
        stale.unlink()
    return sorted(cache.glob("boot/vmlinuz-*"))[-1]


@pytest.fixture(scope="session")
def marker_initrd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gzip'd cpio with static busybox and the marker /init."""
    root = tmp_path_factory.mktemp("marker-root")
    for sub in ("bin", "proc", "sys", "dev"):
        (root / sub).mkdir()
    shutil.copyfile("/bin/busybox", root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    (root / "init").write_text(MARKER_INIT)
    (root / "init").chmod(0o755)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    cpio = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
                          input="\n".join(names).encode(), check=True,
                          capture_output=True).stdout
    initrd = root.parent / "marker.cpio.gz"
    initrd.write_bytes(subprocess.run(["gzip", "-1"], input=cpio, check=True,
                                      capture_output=True).stdout)
    return initrd


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_marker_boots(tmp_path: Path, debian_kernel: Path, marker_initrd: Path,
                      firmware: str) -> None:
    iso = make_iso(tmp_path, debian_kernel, marker_initrd,
                   'console=ttyS0 lean-ipa.marker=1 quiet-not="a b"')
    with Guest(GuestSpec(name=f"iso-marker-{firmware}", iso=iso, firmware=firmware,
                         memory_mib=512, forward_ports=())) as guest:
        fw = guest.wait_for_console(r"ISO-MARKER-FIRMWARE=(\w+)", timeout=180).group(1)
        cmdline = guest.wait_for_console(r"ISO-MARKER-CMDLINE: (.*)", timeout=5).group(1)
    assert fw == firmware
    words = cmdline.split()
    assert "boot_method=vmedia" in words
    assert "console=ttyS0" in words and "lean-ipa.marker=1" in words
    # isolinux passes the line verbatim; GRUB re-quotes a word with a blank as a
    # whole. Linux reads both as quiet-not = "a b".
    quoted = {"bios": 'quiet-not="a b"', "uefi": '"quiet-not=a b"'}[firmware]
    assert quoted in cmdline


def test_hybrid_iso_boots_from_a_usb_stick_with_uefi(tmp_path: Path, debian_kernel: Path,
                                                     marker_initrd: Path) -> None:
    """The ISO written to a USB stick: OVMF starts GRUB from the GPT's ESP partition,
    and GRUB has to find /EFI/BOOT/grub.cfg on the ISO 9660 file system itself.
    A different ISO sits on the CD drive, behind the stick in the boot order."""
    stick = make_iso(tmp_path, debian_kernel, marker_initrd, "console=ttyS0 from=usb", "usb.iso")
    decoy = make_iso(tmp_path, debian_kernel, marker_initrd, "console=ttyS0 from=cd", "cd.iso")
    usb_stick = ("-device", "qemu-xhci,id=xhci",
                 "-drive", f"if=none,id=stick,format=raw,readonly=on,file={stick}",
                 "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=0")
    with Guest(GuestSpec(name="iso-hybrid-usb-uefi", iso=decoy, firmware="uefi", memory_mib=512,
                         forward_ports=(), extra_args=usb_stick)) as guest:
        cmdline = guest.wait_for_console(r"ISO-MARKER-CMDLINE: (.*)", timeout=180).group(1)
    assert "from=usb" in cmdline.split()


# Runs in the real Ironic's venv: its own UEFI ISO builder, fed our ESP
# ([conductor]bootloader) or our whole ISO (harvesting efiboot.img + grub.cfg).
IRONIC_BUILDS_ISO = """
import sys
from ironic.common import images
out, kernel, ramdisk, source, path, params = sys.argv[1:]
kwargs = {"esp_image": path} if source == "esp" else {"deploy_iso": path}
images.create_esp_image_for_uefi(out, kernel, ramdisk, kernel_cmd_line=params, **kwargs)
"""


@pytest.fixture(scope="session")
def ironic_python() -> Path:
    """The real Ironic 39 venv the e2e tests use (installed once, cached under out/)."""
    from tests.e2e.ironic import IRONIC_REQUIREMENT
    from tests.e2e.ironic import ensure_venv
    from tests.e2e.ironic import out_dir
    return ensure_venv(out_dir() / "venv-ironic", IRONIC_REQUIREMENT) / "python"


@pytest.mark.parametrize("source", ["esp", "deploy_iso"])
def test_ironic_builds_a_uefi_iso_from_ours(tmp_path: Path, debian_kernel: Path,
                                            marker_initrd: Path, ironic_python: Path,
                                            source: str) -> None:
    """``--esp`` as Ironic's [conductor]bootloader, and our ISO as the deploy ISO
    Ironic takes efiboot.img and grub.cfg from: Ironic's create_esp_image_for_uefi
    (its grub.cfg, no search, at [DEFAULT]grub_config_path; EFI-only El Torito)."""
    if source == "esp":
        ours = tmp_path / "esp.img"
        subprocess.run([str(TOOL), "--esp", str(ours)], check=True, capture_output=True)
    else:
        ours = make_iso(tmp_path, debian_kernel, marker_initrd, "console=ttyS0 ours=1")
    iso = tmp_path / "ironic.iso"
    params = f"console=ttyS0 boot_method=vmedia ironic-built={source}"
    done = subprocess.run([str(ironic_python), "-c", IRONIC_BUILDS_ISO, str(iso),
                           str(debian_kernel), str(marker_initrd), source, str(ours), params],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    with Guest(GuestSpec(name=f"iso-ironic-{source}", iso=iso, firmware="uefi", memory_mib=512,
                         forward_ports=())) as guest:
        fw = guest.wait_for_console(r"ISO-MARKER-FIRMWARE=(\w+)", timeout=180).group(1)
        cmdline = guest.wait_for_console(r"ISO-MARKER-CMDLINE: (.*)", timeout=5).group(1)
    assert fw == "uefi"
    assert f"ironic-built={source}" in cmdline.split() and "ours=1" not in cmdline


# -- the tinyipa image, to the fake Ironic's lookup ---------------------------

@pytest.fixture(scope="session")
def tinyipa_iso_inputs(tinyipa_image: tuple[Path, Path]) -> tuple[Path, Path]:
    """The fresh tinyipa kernel + initramfs, after ``./build.sh iso`` packed them once."""
    subprocess.run([str(TOP / "build.sh"), "iso"], check=True, capture_output=True)
    assert (OUT / "iso" / "tinyipa.iso").is_file()
    assert (OUT / "iso" / "tinyipa-esp.img").is_file()
    return tinyipa_image


@pytest.fixture
def ironic() -> Iterator[FakeIronic]:
    with FakeIronic() as server:
        yield server


def assert_lookup_from(guest: Guest, ironic: FakeIronic) -> None:
    lookup = ironic.wait_for_lookup(timeout=400)
    assert guest.spec.mac.lower() in [a.lower() for a in lookup.addresses]


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_tinyipa_iso_reaches_lookup(tmp_path: Path, tinyipa_iso_inputs: tuple[Path, Path],
                                    ironic: FakeIronic, firmware: str) -> None:
    kernel, initrd = tinyipa_iso_inputs
    iso = make_iso(tmp_path, kernel, initrd, f"console=ttyS0 ipa-api-url=http://10.0.2.2:"
                   f"{ironic.port} ipa-insecure=1")
    with Guest(GuestSpec(name=f"iso-tinyipa-{firmware}", iso=iso, firmware=firmware)) as guest:
        assert_lookup_from(guest, ironic)
        # The kernel logs the command line the boot loader gave it.
        guest.wait_for_console(r"Command line: .*boot_method=vmedia", timeout=5)


def make_vfd(tmp_path: Path, parameters: str) -> Path:
    """What Ironic's config_via_removable inserts: a small vfat labelled ir-vfd-dev."""
    vfd = tmp_path / "vfd.img"
    subprocess.run(["mkfs.fat", "-C", "-n", "ir-vfd-dev", str(vfd), "1440"], check=True,
                   capture_output=True)
    params = tmp_path / "parameters.txt"
    params.write_text(parameters)
    subprocess.run(["mcopy", "-i", str(vfd), str(params), "::/parameters.txt"], check=True)
    return vfd


def test_tinyipa_iso_reads_parameters_txt(tmp_path: Path, tinyipa_iso_inputs: tuple[Path, Path],
                                          ironic: FakeIronic) -> None:
    kernel, initrd = tinyipa_iso_inputs
    iso = make_iso(tmp_path, kernel, initrd, "console=ttyS0")
    vfd = make_vfd(tmp_path, f"ipa-api-url=http://10.0.2.2:{ironic.port}\nipa-insecure=1\n")
    usb_stick = ("-device", "qemu-xhci,id=xhci",
                 "-drive", f"if=none,id=vfd,format=raw,file={vfd}",
                 "-device", "usb-storage,bus=xhci.0,drive=vfd,removable=on")
    with Guest(GuestSpec(name="iso-tinyipa-vmedia", iso=iso, firmware="bios",
                         extra_args=usb_stick)) as guest:
        # Nothing on the command line names Ironic: the URL came from parameters.txt.
        command_line = guest.wait_for_console(r"Command line: (.*)", timeout=300).group(1)
        assert "boot_method=vmedia" in command_line and "ipa-api-url" not in command_line
        assert_lookup_from(guest, ironic)
