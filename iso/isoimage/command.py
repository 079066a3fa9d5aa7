# SPDX-License-Identifier: Apache-2.0
"""Run the host tools (xorriso, grub-mkimage, mkfs.fat, mtools) through the builders'
one runner (buildlib.log.run); a failure becomes an :class:`IsoError`."""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Sequence

from buildlib.log import BuildError
from buildlib.log import run as _run
from isoimage.errors import IsoError

LOG = logging.getLogger(__name__)


def run(argv: Sequence[str | os.PathLike[str]]) -> str:
    """Run *argv*, return its stdout; raise :class:`IsoError` with the stderr tail on failure."""
    LOG.debug("+ %s", shlex.join(os.fspath(a) for a in argv))
    try:
        return str(_run(argv))
    except BuildError as exc:
        raise IsoError(str(exc).replace(" exited with ", " failed with exit code ", 1)
                       .replace(" | ", " / ")) from None
