# SPDX-License-Identifier: Apache-2.0
"""The coreos builder's log and errors: the builders' shared ones (buildlib.log).

Every command's output goes to ``build.log``; the terminal only gets a line when
a stage starts and one when it ends, so a CI log stays short.
"""

from __future__ import annotations

from pathlib import Path

from buildlib.log import BuildError, Log


class Runner(Log):
    """A :class:`buildlib.log.Log` whose progress lines say ``coreos:``."""

    def __init__(self, log_path: Path) -> None:
        super().__init__(log_path, prefix="coreos")
        self.log_path = log_path


__all__ = ["BuildError", "Runner"]
