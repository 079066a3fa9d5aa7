# SPDX-License-Identifier: Apache-2.0
"""The three-thread pipeline: download into buffers, hash, decompress and write."""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ironic_python_agent import errors, image_format
from ironic_python_agent.checksum import Checksum
from ironic_python_agent.image_format import Compression, ImageFormat
from ironic_python_agent.imagewrite.buffers import (
    BUFFER_COUNT,
    BUFFER_SIZE,
    MIB,
    aligned_buffer,
)
from ironic_python_agent.imagewrite.convert import convert_image
from ironic_python_agent.imagewrite.decoders import ProcessDecoder, ZstdDecoder, new_decoder
from ironic_python_agent.imagewrite.qcow2 import StreamFallback
from ironic_python_agent.imagewrite.target import FormatPolicy, Target
from ironic_python_agent.imagewrite.writers import CacheWriter, wipe_start, wipe_tail

LOG = logging.getLogger(__name__)


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
    method: str = "stream"  # "stream" (onto the device as it arrives) or "cache" (qemu-img)

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
    """Download *source* onto *device* (a disk or a partition), verifying
    *checksum* over the downloaded bytes.

    Returns only once the data is on the device, synced and verified. Raises
    agent errors (``ImageDownloadError``, ``ImageChecksumError``,
    ``ImageWriteError``, ``InvalidImage``); when the device was written to
    before the failure, its first MiB is zeroed.

    A qcow2 whose tables come after its data, from a server that does not
    answer Range requests, cannot be streamed: the stream is then started
    again (``source.rewind()``) onto the cache path, and the log says why.
    """
    started = time.monotonic()
    try:
        return _write_once(source, device, checksum, name, location, policy, cache_dir,
                           progress_interval, started)
    except StreamFallback as exc:
        rewind = getattr(source, "rewind", None)
        if rewind is None or not policy.streaming:
            raise errors.ImageWriteError(device, "", "", f"cannot stream the image: {exc}"
                                         ) from None
        LOG.warning("Image %s cannot be streamed onto %s (%s); downloading it again into "
                    "the cache at %s", name, device, exc, cache_dir)
        rewind()
        return _write_once(source, device, checksum, name, location,
                           dataclasses.replace(policy, streaming=False), cache_dir,
                           progress_interval, started)


def _write_once(source: Source, device: str, checksum: Checksum, name: str, location: str,
                policy: FormatPolicy, cache_dir: str, progress_interval: float,
                started: float) -> WriteResult:
    opener = getattr(source, "open", None)
    if opener is not None:
        opener()  # learn the size before deciding anything; failures touch nothing
    abort = threading.Event()
    free, to_hash, to_write = _Channel(abort), _Channel(abort), _Channel(abort)
    buffers = [aligned_buffer(BUFFER_SIZE) for _ in range(BUFFER_COUNT)]
    for buf in buffers:
        free.put(buf)
    hasher = checksum.new_hasher()
    failures: list[BaseException] = []
    target = Target(device, policy, cache_dir, name,
                    size_hint=getattr(source, "size", None),
                    fetch=getattr(source, "read_range", None))
    decoder: Any = None
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
                        if kind != Compression.NONE:
                            target.fetch = None  # Range offsets are the compressed file's
                        decoder = new_decoder(kind, target.write, abort)
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
        if decoder is not None and isinstance(decoder, ProcessDecoder):
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
            wipe_tail(device, written)
        else:
            written = target.writer.offset if target.writer is not None else 0
        seconds = time.monotonic() - started
        result = WriteResult(
            device=device, image_format=(target.format or ImageFormat.RAW).value,
            compression=(state["compression"] or Compression.NONE).value,
            bytes_downloaded=downloaded, bytes_written=written, seconds=seconds,
            checksum_algorithm=checksum.algorithm, checksum=actual,
            resumes=getattr(source, "resumes", 0),
            method="cache" if converting else "stream")
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
        if isinstance(decoder, (ProcessDecoder, ZstdDecoder)):
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
