# SPDX-License-Identifier: Apache-2.0
"""Where image bytes land: the device (:class:`DeviceWriter`) or a cache file
(:class:`CacheWriter`, for formats qemu-img must seek in), and the wipe that
keeps a half-written image from booting."""

from __future__ import annotations

import errno
import logging
import mmap
import os
from typing import Any

from ironic_python_agent import errors, paths
from ironic_python_agent.imagewrite.buffers import (
    ALIGN,
    BUFFER_SIZE,
    MIB,
    aligned_buffer,
    is_aligned,
)

LOG = logging.getLogger(__name__)

WIPE_BYTES = 1 << 20
# RAM left free after a tmpfs cache copy: qemu-img and the agent need some.
CACHE_RAM_RESERVE = 256 * MIB


def device_size(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def wipe_start(device: str, length: int = WIPE_BYTES) -> None:
    """Zero the first *length* bytes of *device* and sync (best effort)."""
    try:
        fd = os.open(device, os.O_WRONLY)
        try:
            os.pwrite(fd, bytes(min(length, os.lseek(fd, 0, os.SEEK_END))), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        LOG.warning("Zeroed the first %d bytes of %s", length, device)
    except OSError as exc:
        LOG.error("Could not wipe the start of %s: %s", device, exc)


def wipe_tail(device: str, image_size: int, length: int = WIPE_BYTES) -> None:
    """Zero the device's last *length* bytes past *image_size*: a stale backup
    GPT there would outlive the new image."""
    fd = os.open(device, os.O_WRONLY)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        start = max(image_size, size - length)
        if start < size:
            os.pwrite(fd, bytes(size - start), start)
            os.fsync(fd)
    finally:
        os.close(fd)


class DeviceWriter:
    """Sequential writes to a block device (or file) from offset 0.

    Whole aligned buffers go out with ``O_DIRECT``; anything else is staged in
    an aligned buffer first. The unaligned tail is written after switching
    ``O_DIRECT`` off, then the device gets one ``fsync``.
    """

    def __init__(self, path: str, direct: bool = True) -> None:
        self.path = path
        self.offset = 0
        self.touched = False
        self._stage_buf: mmap.mmap | None = None  # only unaligned input needs it
        self._staged = 0
        try:
            self.fd = os.open(path, os.O_WRONLY | (os.O_DIRECT if direct else 0))
            self.direct = direct
        except OSError as exc:
            if not direct or exc.errno != errno.EINVAL:
                raise self._error(exc) from None
            self.fd = os.open(path, os.O_WRONLY)  # tmpfs and friends refuse O_DIRECT
            self.direct = False
        self.size = os.lseek(self.fd, 0, os.SEEK_END)

    def _error(self, exc: OSError) -> errors.ImageWriteError:
        return errors.ImageWriteError(self.path, exc.errno or "", "",
                                      f"{exc.strerror or exc} at byte {self.offset}")

    def _pwrite(self, view: memoryview) -> None:
        self.touched = True
        while len(view):
            try:
                done = os.pwrite(self.fd, view, self.offset)
            except OSError as exc:
                raise self._error(exc) from None
            if done == 0:
                raise self._error(OSError(errno.ENOSPC, "no space left on device"))
            self.offset += done
            view = view[done:]

    @property
    def _stage(self) -> mmap.mmap:
        if self._stage_buf is None:
            self._stage_buf = aligned_buffer(BUFFER_SIZE)
        return self._stage_buf

    def write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        if not self._staged and len(view) >= ALIGN and is_aligned(view):
            whole = len(view) - len(view) % ALIGN
            self._pwrite(view[:whole])
            view = view[whole:]
        while len(view):
            room = BUFFER_SIZE - self._staged
            take = min(room, len(view))
            self._stage[self._staged:self._staged + take] = view[:take]
            self._staged += take
            view = view[take:]
            if self._staged == BUFFER_SIZE:
                self._pwrite(memoryview(self._stage))
                self._staged = 0

    def zero_range(self, start: int, length: int) -> None:
        """Zero bytes [start, start+length) without moving the write offset."""
        keep = self.offset
        try:
            self.offset = start
            zeros = aligned_buffer(min(length, BUFFER_SIZE))
            while self.offset < start + length:
                n = min(len(zeros), start + length - self.offset)
                self._pwrite(memoryview(zeros)[:n])
            zeros.close()
        finally:
            self.offset = keep

    def finish(self) -> None:
        if self._staged:
            whole = self._staged - self._staged % ALIGN
            if whole:
                self._pwrite(memoryview(self._stage)[:whole])
            rest = self._staged - whole
            if rest:
                if self.direct:
                    import fcntl

                    flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
                    fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)
                self._pwrite(memoryview(self._stage)[whole:self._staged])
            self._staged = 0
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        os.close(self.fd)
        if self._stage_buf is not None:
            self._stage_buf.close()


def _meminfo_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _fs_type(path: str) -> str:
    """The file system type of the mount holding *path* (from /proc/mounts)."""
    path = os.path.realpath(path)
    best, fstype = "", ""
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            mnt = fields[1].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, fields[2]
    return fstype


def cache_problem(need: int, free_space: int, mem_available: int, in_ram: bool,
                  reserve: int = CACHE_RAM_RESERVE) -> str | None:
    """Why a cache copy of *need* bytes would not fit, or None if it does."""
    if need > free_space:
        return (f"the image needs {need // MIB} MiB of cache space but only "
                f"{free_space // MIB} MiB are free")
    if in_ram and need + reserve > mem_available:
        return (f"caching the image in RAM needs {need // MIB} MiB plus "
                f"{reserve // MIB} MiB to spare, but only {mem_available // MIB} MiB "
                "are available")
    return None


class CacheWriter:
    """The image as a file in *cache_dir*, for formats qemu-img must seek in."""

    def __init__(self, cache_dir: str, name: str, size_hint: int | None) -> None:
        self.path = paths.child(cache_dir, name, ".cache")  # name is image_info.id
        self.offset = 0
        self.touched = False
        self.size_hint = size_hint
        self.in_ram = _fs_type(cache_dir) in ("tmpfs", "ramfs", "rootfs")
        if size_hint:
            self._check(size_hint)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def _check(self, need: int) -> None:
        st = os.statvfs(os.path.dirname(self.path))
        problem = cache_problem(need, st.f_bavail * st.f_frsize,
                                _meminfo_available() if self.in_ram else 1 << 62, self.in_ram,
                                reserve=CACHE_RAM_RESERVE)
        if problem:
            raise errors.ImageDownloadOutofSpaceError(os.path.basename(self.path), problem)

    def write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            try:
                done = os.write(self.fd, view)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise errors.ImageDownloadOutofSpaceError(
                        os.path.basename(self.path),
                        f"no space left in the cache after {self.offset // MIB} MiB") from None
                raise
            self.offset += done
            view = view[done:]

    def finish(self) -> None:
        pass

    def close(self) -> None:
        os.close(self.fd)

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
