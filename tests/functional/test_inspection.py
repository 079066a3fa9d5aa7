# SPDX-License-Identifier: Apache-2.0
"""Inspection against a loopback inspector (tests/fake_inspector.py): a werkzeug
server on 127.0.0.1 that records every post and answers from a script (errors
first, then success)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from ironic_python_agent import config, errors, inspector
from tests.fake_inspector import FakeInspector

FAST = inspector.Retry(attempts=4, min_wait=0.05, max_wait=0.2)
SCRIPT = Path(sys.executable).parent / "ironic-collect-introspection-data"


@pytest.fixture
def server() -> Iterator[FakeInspector]:
    with FakeInspector() as inspector:
        yield inspector


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_conf(**overrides: Any) -> cfg.ConfigOpts:
    conf = config.load({}, [], config_files=[], config_dirs=[])
    for name, value in overrides.items():
        conf.set_override(name, value)
    return conf


PLUGIN = '''
def collect_broken(data, failures):
    raise RuntimeError("this collector always fails")
'''


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A third-party distribution whose collector raises; on sys.path and PYTHONPATH."""
    (tmp_path / "broken_collector.py").write_text(PLUGIN)
    dist = tmp_path / "broken_collector-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-collector\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [ironic_python_agent.inspector.collectors]
        broken = broken_collector:collect_broken
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_agent_flow_posts_inventory_and_collectors(server: FakeInspector,
                                                   broken_plugin: Path) -> None:
    conf = make_conf(inspection_callback_url=server.url("/v1/continue_inspection"),
                     inspection_collectors="default,broken,pci-devices,numa-topology,"
                                           "usb-devices,logs",
                     inspection_dhcp_wait_timeout=1)
    # BOOTIF names no interface here: the DHCP wait gives up after its timeout.
    params = {"BOOTIF": "01-02-fc-00-00-00-99"}
    assert inspector.inspect(conf, params, retry=FAST) == server.node_uuid
    post = server.posts[-1]
    assert post.path == "/v1/continue_inspection"
    assert "X-OpenStack-Ironic-API-Version" not in post.headers  # answered as inspector
    data = post.body
    inventory = data["inventory"]
    assert inventory["cpu"]["architecture"]
    assert inventory["interfaces"] and all(i["mac_address"] for i in inventory["interfaces"])
    assert isinstance(inventory["memory"]["total"], int)
    assert data["configuration"]["collectors"] == ["default", "broken", "pci-devices",
                                                   "numa-topology", "usb-devices", "logs"]
    assert data["configuration"]["managers"][0]["name"]
    assert data["boot_interface"] == "01-02-fc-00-00-00-99"
    assert isinstance(data["pci_devices"], list) and isinstance(data["usb_devices"], list)
    assert data["logs"]
    # The failing collector is reported and skipped; everything after it ran.
    assert data["error"].startswith("The following errors were encountered:\n* ")
    assert "collector broken failed: this collector always fails" in data["error"]


def test_returns_the_node_uuid(server: FakeInspector) -> None:
    conf = make_conf(inspection_callback_url=server.url(), inspection_collectors="pci-devices")
    assert inspector.inspect(conf, {}, retry=FAST) == server.node_uuid
    assert server.posts[0].body["error"] is None


def test_ironic_style_answer_with_node_and_config(server: FakeInspector) -> None:
    server.script = [(202, {"node": {"uuid": "4a9c1bd2-0000-4000-8000-000000000001"},
                            "config": {"heartbeat_timeout": 300}})]
    conf = make_conf(inspection_callback_url=server.url("/v1/continue_inspection"),
                     inspection_collectors="pci-devices")
    assert inspector.inspect(conf, {}, retry=FAST) == "4a9c1bd2-0000-4000-8000-000000000001"


