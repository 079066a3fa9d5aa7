# SPDX-License-Identifier: Apache-2.0
"""The decision, from the first MiB of the decompressed image, of where it goes."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ironic_python_agent import errors, image_format
from ironic_python_agent.image_format import ImageFormat
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
