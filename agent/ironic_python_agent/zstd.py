# SPDX-License-Identifier: Apache-2.0
"""Streaming zstd decompression through libzstd (ctypes), without a subprocess.

Python 3.11 has no zstd module. libzstd.so.1 is on every image already (kmod,
qemu-img and systemd link it), so the agent decodes zstd images in-process like
gzip and xz; the ``zstd`` program is only the fallback where the library is
missing. Like the zstd CLI's default, frames needing a window over 128 MiB are
refused rather than allowed to exhaust a ramdisk's memory.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Any

LIBRARY = "libzstd.so.1"


class ZstdError(Exception):
    """libzstd refused the stream; the message is libzstd's own error name."""


class _InBuffer(ctypes.Structure):
    _fields_ = [("src", ctypes.c_void_p), ("size", ctypes.c_size_t),
                ("pos", ctypes.c_size_t)]


class _OutBuffer(ctypes.Structure):
    _fields_ = [("dst", ctypes.c_void_p), ("size", ctypes.c_size_t),
                ("pos", ctypes.c_size_t)]


@functools.cache
def library() -> Any | None:
    """libzstd with its prototypes declared, or None when it cannot be loaded."""
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError:
        return None
    lib.ZSTD_createDStream.restype = ctypes.c_void_p
    lib.ZSTD_createDStream.argtypes = []
    lib.ZSTD_freeDStream.restype = ctypes.c_size_t
    lib.ZSTD_freeDStream.argtypes = [ctypes.c_void_p]
    lib.ZSTD_initDStream.restype = ctypes.c_size_t
    lib.ZSTD_initDStream.argtypes = [ctypes.c_void_p]
    lib.ZSTD_decompressStream.restype = ctypes.c_size_t
    lib.ZSTD_decompressStream.argtypes = [ctypes.c_void_p, ctypes.POINTER(_OutBuffer),
                                          ctypes.POINTER(_InBuffer)]
    lib.ZSTD_isError.restype = ctypes.c_uint
    lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
    lib.ZSTD_getErrorName.restype = ctypes.c_char_p
    lib.ZSTD_getErrorName.argtypes = [ctypes.c_size_t]
    lib.ZSTD_findFrameCompressedSize.restype = ctypes.c_size_t
    lib.ZSTD_findFrameCompressedSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return lib


def available() -> bool:
    return library() is not None


def frame_size(data: bytes | bytearray) -> int | None:
    """The length of the zstd frame at the start of *data*, or None if it is not one."""
    lib = library()
    if lib is None:
        return None
    ret = lib.ZSTD_findFrameCompressedSize(bytes(data), len(data))
    return None if lib.ZSTD_isError(ret) else int(ret)


class Decompressor:
    """Decodes one zstd stream (any number of concatenated or skippable frames)
    fed in pieces; each output piece is at most ``chunk`` bytes."""

    def __init__(self, chunk: int = 1 << 20) -> None:
        lib = library()
        if lib is None:
            raise ZstdError(f"{LIBRARY} cannot be loaded")
        self._lib = lib
        self._stream = lib.ZSTD_createDStream()
        if not self._stream:
            raise ZstdError("ZSTD_createDStream failed (out of memory)")
        self._check(lib.ZSTD_initDStream(self._stream))
        self._out = ctypes.create_string_buffer(chunk)
        self.frame_complete = True  # nothing started: an empty stream is complete
        self.started = False

    def _check(self, ret: int) -> int:
        if self._lib.ZSTD_isError(ret):
            raise ZstdError(self._lib.ZSTD_getErrorName(ret).decode(errors="replace"))
        return ret

    def feed(self, data: Any, out: Callable[[bytes], None]) -> None:
        """Decode ``data`` (bytes or a buffer) and pass the output to ``out``."""
        view = memoryview(data).cast("B")
        if not len(view):
            return
        if view.readonly:
            src: Any = (ctypes.c_char * len(view)).from_buffer_copy(view)
        else:
            src = (ctypes.c_char * len(view)).from_buffer(view)
        try:
            inbuf = _InBuffer(ctypes.addressof(src), len(view), 0)
            outbuf = _OutBuffer(ctypes.addressof(self._out), len(self._out), 0)
            self.started = True
            while True:
                outbuf.pos, before = 0, inbuf.pos
                ret = self._check(self._lib.ZSTD_decompressStream(
                    self._stream, ctypes.byref(outbuf), ctypes.byref(inbuf)))
                # 0: a frame ended and everything of it is flushed. A call that
                # neither read nor wrote (after an exactly full output buffer)
                # answers with the next frame's header size: no news.
                if ret == 0:
                    self.frame_complete = True
                elif inbuf.pos != before or outbuf.pos:
                    self.frame_complete = False
                if outbuf.pos:
                    out(ctypes.string_at(self._out, outbuf.pos))  # one copy, not two
                if inbuf.pos == inbuf.size and outbuf.pos < outbuf.size:
                    return
        finally:
            del src  # release the exported buffer (an mmap cannot close while viewed)
            view.release()

    def reset(self) -> None:
        """Forget the current frame (after an error, or between independent frames)."""
        self._check(self._lib.ZSTD_initDStream(self._stream))
        self.frame_complete = True
        self.started = False

    def close(self) -> None:
        if self._stream:
            self._lib.ZSTD_freeDStream(self._stream)
            self._stream = None

    def __del__(self) -> None:
        self.close()
