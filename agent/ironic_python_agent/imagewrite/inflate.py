# SPDX-License-Identifier: Apache-2.0
"""Compressed clusters inflated on a few worker threads.

zlib's ``decompress`` and libzstd (called through ctypes) release the GIL, so
clusters inflate on every core while the download and the hasher run. The
caller's thread batches clusters that are contiguous on the guest disk (up to
:data:`BATCH_BYTES` of output), a worker inflates a batch into one
page-aligned buffer, and the caller's thread writes the batches in the order
they were submitted (one ``O_DIRECT`` write per batch). A fixed set of
buffers bounds the memory: when all are in flight, the caller waits for the
oldest.
"""

from __future__ import annotations

import collections
import concurrent.futures
import mmap
import os
from collections.abc import Callable
from typing import Any

from ironic_python_agent.imagewrite.buffers import MIB, aligned_buffer

BATCH_BYTES = MIB
MAX_WORKERS = 4

# (host offset, compressed bytes) -> (one cluster, bytes of the input its data used)
Inflate = Callable[[int, Any], "tuple[bytes, int]"]


def default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


class InflatePool:
    """Inflate clusters with *inflate* on worker threads; *write(guest, data)*
    gets the results, in submission order, on the caller's thread, and
    *slack(host_offset, data)* the input bytes after each cluster's real end
    (where there are any)."""

    def __init__(self, inflate: Inflate, cluster_size: int,
                 write: Callable[[int, Any], None], slack: Callable[[int, bytes], None],
                 workers: int | None = None) -> None:
        self._inflate = inflate
        self._cs = cluster_size
        self._write = write
        self._slack = slack
        self.workers = workers or default_workers()
        self._per_batch = max(1, BATCH_BYTES // cluster_size)
        self._count = 2 * self.workers + 2  # buffers, made as needed (none for raw clusters)
        self._buffers: list[mmap.mmap] = []
        self._free: list[mmap.mmap] = []
        self._pending: collections.deque[tuple[concurrent.futures.Future[Any], int,
                                               mmap.mmap]] = collections.deque()
        self._batch: list[tuple[int, Any]] = []
        self._batch_guest = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def add(self, start: int, data: Any, guest: int) -> None:
        """Queue the compressed cluster at host offset *start* for guest offset *guest*."""
        if self._batch and guest != self._batch_guest + len(self._batch) * self._cs:
            self._submit()
        if not self._batch:
            self._batch_guest = guest
        self._batch.append((start, data))
        if len(self._batch) == self._per_batch:
            self._submit()

    def _submit(self) -> None:
        batch, guest = self._batch, self._batch_guest
        self._batch = []
        if not batch:
            return
        self._reap(block=False)
        if not self._free and len(self._buffers) < self._count:
            self._buffers.append(aligned_buffer(self._per_batch * self._cs))
            self._free.append(self._buffers[-1])
        while not self._free:
            self._reap(block=True, one=True)
        buf = self._free.pop()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.workers, thread_name_prefix="image-inflate")
        self._pending.append((self._executor.submit(self._run, batch, buf), guest, buf))

    def _run(self, batch: list[tuple[int, Any]], buf: mmap.mmap
             ) -> tuple[int, list[tuple[int, bytes]]]:
        cs = self._cs
        slack = []
        for i, (start, data) in enumerate(batch):
            buf[i * cs:(i + 1) * cs], used = self._inflate(start, data)
            if used < len(data):
                slack.append((start + used, bytes(data[used:])))
        return len(batch) * cs, slack

    def _reap(self, block: bool, one: bool = False) -> None:
        """Write finished batches from the front of the queue (waiting for them if *block*)."""
        while self._pending and (block or self._pending[0][0].done()):
            fut, guest, buf = self._pending.popleft()
            try:
                n, slack = fut.result()
                for at, data in slack:
                    self._slack(at, data)
                view = memoryview(buf)[:n]
                try:
                    self._write(guest, view)
                finally:
                    view.release()
            finally:
                self._free.append(buf)
            if one:
                return

    def drain(self) -> None:
        """Inflate and write everything queued."""
        self._submit()
        self._reap(block=True)

    def close(self) -> None:
        """Stop the workers (queued batches are dropped) and unmap the buffers."""
        self._batch = []
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._pending.clear()
        for buf in self._buffers:
            try:
                buf.close()
            except BufferError:
                pass  # still viewed from a traceback; the GC unmaps it later
