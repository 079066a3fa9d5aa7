# SPDX-License-Identifier: Apache-2.0
"""One image to N nodes at once through a caching proxy, driven by the real Ironic 39.

``./build.sh bench fleet [--nodes=N] [--size-mib=M] [--read-ahead-mib=G] [--no-proxy]``

One Ironic (``tests/e2e/ironic.py``, fake-hardware, ``require_tls=False``), one
origin HTTP server (``tests/imageserver.py``, counting the body bytes it sends),
one Squid on loopback started here (``tests/squid.py``: the settings
``doc/image-deployment.rst`` gives operators) named in every node's
``driver_info/image_http_proxy``, and N nodes (default 20), each with its own
agent: a host process with its own API port, its own 5 GiB sparse loop disk
(the only disk it lists) and its own NIC (a dummy link with the node's port
MAC). Each agent runs in a mount namespace whose ``/sys/class/net`` shows only
that NIC, as on a machine of its own: otherwise every agent would report all N
MACs and Ironic's lookup would find N nodes.

All N are deployed with the same raw image (sha256) at once; the agent of a node
starts when Ironic puts it in ``wait call-back``. Printed: the origin's bytes
served against the image size, each node's write speed and how Squid answered
it, the wall time until every image is written and until every node is
``active`` (the raw deploy ends with ``standby.power_off``, after which Ironic's
fake power polls for 30 s), and the CPU seconds of the Ironic process tree over
the run (from ``/proc``), Squid's CPU and peak RSS. Then, as a ceiling, the
aggregate rate of N plain readers of the image at once through the (warm) Squid
and straight from the origin. ``--no-proxy`` runs the same without the proxy,
for the origin's figure without a cache.

No upstream column: upstream 13.0.0 lists only ``TYPE=disk`` block devices, so it
cannot be given a loop device, and the only disk of this machine is its own.
Nothing here asserts a timing.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shlex
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e import host, ironic
from tests.imageserver import ImageServer
from tests.imagetools import MIB, device_digest, file_digest, make_disk_image
from tests.squid import Squid

ARTIFACTS = ironic.out_dir() / "bench" / "fleet"
DISK_SIZE = 5 << 30  # root device selection ignores disks under 4 GiB
IMAGE_PATH = "/images/fleet.raw"
TIMEOUT = 1200.0
WRITTEN = re.compile(r"written to (\S+): bytes=(\d+) written=(\d+) seconds=([\d.]+) "
                     r"MiB/s=([\d.]+)")

# Inside the agent's own mount namespace: /sys/class/net with only its NIC.
SANDBOX = ('mount -t tmpfs lean-ipa-fleet /sys/class/net && '
           'ln -s "/sys/devices/virtual/net/$0" "/sys/class/net/$0" && exec "$@"')


def sandboxed(command: list[str], link: str) -> list[str]:
    """*command* in a private mount namespace that sees only the NIC *link*."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", SANDBOX, link,
            *command]


def parse_written(log: str) -> tuple[float, float] | None:
    """(seconds, MiB/s) of the agent's image-written line, if it logged one."""
    m = WRITTEN.search(log)
    return (float(m.group(4)), float(m.group(5))) if m else None


def parse_cpu(stat: str, tick: int) -> float:
    """User + system CPU seconds in a /proc/<pid>/stat line, the reaped children's too."""
    fields = stat[stat.rindex(")") + 2:].split()
    return sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime


def proc_tree_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of *pid* and each live descendant, by process title (Ironic's
    service manager names its processes: the API, the conductor)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for p in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError, ValueError):
            title = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")
            name = title.decode(errors="replace").strip()[:60] or str(p)
            out[f"{name} [{p}]"] = parse_cpu(Path(f"/proc/{p}/stat").read_text(), tick)
    return out


