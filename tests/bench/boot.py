# SPDX-License-Identifier: Apache-2.0
"""Boot benchmark for the tinyipa image: size, build time, first lookup, RAM floor.

``./build.sh bench boot [--ram=512,384,320,256] [--runs=N]``

Measured here under TCG with 1 vCPU: kernel and initramfs sizes, the root's
size once unpacked, the wall time of ``./build.sh tinyipa`` (warm caches when
run twice), seconds from QEMU start to ``/init``, to the first lookup and the
first heartbeat in a fake Ironic, and for each RAM size whether the agent
gets to the lookup.

Upstream's tinyipa cannot be built any more (TinyCore's mirror is unreachable
and upstream retired it in 2025), so its figures are the published ones
(tinyipa-master, 2025; CI RAM history) and are labelled as quoted. Nothing
here asserts a timing.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic
from tinyipa import cpio

TOP = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("LEAN_IPA_OUT", TOP / "out"))
IMAGE = OUT / "tinyipa"

# Upstream tinyipa-master (quoted: Ironic docs 2025, CI RAM 1024 MiB since 2021).
UPSTREAM = {"kernel_mb": 5.65, "initramfs_mb": 91.9, "ram_mib": 1024}
TARGETS = {"total_mb": 30.0, "lookup_s": 15.0, "ram_mib": 384, "build_s": 90.0}


def mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def unpacked_mb(initrd: Path) -> float:
    """Bytes of regular files the kernel unpacks into RAM."""
    data = subprocess.run(cpio.decompress_command(initrd), check=True,
                          stdout=subprocess.PIPE).stdout
    return sum(len(e.data) for e in cpio.read_entries(data) if stat.S_ISREG(e.mode)) / 1e6


def ram_and_runs(argv: list[str], rams: list[int]) -> tuple[list[int], int]:
    """The RAM sizes (``--ram=A,B,...``, MiB; default *rams*) and runs per size
    (``--runs=N``, default 1) a boot benchmark was asked for."""
    runs = 1
    for arg in argv:
        if arg.startswith("--ram="):
            rams = [int(x) for x in arg.split("=", 1)[1].split(",")]
        elif arg.startswith("--runs="):
            runs = int(arg.split("=", 1)[1])
    return rams, runs


def timed_build(*args: str, **run_kwargs: Any) -> float:
    """Seconds ``./build.sh <args>`` took (it must succeed); *run_kwargs* go to
    ``subprocess.run`` (e.g. ``stdout=subprocess.DEVNULL``)."""
    start = time.monotonic()
    subprocess.run([str(TOP / "build.sh"), *args], check=True, **run_kwargs)
    return time.monotonic() - start


def boot(kernel: Path, initrd: Path, memory_mib: int, timeout: float,
         name: str = "tinyipa", arch: str = "x86_64") -> dict[str, float | None]:
    """Seconds from QEMU start to /init (guest clock), first lookup, first heartbeat.

    Any variant's kernel + initramfs boots the same way; *name* labels the guest;
    *arch* ``arm64`` boots it under qemu-system-aarch64 (virt, Cortex-A57).
    """
    times: dict[str, float | None] = {"init": None, "lookup": None, "heartbeat": None}
    console = "ttyAMA0" if arch == "arm64" else "ttyS0"
    with FakeIronic() as ironic:
        spec = GuestSpec(name=f"bench-{name}-{memory_mib}", kernel=kernel, initrd=initrd,
                         memory_mib=memory_mib, forward_ports=(), arch=arch,
                         append=f"console={console} panic=-1 ipa-api-url=http://10.0.2.2:"
                                f"{ironic.port} ipa-insecure=1")
        with Guest(spec) as guest:
            for key, wait in (("lookup", ironic.wait_for_lookup),
                              ("heartbeat", ironic.wait_for_heartbeat)):
                # Poll, so that a guest that panics (too little RAM) ends the wait.
                while guest.running() and guest.elapsed < timeout:
                    try:
                        wait(timeout=2)
                    except TimeoutError:
                        continue
                    times[key] = guest.elapsed
                    break
            found = re.search(r"\[\s*([\d.]+)\] Run /init as init process", guest.console())
            times["init"] = float(found.group(1)) if found else None
    return times


def main(argv: list[str]) -> int:
    rams, runs = ram_and_runs(argv, [512, 384, 320, 256])
    build_s = timed_build("tinyipa", stdout=subprocess.DEVNULL)
    kernel, initrd = IMAGE / "tinyipa.kernel", IMAGE / "tinyipa.initramfs"

    print(f"{'figure':<36}{'lean-ipa tinyipa':>17}{'upstream (quoted)':>19}{'ratio':>7}"
          f"{'target':>9}")

    def row(name: str, ours: float | None, upstream: float | None = None,
            target: float | None = None, fmt: str = "{:.1f}") -> None:
        shown = "-" if ours is None else fmt.format(ours)
        up = "-" if upstream is None else fmt.format(upstream)
        ratio = f"{ours / upstream:.2f}" if ours and upstream else "-"
        tgt = "-" if target is None else f"<={fmt.format(target)}"
        print(f"{name:<36}{shown:>17}{up:>19}{ratio:>7}{tgt:>9}", flush=True)

    row("kernel (MB)", mb(kernel), UPSTREAM["kernel_mb"])
    row("initramfs, compressed (MB)", mb(initrd), UPSTREAM["initramfs_mb"])
    row("kernel + initramfs (MB)", mb(kernel) + mb(initrd),
        UPSTREAM["kernel_mb"] + UPSTREAM["initramfs_mb"], TARGETS["total_mb"])
    row("root unpacked in RAM (MB)", unpacked_mb(initrd))
    row("./build.sh tinyipa, this run (s)", build_s, None, TARGETS["build_s"], "{:.0f}")
    floor = None
    for ram in rams:
        results = [boot(kernel, initrd, ram, timeout=300) for _ in range(runs)]
        lookups = [r["lookup"] for r in results if r["lookup"] is not None]
        best = min(lookups) if lookups else None
        inits = [r["init"] for r in results if r["init"] is not None]
        beats = [r["heartbeat"] for r in results if r["heartbeat"] is not None]
        row(f"kernel to /init, {ram} MiB (s)", min(inits) if inits else None)
        row(f"first lookup, {ram} MiB (s)", best, None,
            TARGETS["lookup_s"] if ram == rams[0] else None)
        row(f"first heartbeat, {ram} MiB (s)", min(beats) if beats else None)
        if best is None:
            print(f"  -> no lookup with {ram} MiB: below this image's RAM floor")
            break
        floor = ram
    row("smallest RAM that looked up (MiB)", floor, UPSTREAM["ram_mib"],
        TARGETS["ram_mib"], "{:.0f}")
    return 0
