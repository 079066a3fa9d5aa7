# SPDX-License-Identifier: Apache-2.0
"""arm64 tinyipa beside x86_64: size and first lookup under TCG.

``./build.sh bench arm64 [--ram=512,384] [--runs=N]``

Builds ``./build.sh tinyipa`` and ``./build.sh tinyipa --arch arm64`` (warm
caches when run twice), then boots each N times (default 3) per RAM size:
x86_64 on q35, arm64 on ``virt`` with a Cortex-A57, both TCG with 1 vCPU, the
kernel booted directly. Printed: sizes, and medians (min-max) of the seconds
from QEMU start to the first lookup and heartbeat in a fake Ironic, with the
arm64/x86_64 ratio of the medians. Upstream ships no arm64 tinyipa (its arm64
ramdisks are DIB builds on arm64 hosts), so there is no upstream column.
Nothing here asserts a timing.
"""

from __future__ import annotations

import statistics
import subprocess

from tests.bench.boot import IMAGE, boot, mb, ram_and_runs, timed_build

ARCHES = {"x86_64": "tinyipa", "arm64": "tinyipa-arm64"}


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main(argv: list[str]) -> int:
    rams, runs = ram_and_runs(argv, [512, 384])
    runs = max(runs, 3) if not any(a.startswith("--runs=") for a in argv) else runs
    builds = {arch: timed_build("tinyipa", *(["--arch", arch] if arch != "x86_64" else []),
                                stdout=subprocess.DEVNULL) for arch in ARCHES}
    files = {arch: (IMAGE / f"{name}.kernel", IMAGE / f"{name}.initramfs")
             for arch, name in ARCHES.items()}
    print(f"{'figure':<34}{'x86_64':>22}{'arm64':>22}{'arm64/x86_64':>14}")

    def row(name: str, x86: str, arm: str, ratio: str = "-") -> None:
        print(f"{name:<34}{x86:>22}{arm:>22}{ratio:>14}", flush=True)

    for label, index in (("kernel (MB)", 0), ("initramfs (MB)", 1)):
        x, a = mb(files["x86_64"][index]), mb(files["arm64"][index])
        row(label, f"{x:.1f}", f"{a:.1f}", f"{a / x:.2f}")
    x = sum(mb(f) for f in files["x86_64"])
    a = sum(mb(f) for f in files["arm64"])
    row("kernel + initramfs (MB)", f"{x:.1f}", f"{a:.1f}", f"{a / x:.2f}")
    row("./build.sh tinyipa, this run (s)", f"{builds['x86_64']:.0f}",
        f"{builds['arm64']:.0f}")
    for ram in rams:
        found: dict[str, dict[str, list[float]]] = {}
        for _ in range(runs):  # interleaved: both see the same machine load
            for arch in ARCHES:
                times = boot(*files[arch], ram, timeout=400, name=ARCHES[arch], arch=arch)
                for key in ("lookup", "heartbeat"):
                    if times[key] is not None:
                        found.setdefault(arch, {}).setdefault(key, []).append(times[key])
        for key in ("lookup", "heartbeat"):
            xs = found.get("x86_64", {}).get(key, [])
            arms = found.get("arm64", {}).get(key, [])
            ratio = (f"{statistics.median(arms) / statistics.median(xs):.2f}"
                     if xs and arms else "-")
            row(f"first {key}, {ram} MiB (s)", spread(xs), spread(arms), ratio)
    return 0
