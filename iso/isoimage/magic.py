# SPDX-License-Identifier: Apache-2.0
"""Is a kernel really a kernel and an initramfs really an initramfs? (pure functions)

Only the first bytes are looked at: enough to catch swapped -k/-i arguments, an
HTML error page saved as a kernel, or an empty download.
"""

from __future__ import annotations

# x86 boot protocol: the setup header carries "HdrS" at 0x202 and the legacy
# boot-sector signature 0x55AA at 0x1FE. EFI-stub kernels also start with "MZ".
_HDRS_OFFSET = 0x202
_BOOT_FLAG_OFFSET = 0x1FE

# Formats the Linux kernel unpacks as an initramfs (cpio, or cpio compressed).
INITRD_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"070701", "cpio (newc)"),
    (b"070702", "cpio (crc)"),
    (b"070707", "cpio (odc)"),
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x02\x21\x4c\x18", "lz4"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "lzma"),
)

HEAD_SIZE = 1024


def describe_kernel(head: bytes) -> str | None:
    """Return None when *head* starts an x86 bzImage, else why it does not."""
    if len(head) < _HDRS_OFFSET + 4:
        if initrd_format(head) is not None:
            return "this is an initramfs, not a kernel (-k and -i swapped?)"
        return f"too short for a Linux kernel ({len(head)} bytes)"
    if head[_HDRS_OFFSET:_HDRS_OFFSET + 4] != b"HdrS":
        fmt = initrd_format(head)
        if fmt is not None:
            return f"this is an initramfs ({fmt}), not a kernel (-k and -i swapped?)"
        return "no x86 bzImage setup header ('HdrS' at 0x202)"
    if head[_BOOT_FLAG_OFFSET:_BOOT_FLAG_OFFSET + 2] != b"\x55\xaa":
        return "no boot signature 0x55AA at 0x1FE"
    return None


def initrd_format(head: bytes) -> str | None:
    """The initramfs format *head* starts with, or None if it is none the kernel knows."""
    for magic, name in INITRD_MAGICS:
        if head.startswith(magic):
            return name
    return None


def describe_initrd(head: bytes) -> str | None:
    """Return None when *head* starts a cpio archive (maybe compressed), else why not."""
    if not head:
        return "empty file"
    if initrd_format(head) is not None:
        return None
    if describe_kernel(head) is None:
        return "this is a Linux kernel, not an initramfs (-k and -i swapped?)"
    return "not a cpio archive, nor gzip/xz/zstd/lz4/bzip2/lzma compressed"
