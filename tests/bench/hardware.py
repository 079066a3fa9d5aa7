# SPDX-License-Identifier: Apache-2.0
"""Hardware benchmark: inventory time against upstream 13.0.0, and parallel shred.

* Inventory: ``list_hardware_info`` through the managers, first call in a fresh
  process and the median of warm calls, for our agent (this venv) and for
  upstream ironic-python-agent 13.0.0 in its own venv (``out/venv-upstream``,
  created on first use; upstream needs ``lshw``, installed by build.sh).
* Erase: four sparse loop disks (``--disk-mib``, default 1024) shredded by our
  ``erase_devices`` one at a time (``disk_erasure_concurrency=1``) and all at once.

Options: ``--disk-mib=N``, ``--runs=N`` (warm inventory calls), ``--no-upstream``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
UPSTREAM_VENV = Path(os.environ.get("LEAN_IPA_OUT", TOP / "out")) / "venv-upstream"
UPSTREAM_VERSION = "13.0.0"

INVENTORY_SNIPPET = r"""
import json, logging, statistics, sys, time
logging.disable(logging.CRITICAL)
runs = int(sys.argv[1])
t0 = time.perf_counter()
from oslo_config import cfg
from ironic_python_agent import config
if hasattr(config, "populate_config"):
    # upstream: options must be registered before hardware is imported
    config.populate_config()
    cfg.CONF([], project="ironic-python-agent", default_config_files=[],
             default_config_dirs=[])
from ironic_python_agent import hardware
if hasattr(hardware, "configure"):
    hardware.configure(conf=cfg.ConfigOpts())
hardware.get_managers()
t1 = time.perf_counter()
info = hardware.dispatch_to_managers("list_hardware_info")
t2 = time.perf_counter()
warm = []
for _ in range(runs):
    s = time.perf_counter()
    hardware.dispatch_to_managers("list_hardware_info")
    warm.append(time.perf_counter() - s)
print(json.dumps({"import_s": t1 - t0, "first_s": t2 - t1,
                  "warm_s": statistics.median(warm) if warm else None,
                  "disks": len(info.get("disks") or []),
                  "interfaces": len(info.get("interfaces") or [])}))
"""


def ensure_upstream_venv() -> Path | None:
    python = UPSTREAM_VENV / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; "
             "print(m.version('ironic-python-agent'))"]
    if python.exists():
        done = subprocess.run(probe, capture_output=True, text=True)
        if done.stdout.strip() == UPSTREAM_VERSION:
            return python
    print(f"creating {UPSTREAM_VENV} with ironic-python-agent=={UPSTREAM_VERSION} ...",
          flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(UPSTREAM_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q",
                        f"ironic-python-agent=={UPSTREAM_VERSION}"], check=True)
    except subprocess.CalledProcessError as exc:
        print(f"cannot build the upstream venv: {exc}")
        return None
    return python


def measure_inventory(python: str, runs: int, env: dict[str, str] | None = None
                      ) -> dict | None:
    done = subprocess.run([python, "-c", INVENTORY_SNIPPET, str(runs)],
                          capture_output=True, text=True, cwd="/",
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        print(f"  {python}: failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_inventory(runs: int, upstream: bool) -> None:
    ours = measure_inventory(sys.executable, runs)
    theirs = None
    if upstream:
        python = ensure_upstream_venv()
        with tempfile.TemporaryDirectory(prefix="lean-ipa-bench-bin-") as stubs:
            env = {}
            if not shutil.which("udevadm", path=os.environ["PATH"] + ":/sbin:/usr/sbin"):
                # Upstream runs `udevadm settle` and dies without it; with no udev
                # daemon settle returns at once, so a stub changes nothing else.
                stub = Path(stubs) / "udevadm"
                stub.write_text("#!/bin/sh\nexit 0\n")
                stub.chmod(0o755)
                env["PATH"] = f"{stubs}:{os.environ['PATH']}"
                print("  (no udevadm here: stubbed for upstream's `udevadm settle`)")
            theirs = measure_inventory(str(python), runs, env) if python else None
    print(f"inventory (list_hardware_info), {runs} warm runs:")
    print(f"  {'':24}{'lean-ipa':>12}{'upstream 13.0.0':>18}{'ratio':>8}")
    for key, label in (("import_s", "import + load managers"), ("first_s", "first call"),
                       ("warm_s", "warm call (median)")):
        a = ours[key] * 1000 if ours and ours[key] is not None else None
        b = theirs[key] * 1000 if theirs and theirs[key] is not None else None
        ratio = f"{b / a:7.1f}x" if a and b else "      -"
        print(f"  {label:24}{_ms(a):>12}{_ms(b):>18}{ratio:>8}")
    if ours:
        print(f"  (saw {ours['disks']} disks, {ours['interfaces']} interfaces)")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def bench_shred(disk_mib: int) -> None:
    from ironic_python_agent import hardware
    from tests.hwfixtures import MiB, hardware_conf, loop_device, reset_hardware

    with tempfile.TemporaryDirectory(prefix="lean-ipa-bench-") as tmp:
        import contextlib

        with contextlib.ExitStack() as stack:
            devs = [stack.enter_context(loop_device(Path(tmp), disk_mib * MiB, f"d{i}.img"))
                    for i in range(4)]
            # Allocate the backing files now, so neither run pays for it.
            for i in range(4):
                subprocess.run(["fallocate", "-l", str(disk_mib * MiB),
                                str(Path(tmp) / f"d{i}.img")], check=True)
            times = {}
            for label, concurrency in (("one by one", 1), ("parallel", None)):
                reset_hardware()
                hardware_conf(allow=devs)
                node = {"uuid": "bench", "properties": {}, "driver_internal_info": {
                    "agent_erase_devices_iterations": 1, "agent_erase_devices_zeroize": True,
                    "agent_enable_ata_secure_erase": False,
                    "disk_erasure_concurrency": concurrency}}
                start = time.monotonic()
                report = hardware.dispatch_to_managers("erase_devices", node, [])
                times[label] = time.monotonic() - start
                assert all(r["method"] == "shred" for r in report.values()), report
            reset_hardware()
    serial, parallel = times["one by one"], times["parallel"]
    print(f"erase_devices, shred (1 pass + zeroing) of 4 loop disks x {disk_mib} MiB:")
    print(f"  one by one {serial:7.2f} s   parallel {parallel:7.2f} s   "
          f"speed-up {serial / parallel:4.1f}x")


def main(argv: list[str]) -> int:
    opts = dict(a.lstrip("-").partition("=")[::2] for a in argv)
    runs = int(opts.get("runs") or 20)
    disk_mib = int(opts.get("disk-mib") or 1024)
    bench_inventory(runs, upstream="no-upstream" not in opts)
    if os.geteuid() == 0:
        bench_shred(disk_mib)
    else:
        print("erase benchmark needs root (loop devices); skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
