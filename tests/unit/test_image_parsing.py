# SPDX-License-Identifier: Apache-2.0
"""Pure parts of image deployment: formats, checksums, URLs, cache sizing."""

from __future__ import annotations

import struct

import pytest
from ironic_python_agent import checksum, download, errors, image_format, imagewrite
from ironic_python_agent.image_format import Compression, ImageFormat

MIB = 1 << 20


def qcow2_header(version: int = 3, backing: bool = False, incompat: int = 0,
                 data_file_ext: bool = False, size: int = 64 * MIB) -> bytes:
    head = bytearray(4096)
    backing_offset, backing_size = (512, 8) if backing else (0, 0)
    struct.pack_into(">4sIQIIQ", head, 0, b"QFI\xfb", version, backing_offset,
                     backing_size, 16, size)
    if version == 3:
        struct.pack_into(">Q", head, 72, incompat)
        struct.pack_into(">I", head, 100, 112)
        pos = 112
        if data_file_ext:
            struct.pack_into(">II", head, pos, 0x44415441, 8)
            head[pos + 8:pos + 16] = b"data.raw"
            pos += 16
        struct.pack_into(">II", head, pos, 0, 0)
    return bytes(head)


# --- formats ----------------------------------------------------------------


@pytest.mark.parametrize("head, kind", [
    (b"\x1f\x8b\x08\x00", Compression.GZIP),
    (b"\xfd7zXZ\x00\x00", Compression.XZ),
    (b"\x28\xb5\x2f\xfd\x00", Compression.ZSTD),
    (b"BZh91AY&SY", Compression.BZIP2),
    (b"\x00" * 16, Compression.NONE),
])
def test_detect_compression(head: bytes, kind: Compression) -> None:
    assert image_format.detect_compression(head) == kind


def test_detect_format_variants() -> None:
    assert image_format.detect_format(qcow2_header()) == ImageFormat.QCOW2
    assert image_format.detect_format(b"\0" * 4096) == ImageFormat.RAW
    gpt = bytearray(4096)
    gpt[512:520] = b"EFI PART"
    assert image_format.detect_format(bytes(gpt)) == ImageFormat.GPT
    assert image_format.detect_format(b"KDMV" + b"\0" * 100) == ImageFormat.VMDK
    assert image_format.detect_format(b"vhdxfile" + b"\0" * 100) == ImageFormat.VHDX
    vdi = bytearray(512)
    struct.pack_into("<I", vdi, 0x40, 0xBEDA107F)
    assert image_format.detect_format(bytes(vdi)) == ImageFormat.VDI
    iso = bytearray(0x9000)
    iso[0x8001:0x8006] = b"CD001"
    assert image_format.detect_format(bytes(iso)) == ImageFormat.ISO
    iso[510:512] = b"\x55\xaa"  # hybrid ISO: a disk with an MBR
    assert image_format.detect_format(bytes(iso)) == ImageFormat.RAW


def test_qcow2_header_checks() -> None:
    image_format.check_qcow2_header(qcow2_header())
    image_format.check_qcow2_header(qcow2_header(version=2))
    with pytest.raises(errors.InvalidImage, match="backing file"):
        image_format.check_qcow2_header(qcow2_header(backing=True))
    with pytest.raises(errors.InvalidImage, match="data file"):
        image_format.check_qcow2_header(qcow2_header(incompat=1 << 2))
    with pytest.raises(errors.InvalidImage, match="data file"):
        image_format.check_qcow2_header(qcow2_header(data_file_ext=True))
    with pytest.raises(errors.InvalidImage, match="unknown incompatible"):
        image_format.check_qcow2_header(qcow2_header(incompat=1 << 40))
    with pytest.raises(errors.InvalidImage, match="truncated"):
        image_format.check_qcow2_header(b"QFI\xfb\0\0\0\3")
    assert image_format.qcow2_virtual_size(qcow2_header(size=5 * MIB)) == 5 * MIB


