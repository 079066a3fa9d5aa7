# SPDX-License-Identifier: Apache-2.0
"""streamOptimized VMDK read as a stream: each compressed grain carries its
guest sector (a *grain marker*), so grains go to the device as they arrive.

Layout (VMware's Virtual Disk Format 5.0): a 512-byte sparse extent header
(``KDMV``, flags with *compressed grains* and *markers*), the embedded text
descriptor, then from ``overHead`` on a sequence of markers, each at a sector
boundary: a grain marker (``lba`` u64, ``size`` u32, ``size`` bytes of
deflate data, padded to a sector) or a metadata marker (``size`` 0, then
``numSectors`` u64 and ``type`` u32: end of stream, grain table, grain
directory, footer) followed by ``numSectors`` sectors we skip: grains locate
themselves. Sectors no grain covers read as zeros: they are zeroed as the
stream passes them (everything below the highest grain end seen so far has
been zeroed or written, so grains in any order are right).

Other VMDK subformats (monolithicSparse without markers, flat extents) have
no streaming layout: :class:`NotStreamable`, and the pipeline caches them.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from ironic_python_agent import errors
from ironic_python_agent.imagewrite.qcow2 import Sink

SECTOR = 512
_FLAG_COMPRESSED = 1 << 16
_FLAG_MARKERS = 1 << 17
_MARKER_EOS = 0
MAX_GRAIN = 2 << 20


class NotStreamable(Exception):
    """A VMDK that is valid but not streamOptimized; the message says what it is."""


@dataclass(frozen=True)
class VmdkHeader:
    capacity: int  # sectors
    grain_sectors: int
    overhead: int  # sectors before the first marker

    @property
    def size(self) -> int:
        return self.capacity * SECTOR

    @property
    def grain_bytes(self) -> int:
        return self.grain_sectors * SECTOR


def descriptor_text(head: bytes) -> str:
    offset, size = struct.unpack_from("<QQ", head, 28)
    raw = head[offset * SECTOR:(offset + size) * SECTOR]
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def parse_header(head: bytes) -> VmdkHeader:
    """The header of a streamOptimized sparse VMDK without a parent."""
    if len(head) < SECTOR or head[:4] != b"KDMV":
        raise NotStreamable("it is a vmdk without a sparse extent header")
    version, flags, capacity, grain, _doff, _dsize, _gtes, _rgd, _gd, overhead = \
        struct.unpack_from("<IIQQQQIQQQ", head, 4)
    compress_algorithm, = struct.unpack_from("<H", head, 77)
    text = descriptor_text(head)
    parent = re.search(r'^\s*parentCID\s*=\s*"?([0-9a-fA-F]+)', text, re.M)
    if re.search(r"^\s*parentFileNameHint\s*=", text, re.M) or (
            parent and parent.group(1).lower() != "ffffffff"):
        raise errors.InvalidImage("vmdk image has a parent (backing) disk; refusing to use it")
    extents = re.findall(r"^\s*(RW|RDONLY|NOACCESS)\s+\d+\s+\S+", text, re.M)
    if len(extents) > 1:
        raise errors.InvalidImage("vmdk image references other extent files; refusing")
    kind = re.search(r'^\s*createType\s*=\s*"([^"]*)"', text, re.M)
    create_type = kind.group(1) if kind else "unknown"
    if version < 1 or version > 3:
        raise NotStreamable(f"vmdk sparse extent version {version}")
    if not (flags & _FLAG_COMPRESSED and flags & _FLAG_MARKERS and compress_algorithm == 1):
        raise NotStreamable(f"vmdk {create_type} has no grain markers")
    if not grain or grain * SECTOR > MAX_GRAIN or grain & (grain - 1):
        raise errors.InvalidImage(f"vmdk grain size of {grain} sectors is not supported")
    return VmdkHeader(capacity, grain, overhead)


class VmdkStreamReader:
    """Feeds a streamOptimized VMDK's bytes in order; writes grains to *sink*."""

    def __init__(self, header: VmdkHeader, sink: Sink) -> None:
        self.h = header
        self.sink = sink
        self._buf = bytearray()
        self._skip = header.overhead * SECTOR
        self._high = 0  # every guest byte below this was zeroed or written
        self.ended = False
        self.grains = 0

    def write(self, data: Any) -> None:
        if self.ended:
            return
        view = memoryview(data).cast("B")
        if self._skip:
            n = min(self._skip, len(view))
            self._skip -= n
            view = view[n:]
        if len(view):
            self._buf += view
            self._markers()

    def _markers(self) -> None:
        buf, p = self._buf, 0
        while not self.ended:
            if self._skip:
                n = min(self._skip, len(buf) - p)
                self._skip -= n
                p += n
                if self._skip:
                    break
            if len(buf) - p < 16:
                break
            lba, size = struct.unpack_from("<QI", buf, p)
            if size:
                total = -(-(12 + size) // SECTOR) * SECTOR
                if size > 2 * self.h.grain_bytes + 4096:
                    raise errors.InvalidImage(f"vmdk grain marker at lba {lba} claims "
                                              f"{size} bytes")
                if len(buf) - p < 12 + size:
                    break
                self._grain(lba, bytes(buf[p + 12:p + 12 + size]))
                if len(buf) - p < total:  # the padding is in the next piece
                    self._skip = total - (len(buf) - p)
                    p = len(buf)
                    break
                p += total
                continue
            if len(buf) - p < SECTOR:
                break
            kind, = struct.unpack_from("<I", buf, p + 12)
            p += SECTOR
            if kind == _MARKER_EOS:
                self.ended = True
                break
            self._skip = lba * SECTOR  # numSectors of metadata (grain tables, footer)
        del buf[:p]

    def _grain(self, lba: int, data: bytes) -> None:
        try:
            out = zlib.decompressobj().decompress(data, self.h.grain_bytes)
        except zlib.error as exc:
            raise errors.InvalidImage(f"vmdk grain at lba {lba} is corrupt: {exc}") from None
        at = lba * SECTOR
        if at % self.h.grain_bytes or at >= self.h.size:
            raise errors.InvalidImage(f"vmdk grain at lba {lba} is outside the disk")
        if at > self._high:
            self.sink.zero(self._high, at - self._high)
        self.sink.write(at, out)
        self._high = max(self._high, at + len(out))
        self.grains += 1

    def finish(self) -> None:
        if self._high < self.h.size:
            self.sink.zero(self._high, self.h.size - self._high)
            self._high = self.h.size
