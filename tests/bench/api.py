# SPDX-License-Identifier: Apache-2.0
"""The agent API under load: ours beside upstream ironic-python-agent 13.0.0.

Both agents run as host processes in standalone mode on 127.0.0.1 (upstream from
its own venv, ``out/venv-upstream``), one after the other, ``--runs`` times
each (interleaved). Per run:

* ``GET /v1/status`` sequentially, a new connection per request
  (``Connection: close``) and then over one keep-alive connection: req/s,
  p50 and p99 latency;
* RSS right after start, then after the load (which includes four rejected
  16 MiB command bodies), and the peak (VmHWM);
* with the agent's open-file limit at 1,024 (``prlimit``), 1,100 half-open
  connections (connected, nothing sent) held while ``GET /v1/status`` is
  asked 10 times on fresh connections (5 s client timeout; a timeout counts
  as 5 s and is reported).

Printed as medians over the runs with (min-max), and upstream/ours ratios of
the medians. Nothing here asserts a timing.

Usage: ``./build.sh bench api [--runs=N] [--requests=N]``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import shutil
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e import host, ironic

TOKEN = "b" * 43
HALF_OPEN = 1100
HALF_OPEN_PROBES = 10
PROBE_TIMEOUT = 5.0
MIB = 1 << 20


@dataclass
class Run:
    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_for_status(port: int, proc_alive: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc_alive():
            raise RuntimeError("the agent exited before serving")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/status")
            if conn.getresponse().status == 200:
                conn.close()
                return
        time.sleep(0.2)
    raise TimeoutError(f"no answer on 127.0.0.1:{port} within {timeout:.0f} s")


def status_loop(port: int, count: int, keep_alive: bool) -> tuple[float, list[float]]:
    """(wall seconds, per-request latencies in ms)."""
    latencies = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {} if keep_alive else {"Connection": "close"}
    start = time.perf_counter()
    for _ in range(count):
        t = time.perf_counter()
        conn.request("GET", "/v1/status", headers=headers)
        resp = conn.getresponse()
        resp.read()
        if not keep_alive or resp.getheader("Connection", "").lower() == "close":
            conn.close()
        latencies.append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - start
    conn.close()
    return wall, latencies


def rejected_bodies(port: int, count: int = 4, size: int = 16 * MIB) -> None:
    body = json.dumps({"name": "nope.command", "params": {"blob": "A" * size}}).encode()
    for _ in range(count):
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", f"/v1/commands/?agent_token={TOKEN}", body=body,
                         headers={"Content-Type": "application/json"})
            conn.getresponse().read()
            conn.close()


def half_open_probe(port: int) -> tuple[list[float], int]:
    """Status latencies (ms) while HALF_OPEN idle connections are held; and timeouts."""
    held: list[socket.socket] = []
    latencies, failures = [], 0
    try:
        for _ in range(HALF_OPEN):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                s.connect(("127.0.0.1", port))
            held.append(s)
        time.sleep(1.0)
        for _ in range(HALF_OPEN_PROBES):
            t = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
                conn.request("GET", "/v1/status", headers={"Connection": "close"})
                ok = conn.getresponse().status == 200
                conn.close()
            except (OSError, http.client.HTTPException):
                ok = False
            elapsed = (time.perf_counter() - t) * 1000
            if not ok:
                failures += 1
                elapsed = max(elapsed, PROBE_TIMEOUT * 1000)
            latencies.append(elapsed)
    finally:
        for s in held:
            s.close()
    return latencies, failures


def one_run(name: str, command: list[str], workdir: Path, requests: int, index: int,
            path_prefix: list[Path]) -> Run:
    run = Run()
    extra: dict[str, object] = {"debug": False, "agent_token": TOKEN, "standalone": True}
    agent = host.AgentProcess(["prlimit", "--nofile=1024:1024", "--", *command], workdir,
                              "", auto_tls=False, name=f"{name.split()[0]}-{index}",
                              extra=extra, path_prefix=path_prefix,
                              api_url_in_config=False)
    agent.start()
    try:
        wait_for_status(agent.port, agent.alive)
        time.sleep(1.0)  # let start-up threads settle
        run.values["rss_before"] = agent.rss_kib() / 1024
        status_loop(agent.port, 20, keep_alive=True)  # warm-up
        for keep in (False, True):
            wall, lat = status_loop(agent.port, requests, keep_alive=keep)
            tag = "ka" if keep else "close"
            run.values[f"rps_{tag}"] = requests / wall
            run.values[f"p50_{tag}"] = statistics.median(lat)
            run.values[f"p99_{tag}"] = percentile(lat, 0.99)
        lat, failures = half_open_probe(agent.port)
        run.values["half_open_p50"] = statistics.median(lat)
        run.values["half_open_max"] = max(lat)
        run.values["half_open_failed"] = failures
        if not agent.alive():
            run.notes.append(f"{name} died during the half-open test; see {agent.log}")
            return run
        time.sleep(1.0)
        rejected_bodies(agent.port)
        time.sleep(1.0)
        run.values["rss_after"] = agent.rss_kib() / 1024
        run.values["rss_peak"] = peak_kib(agent.pid) / 1024
    except (RuntimeError, TimeoutError, OSError) as exc:
        run.notes.append(f"{name}: {exc}; see {agent.log}")
    finally:
        agent.stop()
    return run


def peak_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


ROWS = [
    ("GET /v1/status, new connection each: req/s", "rps_close", 0, True),
    ("  p50 (ms)", "p50_close", 2, False),
    ("  p99 (ms)", "p99_close", 2, False),
    ("GET /v1/status, keep-alive: req/s", "rps_ka", 0, True),
    ("  p50 (ms)", "p50_ka", 2, False),
    ("  p99 (ms)", "p99_ka", 2, False),
    ("status with 1,100 half-open conns, p50 (ms)", "half_open_p50", 1, False),
    ("  slowest of 10 (ms)", "half_open_max", 1, False),
    ("  failed (of 10, 5 s timeout)", "half_open_failed", 0, False),
    ("RSS after start (MiB)", "rss_before", 1, False),
    ("RSS after the load (MiB)", "rss_after", 1, False),
    ("peak RSS (MiB)", "rss_peak", 1, False),
]


def summary(runs: list[Run], key: str, digits: int) -> tuple[float, str]:
    values = [r.values[key] for r in runs if key in r.values]
    if not values:
        return float("nan"), "n/a"
    med = statistics.median(values)
    return med, f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def report(results: dict[str, list[Run]], runs: int, requests: int) -> None:
    ours, theirs = results["lean-ipa"], results["upstream 13.0.0"]
    print(f"\n{runs} runs each, {requests} requests per loop; median (min-max)")
    print(f"{'':46} {'lean-ipa':>22} {'upstream 13.0.0':>22} {'ratio':>8}")
    for label, key, digits, higher_better in ROWS:
        a, at = summary(ours, key, digits)
        b, bt = summary(theirs, key, digits)
        if a != a or b != b or not a or not b:
            ratio = "n/a"
        else:
            # Always "how many times better ours is": >1 means lean-ipa wins.
            ratio = f"{(a / b if higher_better else b / a):.2f}x"
        print(f"{label:46} {at:>22} {bt:>22} {ratio:>8}")
    print("(ratio: ours better by that factor; req/s ours/upstream, the rest upstream/ours)")
    for name, rs in results.items():
        for r in rs:
            for note in r.notes:
                print(f"NOTE ({name}): {note}")


def main(argv: list[str]) -> int:
    runs, requests = 3, 500
    for arg in argv:
        if arg.startswith("--runs="):
            runs = int(arg.split("=", 1)[1])
        elif arg.startswith("--requests="):
            requests = int(arg.split("=", 1)[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= HALF_OPEN + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, HALF_OPEN + 200), hard))
    workdir = ironic.out_dir() / "bench-api"
    shutil.rmtree(workdir, ignore_errors=True)
    guards = host.host_guards(workdir / "guards")
    shims = host.upstream_shims(workdir / "shims")
    commands = {"lean-ipa": (host.our_agent_command(), [guards]),
                "upstream 13.0.0": (host.upstream_agent_command(), [guards, shims])}
    results: dict[str, list[Run]] = {name: [] for name in commands}
    for i in range(runs):
        for name, (command, prefix) in commands.items():
            print(f"run {i + 1}/{runs}: {name}", flush=True)
            results[name].append(one_run(name, command, workdir / "agents", requests, i,
                                         prefix))
    report(results, runs, requests)
    print(f"(agent logs: {workdir / 'agents'})")
    return 1 if any(r.notes for rs in results.values() for r in rs) else 0
