# SPDX-License-Identifier: Apache-2.0
"""Image writes onto real loop devices from a real loopback HTTP server.

Every test reads the device back and compares it with the image.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ironic_python_agent import checksum, download, errors, imagewrite

from tests.imageserver import Behaviour, ImageServer
from tests.imagetools import (
    MIB,
    device_digest,
    file_digest,
    loop_device,
    make_disk_image,
    qcow2_copy,
    read_device,
)

IMAGE_SIZE = 24 * MIB
DISK_SIZE = 64 * MIB


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    raw = make_disk_image(d / "disk.raw", IMAGE_SIZE)
    out = {"raw": raw}
    data = raw.read_bytes()
    (d / "disk.raw.gz").write_bytes(gzip.compress(data, 1))
    out["gz"] = d / "disk.raw.gz"
    (d / "disk.raw.xz").write_bytes(lzma.compress(data, preset=0))
    out["xz"] = d / "disk.raw.xz"
    (d / "disk.raw.bz2").write_bytes(bz2.compress(data, 1))
    out["bz2"] = d / "disk.raw.bz2"
    subprocess.run(["zstd", "-q", "-1", str(raw), "-o", str(d / "disk.raw.zst")], check=True)
    out["zst"] = d / "disk.raw.zst"
    out["qcow2"] = qcow2_copy(raw, d / "disk.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(d / "disk.qcow2"),
                    "-F", "qcow2", str(d / "overlay.qcow2")], check=True)
    out["overlay"] = d / "overlay.qcow2"
    return out


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[str]:
    with loop_device(tmp_path / "disk.img", DISK_SIZE) as dev:
        # Something recognisable that a failed write must not leave bootable.
        with open(dev, "r+b") as f:
            f.write(b"\xee" * (2 * MIB))
            f.flush()
            os.fsync(f.fileno())
        yield dev


def opts(**kw: object) -> download.DownloadOptions:
    base: dict[str, object] = {"retries": 2, "retry_interval": 0.01, "connect_timeout": 5}
    base.update(kw)
    return download.DownloadOptions(**base)  # type: ignore[arg-type]


def write(urls: list[str], dev: str, sha: str, tmp: Path | None = None,
          disk_format: str | None = "raw", streaming: bool = True,
          **kw: object) -> imagewrite.WriteResult:
    stream = download.ImageStream("img-1", urls, opts(**kw))
    cache = (tmp or Path("/tmp")) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    return imagewrite.write_stream(
        stream, dev, checksum.Checksum("sha256", sha), name="img-1",
        location=download.redact_url(urls[0]),
        policy=imagewrite.FormatPolicy(disk_format, None, True, streaming),
        cache_dir=str(cache), progress_interval=0.05)


def assert_on_disk(dev: str, image: Path) -> None:
    assert device_digest(dev, image.stat().st_size) == file_digest(image)


def assert_wiped(dev: str) -> None:
    assert read_device(dev, MIB) == bytes(MIB)


def test_raw_stream_written_and_verified(server: ImageServer, disk: str,
                                         images: dict[str, Path],
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    url = server.serve("/disk.raw", images["raw"])
    result = write([url], disk, file_digest(images["raw"]))
    assert_on_disk(disk, images["raw"])
    assert result.bytes_downloaded == result.bytes_written == IMAGE_SIZE
    assert result.image_format == "gpt" and result.compression == "none"
    assert result.seconds > 0 and result.mib_per_s > 0
    assert f"written to {disk}" in caplog.text and "MiB/s" in caplog.text
    # The stale end of the disk (a backup GPT's home) was zeroed.
    assert read_device(disk, MIB, DISK_SIZE - MIB) == bytes(MIB)


def test_checksum_mismatch_fails_and_wipes(server: ImageServer, disk: str,
                                           images: dict[str, Path]) -> None:
    url = server.serve("/disk.raw", images["raw"])
    with pytest.raises(errors.ImageChecksumError) as exc:
        write([url], disk, "0" * 64)
    assert "0" * 64 in str(exc.value) and file_digest(images["raw"]) in str(exc.value)
    assert_wiped(disk)
    # Past the first MiB the image is there: the wipe is what stops it booting.
    assert read_device(disk, MIB, 4 * MIB) == images["raw"].read_bytes()[4 * MIB:5 * MIB]


def test_resume_with_range_after_drops(server: ImageServer, disk: str,
                                       images: dict[str, Path]) -> None:
    drops = [3 * MIB + 17, 11 * MIB, 20 * MIB + 4095]
    url = server.serve("/disk.raw", images["raw"], Behaviour(drop_at=list(drops)))
    result = write([url], disk, file_digest(images["raw"]))
    assert_on_disk(disk, images["raw"])
    assert result.resumes == 3
    ranges = [r["range"] for r in server.requests("/disk.raw")]
    assert ranges == [None] + [f"bytes={d}-" for d in drops]


def test_server_ignoring_range_starts_over(server: ImageServer, disk: str,
                                           images: dict[str, Path]) -> None:
    url = server.serve("/disk.raw", images["raw"],
                       Behaviour(drop_at=[5 * MIB, 9 * MIB], ranges=False))
    result = write([url], disk, file_digest(images["raw"]))
    assert_on_disk(disk, images["raw"])
    assert result.bytes_downloaded == IMAGE_SIZE and result.resumes == 2


def test_length_lie_longer_fails_cleanly(server: ImageServer, disk: str,
                                         images: dict[str, Path]) -> None:
    url = server.serve("/disk.raw", images["raw"], Behaviour(length_delta=MIB))
    with pytest.raises(errors.ImageDownloadError, match=f"of {IMAGE_SIZE + MIB} bytes"):
        write([url], disk, file_digest(images["raw"]))
    assert_wiped(disk)


def test_length_lie_shorter_is_a_checksum_error(server: ImageServer, disk: str,
                                                images: dict[str, Path]) -> None:
    url = server.serve("/disk.raw", images["raw"], Behaviour(length_delta=-MIB))
    with pytest.raises(errors.ImageChecksumError):
        write([url], disk, file_digest(images["raw"]))
    assert_wiped(disk)


def test_404_is_fatal_without_retries_and_leaves_disk(server: ImageServer, disk: str,
                                                      images: dict[str, Path]) -> None:
    url = server.url("/missing.raw?token=SECRET")
    with pytest.raises(errors.ImageDownloadFatalError) as exc:
        write([url.replace("http://", "http://bob:hunter2@")], disk, "0" * 64)
    text = str(exc.value)
    assert "404" in text and "hunter2" not in text and "SECRET" not in text
    assert read_device(disk, MIB) == b"\xee" * MIB


def test_500_is_retried_then_next_url(server: ImageServer, disk: str,
                                      images: dict[str, Path]) -> None:
    flaky = server.serve("/flaky.raw", images["raw"], Behaviour(status=500, status_times=2))
    result = write([flaky], disk, file_digest(images["raw"]))
    assert_on_disk(disk, images["raw"])
    assert len(server.requests("/flaky.raw")) == 3 and result.resumes == 0
    broken = server.serve("/broken.raw", images["raw"], Behaviour(status=500))
    good = server.serve("/good.raw", images["raw"])
    write([broken, good], disk, file_digest(images["raw"]))
    assert_on_disk(disk, images["raw"])
    assert len(server.requests("/broken.raw")) == 3


def test_all_urls_failing_names_each(server: ImageServer, disk: str) -> None:
    a = server.serve("/a", Path("/dev/null"), Behaviour(status=503))
    with pytest.raises(errors.ImageDownloadError) as exc:
        write([a, server.url("/nope")], disk, "0" * 64)
    assert "/a: HTTP 503" in str(exc.value) and "/nope: HTTP 404" in str(exc.value)
    assert not isinstance(exc.value, errors.ImageDownloadFatalError)


def test_slow_server_and_basic_auth_and_redirect(server: ImageServer, disk: str,
                                                 images: dict[str, Path],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    auth = download.basic_auth_header("u", "p w")
    server.serve("/slow.raw", images["raw"], Behaviour(bytes_per_second=48 * MIB, auth=auth))
    moved = server.serve("/old.raw", images["raw"], Behaviour(redirect_to="/slow.raw"))
    write([moved.replace("http://", "http://u:p%20w@")], disk, file_digest(images["raw"]))
    assert_on_disk(disk, images["raw"])
    assert "%)" in caplog.text  # progress lines with a percentage


@pytest.mark.parametrize("kind", ["gz", "xz", "bz2", "zst"])
def test_compressed_raw_is_decompressed_in_the_stream(server: ImageServer, disk: str,
                                                      images: dict[str, Path],
                                                      kind: str) -> None:
    url = server.serve(f"/disk.{kind}", images[kind], Behaviour(drop_at=[MIB + 5]))
    result = write([url], disk, file_digest(images[kind]))
    assert_on_disk(disk, images["raw"])
    assert result.bytes_downloaded == images[kind].stat().st_size
    assert result.bytes_written == IMAGE_SIZE
    assert result.compression == {"gz": "gzip", "xz": "xz", "bz2": "bzip2",
                                  "zst": "zstd"}[kind]


def test_truncated_compressed_stream_fails(server: ImageServer, disk: str,
                                           images: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.zst"
    cut.write_bytes(images["zst"].read_bytes()[:-1000])
    url = server.serve("/cut.zst", cut)
    with pytest.raises(errors.ImageWriteError):
        write([url], disk, file_digest(cut))
    assert_wiped(disk)


def test_qcow2_converted_after_verification(server: ImageServer, disk: str,
                                            images: dict[str, Path], tmp_path: Path) -> None:
    # The cache path (streaming off): what formats without a streaming reader take.
    url = server.serve("/disk.qcow2", images["qcow2"], Behaviour(drop_at=[100_000]))
    result = write([url], disk, file_digest(images["qcow2"]), tmp_path, disk_format="qcow2",
                   streaming=False)
    assert_on_disk(disk, images["raw"])
    assert result.image_format == "qcow2" and result.bytes_written == IMAGE_SIZE
    assert result.method == "cache"
    assert list((tmp_path / "cache").iterdir()) == []  # the cache copy is gone


def test_cache_path_without_qemu_img_is_a_clear_error(server: ImageServer, disk: str,
                                                      images: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A ramdisk built without qemu-img (tinyipa's default): refused before a byte is cached.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(imagewrite.target.run, "which",
                        lambda name: None if name == "qemu-img" else shutil.which(name))
    url = server.serve("/disk.qcow2", images["qcow2"])
    with pytest.raises(errors.InvalidImage, match="needs qemu-img.*--qemu-img"):
        write([url], disk, file_digest(images["qcow2"]), tmp_path, disk_format="qcow2",
              streaming=False)
    assert read_device(disk, MIB) == b"\xee" * MIB
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_qcow2_checksum_mismatch_writes_nothing(server: ImageServer, disk: str,
                                                images: dict[str, Path],
                                                tmp_path: Path) -> None:
    url = server.serve("/disk.qcow2", images["qcow2"])
    with pytest.raises(errors.ImageChecksumError):
        write([url], disk, "1" * 64, tmp_path, disk_format="qcow2", streaming=False)
    assert read_device(disk, MIB) == b"\xee" * MIB
    assert list((tmp_path / "cache").iterdir()) == []


def test_qcow2_with_backing_file_refused(server: ImageServer, disk: str,
                                         images: dict[str, Path], tmp_path: Path) -> None:
    url = server.serve("/overlay.qcow2", images["overlay"])
    with pytest.raises(errors.InvalidImage, match="backing file"):
        write([url], disk, file_digest(images["overlay"]), tmp_path, disk_format="qcow2")
    assert read_device(disk, MIB) == b"\xee" * MIB


def test_format_mismatch_refused_before_writing(server: ImageServer, disk: str,
                                                images: dict[str, Path]) -> None:
    url = server.serve("/disk.qcow2", images["qcow2"])
    with pytest.raises(errors.InvalidImage, match="disk_format says raw"):
        write([url], disk, file_digest(images["qcow2"]), disk_format="raw")
    assert read_device(disk, MIB) == b"\xee" * MIB


def test_image_larger_than_device(server: ImageServer, images: dict[str, Path],
                                  tmp_path: Path) -> None:
    with loop_device(tmp_path / "small", 16 * MIB) as small:
        url = server.serve("/disk.raw", images["raw"])
        with pytest.raises(errors.ImageWriteError, match="holds only"):
            write([url], small, file_digest(images["raw"]))


def test_qcow2_cache_too_big_for_ram_is_a_clear_error(server: ImageServer, disk: str,
                                                      images: dict[str, Path]) -> None:
    # /dev/shm is tmpfs; pretend the RAM reserve is larger than the machine.
    url = server.serve("/disk.qcow2", images["qcow2"])
    old = imagewrite.writers.CACHE_RAM_RESERVE
    imagewrite.writers.CACHE_RAM_RESERVE = 1 << 50
    try:
        with pytest.raises(errors.ImageDownloadOutofSpaceError, match="RAM"):
            write([url], disk, file_digest(images["qcow2"]), Path("/dev/shm/lean-ipa-test"),
                  disk_format="qcow2", streaming=False)
    finally:
        imagewrite.writers.CACHE_RAM_RESERVE = old
        shutil.rmtree("/dev/shm/lean-ipa-test", ignore_errors=True)
    assert read_device(disk, MIB) == b"\xee" * MIB


def test_stalled_connection_is_resumed(server: ImageServer, disk: str,
                                       images: dict[str, Path]) -> None:
    url = server.serve("/disk.raw", images["raw"],
                       Behaviour(stall_at=[7 * MIB], stall_seconds=3))
    result = write([url], disk, file_digest(images["raw"]), connect_timeout=0.5)
    assert_on_disk(disk, images["raw"])
    assert result.resumes >= 1
    assert server.requests("/disk.raw")[1]["range"] is not None


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def test_https_with_cafile_insecure_and_refusal(disk: str, images: dict[str, Path],
                                                tls_cert: tuple[str, str]) -> None:
    with ImageServer(tls=tls_cert) as srv:
        url = srv.serve("/disk.raw", images["raw"], Behaviour(drop_at=[5 * MIB]))
        write([url], disk, file_digest(images["raw"]), cafile=tls_cert[0],
              tls_min_version="1.2")
        assert_on_disk(disk, images["raw"])
        with pytest.raises(errors.ImageDownloadError, match="CERTIFICATE_VERIFY_FAILED"):
            write([url], disk, file_digest(images["raw"]), retries=0)
        write([url], disk, file_digest(images["raw"]), insecure=True)
        assert_on_disk(disk, images["raw"])


def test_max_duration_stops_a_slow_download(server: ImageServer, disk: str,
                                            images: dict[str, Path]) -> None:
    url = server.serve("/slow.raw", images["raw"], Behaviour(bytes_per_second=4 * MIB))
    with pytest.raises(errors.ImageDownloadTimeoutError, match="longer than 0.5 seconds"):
        write([url], disk, file_digest(images["raw"]), max_duration=0.5)
    assert_wiped(disk)


def test_http_proxy_and_no_proxy(server: ImageServer, disk: str,
                                 images: dict[str, Path]) -> None:
    with ImageServer() as proxy:
        proxy.serve("/disk.raw", images["raw"])
        url = server.serve("/disk.raw", images["raw"])
        write([url], disk, file_digest(images["raw"]),
              proxies={"http": proxy.url("")})
        assert_on_disk(disk, images["raw"])
        assert [r["proxied"] for r in proxy.requests("/disk.raw")] == [True]
        assert server.requests("/disk.raw") == []
        write([url], disk, file_digest(images["raw"]),
              proxies={"http": proxy.url("")}, no_proxy="localhost,127.0.0.1")
        assert len(proxy.requests("/disk.raw")) == 1
        assert len(server.requests("/disk.raw")) == 1
