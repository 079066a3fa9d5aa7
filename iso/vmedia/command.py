# SPDX-License-Identifier: Apache-2.0
"""Run the host tools (xorriso, grub-mkimage, mkfs.fat, mtools): argv only, never a shell."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Sequence

from vmedia.errors import IsoError

LOG = logging.getLogger(__name__)


def run(argv: Sequence[str | os.PathLike[str]]) -> str:
    """Run *argv*, return its stdout; raise :class:`IsoError` with the stderr tail on failure."""
    args = [os.fspath(a) for a in argv]
    LOG.debug("+ %s", shlex.join(args))
    env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    try:
        done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=env, check=False)
    except FileNotFoundError:
        raise IsoError(f"{args[0]}: command not found") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise IsoError(f"{shlex.join(args)} failed with exit code {done.returncode}"
                       + (": " + " / ".join(tail) if tail else ""))
    return done.stdout