def test_validate_format_matches_disk_format_and_permitted() -> None:
    raw = b"\0" * 4096
    assert image_format.validate_format(raw, "raw", "raw,qcow2") == ImageFormat.RAW
    assert image_format.validate_format(raw, None, None) == ImageFormat.RAW
    assert image_format.validate_format(qcow2_header(), "qcow2", None) == ImageFormat.QCOW2
    with pytest.raises(errors.InvalidImage, match="disk_format says raw"):
        image_format.validate_format(qcow2_header(), "raw", None)
    with pytest.raises(errors.InvalidImage, match="disk_format says qcow2"):
        image_format.validate_format(raw, "qcow2", None)
    with pytest.raises(errors.InvalidImage, match="permitted_image_formats"):
        image_format.validate_format(qcow2_header(), "qcow2", "raw")
    with pytest.raises(errors.InvalidImage, match="permitted_image_formats"):
        image_format.validate_format(raw, "raw", ["qcow2"])
    with pytest.raises(errors.InvalidImage, match="backing"):
        image_format.validate_format(qcow2_header(backing=True), "qcow2", None)
    # disable_deep_image_inspection: no safety or disk_format check, permitted still applies.
    assert image_format.validate_format(
        qcow2_header(backing=True), "raw", None, deep=False) == ImageFormat.QCOW2
    with pytest.raises(errors.InvalidImage):
        image_format.validate_format(qcow2_header(), "qcow2", "raw", deep=False)
    with pytest.raises(errors.InvalidImage, match="descriptor"):
        image_format.validate_format(b"# Disk DescriptorFile\n", "vmdk", "vmdk")


# --- checksums --------------------------------------------------------------


def test_checksum_file_shapes() -> None:
    h = "ab" * 32
    url = "http://x/images/disk.img?sig=1"
    assert checksum.parse_checksum_file(f"{h}\n", url) == h
    assert checksum.parse_checksum_file(f"# c\n{'cd' * 32}  other.img\n{h}  disk.img\n", url) == h
    assert checksum.parse_checksum_file(f"{h} *disk.img\n", url) == h
    assert checksum.parse_checksum_file(f"SHA256 (disk.img) = {h}\n", url) == h
    with pytest.raises(errors.ImageDownloadError):
        checksum.parse_checksum_file(f"{h}  a.img\n{h}  b.img\n", url)


def test_algorithm_by_length() -> None:
    assert checksum.algorithm_for("a" * 64, False) == "sha256"
    assert checksum.algorithm_for("a" * 128, False) == "sha512"
    assert checksum.algorithm_for("a" * 32, True) == "md5"
    with pytest.raises(errors.RESTError, match="MD5"):
        checksum.algorithm_for("a" * 32, False)


def test_expected_checksum_prefers_os_hash_and_fetches_urls() -> None:
    info = {"id": "i", "urls": ["http://h/disk.img"], "os_hash_algo": "SHA512",
            "os_hash_value": "F" * 128, "checksum": "a" * 32}
    got = checksum.expected_checksum(info, False, fetch=lambda u: b"")
    assert got == checksum.Checksum("sha512", "f" * 128)
    info = {"id": "i", "urls": ["http://h/disk.img"], "checksum": "http://h/SHA256SUMS"}
    fetched = checksum.expected_checksum(
        info, False, fetch=lambda u: f"{'e' * 64}  disk.img\n".encode())
    assert fetched == checksum.Checksum("sha256", "e" * 64)


@pytest.mark.parametrize("info, md5, problem", [
    ({"checksum": ""}, False, "non-empty"),
    ({"os_hash_algo": "sha256"}, False, "both"),
    ({"checksum": "a" * 32}, False, "MD5"),
    ({}, False, "missing a checksum"),
])
def test_checksum_validation_errors(info: dict[str, str], md5: bool, problem: str) -> None:
    with pytest.raises(errors.InvalidCommandParamsError, match=problem):
        checksum.validate_image_info_checksum(info, md5)


