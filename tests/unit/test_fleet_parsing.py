# SPDX-License-Identifier: Apache-2.0
"""The pure parts of the fleet benchmark and of the Squid harness."""

from __future__ import annotations

from pathlib import Path

from tests.bench import fleet
from tests.squid import AccessEntry, parse_access_log, render_config


def test_squid_config_sizes_objects_before_the_cache_dir() -> None:
    lines = render_config(3128, Path("/w")).splitlines()
    assert lines[0] == "http_port 127.0.0.1:3128"
    size = lines.index("maximum_object_size 64 GB")
    cache_dir = next(i for i, line in enumerate(lines) if line.startswith("cache_dir "))
    assert size < cache_dir  # Squid takes the cache_dir's max-size from the line above
    for wanted in ("collapsed_forwarding on", "range_offset_limit -1",
                   "quick_abort_min -1 KB"):
        assert wanted in lines
    assert all("/w" in line for line in lines if line.startswith(("pid_", "cache_log")))


def test_access_log_lines() -> None:
    text = ("0 0 - error:transaction-end-before-headers NONE_NONE 127.0.0.1 HIER_NONE\n"
            "200 268435798 GET http://127.0.0.1:4/i.raw TCP_MISS 127.0.0.1 HIER_DIRECT\n"
            "206 408 GET http://127.0.0.1:4/i.raw TCP_HIT 127.0.0.1 HIER_NONE\n"
            "garbage\n")
    assert parse_access_log(text) == [
        AccessEntry(200, 268435798, "GET", "http://127.0.0.1:4/i.raw", "TCP_MISS",
                    "127.0.0.1", "HIER_DIRECT"),
        AccessEntry(206, 408, "GET", "http://127.0.0.1:4/i.raw", "TCP_HIT", "127.0.0.1",
                    "HIER_NONE")]


def test_agent_written_line_and_proc_stat() -> None:
    log = ("2026-12-02 14:10:03,500 INFO ironic_python_agent.imagewrite.pipeline: Image "
           "fleet.raw written to /dev/loop0: bytes=268435456 written=268435456 "
           "seconds=50.06 MiB/s=5.1\n")
    assert fleet.parse_written(log) == (50.06, 5.1)
    assert fleet.parse_written("nothing yet") is None
    stat = ("19847 (ironic: Service (x)) S 19822 19822 1 0 -1 4194624 1 2 3 4 "
            "500 250 30 20 20 0 300 0 5 1 2")
    assert fleet.parse_cpu(stat, 100) == 8.0
