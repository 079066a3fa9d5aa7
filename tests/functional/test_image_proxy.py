# SPDX-License-Identifier: Apache-2.0
"""prepare_image through a real Squid, as a node whose driver_info has image_http_proxy.

Ironic hands the proxy to the agent in ``image_info["proxies"]``. The Squid is
Debian's, on loopback, configured as ``doc/image-deployment.rst`` tells operators
(``tests/squid.py``); the origin is ``tests/imageserver.py``, which can drop a
connection part-way. What must hold through a cache: the agent resumes a
dropped download with Range through the proxy, the checksum is still verified
(also when the bytes come from the cache), and a second node's download is a
cache hit that costs the origin nothing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ironic_python_agent.extensions import standby
from ironic_python_agent.imagewrite import qcow2

from tests.hwfixtures import hardware_conf, reset_hardware
from tests.imageserver import Behaviour, ImageServer
from tests.imagetools import MIB, device_digest, file_digest, loop_device, make_disk_image
from tests.imagetools import read_device
from tests.functional.test_image_stream import relocate_tables
from tests.squid import Squid

SIZE = 24 * MIB
DROP_AT = 9 * MIB + 4096


class FakeAgent:
    """What the standby extension uses of the agent: its configuration (quick
    retries) and forced heartbeats."""

    def __init__(self) -> None:
        self.conf = hardware_conf(image_download_connection_retries=2,
                                  image_download_connection_retry_interval=0)

    def force_heartbeat(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _forget_config() -> Iterator[None]:
    yield
    reset_hardware()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_disk_image(tmp_path_factory.mktemp("proxy-images") / "disk.raw", SIZE,
                           "gpt", seed=16)


@pytest.fixture
def squid(tmp_path: Path) -> Iterator[Squid]:
    with Squid(keep=tmp_path / "squid-logs", cache_mib=256) as proxy:
        yield proxy


def prepare_image(disk: str, tmp_path: Path, url: str, sha: str, proxy: str,
                  disk_format: str = "raw") -> dict[str, Any]:
    ext = standby.StandbyExtension(agent=FakeAgent())
    ext.device_finder = lambda: disk
    ext.clock_sync = lambda: None
    ext.disk_sync = os.sync
    ext.cache_dir = str(tmp_path)
    # image_info as Ironic builds it for a node with driver_info/image_http_proxy.
    info = {"id": "fleet-img", "urls": [url], "disk_format": disk_format,
            "container_format": "bare", "stream_raw_images": True,
            "os_hash_algo": "sha256", "os_hash_value": sha, "node_uuid": "n-proxy",
            "image_type": "whole-disk", "proxies": {"http": proxy}}
    wire: dict[str, Any] = ext.execute("prepare_image", image_info=info).join().serialize()
    return wire


def test_resume_through_squid_then_cache_hit_checksummed(
        squid: Squid, image: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sha = file_digest(image)
    with ImageServer() as origin, loop_device(tmp_path / "disk", 64 * MIB) as disk:
        url = origin.serve("/images/disk.raw", image, Behaviour(drop_at=[DROP_AT]))
        wire = prepare_image(disk, tmp_path, url, sha, squid.url)
        assert wire["command_status"] == "SUCCEEDED", wire
        assert device_digest(disk, SIZE) == sha
        assert f"interrupted at byte {DROP_AT}" in caplog.text
        # Every request went through the proxy (absolute URL on the request line
        # at the origin) and the agent's second one asked to resume with Range.
        entries = squid.wait_for_log(2)
        assert [e.url for e in entries] == [url, url], entries
        assert [e.status for e in entries] == [200, 206], entries
        assert all(r["path"] == "/images/disk.raw" for r in origin.requests("/images/disk.raw"))
        served = origin.bytes_sent("/images/disk.raw")
        assert served <= DROP_AT + SIZE

        # A second node, same image, a wrong checksum: served from the cache (the
        # origin sends nothing), and the command fails with the disk wiped.
        with loop_device(tmp_path / "disk2", 64 * MIB) as disk2:
            wire = prepare_image(disk2, tmp_path, url, "0" * 64, squid.url)
            assert wire["command_status"] == "FAILED", wire
            assert wire["command_error"]["type"] == "ImageChecksumError", wire
            assert read_device(disk2, MIB) == bytes(MIB)
        last = squid.wait_for_log(3)[-1]
        assert last.result.endswith("HIT") and last.status == 200, last
        assert origin.bytes_sent("/images/disk.raw") == served


def test_qcow2_tables_after_data_by_range_through_squid(
        squid: Squid, image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A qcow2 whose L2 and L1 tables come after its data, with a hold limit small
    # enough that the agent must fetch them with Range requests on a second
    # connection while its stream is open: through a cold cache (the ranges join
    # the fetch in progress), then from the warm one.
    monkeypatch.setattr(qcow2, "HOLD_LIMIT", 64 << 10)
    plain = tmp_path / "plain.qcow2"
    done = subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(image), str(plain)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    late = relocate_tables(plain, tmp_path / "late.qcow2")
    sha = file_digest(late)
    with ImageServer() as origin:
        url = origin.serve("/images/late.qcow2", late)
        for n in (1, 2):
            with loop_device(tmp_path / f"disk{n}", 64 * MIB) as disk:
                wire = prepare_image(disk, tmp_path, url, sha, squid.url,
                                     disk_format="qcow2")
                assert wire["command_status"] == "SUCCEEDED", wire
                assert wire["command_result"]["write_method"] == "stream", wire
                assert device_digest(disk, SIZE) == file_digest(image)
            if n == 1:
                cold = origin.bytes_sent("/images/late.qcow2")
                # Squid fetched the whole file once for the stream and the ranges.
                assert cold <= late.stat().st_size, origin.requests("/images/late.qcow2")
        assert origin.bytes_sent("/images/late.qcow2") == cold
    ranges = [e for e in squid.access_log() if e.status == 206]
    assert len(ranges) >= 2, squid.access_log()
