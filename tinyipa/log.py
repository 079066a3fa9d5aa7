# SPDX-License-Identifier: Apache-2.0
"""Build log and progress: one console line per stage, details in build.log."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO


class BuildError(Exception):
    """A stage failed; the message names the stage and the log."""


class Log:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file: IO[str] = open(path, "w", buffering=1)
        self.started = time.monotonic()
        self.stage = "setup"

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def info(self, message: str) -> None:
        self.file.write(f"[{self.elapsed():7.1f}s] {message}\n")

    def say(self, message: str) -> None:
        """A progress line on stderr (and in the log)."""
        self.info(message)
        print(f"[{self.elapsed():5.1f}s] {message}", file=sys.stderr, flush=True)

    @contextmanager
    def step(self, stage: str) -> Iterator[list[str]]:
        """Run one stage; the yielded list collects a short result note."""
        self.stage = stage
        notes: list[str] = []
        begin = time.monotonic()
        self.info(f"=== {stage}")
        try:
            yield notes
        except BuildError:
            raise
        except Exception as exc:
            self.info(f"stage {stage} failed: {exc!r}")
            import traceback
            traceback.print_exc(file=self.file)
            raise BuildError(f"stage '{stage}' failed: {exc}; see {self.path}") from exc
        took = time.monotonic() - begin
        self.say(f"{stage}: {', '.join(notes) or 'done'} ({took:.1f}s)")

    def run(self, argv: Sequence[str], *, capture: bool = False,
            env: Mapping[str, str] | None = None, cwd: Path | None = None,
            stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> str:
        """Run a command, its output going to the log (or returned with *capture*)."""
        self.info("+ " + shlex.join(str(a) for a in argv))
        self.file.flush()
        proc = subprocess.run(
            [str(a) for a in argv], env=None if env is None else dict(env), cwd=cwd,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else (subprocess.PIPE if capture else self.file),
            stderr=subprocess.PIPE if capture else self.file, text=stdout is None)
        if capture:
            self.file.write(proc.stderr or "")
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-3:] if capture else []
            raise RuntimeError(f"{shlex.join(str(a) for a in argv[:3])}... exited "
                               f"{proc.returncode}" + (": " + " | ".join(tail) if tail else ""))
        return proc.stdout if capture else ""
