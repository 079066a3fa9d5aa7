# SPDX-License-Identifier: Apache-2.0
"""LLDP frames on real veth pairs inside a network namespace this test makes.

Two veth pairs live in the namespace: the agent listens on ``lla0`` and
``lla1``, a sender writes LLDP frames (padded to the Ethernet minimum, as a
switch sends them) into the peers ``llb0`` / ``llb1``. The capture runs in a
child process inside the namespace (``ip netns exec``), through the code paths
the agent uses: the generic manager's ``collect_lldp_data``, the inventory with
``collect_lldp`` set, and the ``lldp`` inspection collector.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironic_python_agent.inspection import lldp

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "lldp" / "synthetic-switch.hex"
PAIRS = (("lla0", "llb0"), ("lla1", "llb1"))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for ip netns")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"lipa-lldp-{os.getpid()}"
    ip("netns", "add", name)
    try:
        for n, (a, b) in enumerate(PAIRS):
            ip("-n", name, "link", "add", a, "address", f"02:00:00:00:0a:0{n}", "type", "veth",
               "peer", "name", b)
            ip("-n", name, "link", "set", b, "up")
        # lla1 stays down: the capture has to bring it up itself.
        ip("-n", name, "link", "set", "lla0", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


def switch_frame(port: str) -> bytes:
    """The sample switch frame with another port id, padded to 60 bytes as on the wire."""
    tlvs = [(t, bytes.fromhex(v)) for t, v in lldp.parse_tlvs(
        bytes.fromhex(SAMPLE.read_text().strip())) if t != lldp.TLV_END]
    tlvs[1] = (2, b"\x05" + port.encode())
    frame = lldp.encode_frame(bytes.fromhex("88e0f3b5a1c0"), tlvs)
    return frame + bytes(max(0, 60 - len(frame)))


PRELUDE = textwrap.dedent("""
    import json, socket, sys, threading, time
    from ironic_python_agent import config
    from ironic_python_agent.hardware import GenericHardwareManager, inventory

    def send_later(plan):
        def send():
            start = time.monotonic()
            for delay, ifname, hexframe in plan:
                time.sleep(max(0, start + delay - time.monotonic()))
                with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
                    sock.bind((ifname, 0))
                    sock.send(bytes.fromhex(hexframe))
        thread = threading.Thread(target=send)
        thread.start()
        return thread

    args = json.loads(sys.argv[1])
    conf = config.load({"ipa-lldp-timeout": str(args["timeout"]), "ipa-collect-lldp": "1"}, [],
                       config_files=[], config_dirs=[])
    config.use(conf)
    # veth pairs have no /sys/class/net/<if>/device: name them as the candidates.
    inventory.interface_candidates = lambda net="/sys/class/net": ["lla0", "lla1"]
    sender = send_later(args["plan"])
    start = time.monotonic()
""")


def run_in(netns: str, body: str, timeout: float, plan: list[tuple[float, str, bytes]]
           ) -> dict:
    args = json.dumps({"timeout": timeout,
                       "plan": [(d, i, f.hex()) for d, i, f in plan]})
    script = PRELUDE + textwrap.dedent(body) + textwrap.dedent("""
        sender.join()
        result["elapsed"] = time.monotonic() - start
        print(json.dumps(result))
    """)
    proc = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script, args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def expected(port: str) -> list[list]:
    return [list(t) for t in lldp.parse_tlvs(switch_frame(port))]


def test_inventory_holds_each_interfaces_tlvs(netns: str) -> None:
    plan = [(0.3, "llb0", switch_frame("ge-0/0/7")), (0.6, "llb1", switch_frame("ge-0/0/8"))]
    result = run_in(netns, """
        info = GenericHardwareManager().list_hardware_info()
        result = {i["name"]: i["lldp"] for i in info["interfaces"]}
    """, 5.0, plan)
    assert result["lla0"] == expected("ge-0/0/7")
    assert result["lla1"] == expected("ge-0/0/8")  # brought up to listen
    # As upstream: End TLV last, padding after it not read as TLVs.
    assert result["lla0"][-1] == [0, ""]
    assert result["lla0"][1] == [2, (b"\x05ge-0/0/7").hex()]
    assert result["elapsed"] < 4.0


def test_timeout_restarts_after_each_frame_and_silence_is_an_empty_list(netns: str) -> None:
    # 1.5 s apart with a 1.0 s timeout: both heard, because each frame restarts the wait.
    plan = [(0.6, "llb0", switch_frame("a")), (1.4, "llb1", switch_frame("b"))]
    result = run_in(netns, """
        result = {"data": GenericHardwareManager().collect_lldp_data()}
    """, 1.0, plan)
    assert result["data"] == {"lla0": expected("a"), "lla1": expected("b")}

    # A gap longer than the timeout: the capture ends, lla1 reports [].
    plan = [(0.2, "llb0", switch_frame("a")), (2.5, "llb1", switch_frame("b"))]
    result = run_in(netns, """
        t0 = time.monotonic()
        result = {"data": GenericHardwareManager().collect_lldp_data(["lla0", "lla1", "lo"])}
        result["capture"] = time.monotonic() - t0
    """, 0.8, plan)
    assert result["data"] == {"lla0": expected("a"), "lla1": []}
    assert 0.9 <= result["capture"] < 2.0


def test_lldp_collector_posts_the_same_tlvs(netns: str) -> None:
    plan = [(0.3, "llb0", switch_frame("x")), (0.4, "llb1", switch_frame("y"))]
    result = run_in(netns, """
        from ironic_python_agent.inspection import collectors
        from ironic_python_agent.inspector import AccumulatedFailures
        data = {"inventory": {"interfaces": [{"name": "lla0"}, {"name": "lla1"}]}}
        collectors.collect_lldp(data, AccumulatedFailures(), collectors.Context(conf=conf))
        result = {"lldp_raw": data["lldp_raw"]}
    """, 5.0, plan)
    assert result["lldp_raw"] == {"lla0": expected("x"), "lla1": expected("y")}


def test_inventory_without_collect_lldp_has_null_lldp(netns: str) -> None:
    t0 = time.monotonic()
    result = run_in(netns, """
        conf.set_override("collect_lldp", False)
        result = {i["name"]: i["lldp"] for i in
                  GenericHardwareManager().list_hardware_info()["interfaces"]}
    """, 5.0, [])
    assert result["lla0"] is None and result["lla1"] is None
    assert time.monotonic() - t0 < 4.0
