# SPDX-License-Identifier: Apache-2.0
"""Burn-in steps: ``burnin_cpu``, ``burnin_gpu``, ``burnin_memory``, ``burnin_disk``,
``burnin_network``.

Upstream 13.0.0's clean steps (cpu, memory and network also service steps),
driven by the same ``driver_info`` keys and running the same tools:

- cpu: ``stress-ng --cpu N --timeout T --metrics-brief``
  (``agent_burnin_cpu_cpu`` = N, default 0 = one worker per CPU;
  ``agent_burnin_cpu_timeout``, default 86400 s; ``agent_burnin_cpu_outputfile``);
- memory: ``stress-ng --vm N --timeout T --vm-bytes B --metrics-brief``
  (``agent_burnin_vm_vm``, ``agent_burnin_vm_vm-bytes`` default ``98%``,
  ``agent_burnin_vm_timeout``, ``agent_burnin_vm_outputfile``);
- gpu: ``gpu_burn -m MEMORY TIMEOUT`` run in ``agent_burnin_gpu_install_dir``
  (default ``/opt/gpu-burn``: gpu-burn is not packaged, the operator builds it
  into the image there), ``agent_burnin_gpu_memory`` (default ``95%``),
  ``agent_burnin_gpu_timeout`` (default 86400 s); with ``agent_burnin_gpu_count``
  > 0 the number of GPUs ``gpu_burn -l`` lists must be that count first;
- disk: one fio ``readwrite`` job with crc32c verification per disk
  (``agent_burnin_fio_disk_loops`` default 4, ``agent_burnin_fio_disk_runtime``
  default 0, ``agent_burnin_fio_disk_outputfile``) and, with
  ``agent_burnin_fio_disk_smart_test``, a long SMART self-test on each disk
  afterwards that must complete without error;
- network: fio's ``net`` engine between two nodes, first in one direction,
  then the other (``agent_burnin_fio_network_runtime`` default 21600,
  ``agent_burnin_fio_network_outputfile``). Pairing is static only:
  ``agent_burnin_fio_network_config = {"role": "writer"|"reader", "partner":
  "<host>"}``; upstream's dynamic pairing through a tooz coordination backend
  (``agent_burnin_fio_network_pairing_*``) is refused with a clear error.
  Our own ``agent_burnin_fio_network_port`` (default 9000, upstream's fixed
  port) moves the port. Unlike upstream, a node whose partner never shows up
  does not wait forever: each direction fails after
  ``agent_burnin_fio_network_pairing_timeout`` (default 900 s) plus the runtime.

The tools' reports are logged at INFO (stress-ng writes its metrics to
stderr, fio to stdout), and written to the ``*_outputfile`` paths when given
(stress-ng ``--log-file``; fio JSON, the network one as ``<file>.writer`` and
``<file>.reader``), as upstream does.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ironic_python_agent import errors
from ironic_python_agent.run import CommandError, run

LOG = logging.getLogger(__name__)

NETWORK_ROLES = frozenset({"writer", "reader"})
NETWORK_READER_CYCLE = 30.0  # seconds a reader waits before retrying its partner
NETWORK_PORT = 9000
# After its first direction a node turns reader while its partner is still starting
# the 16 writer jobs; a reader landing in that window fails some jobs (fio's exit
# code counts them) and cannot be retried. It waits this long first.
NETWORK_SWAP_GRACE = 5.0
NETWORK_SLACK = 60.0  # seconds on top of runtime + pairing timeout for fio itself
FIO_CONNECT_FAILED = 16  # fio's exit code when the reader cannot reach the writer
SMART_POLL = 30.0


def _info(node: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (node or {}).get("driver_info") or {}


def stress_ng_argv(info: Mapping[str, Any], stressor: str) -> list[str]:
    """The stress-ng command line for *stressor* (``cpu`` or ``vm``) from driver_info."""
    if stressor not in ("cpu", "vm"):
        raise ValueError(f"Unknown stressor type: {stressor}")
    count = info.get(f"agent_burnin_{stressor}_{stressor}", 0)
    timeout = info.get(f"agent_burnin_{stressor}_timeout", 86400)
    argv = ["stress-ng", f"--{stressor}", str(count), "--timeout", str(timeout)]
    if stressor == "vm":
        argv += ["--vm-bytes", str(info.get("agent_burnin_vm_vm-bytes", "98%"))]
    argv.append("--metrics-brief")
    outputfile = info.get(f"agent_burnin_{stressor}_outputfile")
    if outputfile:
        argv += ["--log-file", str(outputfile)]
    return argv


def stress_ng(node: Mapping[str, Any] | None, stressor: str) -> None:
    argv = stress_ng_argv(_info(node), stressor)
    LOG.info("Burn-in stress-ng (%s): %s", stressor, " ".join(argv))
    try:
        done = run(argv)
    except CommandError as exc:
        msg = f"stress-ng ({stressor}) failed with error {exc}"
        LOG.error(msg)
        raise errors.CommandExecutionError(msg) from None
    # stress-ng reports on stderr only
    LOG.info("stress-ng (%s) report:\n%s", stressor, done.stderr)


def gpu_count(listing: str) -> int:
    """How many GPUs ``gpu_burn -l`` lists (one ``ID ...`` line each)."""
    return sum(1 for line in listing.splitlines() if line.startswith("ID"))


def gpu_burn(node: Mapping[str, Any] | None) -> None:
    info = _info(node)
    install_dir = str(info.get("agent_burnin_gpu_install_dir", "/opt/gpu-burn"))
    timeout = info.get("agent_burnin_gpu_timeout", 86400)
    memory = info.get("agent_burnin_gpu_memory", "95%")
    expected = int(info.get("agent_burnin_gpu_count", 0) or 0)
    program = os.path.join(install_dir, "gpu_burn")
    if expected > 0:
        try:
            listing = run([program, "-l"], cwd=install_dir).stdout
        except CommandError as exc:
            msg = f"gpu-burn failed with error {exc}"
            LOG.error(msg)
            raise errors.CommandExecutionError(msg) from None
        LOG.info("gpu-burn GPUs:\n%s", listing)
        found = gpu_count(listing)
        if found != expected:
            msg = (f"gpu-burn failed to find the correct number of gpus. {found} found but "
                   f"{expected} expected.")
            LOG.error(msg)
            raise errors.CleaningError(msg)
    argv = [program, "-m", str(memory), str(timeout)]
    LOG.info("Burn-in gpu: %s", " ".join(argv))
    try:
        done = run(argv, cwd=install_dir)
    except CommandError as exc:
        msg = f"gpu-burn failed with error {exc}"
        LOG.error(msg)
        raise errors.CommandExecutionError(msg) from None
    # gpu-burn reports on stdout
    LOG.info("gpu-burn report:\n%s", done.stdout)


def fio_disk_argv(info: Mapping[str, Any], devices: Sequence[str]) -> list[str]:
    """fio over *devices* (one job each, named by the device, which fio then opens)."""
    argv = ["fio", "--rw", "readwrite", "--bs", "4k", "--direct", "1",
            "--ioengine", "libaio", "--iodepth", "32", "--verify", "crc32c",
            "--verify_dump", "1", "--continue_on_error", "verify",
            # no verify-state file in the working directory on a failed verify
            "--verify_state_save", "0",
            "--loops", str(info.get("agent_burnin_fio_disk_loops", 4)),
            "--runtime", str(info.get("agent_burnin_fio_disk_runtime", 0)), "--time_based"]
    outputfile = info.get("agent_burnin_fio_disk_outputfile")
    if outputfile:
        argv += ["--output-format", "json", "--output", str(outputfile)]
    for device in devices:
        argv += ["--name", device]
    return argv


def fio_disk(node: Mapping[str, Any] | None, devices: Sequence[str]) -> None:
    info = _info(node)
    if not devices:
        raise errors.CleaningError("fio (disk): no disks to burn in")
    argv = fio_disk_argv(info, devices)
    LOG.info("Burn-in fio disk: %s", " ".join(argv))
    try:
        done = run(argv)
    except CommandError as exc:
        msg = f"fio (disk) failed with error {exc}"
        LOG.error(msg)
        raise errors.CommandExecutionError(msg) from None
    # fio reports on stdout
    LOG.info("fio (disk) report:\n%s", done.stdout)
    if info.get("agent_burnin_fio_disk_smart_test", False):
        smart_test(devices)


def smart_status(text: str) -> str | None:
    """The self-test status string of ``smartctl -ja`` output, or None when absent."""
    try:
        data = json.loads(text)
        return str(data["ata_smart_data"]["self_test"]["status"]["string"])
    except (ValueError, KeyError, TypeError):
        return None


def smart_test(devices: Sequence[str], sleep: Callable[[float], None] = time.sleep) -> None:
    """A long SMART self-test on every device; CleaningError naming those that fail."""
    failed = []
    for device in devices:
        LOG.info("SMART self test: smartctl -t long %s", device)
        try:
            run(["smartctl", "-t", "long", device])
        except CommandError as exc:
            LOG.error("Starting SMART test on %s failed with: %s", device, exc)
            failed.append(device)
    if failed:
        raise errors.CleaningError(
            f"fio (disk) failed to start SMART self test on {', '.join(failed)}")
    waiting = list(devices)
    while waiting:
        for device in list(waiting):
            # smartctl's exit code is a bit mask of findings; the JSON is what counts.
            out = run(["smartctl", "-ja", device], check=False).stdout
            status = smart_status(out)
            if status is None:
                LOG.error("No SMART self-test status for %s", device)
                waiting.remove(device)
            elif "in progress" in status:
                LOG.debug("SMART test still running on %s ...", device)
            elif "completed without error" in status:
                LOG.info("%s passed SMART test", device)
                waiting.remove(device)
            else:
                LOG.warning("%s failed SMART test with: %s", device, status)
                failed.append(device)
                waiting.remove(device)
        if waiting:
            LOG.info("SMART tests still running on %s ...", ", ".join(waiting))
            sleep(SMART_POLL)
    if failed:
        raise errors.CleaningError(f"fio (disk) SMART test failed for {' '.join(failed)}")


def fio_network_argv(writer: bool, runtime: Any, partner: str, outputfile: str | None,
                     port: int = NETWORK_PORT) -> list[str]:
    argv = ["fio", "--ioengine", "net", "--port", str(port), "--fill_device", "1",
            "--group_reporting", "--gtod_reduce", "1", "--numjobs", "16"]
    if writer:
        argv += ["--name", "writer", "--rw", "write", "--runtime", str(runtime),
                 "--time_based", "--listen"]
    else:
        argv += ["--name", "reader", "--rw", "read", "--hostname", partner]
    if outputfile:
        argv += ["--output-format", "json", "--output", outputfile]
    return argv


def _fio_network_once(writer: bool, runtime: Any, partner: str, outputfile: str | None,
                      port: int, wait: float) -> None:
    """One direction. *wait*: how long the partner may take to show up (then fail)."""
    argv = fio_network_argv(writer, runtime, partner, outputfile, port)
    deadline = time.monotonic() + wait + float(runtime) + NETWORK_SLACK
    while True:
        LOG.info("Burn-in fio network: %s", " ".join(argv))
        try:
            done = run(argv, timeout=max(1.0, deadline - time.monotonic()))
        except CommandError as exc:
            msg = f"fio (network) failed with error {exc}"
            if exc.returncode == -9:
                msg = (f"fio (network) {'writer' if writer else 'reader'}: no exchange with "
                       f"partner {partner} within {wait:.0f} s (+ the runtime)")
            LOG.error(msg)
            # A reader started before its writer listens fails to connect: retry.
            if (writer or exc.returncode != FIO_CONNECT_FAILED
                    or time.monotonic() + NETWORK_READER_CYCLE > deadline):
                raise errors.CommandExecutionError(msg) from None
            LOG.info("fio (network): reader retrying in %s seconds ...", NETWORK_READER_CYCLE)
            time.sleep(NETWORK_READER_CYCLE)
            continue
        LOG.info("fio (network) report:\n%s", done.stdout)
        return


def fio_network(node: Mapping[str, Any] | None) -> None:
    info = _info(node)
    config = info.get("agent_burnin_fio_network_config")
    if not config:
        if info.get("agent_burnin_fio_network_pairing_backend_url"):
            raise errors.CleaningError(
                "fio (network): dynamic pairing through a coordination backend "
                "(agent_burnin_fio_network_pairing_backend_url) is not supported by this "
                "agent; set agent_burnin_fio_network_config to {\"role\": ..., "
                "\"partner\": ...} on both nodes")
        raise errors.CleaningError(
            "fio (network): driver_info has no agent_burnin_fio_network_config "
            "({\"role\": \"writer\"|\"reader\", \"partner\": \"<host>\"})")
    if not isinstance(config, Mapping):
        raise errors.CleaningError(
            f"fio (network): agent_burnin_fio_network_config must be an object, not {config!r}")
    role, partner = config.get("role"), config.get("partner")
    if role not in NETWORK_ROLES:
        raise errors.CleaningError(f"fio (network) found an unknown role: {role}")
    if not partner:
        raise errors.CleaningError("fio (network) failed to find partner")
    runtime = info.get("agent_burnin_fio_network_runtime", 21600)
    outputfile = info.get("agent_burnin_fio_network_outputfile")
    try:
        port = int(info.get("agent_burnin_fio_network_port", NETWORK_PORT))
    except (TypeError, ValueError):
        raise errors.CleaningError("fio (network): agent_burnin_fio_network_port must be "
                                   "a port number") from None
    try:
        wait = float(info.get("agent_burnin_fio_network_pairing_timeout", 900))
        float(runtime)
    except (TypeError, ValueError):
        raise errors.CleaningError("fio (network): agent_burnin_fio_network_runtime and "
                                   "_pairing_timeout must be numbers of seconds") from None
    LOG.info("fio (network): partner %s, role is %s", partner, role)
    first_writer = role == "writer"
    for writer in (first_writer, not first_writer):
        name = "writer" if writer else "reader"
        _fio_network_once(writer, runtime, str(partner),
                          f"{outputfile}.{name}" if outputfile else None, port, wait)
        if writer == first_writer:
            LOG.info("fio (network): first direction done, swapping roles ...")
            if first_writer:
                time.sleep(NETWORK_SWAP_GRACE)
