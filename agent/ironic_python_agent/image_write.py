# SPDX-License-Identifier: Apache-2.0
"""Write an image stream onto a block device while hashing it.

Three threads share a small pool of page-aligned buffers: the caller's thread
fills them from the download, a hasher thread hashes them, and a writer thread
decompresses (when the stream is gzip, xz, bzip2 or zstd) and writes. sha256
runs at a few hundred MiB/s on one core and releases the GIL, so on two cores
hashing and writing overlap and the hash is the only limit. Raw data goes to
the device with ``O_DIRECT`` in whole buffers and one ``fsync`` at the end;
memory stays at the pool size whatever the image size.

Formats qemu-img must read (qcow2, vmdk, ...) need random access, so they go
to a cache file first (after checking it fits in RAM when the cache is
tmpfs), are verified, then converted with ``qemu-img convert``.

Before anything reaches the device the first MiB of the (decompressed) image
is inspected (:mod:`image_format`). When the checksum does not match, or the
write fails half-way, the first MiB of the device is zeroed so a half-written
image never boots.
"""

from __future__ import annotations

import bz2
import ctypes
import errno
import json
import logging
import lzma
import mmap
import os
import queue
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ironic_python_agent import errors, image_format, paths, run, zstd
from ironic_python_agent.checksum import Checksum
from ironic_python_agent.image_format import Compression, ImageFormat

LOG = logging.getLogger(__name__)

ALIGN = 4096
# Six 2 MiB buffers keep reader, hasher and writer busy at once; bigger or
# more buffers did not go faster and cost RSS (the agent's budget is 64 MB).
BUFFER_SIZE = 2 << 20
BUFFER_COUNT = 6
WIPE_BYTES = 1 << 20
MIB = 1 << 20
# RAM left free after a tmpfs cache copy: qemu-img and the agent need some.
CACHE_RAM_RESERVE = 256 * MIB


class Source(Protocol):
    """What the writer reads: :class:`download.ImageStream` or any file-like."""

    size: int | None

    def readinto(self, buf: Any) -> int: ...


@dataclass(frozen=True)
class WriteResult:
    device: str
    image_format: str
    compression: str
    bytes_downloaded: int
    bytes_written: int
    seconds: float
    checksum_algorithm: str
    checksum: str
    resumes: int = 0

    @property
    def mib_per_s(self) -> float:
        """Image bytes on the disk per second (compressed downloads are smaller)."""
        return self.bytes_written / MIB / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mib_per_s": round(self.mib_per_s, 1),
                "seconds": round(self.seconds, 3)}

    def summary(self) -> str:
        return (f"bytes={self.bytes_downloaded} written={self.bytes_written} "
                f"seconds={self.seconds:.2f} MiB/s={self.mib_per_s:.1f}")


class _Aborted(Exception):
    """Another pipeline thread failed; this one stops quietly."""


class _Channel:
    """A queue whose ``get`` gives up when the pipeline is aborted."""

    def __init__(self, abort: threading.Event) -> None:
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._abort = abort

    def put(self, item: Any) -> None:
        self._q.put(item)

    def get(self) -> Any:
        while True:
            try:
                return self._q.get(timeout=0.2)
            except queue.Empty:
                if self._abort.is_set():
                    raise _Aborted() from None


def _aligned_buffer(size: int) -> mmap.mmap:
    # Anonymous mappings are page-aligned, which O_DIRECT needs.
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _is_aligned(view: memoryview) -> bool:
    if view.readonly:
        return False
    try:
        addr = ctypes.addressof(ctypes.c_char.from_buffer(view))
    except (TypeError, ValueError):
        return False
    return addr % ALIGN == 0


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
            self._stage_buf = _aligned_buffer(BUFFER_SIZE)
        return self._stage_buf

    def write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        if not self._staged and len(view) >= ALIGN and _is_aligned(view):
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
            zeros = _aligned_buffer(min(length, BUFFER_SIZE))
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


@dataclass(frozen=True)
class FormatPolicy:
    disk_format: str | None = None
    permitted: str | Iterable[str] | None = None
    deep: bool = True


