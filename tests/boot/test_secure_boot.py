# SPDX-License-Identifier: Apache-2.0
"""Secure Boot enforced: OVMF's SMM build with Microsoft's keys enrolled.

The ISO and the ESP image from ``./build.sh iso`` carry Debian's signed chain
(Microsoft-signed shim, Debian-signed GRUB) and tinyipa's Debian-signed kernel:

* the ISO boots to the fake Ironic's lookup and heartbeat; the image's init
  prints the SecureBoot variable and the agent reports it in its log and in the
  inventory's ``boot``;
* the ESP image, as Ironic's ``[conductor]bootloader`` in the ISO the real
  Ironic builds around it, boots the same way;
* the same firmware refuses what is not signed: the GRUB image built with
  grub-mkimage (no ``--secure-boot``), and the kernel with its signature
  removed (``sbattach --remove``), which the build also marks as not
  Secure-Boot-capable. So the check is live.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.boot.agent_checks import AgentAPI, hardware_inventory, lookup_and_heartbeat
from tests.boot.qemu import Guest, GuestSpec
from tests.boot.test_iso import CACHE, IRONIC_BUILDS_ISO, OUT, TOOL, ironic_python  # noqa: F401
from tests.fake_ironic import FakeIronic

pytestmark = pytest.mark.boot

EFI_ROOT = CACHE / "secure-boot" / "root"  # ./build.sh iso unpacks the signed chain here


def iso_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TOOL), *map(str, args)], check=True, capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def built(tinyipa_image: tuple[Path, Path]) -> tuple[Path, Path]:
    """``./build.sh iso`` once: the signed chain fetched, the manifest says Secure Boot."""
    subprocess.run([str(Path(TOOL).parents[1] / "build.sh"), "iso"], check=True,
                   capture_output=True)
    manifest = (OUT / "iso" / "tinyipa.manifest").read_text().splitlines()
    assert any(line.startswith("secure_boot true kernel signed by ")
               and "Debian Secure Boot" in line for line in manifest), manifest
    return tinyipa_image


def secure_iso(tmp_path: Path, kernel: Path, initrd: Path, append: str) -> Path:
    iso = tmp_path / "secure.iso"
    iso_tool("-o", iso, "-k", kernel, "-i", initrd, "--append", append, "--secure-boot",
             "--efi-root", EFI_ROOT)
    return iso


def agent_args(ironic: FakeIronic) -> str:
    return f"console=ttyS0 ipa-api-url=http://10.0.2.2:{ironic.port} ipa-insecure=1"


def assert_secure_agent(guest: Guest, ironic: FakeIronic) -> None:
    """Lookup, heartbeat, and Secure Boot on as the init, the log and the inventory see it."""
    beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=400, heartbeat_timeout=180)
    console = guest.console()
    assert "tinyipa: " in console and "UEFI boot, Secure Boot enabled" in console, console[-3000:]
    guest.wait_for_console(r"Boot state: UEFI, Secure Boot on", timeout=30)
    inventory = hardware_inventory(AgentAPI.from_heartbeat(guest, beat, ironic.agent_token))
    assert inventory["boot"]["current_boot_mode"] == "uefi", inventory["boot"]
    assert inventory["boot"]["secure_boot"] is True, inventory["boot"]


def test_iso_boots_with_secure_boot(tmp_path: Path, built: tuple[Path, Path]) -> None:
    kernel, initrd = built
    with FakeIronic() as ironic:
        iso = secure_iso(tmp_path, kernel, initrd, agent_args(ironic))
        with Guest(GuestSpec(name="secure-boot-iso", iso=iso, firmware="uefi-secure",
                             memory_mib=512)) as guest:
            assert_secure_agent(guest, ironic)


def test_esp_image_boots_with_secure_boot(tmp_path: Path, built: tuple[Path, Path],
                                          ironic_python: Path) -> None:  # noqa: F811
    kernel, initrd = built
    iso = tmp_path / "ironic.iso"
    with FakeIronic() as ironic:
        done = subprocess.run([str(ironic_python), "-c", IRONIC_BUILDS_ISO, str(iso),
                               str(kernel), str(initrd), "esp",
                               str(OUT / "iso" / "tinyipa-esp.img"),
                               agent_args(ironic) + " boot_method=vmedia"],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        with Guest(GuestSpec(name="secure-boot-esp", iso=iso, firmware="uefi-secure",
                             memory_mib=512)) as guest:
            assert_secure_agent(guest, ironic)


def test_unsigned_grub_is_refused(tmp_path: Path, built: tuple[Path, Path]) -> None:
    """The GRUB image grub-mkimage builds (no --secure-boot) is not started."""
    kernel, initrd = built
    iso = tmp_path / "unsigned-grub.iso"
    iso_tool("-o", iso, "-k", kernel, "-i", initrd, "--append", "console=ttyS0")
    with Guest(GuestSpec(name="secure-boot-unsigned-grub", iso=iso, firmware="uefi-secure",
                         memory_mib=512, forward_ports=())) as guest:
        guest.wait_for_console(r"failed to load Boot\w+ \"UEFI QEMU DVD-ROM[^\n]*Access Denied",
                               timeout=240)
        assert "Linux version" not in guest.console()


def test_unsigned_kernel_is_refused(tmp_path: Path, built: tuple[Path, Path]) -> None:
    """Debian's kernel with its signature removed: the build says so in the manifest,
    shim and GRUB start, and GRUB refuses the kernel."""
    kernel, initrd = built
    unsigned = tmp_path / "vmlinuz.unsigned"
    shutil.copyfile(kernel, unsigned)
    subprocess.run(["sbattach", "--remove", str(unsigned)], check=True, capture_output=True)
    iso, manifest = tmp_path / "unsigned-kernel.iso", tmp_path / "unsigned-kernel.manifest"
    done = iso_tool("-o", iso, "-k", unsigned, "-i", initrd, "--append", "console=ttyS0",
                    "--secure-boot", "--efi-root", EFI_ROOT, "--manifest", manifest)
    assert "will not boot with Secure Boot enforced" in done.stderr
    assert "secure_boot false kernel not signed by Debian's CA: " in manifest.read_text()
    with Guest(GuestSpec(name="secure-boot-unsigned-kernel", iso=iso, firmware="uefi-secure",
                         memory_mib=512, forward_ports=())) as guest:
        guest.wait_for_console(r"bad shim signature", timeout=240)
        assert "Linux version" not in guest.console()

