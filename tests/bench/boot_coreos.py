# SPDX-License-Identifier: Apache-2.0
"""Boot benchmark for the coreos (nspawn container) image: size, first lookup, RAM floor.

``./build.sh bench boot_coreos [--ram=1536,1024,768] [--runs=N]``

Measured here under TCG with 1 vCPU: kernel, initramfs and container-image
sizes, the root's size once unpacked, the wall time of ``./build.sh coreos``
(cached inputs when nothing changed), and seconds from QEMU start to the first
lookup and heartbeat in a fake Ironic for each RAM size. The tinyipa and dib
images' sizes are shown beside ours when they are built in ``out/`` (their
boot times are in the ``boot`` and ``boot_dib`` benchmarks).

Upstream's CoreOS image cannot be built any more (CoreOS Container Linux is
gone; upstream removed the builder in 2019), so its only figure is the quoted
one: devstack raised the VM RAM to 1280 MB for it in 2016. Nothing here
asserts a timing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.bench.boot import boot, mb, ram_and_runs, timed_build

TOP = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("LEAN_IPA_OUT", TOP / "out"))
IMAGE = OUT / "coreos"
NAME = "lean-ipa-coreos"
UPSTREAM_RAM_MIB = 1280  # devstack's VM RAM for the CoreOS IPA image (2016), quoted


def unpacked_mb(initrd: Path) -> float:
    """Bytes of regular files the kernel unpacks into RAM (tmpfs)."""
    data = subprocess.run(["zstd", "-dc", str(initrd)], check=True,
                          stdout=subprocess.PIPE).stdout
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=data, check=True,
                             capture_output=True).stdout.decode(errors="replace")
    return sum(int(f[4]) for f in (line.split() for line in listing.splitlines())
               if len(f) > 4 and f[0].startswith("-")) / 1e6


def container_mb(initrd: Path) -> float:
    data = subprocess.run(["zstd", "-dc", str(initrd)], check=True,
                          stdout=subprocess.PIPE).stdout
    listing = subprocess.run(["cpio", "-itv", "--quiet", "usr/share/oem/*.squashfs"],
                             input=data, check=True, capture_output=True).stdout.decode()
    return sum(int(line.split()[4]) for line in listing.splitlines()) / 1e6


def other_image(folder: str) -> tuple[Path, Path] | None:
    kernels = sorted((OUT / folder).glob("*.kernel"))
    initrds = sorted((OUT / folder).glob("*.initramfs"))
    return (kernels[0], initrds[0]) if kernels and initrds else None


def main(argv: list[str]) -> int:
    rams, runs = ram_and_runs(argv, [1536, 1024, 768])
    build_s = timed_build("coreos", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kernel, initrd = IMAGE / f"{NAME}.kernel", IMAGE / f"{NAME}.initramfs"

    print(f"{'figure':<40}{'coreos':>10}{'tinyipa':>10}{'dib':>10}{'upstream':>10}")

    def row(name: str, ours: float | None, tiny: float | None = None, dib: float | None = None,
            upstream: float | None = None, fmt: str = "{:.1f}") -> None:
        cells = ["-" if v is None else fmt.format(v) for v in (ours, tiny, dib, upstream)]
        print(f"{name:<40}" + "".join(f"{c:>10}" for c in cells), flush=True)

    tiny, dib = other_image("tinyipa"), other_image("dib")
    row("kernel (MB)", mb(kernel), tiny and mb(tiny[0]), dib and mb(dib[0]))
    row("initramfs, compressed (MB)", mb(initrd), tiny and mb(tiny[1]), dib and mb(dib[1]))
    row("kernel + initramfs (MB)", mb(kernel) + mb(initrd),
        tiny and mb(tiny[0]) + mb(tiny[1]), dib and mb(dib[0]) + mb(dib[1]))
    row("  of which container squashfs (MB)", container_mb(initrd))
    row("root unpacked in RAM (MB)", unpacked_mb(initrd))
    row("./build.sh coreos, this run (s)", build_s, fmt="{:.0f}")
    floor = None
    for ram in rams:
        # A guest short of RAM does not panic (systemd stays up, the container's
        # mount fails), so a bounded wait ends the probe.
        results = [boot(kernel, initrd, ram, timeout=300, name="coreos") for _ in range(runs)]
        lookups = [r["lookup"] for r in results if r["lookup"] is not None]
        beats = [r["heartbeat"] for r in results if r["heartbeat"] is not None]
        row(f"first lookup, {ram} MiB (s)", min(lookups) if lookups else None)
        row(f"first heartbeat, {ram} MiB (s)", min(beats) if beats else None)
        if not lookups:
            print(f"  -> no lookup with {ram} MiB: below this image's RAM floor")
            break
        floor = ram
    row("smallest RAM that looked up (MiB)", floor, upstream=UPSTREAM_RAM_MIB, fmt="{:.0f}")
    if floor is not None:
        print(f"  ratio to upstream CoreOS's 1280 MiB: {floor / UPSTREAM_RAM_MIB:.2f}")
    return 0
