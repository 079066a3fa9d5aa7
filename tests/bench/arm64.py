# SPDX-License-Identifier: Apache-2.0
"""arm64 images beside x86_64: size and first lookup under TCG.

``./build.sh bench arm64 [--variants=tinyipa,dib,coreos] [--ram=512,384] [--runs=N]``

For each variant (default tinyipa only), the x86_64 and the arm64 image:
tinyipa is built each run (``./build.sh tinyipa [--arch arm64]``, warm caches
when run twice); dib and coreos (~20 min each for arm64 under emulation) are
built only when ``out/<variant>/`` lacks them, and the table says which were
built. Then each is booted N times (default 3) per RAM size: x86_64 on q35,
arm64 on ``virt`` with a Cortex-A57, both TCG with 1 vCPU, the kernel booted
directly. Printed: sizes, and medians (min-max) of the seconds from QEMU start
to the first lookup and heartbeat in a fake Ironic, with the arm64/x86_64
ratio of the medians. dib and coreos boot with at least 1536 MiB (their
x86_64 floor is 768 MiB; the arm64 kernel and initramfs are larger). Upstream
ships no arm64 tinyipa (its arm64 ramdisks are DIB builds on arm64 hosts), so
there is no upstream column. Nothing here asserts a timing.
"""

from __future__ import annotations

import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.bench.boot import OUT, boot, mb, ram_and_runs, timed_build

ARCHES = ("x86_64", "arm64")


@dataclass(frozen=True)
class Variant:
    """One image kind: where its outputs are, and whether each run rebuilds it."""

    name: str
    basename: str          # the x86_64 file name stem; arm64 adds "-arm64"
    always_build: bool
    min_ram_mib: int = 0

    def files(self, arch: str) -> tuple[Path, Path]:
        stem = self.basename + ("-arm64" if arch == "arm64" else "")
        directory = OUT / self.name
        return directory / f"{stem}.kernel", directory / f"{stem}.initramfs"

    def label(self, arch: str) -> str:
        return self.basename + ("-arm64" if arch == "arm64" else "")


VARIANTS = {
    "tinyipa": Variant("tinyipa", "tinyipa", always_build=True),
    "dib": Variant("dib", "lean-ipa", always_build=False, min_ram_mib=1536),
    "coreos": Variant("coreos", "lean-ipa-coreos", always_build=False, min_ram_mib=1536),
}


def parse_variants(argv: list[str]) -> list[Variant]:
    """``--variants=a,b`` (default tinyipa); an unknown name is an error naming it."""
    names = ["tinyipa"]
    for arg in argv:
        if arg.startswith("--variants="):
            names = [n.strip() for n in arg.split("=", 1)[1].split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"bench arm64: unknown variant(s) {', '.join(unknown)} "
                         f"(known: {', '.join(VARIANTS)})")
    return [VARIANTS[n] for n in names]


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def ensure_built(variant: Variant, arch: str) -> str:
    """Build *variant* for *arch* when needed; how long it took, or "existing"."""
    if not variant.always_build and all(p.exists() for p in variant.files(arch)):
        return "existing"
    seconds = timed_build(variant.name, *(["--arch", arch] if arch != "x86_64" else []),
                          stdout=subprocess.DEVNULL)
    return f"{seconds:.0f}"


def main(argv: list[str]) -> int:
    rams, runs = ram_and_runs(argv, [512, 384])
    runs = max(runs, 3) if not any(a.startswith("--runs=") for a in argv) else runs
    variants = parse_variants(argv)
    print(f"{'figure':<42}{'x86_64':>22}{'arm64':>22}{'arm64/x86_64':>14}")

    def row(name: str, x86: str, arm: str, ratio: str = "-") -> None:
        print(f"{name:<42}{x86:>22}{arm:>22}{ratio:>14}", flush=True)

    for variant in variants:
        builds = {arch: ensure_built(variant, arch) for arch in ARCHES}
        files = {arch: variant.files(arch) for arch in ARCHES}
        for label, index in (("kernel (MB)", 0), ("initramfs (MB)", 1)):
            x, a = mb(files["x86_64"][index]), mb(files["arm64"][index])
            row(f"{variant.name} {label}", f"{x:.1f}", f"{a:.1f}", f"{a / x:.2f}")
        x = sum(mb(f) for f in files["x86_64"])
        a = sum(mb(f) for f in files["arm64"])
        row(f"{variant.name} kernel + initramfs (MB)", f"{x:.1f}", f"{a:.1f}", f"{a / x:.2f}")
        row(f"./build.sh {variant.name}, this run (s)", builds["x86_64"], builds["arm64"])
        for ram in sorted({max(ram, variant.min_ram_mib) for ram in rams}, reverse=True):
            found: dict[str, dict[str, list[float]]] = {}
            for _ in range(runs):  # interleaved: both see the same machine load
                for arch in ARCHES:
                    times = boot(*files[arch], ram, timeout=600, name=variant.label(arch),
                                 arch=arch)
                    for key in ("lookup", "heartbeat"):
                        if times[key] is not None:
                            found.setdefault(arch, {}).setdefault(key, []).append(times[key])
            for key in ("lookup", "heartbeat"):
                xs = found.get("x86_64", {}).get(key, [])
                arms = found.get("arm64", {}).get(key, [])
                ratio = (f"{statistics.median(arms) / statistics.median(xs):.2f}"
                         if xs and arms else "-")
                row(f"{variant.name} first {key}, {ram} MiB (s)", spread(xs), spread(arms),
                    ratio)
    return 0
