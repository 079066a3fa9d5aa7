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

Modules: :mod:`.pipeline` (the threads, :func:`write_stream`), :mod:`.target`
(the format decision), :mod:`.writers` (device, cache, wipe), :mod:`.decoders`
(decompression), :mod:`.inflate` (the thread pool for compressed qcow2
clusters), :mod:`.convert` (qemu-img), :mod:`.buffers`.
"""

from ironic_python_agent.imagewrite.pipeline import Source, WriteResult, write_stream
from ironic_python_agent.imagewrite.target import FormatPolicy
from ironic_python_agent.imagewrite.writers import cache_problem, device_size, wipe_start

__all__ = ["FormatPolicy", "Source", "WriteResult", "cache_problem", "device_size",
           "wipe_start", "write_stream"]
