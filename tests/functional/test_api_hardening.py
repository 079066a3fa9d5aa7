# SPDX-License-Identifier: Apache-2.0
"""The real agent process on 127.0.0.1 under hostile clients, big bodies and no token.

Each test starts a standalone agent (its own config file, ephemeral port) and
stops it; every loop is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.functional.agent_process import AgentProcess

TOKEN = "h" * 43
MIB = 1 << 20
BASE = {"listen_host": "127.0.0.1", "listen_port": 0, "agent_token": TOKEN,
        "enable_auto_tls": False}


class Running:
    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        self.port = wait_for_port(agent)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict[str, int]:
        """VmRSS and VmHWM of the agent, KiB."""
        out = {}
        for line in Path(f"/proc/{self.agent.proc.pid}/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1])
        return out

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.agent.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in ticks

    def command(self, name: str, params: dict, **kw) -> requests.Response:
        return requests.post(self.url + "/v1/commands/", params={"agent_token": TOKEN, **kw},
                             data=json.dumps({"name": name, "params": params}), timeout=60)


def wait_for_port(agent: AgentProcess, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in agent.output().splitlines():
            if "Serving the agent API on" in line:
                return int(line.split("Serving the agent API on ")[1].split()[0].rsplit(":", 1)[1])
        if agent.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"the agent did not start:\n{agent.output()}")


@contextlib.contextmanager
def standalone(name: str = "hardening", nofile: int | None = None,
               **options: object) -> Iterator[Running]:
    agent = AgentProcess({**BASE, **options}, args=("--standalone",), name=name,
                         nofile=nofile)
    try:
        yield Running(agent)
    finally:
        assert agent.stop() == 0, agent.output()


def raw_request(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


# --- item 2: hostile clients ---------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection():
    with standalone() as agent:
        conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5)
        conn.request("GET", "/v1/status")
        first = conn.getresponse()
        assert first.status == 200 and json.loads(first.read())["version"] == "13.0.0"
        sock = conn.sock
        for _ in range(50):
            conn.request("GET", "/v1/status")
            r = conn.getresponse()
            assert r.status == 200 and r.getheader("Connection") is None
            r.read()
        assert conn.sock is sock  # the same TCP connection throughout
        # HTTP/1.0 and "Connection: close" are honoured.
        reply = raw_request(agent.port, b"GET /v1/status HTTP/1.0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200") and b"Connection: close" in reply
        conn.close()


def test_idle_and_slow_clients_are_closed_after_the_read_timeout():
    with standalone(api_read_timeout=1) as agent:
        idle = socket.create_connection(("127.0.0.1", agent.port), timeout=10)
        slow = socket.create_connection(("127.0.0.1", agent.port), timeout=10)
        start = time.monotonic()
        slow.sendall(b"GET /v1/status HTTP/1.1\r\n")
        for _ in range(3):  # a header line now and then: the head as a whole has 1 s
            time.sleep(0.4)
            with contextlib.suppress(OSError):
                slow.sendall(b"X-Slow: 1\r\n")
        assert idle.recv(100) == b""
        with contextlib.suppress(ConnectionResetError):
            assert slow.recv(100) == b""
        assert time.monotonic() - start < 8
        idle.close()
        slow.close()
        assert requests.get(agent.url + "/v1/status", timeout=5).status_code == 200


def test_connection_cap_evicts_idle_clients_and_refuses_quickly_when_all_are_busy():
    with standalone(api_max_connections=4) as agent:
        idle = [socket.create_connection(("127.0.0.1", agent.port)) for _ in range(4)]
        # At the cap with only idle clients: the oldest idle one makes room.
        assert requests.get(agent.url + "/v1/status", timeout=5).status_code == 200
        for s in idle:
            s.close()
        time.sleep(0.5)
        # Four clients inside a request (head sent, body pending) are busy, not idle.
        busy = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", agent.port), timeout=10)
            s.sendall(b"POST /v1/commands/?agent_token=" + TOKEN.encode()
                      + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            busy.append(s)
        time.sleep(0.5)
        extra = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
        reply = extra.recv(1000)
        assert reply.startswith(b"HTTP/1.1 503") and b"too many connections" in reply
        extra.close()
        for s in busy:
            s.close()


def test_status_answers_while_1100_half_open_connections_are_held():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"this test needs 1,300 open files (hard limit {hard})")
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300), hard))
    held: list[socket.socket] = []
    try:
        with standalone(nofile=1024) as agent:
            for _ in range(1100):
                s = socket.socket()
                s.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    s.connect(("127.0.0.1", agent.port))
                held.append(s)
            time.sleep(1)
            cpu = agent.cpu_seconds()
            for _ in range(5):
                r = requests.get(agent.url + "/v1/status", timeout=2)
                assert r.status_code == 200
            time.sleep(2)
            # Holding them costs no CPU: no loop spinning on accept.
            assert agent.cpu_seconds() - cpu < 1.0
            assert agent.agent.proc.poll() is None
    finally:
        for s in held:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_deep_json_is_a_400_naming_the_problem():
    with standalone() as agent:
        body = '{"name": "log.collect_system_logs", "params": {"a": ' + "[" * 1000 \
            + "]" * 1000 + "}}"
        r = requests.post(agent.url + "/v1/commands/", params={"agent_token": TOKEN},
                          data=body, timeout=10)
        assert r.status_code == 400
        assert "nested deeper than 100 levels" in r.json()["faultstring"]
        assert requests.get(agent.url + "/v1/status", timeout=5).status_code == 200


def test_logged_paths_are_escaped_and_forwarding_headers_ignored():
    with standalone(name="hardening-log") as agent:
        raw_request(agent.port, b"GET /v1/status%0a2030-01-01%20FORGED%20LINE HTTP/1.1\r\n"
                    b"Host: x\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)
        lines = agent.agent.output().splitlines()
    assert not any(line.startswith("2030-01-01 FORGED") for line in lines)
    logged = [line for line in lines if "FORGED LINE" in line]
    assert logged and "\\n2030-01-01 FORGED LINE" in logged[0]
    assert "127.0.0.1 - GET" in logged[0] and "203.0.113.9" not in logged[0]


def test_forwarded_for_is_used_from_a_trusted_proxy_only():
    with standalone(name="hardening-proxy", api_trusted_proxies="127.0.0.0/8") as agent:
        requests.get(agent.url + "/v1/status", headers={"X-Forwarded-For": "203.0.113.9"},
                     timeout=5)
        time.sleep(0.3)
        assert "203.0.113.9 - GET /v1/status" in agent.agent.output()


def test_host_header_is_not_reflected():
    with standalone() as agent:
        r = requests.get(agent.url + "/", headers={"Host": "evil.example"}, timeout=5)
        assert r.status_code == 200 and "evil" not in r.text
        r = requests.get(agent.url + "/v1", headers={"Host": "evil.example"}, timeout=5,
                         allow_redirects=False)
        assert r.status_code == 308 and r.headers["Location"] == "/v1/"


# --- item 3: bounded memory ----------------------------------------------------------


def test_one_big_rejected_body_costs_at_most_its_size_plus_32_mib():
    with standalone() as agent:
        requests.get(agent.url + "/v1/status", timeout=5)
        before = agent.status()
        size = 64 * MIB - 4096
        filler = "A" * (size - 100)
        body = json.dumps({"name": "nope.command", "params": {"configdrive": filler}})
        assert len(body) <= 64 * MIB
        r = requests.post(agent.url + "/v1/commands/", params={"agent_token": TOKEN},
                          data=body, timeout=60)
        assert r.status_code == 404 and "nope" in r.json()["faultstring"]
        after = agent.status()
        peak_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
        assert after["VmHWM"] <= max(before["VmHWM"], before["VmRSS"] + (len(body) >> 10)
                                     + 32 * 1024), f"peak grew by {peak_mib:.0f} MiB"
        # Over the limit: 413 from the Content-Length, before anything is read.
        with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as s:
            s.sendall(b"POST /v1/commands/?agent_token=" + TOKEN.encode() + b" HTTP/1.1\r\n"
                      b"Host: x\r\nContent-Length: %d\r\n\r\n" % (64 * MIB + 1))
            reply = s.recv(4096)
            assert reply.startswith(b"HTTP/1.1 413") and b"command_body_limit" in reply
            with pytest.raises(OSError):  # closed: the body is never read
                for _ in range(200):
                    s.sendall(b"x" * MIB)


@pytest.mark.parametrize("where", ["node", "ports"])
def test_failed_commands_with_big_params_leave_memory_where_it_was(where):
    with standalone() as agent:
        step = {"step": "no_such_step", "interface": "deploy", "priority": 1}
        agent.command("clean.execute_clean_step",
                      {"step": step, "node": {}, "ports": []}, wait="true")
        before = agent.status()["VmRSS"]
        for i in range(6):
            blob = chr(65 + i) * (16 * MIB)
            node = {"uuid": "n", "extra": {"blob": blob}} if where == "node" else {"uuid": "n"}
            ports = [{"address": "52:54:00:00:00:01", "extra": {"blob": blob}}] \
                if where == "ports" else []
            del blob
            r = agent.command("clean.execute_clean_step",
                              {"step": step, "node": node, "ports": ports}, wait="true")
            assert r.status_code == 200 and r.json()["command_status"] == "FAILED"
        time.sleep(0.5)
        after = agent.status()["VmRSS"]
        assert after - before <= 16 * 1024, f"RSS grew by {(after - before) / 1024:.1f} MiB"
        listed = requests.get(agent.url + "/v1/commands/", params={"agent_token": TOKEN},
                              timeout=10)
        assert len(listed.content) < MIB
        assert [c["command_status"] for c in listed.json()["commands"]] == ["FAILED"] * 7


def test_history_is_bounded_in_count():
    with standalone() as agent:
        for _ in range(110):
            assert agent.command("log.collect_system_logs", {}).status_code == 200
        listed = requests.get(agent.url + "/v1/commands/", params={"agent_token": TOKEN},
                              timeout=10).json()["commands"]
        assert len(listed) == 100


# --- item 4: fail closed -------------------------------------------------------------


def test_standalone_without_a_token_refuses_commands():
    with standalone(name="hardening-notoken", agent_token="") as agent:
        r = requests.post(agent.url + "/v1/commands/", timeout=5,
                          data=json.dumps({"name": "log.collect_system_logs", "params": {}}))
        assert r.status_code == 401
        assert requests.get(agent.url + "/v1/status", timeout=5).status_code == 200
        assert "every command is refused (401)" in agent.agent.output()


def test_unauthenticated_standalone_is_explicit_and_loud():
    with standalone(name="hardening-open", agent_token="",
                    allow_unauthenticated_standalone=True) as agent:
        r = requests.get(agent.url + "/v1/commands/", timeout=5)
        assert r.status_code == 200
        assert "UNAUTHENTICATED" in agent.agent.output()


@pytest.mark.parametrize("image_id", ["../tmp/x/victim", "/tmp/x/victim", "..", "a/b",
                                      "x\x00y"])
def test_image_id_cannot_name_a_path(image_id, tmp_path):
    with standalone(name="hardening-path") as agent:
        info = {"id": image_id, "urls": ["http://127.0.0.1:1/image"],
                "os_hash_algo": "sha256", "os_hash_value": "0" * 64}
        r = agent.command("standby.prepare_image", {"image_info": info})
        assert r.status_code == 400
        assert "image_info.id" in r.json()["faultstring"]


def test_the_default_listen_address_serves_ipv4_and_ipv6():
    with standalone(listen_host="::") as agent:
        assert requests.get(agent.url + "/v1/status", timeout=5).status_code == 200
        r = requests.get(f"http://[::1]:{agent.port}/v1/status", timeout=5)
        assert r.status_code == 200


SERVER_SNIPPET = """
import sys, threading
from ironic_python_agent import server
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
# No clamp to the file limit: accept itself must run out of descriptors.
srv = server.APIServer("127.0.0.1", 0, app, limits=server.Limits(max_connections=10000))
print(srv.server_port, flush=True)
srv.serve_forever()
"""


def test_accept_out_of_descriptors_answers_503_without_spinning():
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SNIPPET], stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)))
    held: list[socket.socket] = []
    try:
        port = int(proc.stdout.readline())
        replies = []
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            held.append(s)
        time.sleep(1)
        stat = Path(f"/proc/{proc.pid}/stat")

        def cpu() -> float:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / 100

        before = cpu()
        time.sleep(2)
        assert cpu() - before < 0.5  # no loop spinning on a failing accept
        for s in held:
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                replies.append(s.recv(200))
        assert any(r.startswith(b"HTTP/1.1 503") for r in replies)
        assert proc.poll() is None
    finally:
        for s in held:
            s.close()
        proc.terminate()
        proc.wait(10)
