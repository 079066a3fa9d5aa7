# SPDX-License-Identifier: Apache-2.0
"""The kernel command line, and the virtual-media parameters that extend it.

Read once at start (:func:`load_params`) and passed down explicitly.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Mapping

from ironic_python_agent import vmedia

LOG = logging.getLogger(__name__)


def parse_cmdline(text: str) -> dict[str, str]:
    """``key=value`` tokens of a kernel command line (the value is all after the first ``=``).

    Quoted values (``key="a b"``) are unquoted, as the kernel does. Bare words
    (``quiet``, ``ro``) carry no value and are left out; a repeated key keeps its
    last value.
    """
    try:
        tokens = shlex.split(text)
    except ValueError:  # an unbalanced quote: fall back to plain whitespace splitting
        tokens = text.split()
    params: dict[str, str] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if sep and key:
            params[key] = value
    return params


def parse_parameters_txt(text: str) -> dict[str, str]:
    """Parameters from a virtual-media ``parameters.txt`` (whitespace/newline separated)."""
    return parse_cmdline(text)


def load_params(cmdline_path: str = "/proc/cmdline",
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kernel parameters, with the virtual-media ones on top on a vmedia boot.

    *extra* (for example from ``LEAN_IPA_CMDLINE`` in tests) is parsed last.
    """
    try:
        with open(cmdline_path, encoding="utf-8", errors="replace") as f:
            params = parse_cmdline(f.read())
    except OSError as exc:
        LOG.warning("Cannot read %s: %s", cmdline_path, exc)
        params = {}
    if extra:
        params.update(extra)
    if params.get("boot_method") == "vmedia":
        try:
            text = vmedia.read_parameters_txt()
        except Exception as exc:  # noqa: BLE001 - a broken floppy must not stop the agent
            LOG.warning("Cannot read virtual media parameters: %s", exc)
            text = None
        if text:
            params.update(parse_parameters_txt(text))
    return params


def params_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Extra parameters given as a command line in ``LEAN_IPA_CMDLINE`` (tests, containers)."""
    env = os.environ if environ is None else environ
    text = env.get("LEAN_IPA_CMDLINE", "")
    return parse_cmdline(text) if text else {}
