# SPDX-License-Identifier: Apache-2.0
"""Running host commands for the coreos build, with one log file and stage lines.

Every command's output goes to ``build.log``; the terminal only gets one line per
stage (``[  12.3s] coreos: <stage> ... done in 4.1s``) so a CI log stays short.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path


class BuildError(Exception):
    """A build step failed; the message names the step and the log to read."""


class Runner:
    """Runs argv lists (never a shell), appending their output to a log file."""

    def __init__(self, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self.log = open(log_path, "w", buffering=1)
        self.started = time.monotonic()

    def note(self, text: str) -> None:
        self.log.write(text.rstrip("\n") + "\n")

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f}s] coreos: {text}"
        print(line, file=sys.stderr, flush=True)
        self.note(line)

    @contextlib.contextmanager
    def stage(self, title: str) -> Iterator[None]:
        """One progress line per stage, with the stage's own duration."""
        begun = time.monotonic()
        self.say(f"{title} ...")
        yield
        self.say(f"{title} ... done in {time.monotonic() - begun:.1f}s")

    def run(self, argv: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None,
            env: Mapping[str, str] | None = None, stdin: Path | bytes | None = None,
            stdout: Path | None = None, capture: bool = False) -> str:
        """Run argv; raise BuildError with the log's tail when it fails.

        ``stdin`` is a file to feed or bytes; ``stdout`` a file to write the
        output into (otherwise it goes to the log, or is returned with capture).
        """
        args = [os.fspath(a) for a in argv]
        self.note(f"+ {shlex.join(args)}")
        full_env = {**os.environ, "LANG": "C.UTF-8", **(env or {})}
        in_file = open(stdin, "rb") if isinstance(stdin, Path) else None
        out_file = open(stdout, "wb") if stdout is not None else None
        try:
            proc = subprocess.run(
                args, cwd=cwd, env=full_env,
                stdin=in_file if in_file else (subprocess.DEVNULL if stdin is None else None),
                input=stdin if isinstance(stdin, bytes) else None,
                stdout=out_file or (subprocess.PIPE if capture else self.log),
                stderr=self.log,
            )  # fmt: skip
        except FileNotFoundError as exc:
            raise BuildError(f"{args[0]}: command not found") from exc
        finally:
            for handle in (in_file, out_file):
                if handle is not None:
                    handle.close()
        if proc.returncode != 0:
            self.log.flush()
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            raise BuildError(f"{shlex.join(args)} exited with {proc.returncode}\n  "
                             + "\n  ".join(tail) + f"\n(full log: {self.log_path})")
        return proc.stdout.decode() if capture and proc.stdout is not None else ""
