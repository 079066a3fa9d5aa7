# SPDX-License-Identifier: Apache-2.0
"""Build log, stages and the one way builders run host commands.

One console line per stage (``[  12.3s] <prefix>: <stage>: <notes> (4.1s)``),
every command and its output in ``build.log``; a failing stage names itself
and the log.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

Arg = str | os.PathLike[str]


class BuildError(Exception):
    """A build failed; the message says what, where and which log to read."""

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        super().__init__(message)
        self.current = stage


def _env(env: Mapping[str, str] | None) -> dict[str, str]:
    return {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", **(env or {})}


def run(argv: Sequence[Arg], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
        input: bytes | str | None = None, binary: bool = False,
        stdout: IO[bytes] | IO[str] | None = None,
        stderr: IO[bytes] | IO[str] | None = None, timeout: float | None = None) -> str | bytes:
    """Run *argv* (never through a shell); return its stdout unless *stdout* is given.

    stdin is empty unless *input* is given. Raises :class:`BuildError` naming the
    command, its exit code and the last lines of its stderr (when captured).
    """
    args = [os.fspath(a) for a in argv]
    if isinstance(input, str):
        input = input.encode()
    try:
        proc = subprocess.run(
            args, cwd=cwd, env=_env(env), input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.PIPE if stderr is None else stderr, timeout=timeout, check=False)
    except FileNotFoundError:
        raise BuildError(f"{args[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"{shlex.join(args)} did not finish in {timeout:.0f} s") from None
    err = proc.stderr.decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        tail = (err.strip() or (proc.stdout or b"").decode(errors="replace").strip())
        lines = tail.splitlines()[-3:]
        raise BuildError(f"{shlex.join(args)} exited with {proc.returncode}"
                         + (": " + " | ".join(lines) if lines else ""))
    if stdout is not None:
        return b"" if binary else ""
    return proc.stdout if binary else proc.stdout.decode(errors="replace")


class Log:
    """The build log of one target: stages, progress lines, logged commands."""

    def __init__(self, path: Path, prefix: str = "") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.prefix = f"{prefix}: " if prefix else ""
        self.file: IO[str] = open(path, "w", buffering=1)
        self.started = time.monotonic()
        self.current = "setup"

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def info(self, message: str) -> None:
        """A line in the log only."""
        self.file.write(f"[{self.elapsed():7.1f}s] {message.rstrip()}\n")

    note = info

    def say(self, message: str) -> None:
        """A progress line on stderr (and in the log)."""
        self.info(message)
        print(f"[{self.elapsed():6.1f}s] {self.prefix}{message}", file=sys.stderr, flush=True)

    @contextmanager
    def step(self, stage: str, announce: bool = False) -> Iterator[list[str]]:
        """Run one stage; the yielded list collects a short result note.

        Any error inside becomes a :class:`BuildError` naming the stage and the log.
        """
        self.current = stage
        notes: list[str] = []
        begin = time.monotonic()
        self.info(f"=== {stage}")
        if announce:
            self.say(f"{stage} ...")
        try:
            yield notes
        except BuildError as exc:
            if getattr(exc, "stage", None) is not None:
                raise
            self.info(f"stage {stage} failed: {exc}")
            raise BuildError(f"stage '{stage}' failed: {exc}; see {self.path}",
                             stage=stage) from exc
        except Exception as exc:
            self.info(f"stage {stage} failed: {exc!r}")
            traceback.print_exc(file=self.file)
            raise BuildError(f"stage '{stage}' failed: {exc}; see {self.path}",
                             stage=stage) from exc
        took = time.monotonic() - begin
        self.say(f"{stage}: {', '.join(notes) or 'done'} ({took:.1f}s)")

    def stage(self, title: str):  # noqa: ANN201 - a context manager like step()
        """A long stage: a line when it starts, one when it ends."""
        return self.step(title, announce=True)

    def run(self, argv: Sequence[Arg], *, capture: bool = False,
            env: Mapping[str, str] | None = None, cwd: Path | None = None,
            stdin: IO[bytes] | Path | bytes | None = None,
            stdout: IO[bytes] | Path | None = None,
            on_line: Callable[[str], None] | None = None) -> str:
        """Run a command, its output going to the log (or returned with *capture*).

        With *on_line*, stdout and stderr go to the log line by line as they come,
        each line also handed to *on_line* (progress from a long command).

        *stdin* is an open file, a file to read or bytes; *stdout* an open file or
        a file to write (otherwise the output goes to the log or is returned).
        """
        args = [os.fspath(a) for a in argv]
        self.info("+ " + shlex.join(args))
        self.file.flush()
        if on_line is not None:
            return self._stream(args, env, cwd, on_line)
        in_file = open(stdin, "rb") if isinstance(stdin, Path) else None
        out_file = open(stdout, "wb") if isinstance(stdout, Path) else None
        try:
            proc = subprocess.run(
                args, env=_env(env), cwd=cwd,
                stdin=(in_file or (stdin if stdin is not None and not isinstance(stdin, bytes)
                                   else (None if isinstance(stdin, bytes)
                                         else subprocess.DEVNULL))),
                input=stdin if isinstance(stdin, bytes) else None,
                stdout=out_file or stdout or (subprocess.PIPE if capture else self.file),
                stderr=self.file, check=False)
        except FileNotFoundError:
            raise BuildError(f"{args[0]}: command not found") from None
        finally:
            for handle in (in_file, out_file):
                if handle is not None:
                    handle.close()
        if proc.returncode != 0:
            self.file.flush()
            tail = self.path.read_text(errors="replace").splitlines()[-3:]
            raise BuildError(f"{shlex.join(args[:3])}{' ...' if len(args) > 3 else ''} "
                             f"exited with {proc.returncode}"
                             + (": " + " | ".join(t.strip() for t in tail) if tail else ""))
        return proc.stdout.decode(errors="replace") if capture and proc.stdout else ""

    def _stream(self, args: list[str], env: Mapping[str, str] | None, cwd: Path | None,
                on_line: Callable[[str], None]) -> str:
        try:
            proc = subprocess.Popen(args, env=_env(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace")
        except FileNotFoundError:
            raise BuildError(f"{args[0]}: command not found") from None
        assert proc.stdout is not None
        for line in proc.stdout:
            self.file.write(line)
            on_line(line)
        if proc.wait() != 0:
            raise BuildError(f"{shlex.join(args[:3])}{' ...' if len(args) > 3 else ''} "
                             f"exited with {proc.returncode}")
        return ""