class Target:
    """Where the decompressed image goes, decided from its first MiB."""

    def __init__(self, device: str, policy: FormatPolicy, cache_dir: str, name: str,
                 size_hint: int | None) -> None:
        self.device = device
        self.policy = policy
        self.cache_dir = cache_dir
        self.name = name
        self.size_hint = size_hint
        self.format: ImageFormat | None = None
        self.writer: DeviceWriter | CacheWriter | None = None
        self.head: bytes = b""
        self._head = bytearray()
        self.device_writer: DeviceWriter | None = None
        self.cache_path: str | None = None

    def write(self, data: Any) -> None:
        if self.writer is not None:
            self.writer.write(data)
            return
        view = memoryview(data).cast("B")
        take = min(len(view), image_format.HEADER_BYTES - len(self._head))
        self._head += view[:take]
        if len(self._head) >= image_format.HEADER_BYTES:
            self._decide()
            if take < len(view):
                assert self.writer is not None
                self.writer.write(view[take:])

    def _decide(self) -> None:
        head = bytes(self._head)
        self._head = bytearray()
        self.head = head
        fmt = image_format.validate_format(head, self.policy.disk_format,
                                           self.policy.permitted, self.policy.deep)
        self.format = fmt
        LOG.info("Image %s is %s", self.name, fmt.value)
        if fmt in image_format.RAW_FAMILY:
            writer = DeviceWriter(self.device)
            if self.size_hint is not None and self.size_hint > writer.size:
                writer.close()
                raise errors.ImageWriteError(
                    self.device, "", "", f"the image is {self.size_hint} bytes but the "
                    f"device holds only {writer.size}")
            # A stale backup GPT at the end of the disk would outlive the new image.
            tail = min(WIPE_BYTES, writer.size)
            writer.zero_range(writer.size - tail, tail)
            self.writer = self.device_writer = writer
        else:
            if fmt == ImageFormat.QCOW2:
                virtual = image_format.qcow2_virtual_size(head)
                have = device_size(self.device)
                if virtual > have:
                    raise errors.ImageWriteError(
                        self.device, "", "", f"the image's virtual size is {virtual} bytes "
                        f"but the device holds only {have}")
            cache = CacheWriter(self.cache_dir, self.name, self.size_hint)
            self.writer, self.cache_path = cache, cache.path
        self.writer.write(head)

    def finish(self) -> None:
        if self.writer is None:
            self._decide()
        assert self.writer is not None
        self.writer.finish()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# --- decompression ------------------------------------------------------------


class _InProcessDecoder:
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


class _ZstdDecoder:
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


class _ProcessDecoder:
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
        buf = _aligned_buffer(BUFFER_SIZE)
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


# --- the pipeline -------------------------------------------------------------


