# SPDX-License-Identifier: Apache-2.0
"""Burn-in steps running the real stress-ng and fio for a few seconds each.

burnin_disk runs on a loop disk of ours (the generic manager only sees it,
through the allowlist); burnin_network pairs two "nodes" on loopback, each in
its own thread, with static pairing as Ironic's driver_info gives it. The
SMART follow-up of burnin_disk uses the fake smartctl (tests/fakebin).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from pathlib import Path

import pytest

from ironic_python_agent import errors
from ironic_python_agent.hardware import burnin, steps
from tests.hwfixtures import MiB, fake_tools_env, hardware_conf, loop_device, reset_hardware

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for loop devices")


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    reset_hardware()
    for key, value in fake_tools_env(tmp_path / "fake-state").items():
        monkeypatch.setenv(key, value)
    yield
    reset_hardware()


def clean(step: str, driver_info: dict, kind: str = "clean") -> dict:
    node = {"uuid": "5f0e6b0a-3a1e-4f6b-9a7e-0c1d2e3f4a5b", "driver_info": driver_info,
            "properties": {}}
    return steps.execute_step(kind, {"step": step, "interface": "deploy", "priority": 0},
                              node, [])


def test_burnin_cpu_runs_stress_ng_and_keeps_its_report(tmp_path, caplog) -> None:
    hardware_conf(allow=[])
    log = tmp_path / "cpu.log"
    with caplog.at_level(logging.INFO, logger="ironic_python_agent.hardware.burnin"):
        clean("burnin_cpu", {"agent_burnin_cpu_cpu": 1, "agent_burnin_cpu_timeout": 2,
                             "agent_burnin_cpu_outputfile": str(log)})
    assert "successful run completed" in log.read_text()
    report = [r.getMessage() for r in caplog.records if "stress-ng (cpu) report" in
              r.getMessage()]
    assert report and "bogo ops" in report[0]  # --metrics-brief table, from stderr


def test_burnin_memory_as_a_service_step(tmp_path, caplog) -> None:
    hardware_conf(allow=[])
    log = tmp_path / "vm.log"
    with caplog.at_level(logging.INFO, logger="ironic_python_agent.hardware.burnin"):
        clean("burnin_memory", {"agent_burnin_vm_vm": 1, "agent_burnin_vm_vm-bytes": "32M",
                                "agent_burnin_vm_timeout": 2,
                                "agent_burnin_vm_outputfile": str(log)}, kind="service")
    text = log.read_text()
    assert "vm" in text and "successful run completed" in text


def test_stress_ng_failure_is_a_step_failure() -> None:
    hardware_conf(allow=[])
    with pytest.raises(errors.CommandExecutionError, match=r"stress-ng \(vm\) failed"):
        clean("burnin_memory", {"agent_burnin_vm_vm-bytes": "lots",
                                "agent_burnin_vm_timeout": 1})


def test_burnin_disk_writes_and_verifies_the_disk_then_smart_tests_it(tmp_path,
                                                                     monkeypatch) -> None:
    monkeypatch.setattr(burnin, "SMART_POLL", 0.05)
    out = tmp_path / "fio.json"
    with loop_device(tmp_path, 32 * MiB) as dev:
        hardware_conf(allow=[dev])
        clean("burnin_disk", {"agent_burnin_fio_disk_loops": 1,
                              "agent_burnin_fio_disk_runtime": 2,
                              "agent_burnin_fio_disk_outputfile": str(out),
                              "agent_burnin_fio_disk_smart_test": True}, kind="clean")
        with open(dev, "rb") as f:
            head = f.read(MiB)
    report = json.loads(out.read_text())
    (job,) = report["jobs"]
    assert job["jobname"] == dev
    assert job["error"] == 0
    assert job["write"]["io_bytes"] > 0 and job["read"]["io_bytes"] > 0
    assert head.count(0) < len(head)  # fio's verify pattern landed on the disk


def test_smart_failure_fails_burnin_disk(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_HW_SCENARIO", "smart=fail")
    monkeypatch.setattr(burnin, "SMART_POLL", 0.05)
    with loop_device(tmp_path, 16 * MiB) as dev:
        hardware_conf(allow=[dev])
        with pytest.raises(errors.CleaningError, match=f"SMART test failed for {dev}"):
            clean("burnin_disk", {"agent_burnin_fio_disk_loops": 1,
                                  "agent_burnin_fio_disk_runtime": 1,
                                  "agent_burnin_fio_disk_smart_test": True})


def free_port() -> int:
    """A free port below the ephemeral range: each direction's writer listens on it in
    turn, and an outgoing connection elsewhere on the machine must not take it in
    between."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(20000, min(low, 32768)), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def test_burnin_network_pairs_two_nodes_both_directions(tmp_path, monkeypatch) -> None:
    hardware_conf(allow=[])
    # Long enough that a retrying reader does not land while its partner's 16 writer
    # jobs are still starting (fio then fails some jobs, and upstream gives up too).
    monkeypatch.setattr(burnin, "NETWORK_READER_CYCLE", 4.0)
    monkeypatch.setattr(burnin, "NETWORK_SWAP_GRACE", 2.0)
    port = free_port()
    results: dict[str, BaseException | None] = {}

    def node(name: str, role: str, delay: float) -> None:
        time.sleep(delay)
        try:
            clean("burnin_network", {
                "agent_burnin_fio_network_config": {"role": role, "partner": "127.0.0.1"},
                "agent_burnin_fio_network_runtime": 2,
                "agent_burnin_fio_network_port": port,
                "agent_burnin_fio_network_pairing_timeout": 30,
                "agent_burnin_fio_network_outputfile": str(tmp_path / name)})
            results[name] = None
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            results[name] = exc

    # The writer listens first; in the second direction a's reader is up before b's
    # writer and retries until it listens, as upstream.
    threads = [threading.Thread(target=node, args=("a", "writer", 0.0)),
               threading.Thread(target=node, args=("b", "reader", 3.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == {"a": None, "b": None}
    for name, role, direction in (("a", "writer", "write"), ("a", "reader", "read"),
                                  ("b", "reader", "read"), ("b", "writer", "write")):
        report = json.loads(Path(tmp_path / f"{name}.{role}").read_text())
        assert report["jobs"][0][direction]["io_bytes"] > 0, (name, role)


def test_reader_without_partner_gives_up_after_the_pairing_timeout(monkeypatch) -> None:
    hardware_conf(allow=[])
    monkeypatch.setattr(burnin, "NETWORK_READER_CYCLE", 0.5)
    monkeypatch.setattr(burnin, "NETWORK_SLACK", 2.0)
    start = time.monotonic()
    with pytest.raises(errors.CommandExecutionError, match="exit code 16"):
        clean("burnin_network", {
            "agent_burnin_fio_network_config": {"role": "reader", "partner": "127.0.0.1"},
            "agent_burnin_fio_network_port": free_port(), "agent_burnin_fio_network_runtime": 0,
            "agent_burnin_fio_network_pairing_timeout": 0})
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(("info", "message"), [
    ({}, "no agent_burnin_fio_network_config"),
    ({"agent_burnin_fio_network_pairing_backend_url": "etcd3+http://etcd:2379"},
     "dynamic pairing through a coordination backend"),
    ({"agent_burnin_fio_network_config": {"role": "talker", "partner": "x"}}, "unknown role"),
    ({"agent_burnin_fio_network_config": {"role": "reader"}}, "failed to find partner"),
])
def test_network_pairing_errors_are_clear(info, message) -> None:
    hardware_conf(allow=[])
    with pytest.raises(errors.CleaningError, match=message):
        clean("burnin_network", info)


def test_burnin_steps_are_listed_as_upstream() -> None:
    hardware_conf(allow=[])
    for kind, names in (("clean", {"burnin_cpu", "burnin_gpu", "burnin_disk", "burnin_memory",
                                   "burnin_network"}),
                        ("service", {"burnin_cpu", "burnin_gpu", "burnin_memory",
                                     "burnin_network"})):
        listed = {s["step"]: s for m in steps.get_steps(kind, {}, [])[f"{kind}_steps"].values()
                  for s in m}
        assert {n for n in listed if n.startswith("burnin_")} == names
        assert all(listed[n]["priority"] == 0 and listed[n]["abortable"] for n in names)
