# SPDX-License-Identifier: Apache-2.0
"""The one error type the ISO tool reports to its user."""

from __future__ import annotations


class IsoError(Exception):
    """A problem the user can fix; printed as one line (plus a hint), no traceback.

    :param message: what is wrong, naming the file, tool or option.
    :param hint: how to fix it (an apt-get command, an option to pass).
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")
