# SPDX-License-Identifier: Apache-2.0
"""Decompressors for a compressed image stream (gzip, xz, bzip2, zstd)."""

from __future__ import annotations

import bz2
import logging
import lzma
import os
import subprocess
import threading
import zlib
from collections.abc import Callable
from typing import Any

from ironic_python_agent import errors, zstd
from ironic_python_agent.image_format import Compression
from ironic_python_agent.imagewrite.buffers import BUFFER_SIZE, aligned_buffer

LOG = logging.getLogger(__name__)

Decoder = Any  # one of the classes below: feed(data, out), finish(out)


class InProcessDecoder:
    """gzip / xz / bzip2 with the stdlib; output bounded to one buffer per call."""

    def __init__(self, kind: Compression) -> None:
        self.kind = kind
        self._dec = self._new()

    def _new(self) -> Any:
        if self.kind == Compression.GZIP:
            return zlib.decompressobj(wbits=31)
        if self.kind == Compression.XZ:
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        return bz2.BZ2Decompressor()

    def feed(self, data: Any, out: Callable[[bytes], None]) -> None:
        pending: Any = memoryview(data)
        while True:
            if self.kind == Compression.GZIP:
                chunk = self._dec.decompress(pending, BUFFER_SIZE)
                pending = self._dec.unconsumed_tail
                more = bool(pending)
                if self._dec.eof and self._dec.unused_data:
                    pending = self._dec.unused_data  # concatenated gzip members
                    self._dec = self._new()
                    more = True
            else:
                if self._dec.eof:
                    rest = self._dec.unused_data
                    self._dec = self._new()  # concatenated streams (pixz, pbzip2)
                    pending = rest + bytes(pending)
                chunk = self._dec.decompress(pending, BUFFER_SIZE)
                pending = b""
                more = (not self._dec.eof and not self._dec.needs_input) or (
                    self._dec.eof and bool(self._dec.unused_data))
            if chunk:
                out(chunk)
            if not more:
                return

    def finish(self, out: Callable[[bytes], None]) -> None:
        if not self._dec.eof:
            raise errors.ImageWriteError("(decompression)", "", "",
                                         f"the {self.kind.value} stream is truncated")


class ZstdDecoder:
    """zstd in-process through libzstd (see :mod:`zstd`)."""

    def __init__(self) -> None:
        self._dec = zstd.Decompressor(BUFFER_SIZE)

    def feed(self, data: Any, out: Callable[[bytes], None]) -> None:
        try:
            self._dec.feed(data, out)
        except zstd.ZstdError as exc:
            raise errors.ImageWriteError("(decompression)", "", "",
                                         f"the zstd stream is corrupt: {exc}") from None

    def finish(self, out: Callable[[bytes], None]) -> None:
        complete = self._dec.started and self._dec.frame_complete
        self._dec.close()
        if not complete:
            raise errors.ImageWriteError("(decompression)", "", "",
                                         "the zstd stream is truncated")

    def close(self) -> None:
        self._dec.close()


class ProcessDecoder:
    """zstd through the ``zstd`` binary (where libzstd is missing): fed on
    stdin, drained by a thread."""

    def __init__(self, argv: list[str], target_write: Callable[[Any], None],
                 abort: threading.Event) -> None:
        LOG.debug("+ %s (streaming)", " ".join(argv))
        # A pipe both ways for the life of the download: run.run() captures
        # whole outputs, so this one place starts the process itself.
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise errors.ImageWriteError("(decompression)", "", "",
                                         f"{argv[0]} is not installed") from None
        self.argv = argv
        self._write = target_write
        self._abort = abort
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="image-decompress",
                                        daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        buf = aligned_buffer(BUFFER_SIZE)
        view = memoryview(buf)
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        try:
            while True:
                filled = 0
                while filled < BUFFER_SIZE:
                    n = os.readv(fd, [view[filled:]])
                    if n == 0:
                        break
                    filled += n
                if filled:
                    self._write(view[:filled])
                if filled < BUFFER_SIZE:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
            self._abort.set()
            self.proc.kill()
        finally:
            view.release()
            buf.close()

    def feed(self, data: Any, out: Callable[[bytes], None]) -> None:
        assert self.proc.stdin is not None
        view = memoryview(data)
        fd = self.proc.stdin.fileno()
        while len(view):
            try:
                n = os.write(fd, view)
            except BrokenPipeError:
                self._thread.join()
                raise self.error or self._failed() from None
            view = view[n:]

    def _failed(self) -> errors.ImageWriteError:
        self.proc.wait()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read().decode(errors="replace").strip()
        return errors.ImageWriteError("(decompression)", self.proc.returncode, "",
                                      f"{self.argv[0]}: {err}")

    def finish(self, out: Callable[[bytes], None]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self._thread.join()
        if self.error is not None:
            self.proc.wait()
            raise self.error
        if self.proc.wait() != 0:
            raise self._failed()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None and not f.closed:
                try:
                    f.close()
                except OSError:
                    pass


def new_decoder(kind: Compression, target_write: Callable[[Any], None],
                abort: threading.Event) -> Decoder | None:
    """The decoder for *kind*, or None for an uncompressed stream."""
    if kind == Compression.ZSTD and zstd.available():
        return ZstdDecoder()
    if kind == Compression.ZSTD:
        return ProcessDecoder(["zstd", "-d", "-c", "-q"], target_write, abort)
    if kind != Compression.NONE:
        return InProcessDecoder(kind)
    return None
