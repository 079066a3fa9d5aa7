# SPDX-License-Identifier: Apache-2.0
"""ironic_python_agent.zstd against the real libzstd, with streams made by the
zstd program (single and concatenated frames, skippable frames, corruption,
truncation, a window too big to accept)."""

from __future__ import annotations

import mmap
import os
import struct
import subprocess

import pytest

from ironic_python_agent import zstd


def compress(data: bytes, *args: str) -> bytes:
    return subprocess.run(["zstd", "-q", "-c", *args], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


Decoded = tuple[bytes, list[int], zstd.Decompressor]


def decode(stream: bytes, piece: int = 7919, chunk: int = 1 << 16) -> Decoded:
    dec = zstd.Decompressor(chunk)
    out: list[bytes] = []
    for i in range(0, len(stream), piece):
        dec.feed(stream[i:i + piece], out.append)
    return b"".join(out), [len(o) for o in out], dec


def test_library_loads() -> None:
    assert zstd.available()


def test_roundtrip_in_pieces_bounded_output() -> None:
    data = os.urandom(300_000) + b"\0" * 5_000_000 + os.urandom(100_000)
    got, sizes, dec = decode(compress(data, "-3"))
    assert got == data
    assert max(sizes) <= 1 << 16  # 5 MB of zeros comes out a chunk at a time
    assert dec.frame_complete


def test_output_ending_exactly_on_a_chunk_boundary_is_complete() -> None:
    data = os.urandom(1 << 16) * 8  # 8 whole output chunks
    got, sizes, dec = decode(compress(data), piece=1 << 20)
    assert got == data and sizes == [1 << 16] * 8
    assert dec.frame_complete


def test_concatenated_and_skippable_frames() -> None:
    a, b = os.urandom(70_000), b"x" * 200_000
    skippable = struct.pack("<II", 0x184D2A50, 6) + b"lean!!"
    got, _, dec = decode(compress(a) + skippable + compress(b, "-19"))
    assert got == a + b
    assert dec.frame_complete


def test_feeds_from_a_writable_mmap_and_releases_it() -> None:
    data = os.urandom(50_000) * 4
    stream = compress(data)
    buf = mmap.mmap(-1, len(stream))
    buf.write(stream)
    dec = zstd.Decompressor()
    out: list[bytes] = []
    with memoryview(buf) as view:
        dec.feed(view[:len(stream)], out.append)
    buf.close()  # would raise BufferError if the decoder still held the buffer
    assert b"".join(out) == data


def test_truncated_stream_is_not_complete() -> None:
    stream = compress(os.urandom(100_000))
    got, _, dec = decode(stream[:-10])
    assert not dec.frame_complete
    assert len(got) < 100_000


def test_corrupt_stream_names_the_problem() -> None:
    stream = bytearray(compress(os.urandom(100_000)))
    stream[20:40] = b"\xff" * 20
    with pytest.raises(zstd.ZstdError) as err:
        decode(bytes(stream))
    assert str(err.value)  # libzstd's own error name, e.g. "Data corruption detected"


def test_window_over_128_mib_is_refused() -> None:
    # --long=31 asks the decoder for a 2 GiB window, as the zstd CLI refuses
    # without --memory; a ramdisk must not try to allocate that.
    stream = compress(b"y" * 1000, "--long=31", "--zstd=wlog=31")
    with pytest.raises(zstd.ZstdError, match="(?i)window|memory"):
        decode(stream)
