# SPDX-License-Identifier: Apache-2.0
"""The ``logs`` inspection key: a base64 tar.gz of the journal and system state."""

from __future__ import annotations

import base64
import io
import logging
import tarfile
import time
from collections.abc import Sequence

from ironic_python_agent.run import CommandError, run

LOG = logging.getLogger(__name__)

JOURNAL_LINES = 10000

# (file name in the archive, command); a missing tool leaves its file out.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("journal", ("journalctl", "--no-pager", "-a", "-b", "-n", str(JOURNAL_LINES))),
    ("dmesg", ("dmesg",)),
    ("ip_addr", ("ip", "addr")),
    ("ip_route", ("ip", "route")),
    ("lsblk", ("lsblk", "--all", "-o+UUID,PARTUUID,LABEL,FSTYPE")),
    ("ps", ("ps", "aux")),
    ("df", ("df", "-a")),
    ("mount", ("mount",)),
)


def make_archive(outputs: Sequence[tuple[str, bytes]]) -> bytes:
    """A gzipped tar holding one regular file per ``(name, content)`` pair."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in outputs:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = int(now)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def collect_logs_b64() -> str:
    """Run :data:`COMMANDS` and return the archive, base64-encoded."""
    outputs = []
    for name, argv in COMMANDS:
        try:
            result = run(list(argv), timeout=60, log=False)
        except CommandError as exc:
            LOG.debug("Not collecting %s: %s", name, exc)
            continue
        outputs.append((name, (result.stdout + result.stderr).encode()))
    return base64.b64encode(make_archive(outputs)).decode()
