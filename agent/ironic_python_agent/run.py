# SPDX-License-Identifier: Apache-2.0
"""The one way the agent runs external commands."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LOG = logging.getLogger(__name__)


class Secret(str):
    """An argv element shown as ``***`` in logs and errors."""


def _shown(argv: Sequence[str]) -> str:
    return shlex.join("***" if isinstance(a, Secret) else str(a) for a in argv)


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandError(Exception):
    """A command exited non-zero, was not found, or timed out."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stdout: str = "",
                 stderr: str = "") -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-1:] or stdout.strip().splitlines()[-1:]
        what = "not found" if returncode is None else f"exit code {returncode}"
        super().__init__(f"{_shown(argv)}: {what}" + (f": {tail[0]}" if tail else ""))


def run(argv: Sequence[str], *, check: bool = True, input: str | bytes | None = None,
        timeout: float | None = None, env: Mapping[str, str] | None = None,
        binary: bool = False, log: bool = True, cwd: str | None = None) -> Completed:
    """Run *argv* (never through a shell) and capture its output.

    Output is text unless *binary*; stdin is empty unless *input* is given.
    Raises :class:`CommandError` when the program is missing, times out, or
    (with *check*) exits non-zero.
    """
    argv = [str(a) for a in argv] if not any(isinstance(a, Secret) for a in argv) else list(argv)
    if log:
        LOG.debug("+ %s", _shown(argv))
    full_env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", **(env or {})}
    text = not binary
    if text and isinstance(input, bytes):
        input = input.decode()
    try:
        proc = subprocess.run(
            argv, input=input, capture_output=True, text=text, timeout=timeout,
            env=full_env, stdin=None if input is not None else subprocess.DEVNULL, cwd=cwd)
    except FileNotFoundError:
        if cwd is not None and not os.path.isdir(cwd):
            raise CommandError(argv, None, "", f"{cwd}: no such directory") from None
        raise CommandError(argv, None, "", f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, -9, "", f"timed out after {timeout}s") from exc
    result = Completed(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        out = proc.stdout if text else proc.stdout.decode(errors="replace")
        err = proc.stderr if text else proc.stderr.decode(errors="replace")
        raise CommandError(argv, proc.returncode, out, err)
    return result


def which(name: str) -> str | None:
    """Path of *name* on PATH (also the sbin directories), or None."""
    import shutil

    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return shutil.which(name, path=path)
