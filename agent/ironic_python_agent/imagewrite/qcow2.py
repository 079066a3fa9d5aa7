# SPDX-License-Identifier: Apache-2.0
"""qcow2 read as a stream: each data cluster goes to its guest offset as it arrives.

The image file is read once, front to back (:meth:`Qcow2Reader.feed`). Every
structure the reader knows of is an *item* at a host offset in a heap: the L1
table (from the header), L2 tables (from L1), refcount table and blocks, data
extents (runs of clusters from L2, contiguous on host and guest), compressed
clusters. When the stream reaches an item it is parsed, skipped, written or
decompressed and written. Ranges the tables mark as unallocated or zero go to
the device's zeroing (:mod:`.guest`) as soon as their table is parsed.

``qemu-img`` puts each L2 table before the data it maps, so a plain stream
is enough. Bytes that no known item explains are *held* (up to
:data:`HOLD_LIMIT`) while some L2 table is still unread, because they may be
data of that table. When the held bytes outgrow the limit, the remaining L1/L2
tables are fetched with HTTP Range requests (``fetch``), and the stream later
checks those bytes against what the Range answers said (the stream is what the
checksum covers). Without Range, :class:`StreamFallback` tells the pipeline to
use the cache path instead.

Supported: versions 2 and 3, cluster sizes 512 B to 2 MiB, zlib and zstd
compressed clusters, zero clusters, extended L2 entries (subclusters),
preallocated metadata. Refused (:class:`errors.InvalidImage`): backing files,
external data files, encryption, unknown incompatible features.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import logging
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ironic_python_agent import errors, zstd
from ironic_python_agent.imagewrite.buffers import MIB
from ironic_python_agent.imagewrite.inflate import InflatePool

LOG = logging.getLogger(__name__)

HOLD_LIMIT = 16 * MIB
MAX_L1_BYTES = 16 * MIB
RANGE_SPAN = 8 * MIB  # Range requests for adjacent tables are merged up to this size
_OFFSET_MASK = 0x00FFFFFFFFFFFE00
_COPIED = 1 << 63
_COMPRESSED = 1 << 62
_INCOMPAT_CORRUPT = 1 << 1
_INCOMPAT_DATA_FILE = 1 << 2
_INCOMPAT_COMPRESSION = 1 << 3
_INCOMPAT_EXTENDED_L2 = 1 << 4
_INCOMPAT_KNOWN = (1 << 5) - 1
_EXT_END = 0
_EXT_DATA_FILE = 0x44415441
_EXT_CRYPTO = 0x0537BE77

# item kinds
_SKIP, _L1, _L2, _REFTABLE, _RAW, _ZCLUSTER = range(6)
_BUFFERED = {_L1, _L2, _REFTABLE, _ZCLUSTER}


class StreamFallback(Exception):
    """The image cannot be streamed from this server; the message says why."""


class Sink(Protocol):
    def write(self, offset: int, data: Any) -> None: ...

    def zero(self, offset: int, length: int) -> None: ...


Fetch = Callable[[int, int], "bytes | None"]


@dataclass(frozen=True)
class Qcow2Header:
    version: int
    cluster_bits: int
    size: int
    l1_size: int
    l1_offset: int
    refcount_table_offset: int
    refcount_table_clusters: int
    compression: str  # "zlib" or "zstd"
    extended_l2: bool

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @property
    def l2_entries(self) -> int:
        return self.cluster_size // (16 if self.extended_l2 else 8)

    @property
    def l2_span(self) -> int:
        """Guest bytes one L2 table maps."""
        return self.l2_entries * self.cluster_size


def parse_header(head: bytes) -> Qcow2Header:
    """The header of a qcow2 image that can be read without other files or keys."""
    bad = errors.InvalidImage
    if len(head) < 72 or head[:4] != b"QFI\xfb":
        raise bad("qcow2 header is truncated or has no magic")
    (version, backing_offset, backing_size, cluster_bits, size, crypt, l1_size, l1_offset,
     rt_offset, rt_clusters, _snapshots, _snap_offset) = struct.unpack_from(
        ">IQIIQIIQQIIQ", head, 4)
    if version not in (2, 3):
        raise bad(f"qcow2 version {version} is not supported")
    if backing_offset or backing_size:
        raise bad("qcow2 image has a backing file; refusing to use it")
    if crypt:
        raise bad("qcow2 image is encrypted; refusing to use it")
    if not 9 <= cluster_bits <= 21:
        raise bad(f"qcow2 cluster size 2^{cluster_bits} is out of range (512 B to 2 MiB)")
    incompat, header_length, compression = 0, 72, "zlib"
    if version == 3:
        if len(head) < 104:
            raise bad("qcow2 v3 header is truncated")
        incompat, = struct.unpack_from(">Q", head, 72)
        header_length, = struct.unpack_from(">I", head, 100)
        if incompat & _INCOMPAT_DATA_FILE:
            raise bad("qcow2 image uses an external data file; refusing to use it")
        if incompat & _INCOMPAT_CORRUPT:
            raise bad("qcow2 image is marked corrupt")
        if incompat & ~_INCOMPAT_KNOWN:
            raise bad(f"qcow2 image has unknown incompatible features {incompat:#x}")
        if incompat & _INCOMPAT_COMPRESSION and header_length > 104:
            kind = head[104]
            if kind not in (0, 1):
                raise bad(f"qcow2 compression type {kind} is not supported")
            compression = "zstd" if kind == 1 else "zlib"
    pos = header_length
    while pos + 8 <= min(len(head), 1 << cluster_bits):
        ext_type, ext_len = struct.unpack_from(">II", head, pos)
        if ext_type == _EXT_END:
            break
        if ext_type == _EXT_DATA_FILE:
            raise bad("qcow2 image names a data file; refusing to use it")
        if ext_type == _EXT_CRYPTO:
            raise bad("qcow2 image is encrypted; refusing to use it")
        pos += 8 + ((ext_len + 7) & ~7)
    header = Qcow2Header(version, cluster_bits, size, l1_size, l1_offset, rt_offset,
                         rt_clusters, compression, bool(incompat & _INCOMPAT_EXTENDED_L2))
    if header.extended_l2 and cluster_bits < 14:
        raise bad("qcow2 extended L2 entries need clusters of at least 16 KiB")
    if l1_size * header.l2_span < size:
        raise bad(f"qcow2 L1 table ({l1_size} entries) does not cover the virtual size")
    return header


class Qcow2Reader:
    """Feeds a qcow2 file's bytes in order; writes the guest disk to *sink*.

    ``write(data)`` / ``finish()`` is the interface the pipeline's target uses.
    *fetch(offset, length)* returns bytes of the image by Range, or None when
    the server does not answer Range (None: no Range at all).
    """

    def __init__(self, header: Qcow2Header, sink: Sink, fetch: Fetch | None = None,
                 hold_limit: int | None = None, inflate_workers: int | None = None) -> None:
        if header.l1_size * 8 > MAX_L1_BYTES:
            raise StreamFallback(f"its L1 table is {header.l1_size * 8 // MIB} MiB")
        self.h = header
        self.sink = sink
        self.fetch = fetch
        self.hold_limit = HOLD_LIMIT if hold_limit is None else hold_limit
        self.pos = 0
        self._items: list[tuple[int, int, int, int, Any]] = []
        self._seq = itertools.count()
        self._open: list[Any] | None = None  # [kind, start, length, info, buf]
        self._held_starts: list[int] = []
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._l1_done = False
        self._l2_unread: dict[int, int] = {}  # host offset -> guest offset of unread L2s
        self._fetched: dict[int, bytes] = {}  # host offset -> sha256 of a Range answer
        self._parsed: set[int] = set()  # L1/L2 tables already parsed
        self._zero_run: list[int] | None = None
        self._local = threading.local()  # each inflate worker's zstd decompressor
        self._decompressors: list[zstd.Decompressor] = []
        self._lock = threading.Lock()
        # Once every table is parsed, compressed clusters inflate on worker threads
        # (inflate_workers=0: on this thread, as before the tables are all known).
        self._pool = (InflatePool(self._inflate, header.cluster_size, sink.write,
                                  self._slack, inflate_workers)
                      if inflate_workers != 0 else None)
        self.range_requests = 0
        cs = header.cluster_size
        self._push(0, cs, _SKIP, 0)  # the header cluster
        self._push(header.l1_offset, header.l1_size * 8, _L1, 0)
        if header.refcount_table_clusters:
            self._push(header.refcount_table_offset, header.refcount_table_clusters * cs,
                       _REFTABLE, 0)
        self._cbits = 62 - (header.cluster_bits - 8)
        covered = header.l1_size * header.l2_span
        if covered < header.size:
            self._zero(covered, header.size - covered)

    # -- items -----------------------------------------------------------------

    def _push(self, start: int, length: int, kind: int, info: Any) -> None:
        if length > 0:
            heapq.heappush(self._items, (start, next(self._seq), kind, length, info))

    @property
    def metadata_complete(self) -> bool:
        return self._l1_done and not self._l2_unread

    # -- the stream ------------------------------------------------------------

    def write(self, data: Any) -> None:
        self._feed(memoryview(data).cast("B"), self.pos)

    def _feed(self, view: memoryview, base: int) -> None:
        end = base + len(view)
        c = base
        while c < end:
            self.pos = c
            if self._open is not None:
                kind, start, length, info, buf = self._open
                take = min(start + length, end) - c
                piece = view[c - base:c - base + take]
                if kind == _RAW:
                    self.sink.write(info + (c - start), piece)
                elif kind in _BUFFERED:
                    buf += piece
                c += take
                if c == start + length:
                    self._open = None
                    used = self._complete(kind, start, length, info, buf)
                    if used is not None and used < length and not self.metadata_complete:
                        # The bytes after a compressed cluster's end may start a cluster
                        # of an L2 table not read yet: read them again as stream bytes.
                        if start + used < base:
                            self._feed(memoryview(buf)[used:base - start], start + used)
                            c = base
                        else:
                            c = start + used
                continue
            while self._items and self._items[0][0] < c:
                self._missed(heapq.heappop(self._items), c)
                if self._open is not None:
                    break
            if self._open is not None:
                continue
            if self.metadata_complete and self._held:
                self._drop_held()
            nxt = self._items[0][0] if self._items else end
            stop = min(nxt, end)
            if stop > c:
                self._gap(c, view[c - base:stop - base])
                c = stop
                continue
            start, _, kind, length, info = heapq.heappop(self._items)
            if kind == _ZCLUSTER and self._items and self._items[0][0] < start + length:
                # A compressed cluster's sector count is rounded up: it may reach into
                # the next one, which qemu packs at the very next byte.
                length = self._items[0][0] - start
            self._open = [kind, start, length, info,
                          bytearray() if kind in _BUFFERED else None]
        self.pos = end

    def _gap(self, at: int, piece: memoryview) -> None:
        """Bytes no known item explains: data of an unread L2 table, or nothing."""
        if self.metadata_complete:
            return
        self._hold(at, bytes(piece))
        self.pos = at + len(piece)
        if self._held_bytes > self.hold_limit:
            self._prefetch_metadata(f"{self._held_bytes // MIB} MiB of the stream came "
                                    "before the tables that map it")

    def _hold(self, at: int, data: bytes) -> None:
        self._held_starts.append(at)
        self._held.append(data)
        self._held_bytes += len(data)

    def _drop_held(self) -> None:
        self._held_starts, self._held, self._held_bytes = [], [], 0

    def _held_pieces(self, start: int, end: int) -> list[memoryview] | None:
        """Views of the held bytes [start, end), or None if some are not held."""
        i = bisect.bisect_right(self._held_starts, start) - 1
        out: list[memoryview] = []
        pos = start
        while 0 <= i < len(self._held) and pos < end:
            at, chunk = self._held_starts[i], self._held[i]
            if not at <= pos < at + len(chunk):
                return None
            out.append(memoryview(chunk)[pos - at:min(end - at, len(chunk))])
            pos = at + len(chunk)
            i += 1
        return out if pos >= end else None

    def _from_held(self, start: int, end: int) -> bytes | None:
        pieces = self._held_pieces(start, end)
        return None if pieces is None else b"".join(pieces)

    def _missed(self, item: tuple[int, int, int, int, Any], c: int) -> None:
        """An item that starts before the stream position, learnt too late."""
        start, _, kind, length, info = item
        part_end = min(start + length, c)
        if kind == _SKIP or (kind in (_L1, _L2) and start in self._parsed
                             and start not in self._fetched):
            kind, data = _SKIP, b""
        elif kind == _RAW:  # piece by piece: this may be all the held bytes
            pieces = self._held_pieces(start, part_end)
            if pieces is None:
                pieces = [memoryview(self._range(
                    start, part_end - start, "the image's tables point back at bytes "
                    "already passed"))]
            at = info
            for piece in pieces:
                self.sink.write(at, piece)
                at += len(piece)
            if start + length > c:
                self._open = [kind, start, length, info, None]
            return
        else:
            got = self._from_held(start, part_end)
            if got is None:
                got = self._range(start, part_end - start,
                                  "the image's tables point back at bytes already passed")
            data = got
        if start + length <= c:
            self._complete(kind, start, length, info, bytearray(data))
            return
        self._open = [kind, start, length, info,
                      bytearray(data) if kind in _BUFFERED else None]

    # -- Range -----------------------------------------------------------------

    def _range(self, start: int, length: int, why: str) -> bytes:
        got = self.fetch(start, length) if self.fetch is not None else None
        if got is None:
            raise StreamFallback(f"{why} and the server does not answer Range requests")
        self.range_requests += 1
        if len(got) < length:
            raise errors.ImageWriteError("(qcow2)", "", "",
                                         f"image ends at byte {start + len(got)} but its "
                                         f"tables point at byte {start + length}")
        return got

    def _prefetch_metadata(self, why: str) -> None:
        """Fetch the L1 table (if unread) and every unread L2 table by Range."""
        LOG.info("qcow2: %s; fetching the remaining tables with Range requests", why)
        if not self._l1_done:
            data = self._range(self.h.l1_offset, self.h.l1_size * 8, why)
            self._complete(_L1, self.h.l1_offset, len(data), 0, bytearray(data))
            self._remember(self.h.l1_offset, data)
        todo = sorted(self._l2_unread.items())
        cs = self.h.cluster_size
        i = 0
        while i < len(todo):
            j = i + 1
            while (j < len(todo) and todo[j][0] - todo[i][0] + cs <= RANGE_SPAN
                   and todo[j][0] - (todo[j - 1][0] + cs) <= MIB):
                j += 1
            first = todo[i][0]
            data = self._range(first, todo[j - 1][0] + cs - first, why)
            for off, guest in todo[i:j]:
                table = data[off - first:off - first + cs]
                self._complete(_L2, off, cs, guest, bytearray(table))
                self._remember(off, table)
            i = j

    def _remember(self, start: int, data: bytes) -> None:
        """Check a Range answer against the stream: now if already passed, else later."""
        if start < self.pos:
            seen = self._from_held(start, min(start + len(data), self.pos))
            if seen is not None and seen != data[:len(seen)]:
                raise errors.ImageWriteError("(qcow2)", "", "", f"a Range answer at byte "
                                             f"{start} differs from the stream")
            return
        self._fetched[start] = hashlib.sha256(data).digest()

    # -- parsing ---------------------------------------------------------------

    def _complete(self, kind: int, start: int, length: int, info: Any,
                  buf: bytearray) -> int | None:
        """Parse or write a whole item; for a compressed cluster, the bytes it used."""
        if kind in (_L1, _L2):
            if self._pool is not None:
                self._pool.drain()  # the tables may name bytes in clusters' slack
            if start in self._parsed:  # fetched by Range before the stream got here
                digest = self._fetched.pop(start, None)
                if digest is not None and hashlib.sha256(buf).digest() != digest:
                    raise errors.ImageWriteError(
                        "(qcow2)", "", "", f"the table at byte {start} differs between "
                        "the stream and a Range answer")
                return None
            self._parsed.add(start)
        if kind == _L1:
            self._parse_l1(buf)
        elif kind == _L2:
            self._l2_unread.pop(start, None)
            self._parse_l2(buf, info)
        elif kind == _REFTABLE:
            for off in struct.unpack(f">{len(buf) // 8}Q", buf[:len(buf) // 8 * 8]):
                off &= ~0x1FF
                if off:
                    self._push(off, self.h.cluster_size, _SKIP, 0)
        elif kind == _ZCLUSTER:
            if self._pool is not None:
                # The bytes after its real end (which the sync path reads again as
                # stream bytes) are held by _slack once the worker knows where it is.
                self._pool.add(start, buf, info)  # a new bytearray per item: no copy
                return None
            out, used = self._inflate(start, buf)
            self.sink.write(info, out)
            return used
        return None

    def _parse_l1(self, buf: bytearray) -> None:
        self._l1_done = True
        span, cs = self.h.l2_span, self.h.cluster_size
        for i, entry in enumerate(struct.unpack(f">{len(buf) // 8}Q", buf)):
            guest = i * span
            if guest >= self.h.size:
                break
            off = entry & _OFFSET_MASK
            if not off:
                self._zero(guest, span)
            elif off in self._l2_unread or off in self._parsed:
                raise errors.InvalidImage(f"qcow2 L1 table names the L2 table at {off} twice")
            else:
                self._l2_unread[off] = guest
                self._push(off, cs, _L2, guest)

    def _parse_l2(self, buf: bytearray, guest: int) -> None:
        h = self.h
        cs, size, ext = h.cluster_size, h.size, h.extended_l2
        words = struct.unpack(f">{len(buf) // 8}Q", buf)
        step = 2 if ext else 1
        sub = cs // 32
        cmask = (1 << self._cbits) - 1
        smask = (1 << (h.cluster_bits - 8)) - 1
        run_host = run_guest = run_len = 0
        for i in range(h.l2_entries):
            g = guest + i * cs
            if g >= size:
                break
            entry = words[i * step]
            if entry & _COMPRESSED:
                off = entry & cmask
                end = (off & ~511) + (((entry >> self._cbits) & smask) + 1) * 512
                self._push(off, end - off, _ZCLUSTER, g)
                continue
            off = entry & _OFFSET_MASK
            if ext:
                alloc = words[i * 2 + 1] & 0xFFFFFFFF
                if alloc == 0xFFFFFFFF:
                    pieces = [(off, g, cs)]
                elif not alloc:
                    pieces = [(0, g, cs)]
                else:
                    pieces = [((off + j * sub) if alloc >> j & 1 else 0, g + j * sub, sub)
                              for j in range(32)]
            else:
                pieces = [(0 if (entry & 1 or not off) else off, g, cs)]
            for host, at, n in pieces:
                if not host:
                    self._zero(at, n)
                elif run_len and run_host + run_len == host and run_guest + run_len == at:
                    run_len += n
                else:
                    if run_len:
                        self._push(run_host, run_len, _RAW, run_guest)
                    run_host, run_guest, run_len = host, at, n
        if run_len:
            self._push(run_host, run_len, _RAW, run_guest)

    def _zero(self, at: int, n: int) -> None:
        run = self._zero_run
        if run is not None and run[0] + run[1] == at:
            run[1] += n
            return
        if run is not None:
            self.sink.zero(run[0], run[1])
        self._zero_run = [at, n]

    def _inflate(self, start: int, buf: Any) -> tuple[bytes, int]:
        """The cluster, and how many bytes of *buf* its compressed data used.

        Called on the :class:`InflatePool` workers too: zstd decompressors are per thread.
        """
        cs = self.h.cluster_size
        used = len(buf)
        if self.h.compression == "zlib":
            try:
                d = zlib.decompressobj(-15)
                out = d.decompress(buf, cs)
                if not d.eof and d.unconsumed_tail:
                    d.decompress(d.unconsumed_tail, 1)
                if d.eof:
                    used = len(buf) - len(d.unused_data)
            except zlib.error as exc:
                raise errors.InvalidImage(f"qcow2 compressed cluster at byte {start} is "
                                          f"corrupt: {exc}") from None
        else:
            dec = getattr(self._local, "zstd", None)
            if dec is None:
                dec = self._local.zstd = zstd.Decompressor(cs)
                with self._lock:
                    self._decompressors.append(dec)
            pieces: list[bytes] = []
            try:
                dec.feed(buf, pieces.append)
            except zstd.ZstdError as exc:
                # Sector padding after the frame is not a frame: fine once the cluster is out.
                if sum(map(len, pieces)) < cs:
                    raise errors.InvalidImage(f"qcow2 zstd cluster at byte {start} is "
                                              f"corrupt: {exc}") from None
            dec.reset()
            out = b"".join(pieces)[:cs]
            used = min(used, zstd.frame_size(buf) or used)
        if len(out) != cs:
            raise errors.InvalidImage(f"qcow2 compressed cluster at byte {start} decodes "
                                      f"to {len(out)} bytes, not {cs}")
        return out, used

    def _slack(self, at: int, data: bytes) -> None:
        """Bytes after a pooled compressed cluster's end: held like the sync path's re-read."""
        if self.metadata_complete or not data:
            return
        i = bisect.bisect_right(self._held_starts, at)
        self._held_starts.insert(i, at)
        self._held.insert(i, data)
        self._held_bytes += len(data)

    # -- the end ---------------------------------------------------------------

    def finish(self) -> None:
        """The stream ended: what it did not reach reads as zeros, or is an error."""
        while self._open is not None or (self._items and self._items[0][0] < self.pos):
            if self._open is None:
                self._missed(heapq.heappop(self._items), self.pos)
                continue
            self._end_open()
        if self._pool is not None:  # the clusters completed above are queued too
            self._pool.drain()
        self._end_rest()

    def _end_open(self) -> None:
        if self._open is not None:
            kind, start, length, info, buf = self._open
            self._open = None
            if kind == _ZCLUSTER:  # the last cluster's sectors may run past the end
                self.sink.write(info, self._inflate(start, buf)[0])
            elif kind == _RAW:
                done = self.pos - start
                self._zero(info + done, length - done)
            elif kind != _SKIP:
                raise errors.InvalidImage(f"qcow2 image is truncated at byte {self.pos}")

    def _end_rest(self) -> None:
        while self._items:
            start, _, kind, length, info = heapq.heappop(self._items)
            if kind == _RAW:
                self._zero(info, length)  # past the end of the file: reads as zeros
            elif kind in (_L1, _L2, _ZCLUSTER):
                raise errors.InvalidImage(f"qcow2 image is truncated: a table or cluster "
                                          f"at byte {start} is past its end ({self.pos})")
        if self._zero_run is not None:
            self.sink.zero(*self._zero_run)
            self._zero_run = None
        self.close()

    def close(self) -> None:
        """Stop the inflate workers and free the decompressors (also after a failure)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        with self._lock:
            for dec in self._decompressors:
                dec.close()
            self._decompressors = []
