# SPDX-License-Identifier: Apache-2.0
"""Image-write benchmark: lean-ipa against shell-pipeline ceilings and upstream 13.0.0.

    ./build.sh bench imagewrite [--size-mib=2048] [--runs=3] [--only=raw|qcow2] [--no-upstream]
    python -m tests.bench.imagewrite ...   (as root: it makes a loop device)

One loopback image server (sendfile) and one loop device (backed by tmpfs so
the figures measure the pipeline, not this machine's disk) serve every run.
Each agent run is a child process; its peak RSS (VmHWM) is printed beside
the time. Upstream ironic-python-agent 13.0.0 is installed in its own venv
under out/ and driven through its own standby functions on the same images.
The machine is shared: every command runs once per round, rounds repeat
(``--runs``), and each figure is the median with its min–max.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.imageserver import ImageServer
from tests.imagetools import loop_device

MIB = 1 << 20
TOP = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("LEAN_IPA_OUT", TOP / "out"))
UPSTREAM_VENV = OUT / "venv-ipa13"


@dataclass
class Figure:
    name: str
    seconds: float  # the median of ``samples`` once several runs are merged
    size: int  # bytes of the (uncompressed) image written
    rss_mib: float | None = None
    note: str = ""
    samples: tuple[float, ...] = ()

    @property
    def mib_per_s(self) -> float:
        return self.size / MIB / self.seconds

    @property
    def spread(self) -> str:
        if len(self.samples) < 2:
            return ""
        return f"{min(self.samples):.2f}–{max(self.samples):.2f}"


def merge(runs: list[Figure]) -> Figure:
    """One figure from several runs of the same command: median time, min–max, peak RSS."""
    times = sorted(f.seconds for f in runs)
    rss = [f.rss_mib for f in runs if f.rss_mib is not None]
    return Figure(runs[0].name, statistics.median(times), runs[0].size,
                  max(rss) if rss else None, runs[0].note, tuple(times))


# --- images -----------------------------------------------------------------


def make_images(d: Path, size: int) -> dict[str, Path]:
    """raw (half random, half zeros, like a real disk), .zst, .qcow2 and a
    compressed .qcow2 (qemu-img convert -c), cached."""
    d.mkdir(parents=True, exist_ok=True)
    raw = d / f"bench-{size // MIB}.raw"
    if not raw.exists() or raw.stat().st_size != size:
        tmp = raw.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            block = 4 * MIB
            f.writelines(os.urandom(block) if i % 2 == 0 else bytes(block) for i in range(size // block))
        tmp.rename(raw)
    zst = raw.with_suffix(".raw.zst")
    if not zst.exists():
        subprocess.run(["zstd", "-q", "-3", "-T0", "-f", str(raw), "-o", str(zst)], check=True)
    qcow2 = raw.with_suffix(".qcow2")
    if not qcow2.exists():
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw),
                        str(qcow2)], check=True)
    # Random bytes do not compress (qemu-img then stores clusters uncompressed):
    # the compressed qcow2 is of hex text of random bytes (about 2:1), and zeros.
    text = d / f"bench-{size // MIB}.text.raw"
    if not text.exists() or text.stat().st_size != size:
        tmp = text.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            block = 4 * MIB
            f.writelines(os.urandom(block // 2).hex().encode() if i % 2 == 0 else bytes(block)
                         for i in range(size // block))
        tmp.rename(text)
    qcow2c = raw.with_suffix(".c.qcow2")
    if not qcow2c.exists() or qcow2c.stat().st_size >= size // 2:
        tmp = qcow2c.with_suffix(".tmp")
        subprocess.run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(text),
                        str(tmp)], check=True)
        tmp.rename(qcow2c)
    return {"raw": raw, "zst": zst, "qcow2": qcow2, "qcow2c": qcow2c}


def sha256_ceiling() -> Figure:
    """``openssl speed -evp sha256`` on one core, 16 KiB blocks, as a 1 GiB 'run'."""
    out = subprocess.run(["openssl", "speed", "-seconds", "3", "-bytes", "16384", "-evp",
                          "sha256"], capture_output=True, text=True, check=True).stdout
    line = [ln for ln in out.splitlines() if ln.lower().startswith("sha256")][-1]
    kbytes = float(line.split()[-1].rstrip("k"))  # 1000s of bytes per second
    rate = kbytes * 1000
    return Figure("ceiling: openssl speed -evp sha256 (one core)", (1 << 30) / rate, 1 << 30)


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def sha256_of(path: Path) -> str:
    cache = path.with_suffix(path.suffix + ".sha256")
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        return cache.read_text().strip()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 * MIB), b""):
            h.update(chunk)
    cache.write_text(h.hexdigest())
    return h.hexdigest()


# --- runners ----------------------------------------------------------------


def drop_device_cache(dev: str) -> None:
    subprocess.run(["blockdev", "--flushbufs", dev], check=False)


def run_shell(name: str, script: str, size: int, dev: str) -> Figure:
    drop_device_cache(dev)
    start = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", script], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Figure(name, time.monotonic() - start, size)


def run_child(name: str, argv: list[str], size: int, dev: str) -> Figure:
    drop_device_cache(dev)
    start = time.monotonic()
    done = subprocess.run(argv, check=False, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed: {done.stderr.strip()[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # The agent is already running when Ironic's command arrives: time the write
    # itself, not the interpreter's start-up.
    return Figure(name, report.get("seconds", seconds), size, report.get("rss_mib"),
                  report.get("note", ""))


def interleaved(runs: int, cases: list[tuple[object, ...]]) -> list[Figure]:
    """Each case (fn, *args) run *runs* times, round-robin (so a burst of load
    from other users hits every case alike), merged to medians."""
    got: list[list[Figure]] = [[] for _ in cases]
    for r in range(runs):
        for i, (fn, *args) in enumerate(cases):
            got[i].append(fn(*args))  # type: ignore[operator]
        print(f"  round {r + 1}/{runs} done, load average {load_average()}", flush=True)
    return [merge(g) for g in got]


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child_lean(url: str, dev: str, sha: str, disk_format: str) -> None:
    """One prepare_image-equivalent write in this process, as the agent does it."""
    # Import what the running agent has loaded, so the RSS is the agent's.
    import importlib

    for mod in ("ironic_python_agent.api", "ironic_python_agent.agent",
                "ironic_python_agent.extensions.standby"):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    from ironic_python_agent import checksum, download, imagewrite

    opts = download.DownloadOptions(retries=2, retry_interval=1)
    with download.ImageStream("bench", [url], opts) as stream:
        result = imagewrite.write_stream(
            stream, dev, checksum.Checksum("sha256", sha), name="bench",
            policy=imagewrite.FormatPolicy(disk_format, None, True),
            cache_dir="/tmp", progress_interval=3600)
    print(json.dumps({"rss_mib": round(peak_rss_mib(), 1), "seconds": result.seconds}))


# Upstream's own functions on the same images. Only environment glue is
# replaced: this build host has no udev and fuser cannot read other
# processes' fds, and upstream's config must be registered first.
UPSTREAM_DRIVER = r"""
import json, sys, time
from oslo_config import cfg
from ironic_python_agent import config
config.populate_config()
cfg.CONF([], project="ironic-python-agent")
cfg.CONF.set_override("image_download_connection_retries", 1)
from ironic_python_agent import disk_utils
from ironic_python_agent.extensions import standby
disk_utils.udev_settle = lambda: None
disk_utils.trigger_device_rescan = lambda *a, **k: True
disk_utils.wait_for_disk_to_become_available = lambda *a, **k: None  # fuser: no /proc access
url, dev, sha, fmt = sys.argv[1:5]
info = {"id": "bench-up", "urls": [url], "disk_format": fmt, "container_format": "bare",
        "stream_raw_images": fmt == "raw", "os_hash_algo": "sha256", "os_hash_value": sha,
        "image_type": "whole-disk"}
