# SPDX-License-Identifier: Apache-2.0
"""Boot to first lookup with a static network versus DHCP (tinyipa, TCG, 1 vCPU).

``./build.sh bench network [--runs=N] [--ram=M]``

The same image and QEMU user network; once with no network parameter (DHCP on
every link, the default) and once with ``ip=10.0.2.50::10.0.2.2:24::eth0:none``
(lean-ipa-network, no DHCP). Prints medians with min-max and the ratio
static/DHCP. Upstream's images cannot configure a static address without a
DHCP server, so there is no upstream column. Nothing here asserts a timing.
"""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path

from tests.bench.boot import IMAGE, TOP, ram_and_runs
from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic

CASES = {"dhcp": "", "static": "net.ifnames=0 ip=10.0.2.50::10.0.2.2:24::eth0:none"}


def first_lookup(kernel: Path, initrd: Path, memory_mib: int, extra: str,
                 timeout: float = 300) -> float | None:
    with FakeIronic() as ironic:
        spec = GuestSpec(name="bench-network", kernel=kernel, initrd=initrd,
                         memory_mib=memory_mib, forward_ports=(),
                         append=f"console=ttyS0 panic=-1 {extra} ipa-api-url=http://10.0.2.2:"
                                f"{ironic.port} ipa-insecure=1")
        with Guest(spec) as guest:
            while guest.running() and guest.elapsed < timeout:
                try:
                    ironic.wait_for_lookup(timeout=1)
                except TimeoutError:
                    continue
                return guest.elapsed
    return None


def main(argv: list[str]) -> int:
    rams, runs = ram_and_runs(argv, [384])
    if not any(a.startswith("--runs=") for a in argv):
        runs = 3
    subprocess.run([str(TOP / "build.sh"), "tinyipa"], check=True, capture_output=True)
    kernel, initrd = IMAGE / "tinyipa.kernel", IMAGE / "tinyipa.initramfs"
    medians = {}
    for name, extra in CASES.items():
        times = [t for t in (first_lookup(kernel, initrd, rams[0], extra) for _ in range(runs))
                 if t is not None]
        if not times:
            print(f"tinyipa {name}: no lookup")
            return 1
        medians[name] = statistics.median(times)
        print(f"tinyipa {name:6} first lookup ({rams[0]} MiB): median {medians[name]:.1f} s "
              f"(min {min(times):.1f}, max {max(times):.1f}, {len(times)} runs)", flush=True)
    print(f"static/DHCP: {medians['static'] / medians['dhcp']:.2f}")
    return 0
