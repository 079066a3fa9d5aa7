# SPDX-License-Identifier: Apache-2.0
"""Process memory: give freed request bodies back to the kernel.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB),
so after one big request body the next ones come from the heap and their pages
stay with the process after they are freed. A fixed threshold keeps every block
of 256 KiB or more in its own mapping, which ``free`` unmaps at once: a 16 MiB
configdrive costs RAM while the command holds it, not for the life of the agent.
"""

from __future__ import annotations

import ctypes
import logging

LOG = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024
TRIM_THRESHOLD = 1 << 20


def return_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds; False where there is no glibc mallopt."""
    try:
        libc = ctypes.CDLL(None)  # the loaded C library; no ldconfig lookup
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        LOG.debug("mallopt refused the thresholds")
    return ok
