# SPDX-License-Identifier: Apache-2.0
"""What an image really is, read from its first bytes.

Pure functions over a header buffer (the first MiB of the stream is plenty):
:func:`detect_compression`, :func:`detect_format`, :func:`check_qcow2_header`
and :func:`validate_format`, which applies ``disk_format`` and
``permitted_image_formats`` the way Ironic expects. Nothing here reads a file.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable

from ironic_python_agent import errors

HEADER_BYTES = 1 << 20  # enough for every magic below (ISO's is at 32 KiB)


class Compression(enum.StrEnum):
    NONE = "none"
    GZIP = "gzip"
    XZ = "xz"
    ZSTD = "zstd"
    BZIP2 = "bzip2"


class ImageFormat(enum.StrEnum):
    RAW = "raw"
    GPT = "gpt"  # raw, with a GPT partition table
    QCOW2 = "qcow2"
    QED = "qed"
    VMDK = "vmdk"
    VHDX = "vhdx"
    VPC = "vpc"
    VDI = "vdi"
    LUKS = "luks"
    ISO = "iso"


# Formats written byte for byte; everything else goes through qemu-img.
RAW_FAMILY = frozenset({ImageFormat.RAW, ImageFormat.GPT, ImageFormat.ISO})
# Glance's names for qemu-img's drivers.
QEMU_DRIVER = {ImageFormat.VPC: "vpc", ImageFormat.VHDX: "vhdx", ImageFormat.VMDK: "vmdk",
               ImageFormat.QCOW2: "qcow2", ImageFormat.QED: "qed", ImageFormat.VDI: "vdi"}
DISK_FORMAT_ALIASES = {"vhd": "vpc", "iso": "iso", "gpt": "gpt", "raw": "raw"}

_QCOW2_INCOMPAT_DIRTY = 1 << 0
_QCOW2_INCOMPAT_CORRUPT = 1 << 1
_QCOW2_INCOMPAT_DATA_FILE = 1 << 2
_QCOW2_INCOMPAT_KNOWN = (1 << 5) - 1  # dirty, corrupt, data file, compression, extended L2
_QCOW2_EXT_DATA_FILE = 0x44415441
_QCOW2_EXT_END = 0


def detect_compression(head: bytes) -> Compression:
    if head[:2] == b"\x1f\x8b":
        return Compression.GZIP
    if head[:6] == b"\xfd7zXZ\x00":
        return Compression.XZ
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return Compression.ZSTD
    if head[:3] == b"BZh" and head[4:10] == b"\x31\x41\x59\x26\x53\x59":
        return Compression.BZIP2
    return Compression.NONE


def detect_format(head: bytes) -> ImageFormat:
    """The disk format the header shows; plain bytes are RAW (or GPT)."""
    if head[:4] == b"QFI\xfb":
        return ImageFormat.QCOW2
    if head[:4] == b"QED\x00":
        return ImageFormat.QED
    if head[:4] == b"KDMV" or head[:21] == b"# Disk DescriptorFile":
        return ImageFormat.VMDK
    if head[:8] == b"vhdxfile":
        return ImageFormat.VHDX
    if head[:8] == b"conectix":
        return ImageFormat.VPC
    if len(head) >= 0x44 and struct.unpack_from("<I", head, 0x40)[0] == 0xBEDA107F:
        return ImageFormat.VDI
    if head[:6] == b"LUKS\xba\xbe":
        return ImageFormat.LUKS
    if head[512:520] == b"EFI PART":
        return ImageFormat.GPT
    if head[0x8001:0x8006] == b"CD001" and head[510:512] != b"\x55\xaa":
        return ImageFormat.ISO  # an ISO without an MBR; hybrid ISOs are plain disks
    return ImageFormat.RAW


def check_qcow2_header(head: bytes) -> None:
    """Refuse a qcow2 that would make qemu-img read anything but the image itself.

    Raises :class:`errors.InvalidImage` for a backing file, an external data
    file, unknown incompatible features, or a header that does not parse.
    """
    if len(head) < 72 or head[:4] != b"QFI\xfb":
        raise errors.InvalidImage("qcow2 header is truncated or has no magic")
    version, backing_offset, backing_size = struct.unpack_from(">IQI", head, 4)
    if version not in (2, 3):
        raise errors.InvalidImage(f"qcow2 version {version} is not supported")
    if backing_offset or backing_size:
        raise errors.InvalidImage("qcow2 image has a backing file; refusing to use it")
    if version == 2:
        return
    if len(head) < 104:
        raise errors.InvalidImage("qcow2 v3 header is truncated")
    incompat, = struct.unpack_from(">Q", head, 72)
    header_length, = struct.unpack_from(">I", head, 100)
    if incompat & _QCOW2_INCOMPAT_DATA_FILE:
        raise errors.InvalidImage("qcow2 image uses an external data file; refusing to use it")
    if incompat & _QCOW2_INCOMPAT_CORRUPT:
        raise errors.InvalidImage("qcow2 image is marked corrupt")
    if incompat & ~_QCOW2_INCOMPAT_KNOWN:
        raise errors.InvalidImage(f"qcow2 image has unknown incompatible features {incompat:#x}")
    # Header extensions follow the header; a data-file name is one of them.
    pos = header_length
    while pos + 8 <= len(head):
        ext_type, ext_len = struct.unpack_from(">II", head, pos)
        if ext_type == _QCOW2_EXT_END:
            return
        if ext_type == _QCOW2_EXT_DATA_FILE:
            raise errors.InvalidImage("qcow2 image names a data file; refusing to use it")
        pos += 8 + ((ext_len + 7) & ~7)


def check_safety(fmt: ImageFormat, head: bytes) -> None:
    """The deep check for formats where one exists; others need only their magic."""
    if fmt == ImageFormat.QCOW2:
        check_qcow2_header(head)
    elif fmt == ImageFormat.VMDK and head[:21] == b"# Disk DescriptorFile":
        # A text descriptor points at extent files elsewhere: never follow it.
        raise errors.InvalidImage("vmdk descriptor files reference other files; refusing")
    elif fmt == ImageFormat.LUKS:
        raise errors.InvalidImage("LUKS images cannot be deployed")


def parse_permitted(value: str | Iterable[str] | None) -> frozenset[str]:
    if value is None:
        return frozenset({"raw", "gpt", "qcow2"})
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(i.strip().lower() for i in items if i and i.strip())


def validate_format(head: bytes, disk_format: str | None,
                    permitted: str | Iterable[str] | None, deep: bool = True) -> ImageFormat:
    """The format to write *head*'s image as, or :class:`errors.InvalidImage`.

    The real format must be permitted and must match *disk_format* (unless
    that is empty or ``unknown``); raw-family images (raw, gpt, iso) match each
    other. With *deep* off (``disable_deep_image_inspection``) only the
    permitted list is applied.
    """
    fmt = detect_format(head)
    allowed = parse_permitted(permitted)
    claimed = (disk_format or "").strip().lower()
    claimed = DISK_FORMAT_ALIASES.get(claimed, claimed)
    if deep:
        check_safety(fmt, head)
    if fmt in RAW_FAMILY:
        if not allowed & {f.value for f in RAW_FAMILY}:
            raise errors.InvalidImage(
                f"image format {fmt.value} is not in permitted_image_formats "
                f"({', '.join(sorted(allowed))})")
        if deep and claimed not in ("", "unknown", *(f.value for f in RAW_FAMILY)):
            raise errors.InvalidImage(
                f"image is {fmt.value} but disk_format says {claimed}")
        return fmt
    if fmt.value not in allowed:
        raise errors.InvalidImage(
            f"image format {fmt.value} is not in permitted_image_formats "
            f"({', '.join(sorted(allowed))})")
    if deep and claimed not in ("", "unknown", fmt.value):
        raise errors.InvalidImage(f"image is {fmt.value} but disk_format says {claimed}")
    return fmt


def qcow2_virtual_size(head: bytes) -> int:
    """The guest-visible size a qcow2 header declares."""
    size: int = struct.unpack_from(">Q", head, 24)[0]
    return size
