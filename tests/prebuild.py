# SPDX-License-Identifier: Apache-2.0
"""The slow image builds, started in the background when the session begins.

``./build.sh dib`` and ``./build.sh coreos`` take minutes each on a fresh
checkout, and the e2e flows before the boot tests (one TCG vCPU and the real
Ironic) leave much of the second core idle. When the collected tests use
those images, :func:`start` (called by tests/conftest.py when the first e2e or
boot test starts) builds them one after the other on a thread while the rest
runs; the session fixtures then call :func:`build`, which waits for
that result instead of building again. Builds that run together are safe:
``build.sh wheel`` and the host-package installer take locks.
``LEAN_IPA_PREBUILD=0`` turns this off.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
TIMEOUT = 1800.0


@dataclass(frozen=True)
class Result:
    returncode: int
    output: str


_results: dict[str, Result] = {}
_started: dict[str, threading.Event] = {}


def _run(target: str, args: tuple[str, ...], timeout: float) -> Result:
    try:
        proc = subprocess.run([str(TOP / "build.sh"), target, *args], cwd=TOP, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        return Result(-9, f"{out}\n./build.sh {target} timed out after {timeout:.0f} s")
    return Result(proc.returncode, proc.stdout)


def enabled() -> bool:
    return os.environ.get("LEAN_IPA_PREBUILD", "1") != "0"


def start(targets: list[str]) -> None:
    """Build *targets* (``./build.sh <target>``, no options) in order, in the background."""
    targets = [t for t in targets if t not in _started]
    if not targets:
        return
    for target in targets:
        _started[target] = threading.Event()

    def work() -> None:
        for target in targets:
            try:
                _results[target] = _run(target, (), TIMEOUT)
            finally:
                _started[target].set()

    threading.Thread(target=work, name="prebuild", daemon=True).start()


def build(target: str, *args: str, timeout: float = TIMEOUT) -> Result:
    """``./build.sh <target> <args>``: the background build's result when one was
    started for it (and no options are asked), else a build now."""
    done = _started.get(target)
    if done is not None and not args:
        # The background build had the same budget, plus the time the queue before it took.
        done.wait(timeout * len(_started))
        result = _results.get(target)
        if result is not None:
            return result
    return _run(target, args, timeout)
