# SPDX-License-Identifier: Apache-2.0
"""Boot to first lookup with a static network versus DHCP, per image (TCG, 1 vCPU).

``./build.sh bench network [--runs=N] [--images=tinyipa,dib,coreos] [--no-build]``

Each image boots on the same QEMU user network, once with no network parameter
(DHCP on every link, the default) and once with ``ip=10.0.2.50::10.0.2.2:24::
<nic>:none``, the NIC named by its MAC as every image accepts (lean-ipa-network,
no DHCP). The two cases alternate so that drift in the machine's load falls on
both. Prints medians with min-max and the ratio static/DHCP. QEMU's DHCP server
answers at once, so the DHCP column is the best case a real network gives.
Upstream's images cannot configure a static address without a DHCP server, so
there is no upstream column. ``--no-build`` boots the images out/ has (their
manifests say what they were built from). Nothing here asserts a timing.
"""

from __future__ import annotations

import statistics
import subprocess
from dataclasses import dataclass

from tests.bench.boot import OUT, TOP, ram_and_runs
from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic


@dataclass(frozen=True)
class Image:
    name: str
    folder: str
    stem: str
    memory_mib: int


IMAGES = {image.name: image for image in (
    Image("tinyipa", "tinyipa", "tinyipa", 384),
    Image("dib", "dib", "lean-ipa", 1024),
    Image("coreos", "coreos", "lean-ipa-coreos", 1536),
)}


def static_parameter(mac: str) -> str:
    return f"ip=10.0.2.50::10.0.2.2:255.255.255.0::{mac.replace(':', '-')}:none"


def first_lookup(image: Image, static: bool, timeout: float = 400) -> float | None:
    kernel = OUT / image.folder / f"{image.stem}.kernel"
    initrd = OUT / image.folder / f"{image.stem}.initramfs"
    with FakeIronic() as ironic:
        spec = GuestSpec(name=f"bench-network-{image.name}", kernel=kernel, initrd=initrd,
                         memory_mib=image.memory_mib, forward_ports=())
        extra = static_parameter(spec.mac) if static else ""
        spec.append = (f"console=ttyS0 panic=-1 {extra} ipa-api-url=http://10.0.2.2:"
                       f"{ironic.port} ipa-insecure=1")
        with Guest(spec) as guest:
            while guest.running() and guest.elapsed < timeout:
                try:
                    ironic.wait_for_lookup(timeout=1)
                except TimeoutError:
                    continue
                return guest.elapsed
            guest.keep_artefacts()
    return None


def summary(times: list[float]) -> str:
    return (f"median {statistics.median(times):.1f} s (min {min(times):.1f}, "
            f"max {max(times):.1f}, {len(times)} runs)")


def main(argv: list[str]) -> int:
    _, runs = ram_and_runs(argv, [])
    if not any(a.startswith("--runs=") for a in argv):
        runs = 3
    names = next((a.split("=", 1)[1].split(",") for a in argv if a.startswith("--images=")),
                 list(IMAGES))
    failed = 0
    for name in names:
        image = IMAGES[name]
        if "--no-build" not in argv:
            subprocess.run([str(TOP / "build.sh"), image.name], check=True,
                           capture_output=True)
        times: dict[str, list[float]] = {"dhcp": [], "static": []}
        for _ in range(runs):
            for case in times:
                took = first_lookup(image, static=case == "static")
                if took is not None:
                    times[case].append(took)
        if not all(times.values()):
            print(f"{name}: no lookup in {[c for c, t in times.items() if not t]}", flush=True)
            failed += 1
            continue
        for case, values in times.items():
            print(f"{name:8} {case:6} first lookup ({image.memory_mib} MiB): {summary(values)}",
                  flush=True)
        ratio = statistics.median(times["static"]) / statistics.median(times["dhcp"])
        print(f"{name:8} static/DHCP: {ratio:.2f}", flush=True)
    return 1 if failed else 0