def peak_rss_mib(pid: int) -> float:
    """VmHWM of *pid* (its peak resident memory so far), from /proc."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _descendants(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                kids += [int(k) for k in (task / "children").read_text().split()]
    return kids + [g for k in kids for g in _descendants(k)]


@dataclass
class FleetNode:
    index: int
    link: host.HostLink
    disk: host.LoopDevice
    workdir: Path
    uuid: str = ""
    agent: host.AgentProcess | None = None
    written_at: float | None = None  # seconds after the deploys were asked for
    active_at: float | None = None
    written: tuple[float, float] | None = None
    error: str | None = None
    cpu: float = 0.0  # the agent's CPU seconds, read just before it is stopped


@contextlib.contextmanager
def fleet_hardware(count: int, workdir: Path) -> Iterator[list[FleetNode]]:
    """*count* NICs and loop disks, removed on exit whatever happened."""
    nodes: list[FleetNode] = []
    try:
        for i in range(count):
            link = host.HostLink().create()
            node = FleetNode(i, link, host.LoopDevice(workdir / f"disk-{i}.img", DISK_SIZE),
                             workdir / f"node-{i}")
            nodes.append(node)
            node.disk.attach()
        yield nodes
    finally:
        for node in nodes:
            if node.agent is not None:
                node.agent.stop()
            node.disk.detach()
            node.link.remove()


def start_agent(node: FleetNode, service: ironic.IronicService) -> None:
    guards = host.host_guards(node.workdir / "guards")
    node.agent = host.AgentProcess(
        sandboxed(host.our_agent_command(), node.link.name), node.workdir, service.url,
        auto_tls=False, name="agent",
        extra={"block_device_allowlist": Path(node.disk.device).name},
        path_prefix=[guards]).start()


def deploy_fleet(nodes: list[FleetNode], service: ironic.IronicService,
                 client: ironic.IronicClient, image_url: str, sha: str,
                 proxy: str | None) -> float:
    """Enroll, deploy all at once, wait for every end; returns the wall time (s)."""
    for node in nodes:
        driver_info = {"image_http_proxy": proxy} if proxy else {}
        made = client.create_node(f"fleet-{node.index}-{time.monotonic_ns()}",
                                  driver_info=driver_info, automated_clean=False,
                                  properties={"vendor": "lenovo",
                                              "capabilities": "boot_mode:uefi"})
        node.uuid = made["uuid"]
        client.create_port(node.uuid, node.link.mac)
        client.set_provision_state(node.uuid, "manage")
    for node in nodes:
        client.wait_for_state(node.uuid, {"manageable"}, timeout=120)
        client.set_provision_state(node.uuid, "provide")
    for node in nodes:
        client.wait_for_state(node.uuid, {"available"}, timeout=120)
        client.patch_node(node.uuid, instance_info={
            "image_source": image_url, "image_os_hash_algo": "sha256",
            "image_os_hash_value": sha, "image_disk_format": "raw", "root_gb": 1})
    start = time.monotonic()
    for node in nodes:
        client.set_provision_state(node.uuid, "active")
    pending = list(nodes)
    deadline = start + TIMEOUT
    while pending and time.monotonic() < deadline:
        for node in list(pending):
            state = client.node(node.uuid)
            now = time.monotonic() - start
            if node.agent is None and state["provision_state"] == "wait call-back":
                start_agent(node, service)
            if node.agent is not None and node.written is None:
                node.written = parse_written(node.agent.log_text())
                if node.written is not None:
                    node.written_at = now
            if state["provision_state"] == "active":
                node.active_at = now
                pending.remove(node)
            elif state["provision_state"] in ironic.FAILED_STATES:
                node.error = f"{state['provision_state']}: {state.get('last_error')}"
                pending.remove(node)
            elif node.agent is not None and not node.agent.alive():
                node.error = "the agent exited:\n" + node.agent.log_tail(15)
                pending.remove(node)
        time.sleep(1)
    for node in pending:
        node.error = f"not active after {TIMEOUT:.0f} s"
    return time.monotonic() - start


def read_all(port: int, target: str, into: list[int]) -> None:
    """GET *target* from 127.0.0.1:*port* to the end, adding the bytes to *into*."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        buf = bytearray(1 << 20)
        while got := resp.readinto(buf):
            into.append(got)
    finally:
        conn.close()


