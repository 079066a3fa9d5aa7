# SPDX-License-Identifier: Apache-2.0
"""The ``logs`` inspection key: the same tarball as ``log.collect_system_logs``,
with the journal cut to its last 10000 lines as upstream sends it."""

from __future__ import annotations

from typing import Any

from ironic_python_agent.extensions import log
from ironic_python_agent.run import CommandError, run

JOURNAL_LINES = 10000


def collect_logs_b64() -> str:
    """Base64 of a tar.gz of the journal tail, system state and tool outputs."""
    members = log.gather()
    try:
        out: Any = run(["journalctl", "--full", "--no-pager", "-b", "-n", str(JOURNAL_LINES)],
                       binary=True, log=False).stdout
        members["journal"] = bytes(out)
    except CommandError:
        pass  # gather() already fell back to /var/log
    return log.make_tarball(members)
