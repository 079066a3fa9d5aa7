# SPDX-License-Identifier: Apache-2.0
"""Run the real agent console script as a host process for functional tests."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.processes import stop_process

ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts"


class AgentProcess:
    """``ironic-python-agent --config-file <tmp>`` with [DEFAULT] options from *options*."""

    def __init__(self, options: dict[str, object], cmdline: str = "", args: tuple = (),
                 name: str = "agent", nofile: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lean-ipa-agent-"))
        conf = self.dir / "agent.conf"
        lines = ["[DEFAULT]"] + [f"{k} = {v}" for k, v in options.items()]
        conf.write_text("\n".join(lines) + "\n")
        self.log = self.dir / "agent.log"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.artifact = ARTIFACTS / f"{name}-{os.getpid()}-{id(self)}.log"
        env = {**os.environ, "LEAN_IPA_CMDLINE": cmdline}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ironic_python_agent", "--config-file", str(conf),
             "--config-dir", str(self.dir), *args],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"), env=env,
            preexec_fn=None if nofile is None else lambda: resource.setrlimit(
                resource.RLIMIT_NOFILE, (nofile, nofile)))

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10) -> int:
        code = stop_process(self.proc, timeout, kill_timeout=None)
        self.artifact.write_text(self.output())
        return code