def test_checksum_validation_accepts() -> None:
    checksum.validate_image_info_checksum({"checksum": "a" * 32}, True)
    checksum.validate_image_info_checksum({"checksum": "a" * 64}, False)
    checksum.validate_image_info_checksum({"checksum": "https://h/SUMS"}, False)
    checksum.validate_image_info_checksum({"os_hash_algo": "sha256", "os_hash_value": "x"}, False)


# --- URLs and cache sizing --------------------------------------------------


def test_redact_url_removes_credentials_and_tokens() -> None:
    got = download.redact_url("https://user:s3cret@h:8443/v1/AUTH_x/img?temp_url_sig=abc&e=1")
    assert "s3cret" not in got and "abc" not in got
    assert got == "https://user:***@h:8443/v1/AUTH_x/img?temp_url_sig=***&e=***"
    assert download.redact_url("http://h/img.raw") == "http://h/img.raw"


def test_content_range_parsing() -> None:
    assert download._content_range_start("bytes 100-199/1000") == (100, 1000)
    assert download._content_range_start("bytes 5-9/*") == (5, None)
    assert download._content_range_start(None) == (None, None)


def test_proxies_from_image_info() -> None:
    info = {"proxies": {"http": "http://p:3128", "https": "", "no_proxy": ".lan"}}
    assert download.proxies_from_image_info(info) == ({"http": "http://p:3128"}, ".lan")
    assert download._bypass_proxy("a.lan", ".lan")
    assert not download._bypass_proxy("a.com", ".lan")


def test_cache_problem() -> None:
    assert imagewrite.cache_problem(100 * MIB, 1000 * MIB, 1000 * MIB, True) is None
    assert "cache space" in (imagewrite.cache_problem(100 * MIB, 50 * MIB, 1 << 40, False)
                             or "")
    msg = imagewrite.cache_problem(900 * MIB, 1000 * MIB, 1000 * MIB, True) or ""
    assert "RAM" in msg and "900 MiB" in msg
    assert imagewrite.cache_problem(900 * MIB, 1000 * MIB, 10, False) is None


def test_write_result_summary() -> None:
    r = imagewrite.WriteResult("/dev/x", "raw", "none", 200 * MIB, 200 * MIB, 2.0,
                               "sha256", "00")
    assert r.mib_per_s == 100.0
    assert r.as_dict()["mib_per_s"] == 100.0
    assert "MiB/s=100.0" in r.summary()


# --- the streaming qcow2 reader's header checks --------------------------------


def test_qcow2_stream_header_fields_and_refusals() -> None:
    from ironic_python_agent.imagewrite import qcow2

    head = bytearray(qcow2_header(size=64 * MIB))
    struct.pack_into(">IQ", head, 36, 1, 0x30000)  # l1_size, l1_table_offset
    h = qcow2.parse_header(bytes(head))
    assert (h.version, h.cluster_size, h.size, h.l1_offset) == (3, 65536, 64 * MIB, 0x30000)
    assert h.compression == "zlib" and not h.extended_l2 and h.l2_span == 512 * MIB
    encrypted = bytearray(head)
    struct.pack_into(">I", encrypted, 32, 2)
    with pytest.raises(errors.InvalidImage, match="encrypted"):
        qcow2.parse_header(bytes(encrypted))
    tiny_l1 = bytearray(head)
    struct.pack_into(">Q", tiny_l1, 24, 2 << 30)  # 2 GiB needs 4 L1 entries, has 1
    with pytest.raises(errors.InvalidImage, match="does not cover"):
        qcow2.parse_header(bytes(tiny_l1))
    with pytest.raises(errors.InvalidImage, match="backing file"):
        qcow2.parse_header(qcow2_header(backing=True))
    with pytest.raises(errors.InvalidImage, match="data file"):
        qcow2.parse_header(qcow2_header(data_file_ext=True))
    ext_small = bytearray(qcow2_header(incompat=1 << 4))
    struct.pack_into(">I", ext_small, 20, 12)  # 4 KiB clusters with extended L2
    struct.pack_into(">I", ext_small, 36, 1 << 20)
    with pytest.raises(errors.InvalidImage, match="extended L2"):
        qcow2.parse_header(bytes(ext_small))
