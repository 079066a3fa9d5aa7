# SPDX-License-Identifier: Apache-2.0
"""ISO for virtual media: its size, build time, and boot-to-lookup time (TCG).

``./build.sh bench iso``. Boots the tinyipa image three ways against the fake
Ironic and prints seconds from QEMU start to the first lookup:

* direct kernel boot (``-kernel``/``-initrd``, what PXE gives): the baseline;
* the ISO on ``-cdrom`` with SeaBIOS (isolinux);
* the ISO on ``-cdrom`` with OVMF (GRUB from efiboot.img).

Upstream's ISO tool makes a BIOS-only, non-hybrid ISO, so there is no UEFI
figure to set beside ours; the ratio printed is against the direct boot.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from tests.boot.qemu import Guest
from tests.boot.qemu import GuestSpec
from tests.fake_ironic import FakeIronic

TOP = Path(__file__).resolve().parents[2]
TOOL = TOP / "iso" / "iso-image-create"
TINYIPA = TOP / "out" / "tinyipa"


def boot_to_lookup(ironic: FakeIronic, spec: GuestSpec) -> float:
    started = time.time()
    with Guest(spec):
        lookup = ironic.wait_for_lookup(timeout=600)
    return lookup.at - started


def main(argv: list[str]) -> int:
    kernel, initrd = TINYIPA / "tinyipa.kernel", TINYIPA / "tinyipa.initramfs"
    if not kernel.exists() or not initrd.exists():
        subprocess.run([str(TOP / "build.sh"), "tinyipa"], check=True)
    with tempfile.TemporaryDirectory(prefix="bench-iso-") as tmp:
        iso, esp = Path(tmp) / "tinyipa.iso", Path(tmp) / "esp.img"
        results: dict[str, float] = {}
        with FakeIronic() as ironic:
            append = f"console=ttyS0 ipa-api-url=http://10.0.2.2:{ironic.port} ipa-insecure=1"
            start = time.monotonic()
            subprocess.run([str(TOOL), "-o", str(iso), "-k", str(kernel), "-i", str(initrd),
                            "--esp", str(esp), "--append", append], check=True)
            build = time.monotonic() - start
            pair = initrd.stat().st_size + kernel.stat().st_size
            print(f"initramfs + kernel  {pair / 2**20:7.1f} MiB")
            print(f"ISO                 {iso.stat().st_size / 2**20:7.1f} MiB "
                  f"(ESP {esp.stat().st_size / 2**20:.0f} MiB), built in {build:.1f} s")
            runs = {
                "direct -kernel": GuestSpec(name="bench-iso-direct", kernel=kernel,
                                            initrd=initrd,
                                            append=append + " boot_method=vmedia"),
                "ISO, SeaBIOS": GuestSpec(name="bench-iso-bios", iso=iso, firmware="bios"),
                "ISO, OVMF (UEFI)": GuestSpec(name="bench-iso-uefi", iso=iso, firmware="uefi"),
            }
            for label, spec in runs.items():
                ironic.lookups.clear()
                results[label] = boot_to_lookup(ironic, spec)
        base = results["direct -kernel"]
        print(f"{'boot to lookup (TCG, 1 vCPU, 1 GiB)':38s} {'seconds':>8s} {'ratio':>6s}")
        for label, seconds in results.items():
            print(f"  {label:36s} {seconds:8.1f} {seconds / base:6.2f}")
    return 0
