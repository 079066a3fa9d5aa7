# SPDX-License-Identifier: Apache-2.0
"""Loop devices and test images for the image-deployment tests.

Loop devices are only ever made here, on sparse files in a temporary
directory, and always detached again; tests write to nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

MIB = 1 << 20


@contextlib.contextmanager
def loop_device(backing: Path, size: int, partscan: bool = True) -> Iterator[str]:
    """A loop device over a new sparse file of *size* bytes; detached on exit."""
    with open(backing, "wb") as f:
        f.truncate(size)
    argv = ["losetup", "--find", "--show"] + (["--partscan"] if partscan else []) + [str(backing)]
    dev = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
    assert dev.startswith("/dev/loop"), dev
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "--detach", dev], check=False)


def read_device(dev: str, length: int, offset: int = 0) -> bytes:
    fd = os.open(dev, os.O_RDONLY)
    try:
        # Drop cached pages so the comparison sees what reached the device.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def device_digest(dev: str, length: int) -> str:
    h = hashlib.sha256()
    fd = os.open(dev, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        pos = 0
        while pos < length:
            chunk = os.pread(fd, min(8 * MIB, length - pos), pos)
            if not chunk:
                break
            h.update(chunk)
            pos += len(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 * MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def make_disk_image(path: Path, size: int, label: str = "gpt", seed: int = 1) -> Path:
    """A raw disk image with a partition table and pseudo-random content.

    Content is deterministic per *seed* and incompressible-ish in places,
    zero elsewhere, like a real image.
    """
    with open(path, "wb") as f:
        f.truncate(size)
    script = ("label: gpt\n" if label == "gpt" else "label: dos\n") + (
        "size=8MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n,\n" if label == "gpt"
        else "size=8MiB, type=ef\n,\n")
    subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(path)],
                   input=script, text=True, check=True, capture_output=True)
    with open(path, "r+b") as f:
        block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
        pos = 2 * MIB
        while pos + MIB <= size - 2 * MIB:
            f.seek(pos)
            f.write(block)
            pos += 3 * MIB  # leave gaps of zeros
        if label != "gpt":
            f.seek(440)
            f.write((0x1A2B3C4D).to_bytes(4, "little"))
    return path


def qcow2_copy(raw: Path, dest: Path) -> Path:
    """*raw* converted to a qcow2 image at *dest* (``qemu-img convert``)."""
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(dest)],
                   check=True)
    return dest
