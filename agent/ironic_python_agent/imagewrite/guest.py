# SPDX-License-Identifier: Apache-2.0
"""The target device seen as the image's guest disk: data at guest offsets and
zero ranges, in any order (what the streaming qcow2 and vmdk readers produce).

Data that is page-aligned in memory, offset and length goes to the device with
``O_DIRECT`` straight from the caller's buffer; small or unaligned pieces
(decompressed clusters, 512-byte clusters) are gathered in one aligned
staging buffer while they are contiguous. Pages written through the page
cache are never also written with ``O_DIRECT``: only whole pages go direct.

Zero ranges must read as zeros whatever the disk held before. Where the device
offloads zeroing (``write_zeroes_max_bytes`` > 0: NVMe Write Zeroes, SCSI WRITE
SAME, loop devices) the whole pages of a range get
``fallocate(PUNCH_HOLE | KEEP_SIZE)``: the kernel's "zero this range, the
device may deallocate it, never by writing zeros" (it fails rather than
falling back), after which the range is guaranteed to read as zeros. If the
device refuses it, ``BLKZEROOUT`` (offloaded where it can be, written zeros
otherwise). A device that only discards gets ``BLKDISCARD`` and then a
read-back of samples of the range; any sample that is not zero turns it into
``BLKZEROOUT`` (written zeros). Regular files get written zeros.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import stat
import struct
from typing import Any

from ironic_python_agent import errors
from ironic_python_agent.imagewrite.buffers import (
    ALIGN,
    BUFFER_SIZE,
    MIB,
    aligned_buffer,
    is_aligned,
)

LOG = logging.getLogger(__name__)

BLKDISCARD = 0x1277
BLKZEROOUT = 0x127F
# Discarded ranges are checked at their ends and every this many bytes.
DISCARD_SAMPLE_EVERY = 64 * MIB
ZERO_CHUNK = 1 << 30  # one ioctl at a time, so a failure names a nearby offset
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
_fallocate: object = None  # libc's fallocate(2), loaded on first use (False: none)


def punch_hole(fd: int, start: int, length: int) -> int:
    """``fallocate(fd, PUNCH_HOLE | KEEP_SIZE, start, length)``: 0, or the errno."""
    global _fallocate
    if _fallocate is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).fallocate  # the loaded C library
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            fn.restype = ctypes.c_int
            _fallocate = fn
        except (OSError, AttributeError):
            _fallocate = False
    if not _fallocate:
        return errno.ENOSYS
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    ret = _fallocate(fd, mode, start, length)  # type: ignore[operator]
    return ctypes.get_errno() if ret != 0 else 0


def _queue_value(path: str, name: str) -> int:
    """A /sys/block/.../queue attribute of the disk holding block device *path* (0 if none)."""
    try:
        st = os.stat(path)
    except OSError:
        return 0
    base = f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    for d in (f"{base}/queue", f"{base}/../queue"):  # a partition's queue is its disk's
        try:
            with open(f"{d}/{name}") as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            continue
    return 0


def zero_method(path: str) -> str:
    """How :class:`GuestWriter` zeroes *path*: punch, discard, zeroout or write
    (offload: ``BLKZEROOUT`` alone, what a refused punch turns into)."""
    try:
        if not stat.S_ISBLK(os.stat(path).st_mode):
            return "write"
    except OSError:
        return "write"
    if _queue_value(path, "write_zeroes_max_bytes") > 0:
        return "punch"
    if _queue_value(path, "discard_max_bytes") > 0:
        return "discard"
    return "zeroout"


class GuestWriter:
    """Random-offset writes of guest data onto *path*, clipped to *limit* bytes.

    *zeroing* (punch, offload, discard, zeroout or write: :func:`zero_method`) is
    found from the device unless given.
    """

    def __init__(self, path: str, limit: int, zeroing: str | None = None) -> None:
        self.path = path
        self.limit = limit
        self.touched = False
        self.data_bytes = 0
        self.zero_bytes = 0
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
            self.direct = True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise self._error(exc, 0) from None
            self.fd = os.open(path, os.O_WRONLY)
            self.direct = False
        self.bfd = os.open(path, os.O_WRONLY)  # the page-cache path for partial pages
        self.size = os.lseek(self.bfd, 0, os.SEEK_END)
        self.zero_method = zeroing or zero_method(path)
        LOG.info("Zero ranges on %s: %s", path, self.zero_method)
        self._stage = aligned_buffer(BUFFER_SIZE)
        self._stage_at = 0
        self._staged = 0
        self._zeros: Any = None

    def _error(self, exc: OSError, at: int) -> errors.ImageWriteError:
        return errors.ImageWriteError(self.path, exc.errno or "", "",
                                      f"{exc.strerror or exc} at byte {at}")

    def _clip(self, offset: int, length: int) -> int:
        return max(0, min(length, self.limit - offset))

    # -- data ------------------------------------------------------------------

    def write(self, offset: int, data: Any) -> None:
        view = memoryview(data).cast("B")
        n = self._clip(offset, len(view))
        if n <= 0:
            return
        view = view[:n]
        self.data_bytes += n
        if self._staged and offset == self._stage_at + self._staged:
            take = min(BUFFER_SIZE - self._staged, n)
            self._stage[self._staged:self._staged + take] = view[:take]
            self._staged += take
            offset, view = offset + take, view[take:]
            if self._staged == BUFFER_SIZE:
                self._flush()
            if not len(view):
                return
        if self._staged:
            self._flush()
        if (self.direct and offset % ALIGN == 0 and len(view) >= ALIGN and is_aligned(view)):
            whole = len(view) - len(view) % ALIGN
            self._pwrite(self.fd, view[:whole], offset)
            offset, view = offset + whole, view[whole:]
        while len(view):
            take = min(BUFFER_SIZE, len(view))
            self._stage[:take] = view[:take]
            self._stage_at, self._staged = offset, take
            offset, view = offset + take, view[take:]
            if self._staged == BUFFER_SIZE:
                self._flush()

    def _pwrite(self, fd: int, view: memoryview, offset: int) -> None:
        self.touched = True
        while len(view):
            try:
                done = os.pwrite(fd, view, offset)
            except OSError as exc:
                raise self._error(exc, offset) from None
            if done == 0:
                raise self._error(OSError(errno.ENOSPC, "no space left on device"), offset)
            offset += done
            view = view[done:]

    def _flush(self) -> None:
        n, at = self._staged, self._stage_at
        self._staged = 0
        if not n:
            return
        view = memoryview(self._stage)[:n]
        whole = n - n % ALIGN if (self.direct and at % ALIGN == 0) else 0
        if whole:
            self._pwrite(self.fd, view[:whole], at)
        if n > whole:
            self._pwrite(self.bfd, view[whole:], at + whole)
        view.release()

    # -- zeros -----------------------------------------------------------------

    def zero(self, offset: int, length: int) -> None:
        """Make [offset, offset+length) read as zeros."""
        length = self._clip(offset, length)
        if length <= 0:
            return
        self.zero_bytes += length
        end = offset + length
        lo = -(-offset // ALIGN) * ALIGN
        hi = end // ALIGN * ALIGN
        if self.zero_method == "write" or hi <= lo:
            self._write_zeros(offset, end)
            return
        if offset < lo:
            self._write_zeros(offset, lo)
        pos = lo
        while pos < hi:
            n = min(ZERO_CHUNK, hi - pos)
            self._zero_pages(pos, n)
            pos += n
        if hi < end:
            self._write_zeros(hi, end)

    def _write_zeros(self, start: int, end: int) -> None:
        if self._zeros is None:
            self._zeros = bytes(BUFFER_SIZE)
        while start < end:
            n = min(BUFFER_SIZE, end - start)
            self._pwrite(self.bfd, memoryview(self._zeros)[:n], start)
            start += n

    def _ioctl(self, request: int, start: int, length: int) -> bool:
        try:
            fcntl.ioctl(self.bfd, request, struct.pack("QQ", start, length))
            return True
        except OSError as exc:
            LOG.debug("ioctl %#x on %s at %d+%d: %s", request, self.path, start, length, exc)
            return False

    def _zero_pages(self, start: int, length: int) -> None:
        self.touched = True
        if self.zero_method == "punch":
            err = punch_hole(self.bfd, start, length)
            if not err:
                return
            LOG.info("fallocate(PUNCH_HOLE) on %s at %d+%d: %s; using BLKZEROOUT", self.path,
                     start, length, os.strerror(err))
            self.zero_method = "offload"
        if self.zero_method == "discard":
            if self._ioctl(BLKDISCARD, start, length) and self._reads_zero(start, length):
                return
        if not self._ioctl(BLKZEROOUT, start, length):
            self._write_zeros(start, start + length)

    def _reads_zero(self, start: int, length: int) -> bool:
        """Samples of a discarded range read back as zeros (through O_DIRECT)."""
        fd = os.open(self.path, os.O_RDONLY | (os.O_DIRECT if self.direct else 0))
        buf = aligned_buffer(ALIGN)
        try:
            spots = list(range(start, start + length, DISCARD_SAMPLE_EVERY))
            spots.append(start + length - ALIGN)
            zero = bytes(ALIGN)
            for at in spots:
                if os.preadv(fd, [buf], at) != ALIGN or buf[:] != zero:
                    LOG.info("Discard on %s does not read back as zeros; writing zeros", self.path)
                    self.zero_method = "zeroout"
                    return False
            return True
        finally:
            buf.close()
            os.close(fd)

    # -- end -------------------------------------------------------------------

    def finish(self) -> None:
        self._flush()
        for fd in (self.bfd, self.fd):
            try:
                os.fsync(fd)
            except OSError as exc:
                raise self._error(exc, self.limit) from None

    def close(self) -> None:
        for fd in (self.fd, self.bfd):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self._stage.close()
        except BufferError:
            pass