ext = standby.StandbyExtension()
ext.partition_uuids = {}
start = time.monotonic()
if fmt == "raw":
    ext._stream_raw_image_onto_device(info, dev)
else:
    standby._download_image(info)
    standby._write_image(info, dev)
seconds = time.monotonic() - start
hwm = 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        hwm = int(line.split()[1]) / 1024
print(json.dumps({"rss_mib": round(hwm, 1), "seconds": seconds}))
"""


def upstream_ready() -> bool:
    return (UPSTREAM_VENV / "bin/python").exists() and subprocess.run(
        [str(UPSTREAM_VENV / "bin/python"), "-c",
         ("from ironic_python_agent import config; config.populate_config(); "
          "import ironic_python_agent.extensions.standby")],
        capture_output=True, check=False).returncode == 0


def install_upstream() -> bool:
    if upstream_ready():
        return True
    print("installing ironic-python-agent==13.0.0 into", UPSTREAM_VENV, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(UPSTREAM_VENV)], check=True)
    subprocess.run([str(UPSTREAM_VENV / "bin/pip"), "install", "-q",
                    "ironic-python-agent==13.0.0"], check=False)
    return upstream_ready()


# --- main -------------------------------------------------------------------


def table(figures: list[Figure], ceiling: dict[str, Figure]) -> str:
    lines = [f"{'run':58} {'median s':>8} {'min–max':>11} {'MiB/s':>7} {'RSS MiB':>8}  ratio"]
    for f in figures:
        ref = ceiling.get(f.name)
        ratio = f"{ref.seconds / f.seconds * 100:5.1f}% of {ref.name}" if ref else ""
        rss = f"{f.rss_mib:8.1f}" if f.rss_mib is not None else " " * 8
        lines.append(f"{f.name:58} {f.seconds:8.2f} {f.spread:>11} {f.mib_per_s:7.1f} {rss}  "
                     f"{ratio}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="imagewrite", description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=2048)
    p.add_argument("--runs", type=int, default=3, help="median of N for each figure")
    p.add_argument("--only", choices=["raw", "qcow2"], default=None,
                   help="only the raw (+ zstd) or only the qcow2 comparisons")
    p.add_argument("--no-upstream", action="store_true")
    p.add_argument("--child", nargs=4, metavar=("URL", "DEV", "SHA", "FORMAT"),
                   help=argparse.SUPPRESS)
    args, _ = p.parse_known_args(argv)  # ./build.sh bench passes every flag to every bench
    if args.child:
        child_lean(*args.child)
        return 0
    if os.geteuid() != 0:
        print("imagewrite: needs root (loop devices)", file=sys.stderr)
        return 1
    size = args.size_mib * MIB
    load_before = load_average()
    images = make_images(OUT / "bench", size)
    sums = {k: sha256_of(v) for k, v in images.items()}
    upstream = not args.no_upstream and install_upstream()
    shm = Path("/dev/shm/lean-ipa-bench")
    shm.mkdir(exist_ok=True)
    figures: list[Figure] = []
    ceilings: dict[str, str] = {}
    py = [sys.executable, "-m", "tests.bench.imagewrite", "--child"]
    try:
        with ImageServer() as srv, loop_device(shm / "disk", size + 256 * MIB,
                                               partscan=False) as dev:
            url = {k: srv.serve(f"/{v.name}", v) for k, v in images.items()}
            dd = f"dd of={dev} bs=4M oflag=direct iflag=fullblock status=none"
            tee_sha = "tee >(sha256sum >/dev/null)"
            qemu = "qemu-img convert -f qcow2 -O host_device -t none -S 0 -W"
            up = [str(UPSTREAM_VENV / "bin/python"), "-c", UPSTREAM_DRIVER]
            # name -> (runner, command or argv); ceilings[ours] = the figure it is held to
            cases: dict[str, tuple[object, object]] = {}
            if args.only in (None, "raw"):
                cases.update({
                    "ceiling: curl | tee >(sha256sum) | dd oflag=direct":
                        (run_shell, f"curl -sf {url['raw']} | {tee_sha} | {dd}"),
                    # coreutils' sha256sum has no SHA-NI path (~70 MiB/s here); openssl's
                    # is what "sha256 at line rate on one core" means, so show that too.
                    "ceiling: curl | tee >(openssl dgst -sha256) | dd":
                        (run_shell, f"curl -sf {url['raw']} | "
                                    f"tee >(openssl dgst -sha256 >/dev/null) | {dd}"),
                    "ceiling: curl | dd oflag=direct":
                        (run_shell, f"curl -sf {url['raw']} | {dd}"),
                    "lean-ipa raw + sha256":
                        (run_child, py + [url["raw"], dev, sums["raw"], "raw"]),
                    "ceiling: curl | tee >(sha256sum) | zstd -d | dd":
                        (run_shell, f"curl -sf {url['zst']} | {tee_sha} | zstd -dcq | {dd}"),
                    "lean-ipa zstd + sha256":
                        (run_child, py + [url["zst"], dev, sums["zst"], "raw"]),
                })
                ceilings["lean-ipa raw + sha256"] = \
                    "ceiling: curl | tee >(sha256sum) | dd oflag=direct"
                ceilings["lean-ipa zstd + sha256"] = \
                    "ceiling: curl | tee >(sha256sum) | zstd -d | dd"
            if args.only in (None, "qcow2"):
                cases.update({
                    "qemu-img convert -O host_device (local qcow2)":
                        (run_shell, f"{qemu} {images['qcow2']} {dev}"),
                    "lean-ipa qcow2 (streamed, sha256)":
                        (run_child, py + [url["qcow2"], dev, sums["qcow2"], "qcow2"]),
                    "qemu-img convert -O host_device (local qcow2 -c)":
                        (run_shell, f"{qemu} {images['qcow2c']} {dev}"),
                    "lean-ipa compressed qcow2 (streamed, sha256)":
                        (run_child, py + [url["qcow2c"], dev, sums["qcow2c"], "qcow2"]),
                })
                ceilings["lean-ipa qcow2 (streamed, sha256)"] = \
                    "qemu-img convert -O host_device (local qcow2)"
                ceilings["lean-ipa compressed qcow2 (streamed, sha256)"] = \
                    "qemu-img convert -O host_device (local qcow2 -c)"
            if upstream:
                if args.only in (None, "raw"):
                    cases["upstream 13.0.0 raw (stream_raw_images)"] = (
                        run_child, up + [url["raw"], dev, sums["raw"], "raw"])
                    ceilings["upstream 13.0.0 raw (stream_raw_images)"] = \
                        "ceiling: curl | tee >(sha256sum) | dd oflag=direct"
                if args.only in (None, "qcow2"):
                    cases["upstream 13.0.0 qcow2 (tmpfs copy+convert)"] = (
                        run_child, up + [url["qcow2"], dev, sums["qcow2"], "qcow2"])
                    cases["upstream 13.0.0 qcow2 -c (tmpfs copy+convert)"] = (
                        run_child, up + [url["qcow2c"], dev, sums["qcow2c"], "qcow2"])
                    ceilings["upstream 13.0.0 qcow2 (tmpfs copy+convert)"] = \
                        "qemu-img convert -O host_device (local qcow2)"
                    ceilings["upstream 13.0.0 qcow2 -c (tmpfs copy+convert)"] = \
                        "qemu-img convert -O host_device (local qcow2 -c)"
            figures = interleaved(args.runs, [(fn, name, cmd, size, dev)
                                              for name, (fn, cmd) in cases.items()])
            for f in figures:
                if f.name == "upstream 13.0.0 qcow2 (tmpfs copy+convert)":
                    f.note = f"+ {images['qcow2'].stat().st_size / MIB:.0f} MiB tmpfs copy"
                if f.name == "upstream 13.0.0 qcow2 -c (tmpfs copy+convert)":
                    f.note = f"+ {images['qcow2c'].stat().st_size / MIB:.0f} MiB tmpfs copy"
    finally:
        shutil.rmtree(shm, ignore_errors=True)
        for leftover in ("/tmp/bench.cache", "/tmp/bench-up"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
    hash_ceiling = merge([sha256_ceiling() for _ in range(args.runs)])
    figures.insert(0, hash_ceiling)
    by = {f.name: f for f in figures}
    refs = {k: by[v] for k, v in ceilings.items() if k in by and v in by}
    print(f"\nImage write, {args.size_mib} MiB image, median of {args.runs} interleaved runs "
          f"(min–max beside it; zstd {images['zst'].stat().st_size / MIB:.0f} MiB, "
          f"qcow2 {images['qcow2'].stat().st_size / MIB:.0f} MiB, "
          f"qcow2 -c {images['qcow2c'].stat().st_size / MIB:.0f} MiB), "
          f"load average before {load_before}, after {load_average()}, "
          f"{os.cpu_count()} CPUs:")
    print(table(figures, refs))
    print("\nratios (of medians; the range is worst-case to best-case pairing):")

    def ratio(ours: str, ref: str, target: str = "") -> None:
        if ours in by and ref in by:
            o, r = by[ours], by[ref]
            lo = min(r.samples) / max(o.samples) * 100 if o.samples and r.samples else 0
            hi = max(r.samples) / min(o.samples) * 100 if o.samples and r.samples else 0
            print(f"  {ours} / {ref}: {r.seconds / o.seconds * 100:.1f}% ({lo:.0f}–{hi:.0f}%)"
                  f"{' (target ' + target + ')' if target else ''}")

    ratio("lean-ipa raw + sha256", "ceiling: curl | tee >(sha256sum) | dd oflag=direct")
    ratio("lean-ipa raw + sha256", "ceiling: curl | tee >(openssl dgst -sha256) | dd")
    ratio("lean-ipa raw + sha256", "ceiling: curl | dd oflag=direct")
    if "lean-ipa raw + sha256" in by:
        ours = by["lean-ipa raw + sha256"]
        c2 = by["ceiling: curl | dd oflag=direct"]
        hashed = hash_ceiling.seconds * size / hash_ceiling.size
        lower = max(hashed, c2.seconds)
        print(f"  lean-ipa raw / lower of (openssl sha256 one core {hashed:.2f} s, curl|dd "
              f"{c2.seconds:.2f} s): {lower / ours.seconds * 100:.1f}% (target >= 90%)")
    ratio("lean-ipa zstd + sha256", "ceiling: curl | tee >(sha256sum) | zstd -d | dd",
          ">= 90%")
    ratio("lean-ipa qcow2 (streamed, sha256)", "qemu-img convert -O host_device (local qcow2)",
          ">= 90%")
    ratio("lean-ipa compressed qcow2 (streamed, sha256)",
          "qemu-img convert -O host_device (local qcow2 -c)", ">= 90%")
    for ours_name, ref_name, key in (
            ("lean-ipa qcow2 (streamed, sha256)",
             "qemu-img convert -O host_device (local qcow2)", "qcow2"),
            ("lean-ipa compressed qcow2 (streamed, sha256)",
             "qemu-img convert -O host_device (local qcow2 -c)", "qcow2c")):
        if ours_name in by and ref_name in by:
            # qemu-img neither downloads nor hashes: sha256 of the file on one core
            # is a floor for any verified write, however the rest overlaps.
            hashed = hash_ceiling.seconds * images[key].stat().st_size / hash_ceiling.size
            lower = max(hashed, by[ref_name].seconds)
            print(f"  {ours_name} / lower of (sha256 of the file on one core {hashed:.2f} s, "
                  f"qemu-img {by[ref_name].seconds:.2f} s): "
                  f"{lower / by[ours_name].seconds * 100:.1f}%")
    ours_rss = [f.rss_mib or 0 for f in figures if f.name.startswith("lean-ipa")]
    if ours_rss:
        print(f"  lean-ipa peak RSS: {max(ours_rss):.1f} MiB (target <= 96 MiB)")
    for up_name, our_name in (
            ("upstream 13.0.0 raw (stream_raw_images)", "lean-ipa raw + sha256"),
            ("upstream 13.0.0 qcow2 (tmpfs copy+convert)", "lean-ipa qcow2 (streamed, sha256)"),
            ("upstream 13.0.0 qcow2 -c (tmpfs copy+convert)",
             "lean-ipa compressed qcow2 (streamed, sha256)")):
        if up_name in by and our_name in by:
            u, o = by[up_name], by[our_name]
            print(f"  {up_name} time / lean-ipa: {u.seconds / o.seconds:.2f}x, "
                  f"RSS {u.rss_mib} vs {o.rss_mib} MiB {u.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
