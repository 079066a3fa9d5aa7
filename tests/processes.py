# SPDX-License-Identifier: Apache-2.0
"""Stopping the processes tests start (QEMU, Ironic, agents)."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any], timeout: float,
                 kill_timeout: float | None = 10) -> int:
    """SIGTERM *proc* if it still runs; SIGKILL it if it has not exited after
    *timeout* seconds, then wait up to *kill_timeout* seconds (None: for ever).

    Returns its exit code; ``subprocess.TimeoutExpired`` if even SIGKILL did not
    end it within *kill_timeout*.
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(kill_timeout)
    return int(proc.returncode)