class Progress:
    """Logs bytes, MiB/s and percent every *interval* seconds."""

    def __init__(self, name: str, total: int | None, interval: float) -> None:
        self.name = name
        self.total = total
        self.interval = interval
        self.start = time.monotonic()
        self._next = self.start + interval

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        rate = done / MIB / max(now - self.start, 1e-6)
        pct = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        LOG.info("Image %s: %d MiB%s at %.1f MiB/s", self.name, done // MIB, pct, rate)


def write_stream(source: Source, device: str, checksum: Checksum, *, name: str,
                 location: str = "", policy: FormatPolicy = FormatPolicy(),
                 cache_dir: str = "/tmp", progress_interval: float = 5.0) -> WriteResult:
    """Download *source* onto *device*, verifying *checksum* over the downloaded bytes.

    Returns only once the data is on the device, synced and verified. Raises
    agent errors (``ImageDownloadError``, ``ImageChecksumError``,
    ``ImageWriteError``, ``InvalidImage``); when the device was written to
    before the failure, its first MiB is zeroed.
    """
    started = time.monotonic()
    opener = getattr(source, "open", None)
    if opener is not None:
        opener()  # learn the size before deciding anything; failures touch nothing
    abort = threading.Event()
    free, to_hash, to_write = _Channel(abort), _Channel(abort), _Channel(abort)
    buffers = [_aligned_buffer(BUFFER_SIZE) for _ in range(BUFFER_COUNT)]
    for buf in buffers:
        free.put(buf)
    hasher = checksum.new_hasher()
    failures: list[BaseException] = []
    target = Target(device, policy, cache_dir, name,
                    size_hint=getattr(source, "size", None))
    decoder: _InProcessDecoder | _ZstdDecoder | _ProcessDecoder | None = None
    state: dict[str, Any] = {"compression": None}

    def hash_loop() -> None:
        try:
            while True:
                item = to_hash.get()
                if item is None:
                    to_write.put(None)
                    return
                buf, n = item
                with memoryview(buf) as view:
                    hasher.update(view[:n])
                to_write.put(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            if not isinstance(exc, _Aborted):
                failures.append(exc)
            abort.set()

    def write_loop() -> None:
        nonlocal decoder
        try:
            while True:
                item = to_write.get()
                if item is None:
                    if decoder is not None:
                        decoder.finish(target.write)
                    target.finish()
                    return
                buf, n = item
                with memoryview(buf) as view:
                    chunk = view[:n]
                    if state["compression"] is None:
                        kind = image_format.detect_compression(bytes(chunk[:16]))
                        state["compression"] = kind
                        if kind == Compression.ZSTD and zstd.available():
                            decoder = _ZstdDecoder()
                        elif kind == Compression.ZSTD:
                            decoder = _ProcessDecoder(["zstd", "-d", "-c", "-q"],
                                                      target.write, abort)
                        elif kind != Compression.NONE:
                            decoder = _InProcessDecoder(kind)
                    if decoder is None:
                        target.write(chunk)
                    else:
                        decoder.feed(chunk, target.write)
                    del chunk
                free.put(buf)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            if not isinstance(exc, _Aborted):
                failures.append(exc)
            abort.set()

    threads = [threading.Thread(target=hash_loop, name="image-hash", daemon=True),
               threading.Thread(target=write_loop, name="image-write", daemon=True)]
    for t in threads:
        t.start()
    downloaded = 0
    converting = False
    progress = Progress(name, getattr(source, "size", None), progress_interval)
    try:
        try:
            while not abort.is_set():
                buf = free.get()
                n = source.readinto(buf)
                if n == 0:
                    free.put(buf)
                    break
                downloaded += n
                to_hash.put((buf, n))
                progress.update(downloaded)
        except _Aborted:
            pass
        except BaseException as exc:  # noqa: BLE001 - re-raised below, first
            failures.insert(0, exc)
            abort.set()
        to_hash.put(None)
        for t in threads:
            t.join()
        if decoder is not None and isinstance(decoder, _ProcessDecoder):
            decoder.close()
        if failures:
            raise failures[0]
        actual = hasher.hexdigest()
        if actual != checksum.value.lower():
            raise errors.ImageChecksumError(name, location, checksum.value, actual)
        if isinstance(target.writer, CacheWriter):
            assert target.format is not None
            target.writer.close()
            cache, target.writer = target.writer, None
            converting = True
            written = convert_image(cache.path, device, target.format)
        else:
            written = target.writer.offset if target.writer is not None else 0
        seconds = time.monotonic() - started
        result = WriteResult(
            device=device, image_format=(target.format or ImageFormat.RAW).value,
            compression=(state["compression"] or Compression.NONE).value,
            bytes_downloaded=downloaded, bytes_written=written, seconds=seconds,
            checksum_algorithm=checksum.algorithm, checksum=actual,
            resumes=getattr(source, "resumes", 0))
        LOG.info("Image %s written to %s: %s", name, device, result.summary())
        return result
    except BaseException:
        abort.set()
        if converting or (target.device_writer is not None and target.device_writer.touched):
            wipe_start(device)
        raise
    finally:
        for t in threads:
            t.join(timeout=5)
        if isinstance(decoder, (_ProcessDecoder, _ZstdDecoder)):
            decoder.close()
        target.close()
        if target.cache_path:
            _remove(target.cache_path)
        for buf in buffers:
            try:
                buf.close()
            except BufferError:
                pass  # still viewed from a traceback; the GC unmaps it later


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def convert_image(path: str, device: str, fmt: ImageFormat) -> int:
    """``qemu-img convert`` a verified cache file onto *device*; bytes written.

    ``qemu-img info`` looks at the file first: a backing or data file found
    there is refused even when the header check was switched off.
    """
    driver = image_format.QEMU_DRIVER.get(fmt, fmt.value)
    env = {"MALLOC_ARENA_MAX": "3"}
    try:
        info = json.loads(run.run(["qemu-img", "info", "--output=json", "-f", driver, path],
                                  env=env).stdout)
    except (run.CommandError, ValueError) as exc:
        raise errors.InvalidImage(f"qemu-img cannot read the image as {driver}: {exc}") from None
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise errors.InvalidImage("the image has a backing file; refusing to use it")
    if (info.get("format-specific") or {}).get("data", {}).get("data-file"):
        raise errors.InvalidImage("the image uses an external data file; refusing to use it")
    argv = ["qemu-img", "convert", "-f", driver, "-O", "host_device",
            "-t", "none", "-S", "0", "-W", path, device]  # fmt: skip
    try:
        run.run(argv, env=env)
    except run.CommandError as exc:
        raise errors.ImageWriteError(device, exc.returncode if exc.returncode is not None
                                     else "", exc.stdout, exc.stderr) from None
    return int(info.get("virtual-size", 0))
