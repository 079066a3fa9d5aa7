# SPDX-License-Identifier: Apache-2.0
"""Page-aligned buffers, the unit every image-write stage hands on."""

from __future__ import annotations

import ctypes
import mmap

ALIGN = 4096
# Six 2 MiB buffers keep reader, hasher and writer busy at once; bigger or
# more buffers did not go faster and cost RSS (the agent's budget is 64 MB).
BUFFER_SIZE = 2 << 20
BUFFER_COUNT = 6
MIB = 1 << 20


def aligned_buffer(size: int) -> mmap.mmap:
    # Anonymous mappings are page-aligned, which O_DIRECT needs.
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def is_aligned(view: memoryview) -> bool:
    if view.readonly:
        return False
    try:
        addr = ctypes.addressof(ctypes.c_char.from_buffer(view))
    except (TypeError, ValueError):
        return False
    return addr % ALIGN == 0