def test_retries_on_5xx_and_409(server: FakeInspector) -> None:
    server.script = [(503, {"error": "busy"}), (500, "oops"), (409, {"error": "locked"})]
    conf = make_conf(inspection_callback_url=server.url(), inspection_collectors="pci-devices")
    assert inspector.inspect(conf, {}, retry=FAST) == server.node_uuid
    assert len(server.posts) == 4
    assert server.posts[0].body == server.posts[3].body


def test_client_error_is_not_retried(server: FakeInspector) -> None:
    server.script = [(404, {"error_message": "node not found"})]
    conf = make_conf(inspection_callback_url=server.url(), inspection_collectors="pci-devices")
    with pytest.raises(errors.InspectionError, match="error 404.*node not found"):
        inspector.inspect(conf, {}, retry=FAST)
    assert len(server.posts) == 1


def test_gives_up_after_the_retries(server: FakeInspector) -> None:
    server.script = [(503, "down")] * 10
    conf = make_conf(inspection_callback_url=server.url(), inspection_collectors="pci-devices")
    with pytest.raises(errors.InspectionError, match="after 4 tries.*503"):
        inspector.inspect(conf, {}, retry=FAST)
    assert len(server.posts) == 4


def test_connection_error_moves_to_the_next_url(server: FakeInspector) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/v1/continue"
    conf = make_conf(inspection_callback_url=f"{dead},{server.url()}",
                     inspection_collectors="pci-devices")
    assert inspector.inspect(conf, {}, retry=FAST) == server.node_uuid
    assert len(server.posts) == 1


def test_unreachable_callback_raises() -> None:
    conf = make_conf(inspection_callback_url=f"http://127.0.0.1:{closed_port()}/v1/continue",
                     inspection_collectors="pci-devices")
    with pytest.raises(errors.InspectionError, match="after 4 tries: cannot connect"):
        inspector.inspect(conf, {}, retry=FAST)


def test_api_url_with_collectors_posts_to_continue_inspection(server: FakeInspector) -> None:
    conf = make_conf(api_url=f"http://127.0.0.1:{server.port}", inspection_collectors="pci-devices")
    assert inspector.inspect(conf, {}, retry=FAST) == server.node_uuid
    assert server.posts[0].path == "/v1/continue_inspection"


# -- the console script ---------------------------------------------------------------

def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"{SCRIPT} is not installed (pip install -e .)"
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": ""})


def test_script_one_shot_posts_and_exits_0(server: FakeInspector) -> None:
    result = run_script("--inspection_callback_url", server.url(),
                        "--inspection_collectors", "default,numa-topology")
    assert result.returncode == 0, result.stderr
    assert len(server.posts) == 1
    assert server.posts[0].body["inventory"]["interfaces"]
    assert f"for node {server.node_uuid}" in result.stderr


def test_script_exits_1_with_a_clear_message_when_unreachable() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1/continue"
    result = run_script("--inspection_callback_url", url, "--inspection_collectors",
                        "pci-devices", "--inspection_post_attempts", "1")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"ironic-collect-introspection-data: could not post the inspection data "
                    f"to {url} (see the errors above)")
    assert "cannot connect to" in result.stderr


def test_script_without_or_with_a_bad_url_exits_2() -> None:
    result = run_script()
    assert result.returncode == 2
    assert "no --inspection_callback_url given" in result.stderr
    result = run_script("--inspection_callback_url", "ftp://inspector/v1/continue")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "ironic-collect-introspection-data: option inspection_callback_url="
        "'ftp://inspector/v1/continue' is invalid: 'ftp://inspector/v1/continue' is not an "
        "http(s) URL or 'mdns'")


def test_script_daemon_keeps_posting(server: FakeInspector) -> None:
    server.script = [(503, "first one fails")]
    proc = subprocess.Popen([str(SCRIPT), "--inspection_callback_url", server.url(),
                             "--inspection_collectors", "pci-devices",
                             "--inspection_post_attempts", "1",
                             "--introspection_daemon", "--introspection_daemon_post_interval", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # 1 failed one-shot post, then the loop: after the error the interval is 2.7 s.
        server.wait_for_posts(3, timeout=60)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