def ceiling(port: int, target: str, count: int) -> float:
    """Aggregate MiB/s of *count* plain readers of *target* at once (no disk, no hash)."""
    got: list[int] = []
    threads = [threading.Thread(target=read_all, args=(port, target, got), daemon=True)
               for _ in range(count)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return sum(got) / MIB / (time.monotonic() - start)


def figures(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def report(nodes: list[FleetNode], size: int, origin: ImageServer, wall: float,
           cpu: dict[str, float], proxy: Squid | None, proxy_cpu: float,
           proxy_rss: float) -> None:
    print(f"{'node':<6}{'written at s':>14}{'active at s':>13}{'write s':>10}{'MiB/s':>9}  "
          "error")
    for node in nodes:
        seconds, rate = node.written if node.written else (None, None)
        print(f"{node.index:<6}"
              f"{f'{node.written_at:.0f}' if node.written_at is not None else '-':>14}"
              f"{f'{node.active_at:.0f}' if node.active_at is not None else '-':>13}"
              f"{seconds if seconds is not None else '-':>10}"
              f"{rate if rate is not None else '-':>9}"
              f"  {(node.error or '')[:300]}")
    if proxy is not None:
        answers: dict[str, int] = {}
        for entry in proxy.access_log():
            if entry.url.endswith(IMAGE_PATH):
                key = f"{entry.result}/{entry.status}/{entry.hierarchy}"
                answers[key] = answers.get(key, 0) + 1
        print("Squid's answers for the image: "
              + ", ".join(f"{k} x{v}" for k, v in sorted(answers.items())))
    n = len(nodes)
    ok = [node for node in nodes if node.error is None]
    rates = [node.written[1] for node in nodes if node.written]
    written = [node.written_at for node in nodes if node.written_at is not None]
    print(f"nodes: {n}, deployed: {len(ok)}, image: {size / MIB:.0f} MiB raw")
    origin_bytes = origin.bytes_sent(IMAGE_PATH)
    print(f"origin served: {origin_bytes / MIB:.1f} MiB = {origin_bytes / size:.2f} x the "
          f"image (without a cache: {n} x) in {len(origin.requests(IMAGE_PATH))} GET(s)")
    print(f"per-node write speed, MiB/s: median (min-max) {figures(rates)}")
    if written:
        print(f"all images written after {max(written):.1f} s; aggregate "
              f"{n * size / MIB / max(written):.0f} MiB/s onto the disks")
    print(f"all nodes active after {wall:.1f} s (includes Ironic's 30 s power-off poll)")
    total = sum(cpu.values())
    print(f"Ironic CPU over the deploys: {total:.1f} s in all, {total / max(n, 1):.2f} s "
          "per node; by process: " + "; ".join(f"{k}: {v:.1f} s" for k, v in cpu.items()))
    if proxy is not None:
        print(f"Squid CPU: {proxy_cpu:.1f} s, peak RSS {proxy_rss:.0f} MiB")
    print(f"agent CPU per node, s: median (min-max) {figures([node.cpu for node in nodes])}")
    print(f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}, "
          f"{os.cpu_count()} CPUs")


def main(argv: list[str]) -> int:
    count = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--nodes=")), 20)
    size = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--size-mib=")),
                256) * MIB
    use_proxy = "--no-proxy" not in argv
    # Squid's fetch may run this far ahead of the slowest node (default: the
    # whole image, so no node waits for another; see doc/image-deployment.rst).
    gap = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--read-ahead-mib=")),
               size // MIB + 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    settings = ironic.IronicSettings(require_tls=False, callback_timeout=900)
    with tempfile.TemporaryDirectory(prefix="lean-ipa-bench-fleet-") as tmp:
        work = Path(tmp)
        image = make_disk_image(work / "fleet.raw", size, "gpt", seed=20)
        sha = file_digest(image)
        how = f"through Squid (read_ahead_gap {gap} MB)" if use_proxy else "from the origin"
        print(f"{count} nodes, one {size / MIB:.0f} MiB raw image, {how}; logs under "
              f"{ARTIFACTS}", flush=True)
        with contextlib.ExitStack() as stack:
            service, client = stack.enter_context(
                ironic.running_ironic(settings, work / "ironic"))
            origin = stack.enter_context(ImageServer())
            url = origin.serve(IMAGE_PATH, image)
            proxy = stack.enter_context(Squid(keep=ARTIFACTS, read_ahead_mib=gap)) \
                if use_proxy else None
            nodes = stack.enter_context(fleet_hardware(count, work))
            assert service.proc is not None
            cpu0 = proc_tree_cpu(service.proc.pid)
            cpu: dict[str, float] = {}
            try:
                wall = deploy_fleet(nodes, service, client, url, sha,
                                    proxy.url if proxy else None)
            finally:
                cpu = {k: v - cpu0.get(k, 0.0)
                       for k, v in proc_tree_cpu(service.proc.pid).items()}
                proxy_cpu = proxy_rss = 0.0
                if proxy is not None and proxy.proc is not None:
                    proxy_cpu = sum(proc_tree_cpu(proxy.proc.pid).values())
                    proxy_rss = peak_rss_mib(proxy.proc.pid)
                for node in nodes:
                    if node.agent is not None:
                        if node.agent.alive():
                            node.cpu = sum(proc_tree_cpu(node.agent.pid).values())
                        node.agent.stop()
                        with contextlib.suppress(OSError):
                            (ARTIFACTS / f"agent-{node.index}.log").write_text(
                                node.agent.log_text())
                with contextlib.suppress(OSError):
                    (ARTIFACTS / "ironic.log").write_bytes(service.log.read_bytes())
            for node in nodes:
                if node.error is None and node.active_at is not None:
                    got = device_digest(node.disk.device, size)
                    if got != sha:
                        node.error = "the disk does not hold the image"
            report(nodes, size, origin, wall, cpu, proxy, proxy_cpu, proxy_rss)
            # What serving N streams costs without agents: N plain readers at once,
            # through the (now warm) cache and straight from the origin.
            if proxy is not None:
                print(f"ceiling, {count} plain readers at once: through Squid (warm) "
                      f"{ceiling(proxy.port, url, count):.0f} MiB/s, from the origin "
                      f"{ceiling(origin.port, IMAGE_PATH, count):.0f} MiB/s (aggregate)")
            failed = [node for node in nodes if node.error]
    print("command lines of the agents: " + shlex.join(sandboxed(["AGENT", "..."], "LINK")))
    return 1 if failed else 0
