# SPDX-License-Identifier: Apache-2.0
"""Inspection benchmark: our agent against upstream 13.0.0, driven by the real Ironic 39.

For each agent and run: enroll a fake-hardware node (``inspect_interface=agent``)
with a port on a fresh host link, ``manage``, ``inspect``; once Ironic waits in
``inspect wait`` the agent starts as a host process with ``inspection_callback_url``
(Ironic's ``/v1/continue_inspection``) and the same collectors for both
(``default,pci-devices,numa-topology``). The figure is the time from starting the
agent to the node being back in ``manageable`` (polled every 0.1 s).

Options: ``--runs=N`` (default 3), ``--no-upstream``.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from tests.e2e import host, ironic

COLLECTORS = "default,pci-devices,numa-topology"


def _option(argv: list[str], name: str, default: str) -> str:
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return default


def _wait(client: ironic.IronicClient, uuid: str, states: set[str],
          timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        node = client.node(uuid)
        if node["provision_state"] in states and not node.get("target_provision_state"):
            return node
        if node["provision_state"] in ironic.FAILED_STATES:
            raise RuntimeError(f"node went to {node['provision_state']}: {node['last_error']}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"node still {node['provision_state']} after {timeout} s")
        time.sleep(0.1)


def inspect_once(service: ironic.IronicService, client: ironic.IronicClient, command: list[str],
                 workdir: Path, name: str, path_prefix: list[Path]) -> tuple[float, dict[str, Any]]:
    with host.host_link() as link:
        node = client.create_node(f"bench-{name}-{time.monotonic_ns()}", inspect_interface="agent")
        client.create_port(node["uuid"], link.mac)
        try:
            client.set_provision_state(node["uuid"], "manage")
            client.wait_for_state(node["uuid"], {"manageable"}, 60)
            client.set_provision_state(node["uuid"], "inspect")
            client.wait_for_state(node["uuid"], {"inspect wait"}, 60)
            agent = host.AgentProcess(command, workdir, service.url, auto_tls=False, name=name,
                                      path_prefix=path_prefix,
                                      extra={"inspection_callback_url":
                                             f"{service.url}/v1/continue_inspection",
                                             "inspection_collectors": COLLECTORS})
            start = time.monotonic()
            agent.start()
            try:
                done = _wait(client, node["uuid"], {"manageable"}, 180)
                elapsed = time.monotonic() - start
            finally:
                agent.stop()
            return elapsed, done["properties"]
        finally:
            client.set_maintenance(node["uuid"], True)
            client.delete_node(node["uuid"])


def main(argv: list[str]) -> int:
    runs = int(_option(argv, "runs", "3"))
    agents: list[tuple[str, list[str], list[Path]]] = [
        ("ours", host.our_agent_command(), [])]
    work = ironic.out_dir() / "bench" / "inspection"
    shutil.rmtree(work, ignore_errors=True)
    if "--no-upstream" not in argv:
        if shutil.which("lshw") is None:
            print("note: lshw is not installed; upstream's inventory needs it")
        agents.append(("upstream", host.upstream_agent_command(),
                       [host.upstream_shims(work / "shims")]))
    results: dict[str, list[float]] = {}
    with ironic.running_ironic(ironic.IronicSettings(), work / "ironic") as (service, client):
        for name, command, prefix in agents:
            times = []
            for run in range(1, runs + 1):
                try:
                    elapsed, props = inspect_once(service, client, command, work,
                                                  f"{name}-{run}", prefix)
                except (RuntimeError, TimeoutError, ironic.IronicError) as exc:
                    print(f"{name} run {run}: failed: {exc}")
                    continue
                times.append(elapsed)
                print(f"{name} run {run}: {elapsed:.2f} s to manageable; properties "
                      f"cpus={props.get('cpus')} memory_mb={props.get('memory_mb')} "
                      f"cpu_arch={props.get('cpu_arch')}", flush=True)
            results[name] = times
    print()
    print(f"{'agent':10} {'runs':>4} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, times in results.items():
        if times:
            print(f"{name:10} {len(times):>4} {statistics.median(times):>9.2f} "
                  f"{min(times):>7.2f} {max(times):>7.2f}")
        else:
            print(f"{name:10} {0:>4} {'-':>9}")
    ours, theirs = results.get("ours"), results.get("upstream")
    if ours and theirs:
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"ratio ours/upstream (median): {ratio:.2f}")
    return 0 if ours else 1
