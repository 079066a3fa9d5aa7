# SPDX-License-Identifier: Apache-2.0
"""Paths built from values that came over the wire stay inside their directory."""

from __future__ import annotations

import os

MAX_NAME = 200  # bytes; leaves room for a suffix under the usual 255-byte file name limit


def name_problem(name: str) -> str | None:
    """Why *name* cannot be one file name inside a directory, or None when it can."""
    if not isinstance(name, str) or not name:
        return "is empty"
    if name in (".", ".."):
        return f"is {name!r}"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if "\x00" in name or not name.isprintable():
        return "contains control characters"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        return f"is longer than {MAX_NAME} bytes"
    return None


def child(directory: str, name: str, suffix: str = "") -> str:
    """``directory/name+suffix``; ValueError when that would not be a file in *directory*."""
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"{name!r} {problem}")
    path = os.path.join(directory, name + suffix)
    base = os.path.realpath(directory)
    if os.path.dirname(os.path.realpath(path)) != base:
        raise ValueError(f"{name!r} leads outside {directory}")
    return path
