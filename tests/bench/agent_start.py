# SPDX-License-Identifier: Apache-2.0
"""Agent start-up against the real Ironic 39: ours beside upstream ironic-python-agent 13.0.0.

For each agent, N times: the node is put in ``clean wait`` (no in-band clean steps,
so neither agent touches a disk), the agent process starts with a private config
file, and the bench records

* start → first heartbeat: from just before the process is spawned to Ironic's
  ``202`` for the first ``POST /v1/heartbeat`` (seen by a loopback relay between the
  agent and Ironic, the same for both agents);
* RSS right after that first heartbeat, and the peak RSS (VmHWM) at the end of the flow;
* the flow: start → node ``available``.

Plus the time to ``import ironic_python_agent.agent`` in a fresh interpreter (median of
N). Ironic runs with its default ``[agent]require_tls=True``, so both agents use
auto-TLS; ``--plain`` measures with ``require_tls=False`` and plain HTTP as well.

Usage: ``python -m tests.bench agent_start [--runs=N] [--plain]``.
"""

from __future__ import annotations

import http.client
import http.server
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e import host, ironic

IMPORT_SNIPPET = ("import time; t = time.perf_counter(); import ironic_python_agent.agent; "
                  "print(time.perf_counter() - t)")


class HeartbeatRelay:
    """A loopback HTTP relay to Ironic that notes when the first heartbeat is accepted."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.first_heartbeat = threading.Event()
        self.first_heartbeat_at = 0.0
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                conn = http.client.HTTPConnection("127.0.0.1", relay.target_port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if (self.command == "POST" and self.path.startswith("/v1/heartbeat/")
                        and resp.status == 202 and not relay.first_heartbeat.is_set()):
                    relay.first_heartbeat_at = time.monotonic()
                    relay.first_heartbeat.set()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("connection", "content-length",
                                           "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def reset(self) -> None:
        self.first_heartbeat.clear()
        self.first_heartbeat_at = 0.0

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Samples:
    heartbeat_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    flow_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def peak_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def one_start(client: ironic.IronicClient, relay: HeartbeatRelay, node: str,
              make_agent: Callable[[], host.AgentProcess], samples: Samples) -> None:
    client.set_provision_state(node, "provide")
    client.wait_for_state(node, {"clean wait"}, timeout=60)
    relay.reset()
    agent = make_agent()
    agent.start()
    try:
        if not relay.first_heartbeat.wait(120):
            samples.failures.append(f"no heartbeat within 120 s; see {agent.log}")
            return
        rss = agent.rss_kib()
        samples.heartbeat_s.append(relay.first_heartbeat_at - agent.started_at)
        samples.rss_mib.append(rss / 1024)
        client.wait_for_state(node, {"available"}, timeout=120)
        samples.flow_s.append(time.monotonic() - agent.started_at)
        samples.peak_mib.append(peak_rss_kib(agent.pid) / 1024)
    except (ironic.IronicError, TimeoutError) as exc:
        samples.failures.append(f"{exc}; see {agent.log}")
    finally:
        agent.stop()
        # Back to manageable for the next start (after a failure: out of maintenance).
        state = client.node(node)
        if state.get("maintenance"):
            client.set_maintenance(node, False)
        if state["provision_state"] != "manageable":
            client.set_provision_state(node, "manage")
        client.wait_for_state(node, {"manageable"}, timeout=60)


def import_times(python: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        out = subprocess.run([python, "-c", IMPORT_SNIPPET], check=True, capture_output=True,
                             text=True, env={"PATH": "/usr/bin:/bin"}).stdout
        times.append(float(out.strip().splitlines()[-1]))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(ours: float, theirs: float) -> str:
    if not ours or ours != ours or theirs != theirs:
        return "n/a"
    return f"{theirs / ours:.1f}x"


def measure(require_tls: bool, runs: int, workdir: Path) -> dict[str, Samples]:
    settings = ironic.IronicSettings(require_tls=require_tls, erase_devices_priority=0,
                                     erase_devices_metadata_priority=0)
    commands = {"lean-ipa": host.our_agent_command(),
                "upstream 13.0.0": host.upstream_agent_command()}
    guards = host.host_guards(workdir / "guards")
    shims = host.upstream_shims(workdir / "shims")
    results = {name: Samples() for name in commands}
    # Ours sees one sparse loop device only (as in the e2e tests); upstream cannot be
    # restricted, but with no in-band clean steps it only lists the disks.
    with ironic.running_ironic(settings, workdir / "ironic") as (service, client), \
            host.host_link() as link, host.loop_device(workdir, 5 << 30) as disk:
        relay = HeartbeatRelay(service.api_port)
        try:
            node = client.create_node(f"bench-{time.monotonic_ns()}")["uuid"]
            client.create_port(node, link.mac)
            client.set_provision_state(node, "manage")
            client.wait_for_state(node, {"manageable"}, timeout=60)
            for i in range(runs):
                # Interleaved, so both see the same machine load.
                for name, command in commands.items():
                    upstream = name != "lean-ipa"

                    def make_agent(command: list[str] = command, upstream: bool = upstream,
                                   i: int = i) -> host.AgentProcess:
                        return host.AgentProcess(
                            command, workdir / "agents", relay.url, auto_tls=require_tls,
                            name=f"{'upstream' if upstream else 'ours'}-{i}",
                            extra={"debug": False} if upstream else {
                                "debug": False,
                                "block_device_allowlist": Path(disk.device).name},
                            path_prefix=[guards, shims] if upstream else [guards])

                    one_start(client, relay, node, make_agent, results[name])
        finally:
            relay.close()
    return results


def report(title: str, results: dict[str, Samples]) -> None:
    ours, theirs = results["lean-ipa"], results["upstream 13.0.0"]
    print(f"\n{title}")
    print(f"{'':38} {'lean-ipa':>12} {'upstream':>12} {'upstream/ours':>14}")
    rows = [("start -> first heartbeat, median (s)", ours.heartbeat_s, theirs.heartbeat_s, 2),
            ("RSS after first heartbeat, median (MiB)", ours.rss_mib, theirs.rss_mib, 1),
            ("peak RSS over the flow, median (MiB)", ours.peak_mib, theirs.peak_mib, 1),
            ("start -> node available, median (s)", ours.flow_s, theirs.flow_s, 2)]
    for label, a, b, digits in rows:
        ma, mb = median(a), median(b)
        print(f"{label:38} {ma:>12.{digits}f} {mb:>12.{digits}f} {ratio(ma, mb):>14}")
    print(f"{'first heartbeat, all runs (s)':38} "
          f"ours {[round(x, 2) for x in ours.heartbeat_s]} "
          f"upstream {[round(x, 2) for x in theirs.heartbeat_s]}")
    for name, samples in results.items():
        for failure in samples.failures:
            print(f"FAILED ({name}): {failure}")


def main(argv: list[str]) -> int:
    runs = 5
    for arg in argv:
        if arg.startswith("--runs="):
            runs = int(arg.split("=", 1)[1])
    upstream_bin = ironic.ensure_venv(ironic.out_dir() / "venv-upstream",
                                      ironic.UPSTREAM_AGENT_REQUIREMENT)
    ours_py, theirs_py = sys.executable, str(upstream_bin / "python")
    imp_ours, imp_theirs = median(import_times(ours_py, runs)), median(
        import_times(theirs_py, runs))
    print(f"{'import ironic_python_agent.agent (ms)':38} {'lean-ipa':>12} {'upstream':>12}")
    print(f"{'':38} {imp_ours * 1000:>12.0f} {imp_theirs * 1000:>12.0f} "
          f"{ratio(imp_ours, imp_theirs):>14}")
    failed = False
    modes = [True, False] if "--plain" in argv else [True]
    for require_tls in modes:
        # Kept after the run: the agents' and Ironic's logs explain any failure.
        workdir = ironic.out_dir() / "bench-agent-start" / ("tls" if require_tls else "plain")
        shutil.rmtree(workdir, ignore_errors=True)
        results = measure(require_tls, runs, workdir)
        report(f"against Ironic 39 with require_tls={require_tls} "
               f"({'auto-TLS' if require_tls else 'plain HTTP'}), {runs} runs each "
               f"(logs: {workdir})", results)
        failed = failed or any(s.failures for s in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
