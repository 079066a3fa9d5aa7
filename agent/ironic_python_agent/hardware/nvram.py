# SPDX-License-Identifier: Apache-2.0
"""The ``clean_uefi_nvram`` step: remove UEFI boot entries whose device path matches.

As upstream 13.0.0: ``match_patterns`` is a list of regular expressions
(case-insensitive, searched anywhere in the device path ``efibootmgr -v``
shows); the default removes entries for disks (``^HD(``), shim and GRUB, and
leaves network, built-in and firmware entries alone. Each match is removed with
``efibootmgr -b NNNN -B``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ironic_python_agent import efi, errors
from ironic_python_agent.run import CommandError, run

LOG = logging.getLogger(__name__)

DEFAULT_MATCH_PATTERNS = [r"^HD\(", r"shim.*\.efi", r"grub.*\.efi"]

ARGSINFO = {
    "match_patterns": {
        "description": (
            "Json blob contains a list of regex patterns where any UEFI NVRAM entry "
            "matching that pattern will be deleted. Default value is "
            "'[\"" + '", "'.join(DEFAULT_MATCH_PATTERNS) + "\"]'"),
        "required": False,
    },
}


def compile_patterns(match_patterns: Any) -> list[re.Pattern[str]]:
    """The patterns, or InvalidCommandParamsError when they are not a list of regexes."""
    if match_patterns is None:
        match_patterns = DEFAULT_MATCH_PATTERNS
    error = f"The match_patterns must be a list of strings: {match_patterns}"
    if type(match_patterns) is not list:
        raise errors.InvalidCommandParamsError(error)
    compiled = []
    for item in match_patterns:
        if not isinstance(item, str):
            raise errors.InvalidCommandParamsError(error)
        try:
            compiled.append(re.compile(item, flags=re.IGNORECASE))
        except re.error as exc:
            raise errors.InvalidCommandParamsError(f"{error} ({item!r}: {exc})") from None
    return compiled


def decode_output(raw: bytes) -> str:
    """efibootmgr output: UTF-16 when that decodes to its header, else UTF-8 (as upstream).

    Labels in NVRAM can hold any bytes; undecodable ones are dropped, not fatal.
    """
    text = raw.decode("utf-16", errors="ignore")
    if any(line.startswith("BootCurrent: ") for line in text.splitlines()):
        return text
    return raw.decode("utf-8", errors="ignore")


def matching(entries: list[efi.BootEntry], patterns: list[re.Pattern[str]]
             ) -> list[efi.BootEntry]:
    return [e for e in entries if any(p.search(e.device_path) for p in patterns)]


def _efibootmgr(*args: str) -> str:
    try:
        done = run(["efibootmgr", *args], binary=True, timeout=120)
    except CommandError as exc:
        raise errors.CommandExecutionError(f"efibootmgr failed: {exc}") from None
    return decode_output(done.stdout)  # type: ignore[arg-type]


def clean_uefi_nvram(match_patterns: Any = None) -> None:
    """Remove every boot entry whose device path matches one of *match_patterns*."""
    patterns = compile_patterns(match_patterns)
    entries = efi.parse_efibootmgr(_efibootmgr("-v"))
    for entry in matching(entries, patterns):
        LOG.info("Removing UEFI boot entry Boot%s %r (%s)", entry.number, entry.label,
                 entry.device_path)
        _efibootmgr("-b", entry.number, "-B")
