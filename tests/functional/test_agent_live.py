# SPDX-License-Identifier: Apache-2.0
"""The real agent process against a fake Ironic on 127.0.0.1."""

import json
import socket
import ssl
import time

import pytest
import requests

from tests.fake_ironic import FakeIronic
from tests.functional.agent_process import AgentProcess

BASE = {"listen_host": "127.0.0.1", "listen_port": 0, "advertise_host": "127.0.0.1",
        "lookup_interval": 0}


@pytest.fixture
def ironic():
    with FakeIronic(heartbeat_timeout=2) as fake:
        yield fake


def start(ironic, **options):
    return AgentProcess({**BASE, "api_url": ironic.url, **options})


def test_lookup_heartbeat_and_commands_over_http(ironic):
    agent = start(ironic, enable_auto_tls=False)
    try:
        beat = ironic.wait_for_heartbeat(timeout=20)
        lookup = ironic.wait_for_lookup(timeout=1)
        assert lookup.headers["X-Openstack-Ironic-Api-Version"] == "1.62"
        assert beat.headers["X-Openstack-Ironic-Api-Version"] == "1.68"
        body = beat.body
        assert body["agent_token"] == ironic.agent_token
        assert body["agent_version"] == "13.0.0"
        assert "agent_verify_ca" not in body
        url = body["callback_url"]
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(url + "/v1/status", timeout=5).json()["version"] == "13.0.0"
        r = requests.post(url + "/v1/commands/", params={"agent_token": ironic.agent_token,
                                                         "wait": "true"},
                          data=json.dumps({"name": "poll.get_node_info", "params": {}}),
                          timeout=10)
        assert r.status_code == 200
        assert r.json()["command_result"]["uuid"] == ironic.node_uuid
        assert requests.get(url + "/v1/commands/", timeout=5).status_code == 401
        # Heartbeats keep coming at 0.3-0.6 x heartbeat_timeout (2 s here).
        ironic.wait_for_heartbeat(timeout=10, count=3)
        cb = {b.body["callback_url"] for b in ironic.heartbeats}
        assert cb == {url}  # Ironic rejects a callback URL that changes
    finally:
        assert agent.stop() == 0


def test_auto_tls_serves_the_certificate_it_sends(ironic, tmp_path):
    agent = start(ironic)
    try:
        beat = ironic.wait_for_heartbeat(timeout=20)
        url = beat.body["callback_url"]
        assert url.startswith("https://127.0.0.1:")
        ca = tmp_path / "agent.pem"
        ca.write_text(beat.body["agent_verify_ca"])
        r = requests.get(url + "/v1/commands/", params={"agent_token": ironic.agent_token},
                         verify=str(ca), timeout=5)
        assert r.status_code == 200 and r.json() == {"commands": []}
        # The lookup said tls_min_version 1.3: TLS 1.2 clients are refused.
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
        with socket.create_connection((host, port), timeout=5) as sock:
            with pytest.raises(ssl.SSLError):
                ctx.wrap_socket(sock, server_hostname=host).close()
    finally:
        assert agent.stop() == 0


def test_lookup_waits_for_the_node_then_times_out_clearly(ironic):
    ironic.known_macs = ["02:00:00:00:00:99"]  # never ours
    agent = start(ironic, lookup_timeout=3)
    rc = agent.wait(timeout=30)
    out = agent.output()
    agent.stop()
    assert rc == 1
    assert len(ironic.lookups) >= 2  # it retried
    last = out.strip().splitlines()[-1]
    assert "no node found in Ironic" in last and "within 3 s" in last


def test_heartbeat_survives_an_ironic_outage(ironic):
    ironic.heartbeat_status = 503
    agent = start(ironic, enable_auto_tls=False)
    try:
        ironic.wait_for_heartbeat(timeout=20)
        ironic.heartbeat_status = 202
        first_ok = len(ironic.heartbeats) + 1
        ironic.wait_for_heartbeat(timeout=20, count=first_ok + 1)
        assert agent.proc.poll() is None
    finally:
        agent.stop()


@pytest.mark.parametrize("cmdline,needle", [
    ("ipa-api-url=ftp://nowhere", "ipa-api-url='ftp://nowhere'"),
    ("ipa-listen-port=nine", "ipa-listen-port='nine'"),
    ("ipa-insecure=perhaps", "ipa-insecure='perhaps'"),
])
def test_bad_kernel_parameter_is_one_clear_line(cmdline, needle):
    agent = AgentProcess({}, cmdline=cmdline)
    rc = agent.wait(timeout=20)
    out = agent.output()
    agent.stop()
    assert rc == 2
    assert needle in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_sigterm_stops_quickly(ironic):
    agent = start(ironic, enable_auto_tls=False)
    ironic.wait_for_heartbeat(timeout=20)
    t = time.monotonic()
    assert agent.stop() == 0
    assert time.monotonic() - t < 5


def test_standalone_serves_without_ironic(tmp_path):
    token = "s" * 43
    agent = AgentProcess({**BASE, "listen_port": 0, "agent_token": token},
                         args=("--standalone",))
    try:
        deadline = time.monotonic() + 20
        port = None
        while time.monotonic() < deadline and port is None:
            for line in agent.output().splitlines():
                if "Serving the agent API on" in line:
                    port = int(line.rsplit(":", 1)[1].split()[0])
            time.sleep(0.1)
        assert port, agent.output()
        url = f"http://127.0.0.1:{port}/v1/commands/"
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, params={"agent_token": token}, timeout=5).status_code == 200
    finally:
        assert agent.stop() == 0
