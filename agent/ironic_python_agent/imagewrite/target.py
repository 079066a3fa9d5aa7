# SPDX-License-Identifier: Apache-2.0
"""The decision, from the first MiB of the decompressed image, of where it goes.

Raw images go to the device as they are (:class:`DeviceWriter`). qcow2 and
streamOptimized VMDK go to the device through their streaming readers
(:class:`StreamWriter`). Everything else (and those two when the policy says
``streaming=False``) goes to a cache file for ``qemu-img convert``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ironic_python_agent import errors, image_format, run
from ironic_python_agent.image_format import ImageFormat
from ironic_python_agent.imagewrite import qcow2, vmdk
from ironic_python_agent.imagewrite.guest import GuestWriter
from ironic_python_agent.imagewrite.writers import (
    WIPE_BYTES,
    CacheWriter,
    DeviceWriter,
    device_size,
)

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class FormatPolicy:
    disk_format: str | None = None
    permitted: str | Iterable[str] | None = None
    deep: bool = True
    streaming: bool = True  # qcow2 / vmdk straight to the device (False: cache + qemu-img)


class StreamWriter:
    """A streaming format reader writing onto the device through a :class:`GuestWriter`."""

    def __init__(self, reader: Any, guest: GuestWriter, virtual_size: int) -> None:
        self.reader = reader
        self.guest = guest
        self.virtual_size = virtual_size
        self.offset = 0  # bytes of the guest disk, once finished

    @property
    def touched(self) -> bool:
        return self.guest.touched

    def write(self, data: Any) -> None:
        self.reader.write(data)

    def finish(self) -> None:
        self.reader.finish()
        g = self.guest
        if g.size > self.virtual_size:  # a stale backup GPT would outlive the image
            g.limit = g.size
            start = max(self.virtual_size, g.size - WIPE_BYTES)
            g.zero(start, g.size - start)
        g.finish()
        self.offset = self.virtual_size
        LOG.info("Streamed %d bytes of data and %d bytes of zero ranges onto %s",
                 g.data_bytes, g.zero_bytes, g.path)

    def close(self) -> None:
        close = getattr(self.reader, "close", None)
        if close is not None:
            close()  # the qcow2 reader's inflate workers
        self.guest.close()


class Target:
    """Where the decompressed image goes, decided from its first MiB."""

    def __init__(self, device: str, policy: FormatPolicy, cache_dir: str, name: str,
                 size_hint: int | None,
                 fetch: Callable[[int, int], bytes | None] | None = None) -> None:
        self.device = device
        self.fetch = fetch  # Range reads of the image; None once it is known compressed
        self.policy = policy
        self.cache_dir = cache_dir
        self.name = name
        self.size_hint = size_hint
        self.format: ImageFormat | None = None
        self.writer: DeviceWriter | CacheWriter | StreamWriter | None = None
        self.head: bytes = b""
        self._head = bytearray()
        self.device_writer: DeviceWriter | StreamWriter | None = None
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
            streamer = self._streamer(fmt, head) if self.policy.streaming else None
            if streamer is not None:
                self.writer = self.device_writer = streamer
            else:
                if run.which("qemu-img") is None:  # before a byte is cached
                    raise errors.InvalidImage(
                        f"this {fmt.value} image needs qemu-img, which this ramdisk does "
                        "not carry (tinyipa: build it with --qemu-img)")
                cache = CacheWriter(self.cache_dir, self.name, self.size_hint)
                self.writer, self.cache_path = cache, cache.path
        self.writer.write(head)

    def _streamer(self, fmt: ImageFormat, head: bytes) -> StreamWriter | None:
        """The streaming reader for *head*'s image, or None (logged why) for the cache path."""
        why = f"{fmt.value} has no streaming layout"
        try:
            if fmt == ImageFormat.QCOW2:
                header = qcow2.parse_header(head)
                guest = GuestWriter(self.device, header.size)
                try:
                    reader: Any = qcow2.Qcow2Reader(header, guest, self.fetch)
                except BaseException:
                    guest.close()
                    raise
                LOG.info("Image %s: streaming qcow2 v%d (%d KiB clusters%s, %s) onto %s",
                         self.name, header.version, header.cluster_size // 1024,
                         ", extended L2" if header.extended_l2 else "", header.compression,
                         self.device)
                return StreamWriter(reader, guest, header.size)
            if fmt == ImageFormat.VMDK:
                vheader = vmdk.parse_header(head)
                have = device_size(self.device)
                if vheader.size > have:
                    raise errors.ImageWriteError(
                        self.device, "", "", f"the image's virtual size is {vheader.size} "
                        f"bytes but the device holds only {have}")
                guest = GuestWriter(self.device, vheader.size)
                LOG.info("Image %s: streaming streamOptimized vmdk onto %s", self.name,
                         self.device)
                return StreamWriter(vmdk.VmdkStreamReader(vheader, guest), guest, vheader.size)
        except (qcow2.StreamFallback, vmdk.NotStreamable) as exc:
            why = str(exc)
        LOG.warning("Image %s cannot be streamed (%s); caching it in %s for qemu-img",
                    self.name, why, self.cache_dir)
        return None

    def finish(self) -> None:
        if self.writer is None:
            self._decide()
        assert self.writer is not None
        self.writer.finish()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
