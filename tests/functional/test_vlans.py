# SPDX-License-Identifier: Apache-2.0
"""``ipa-enable-vlan-interfaces`` from real LLDP frames, inside a network namespace this test makes.

Three veth pairs live in the namespace: the agent's side ``vln0``..``vln2``,
the "switch" side ``vsw0``..``vsw2``. A sender in the namespace writes LLDP
frames with IEEE 802.1 VLAN-name TLVs into ``vsw0`` (VLANs 100, 200) and
``vsw1`` (VLAN 300) over an ``AF_PACKET`` socket, repeating as a switch does;
``vsw2`` stays silent. The agent's code runs in a child process inside the
namespace (``ip netns exec``). The VLANs it makes are read back with
``ip -d -j link``, not with the code under test.

Making VLAN interfaces needs the kernel's 8021q; without it (``modprobe 8021q``
fails) the test that makes them skips, and the agent's start-up step is checked
to log ip's failure and go on.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from ironic_python_agent.inspection import lldp

PAIRS = (("vln0", "vsw0"), ("vln1", "vsw1"), ("vln2", "vsw2"))
SWITCH_VLANS = {"vsw0": (100, 200), "vsw1": (300,)}
TIMEOUT = 1.0

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for ip netns")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"lipa-vlan-{os.getpid()}"
    ip("netns", "add", name)
    try:
        for n, (agent_side, switch_side) in enumerate(PAIRS):
            # fixed MACs: the inventory leaves out MACs starting with fa:
            ip("-n", name, "link", "add", agent_side, "address", f"02:00:00:00:0c:0{n}",
               "type", "veth", "peer", "name", switch_side)
            ip("-n", name, "link", "set", switch_side, "up")
        # the agent's side stays down: listening for LLDP brings it up
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


def vlan_support(netns: str) -> str | None:
    """None when this kernel makes VLAN interfaces (8021q loaded first), else ip's error."""
    subprocess.run(["modprobe", "-q", "8021q"], check=False, capture_output=True, timeout=30)
    probe = ip("-n", netns, "link", "add", "link", "vln2", "name", "probe.1", "type", "vlan",
               "id", "1", check=False)
    if probe.returncode != 0:
        return probe.stderr.strip()
    ip("-n", netns, "link", "delete", "probe.1")
    return None


@pytest.fixture
def vlan_netns(netns: str) -> str:
    """The namespace, or a skip when this kernel cannot make VLAN interfaces."""
    error = vlan_support(netns)
    if error is not None:
        pytest.skip(f"this kernel makes no VLAN interfaces (no 8021q module; "
                    f"modprobe 8021q failed): {error}")
    return netns


def vlan_name_tlv(vid: int, name: str) -> tuple[int, bytes]:
    """IEEE 802.1 VLAN Name TLV: OUI 00-80-c2, subtype 3, VLAN id, name length, name."""
    return (lldp.TLV_ORG_SPECIFIC, lldp.OUI_IEEE_8021 + bytes([lldp.SUBTYPE_VLAN_NAME])
            + struct.pack("!HB", vid, len(name)) + name.encode())


def switch_frame(port: str, vids: tuple[int, ...]) -> bytes:
    tlvs = [(1, b"\x04" + bytes.fromhex("88e0f3b5a1c0")), (2, b"\x05" + port.encode()),
            (3, struct.pack("!H", 120)), (5, b"tor-sw-01")]
    tlvs += [vlan_name_tlv(vid, f"vlan-{vid}") for vid in vids]
    frame = lldp.encode_frame(bytes.fromhex("88e0f3b5a1c0"), tlvs)
    return frame + bytes(max(0, 60 - len(frame)))


PRELUDE = textwrap.dedent("""
    import json, logging, socket, sys, threading, time
    from ironic_python_agent import config, netutils, vlans
    from ironic_python_agent.hardware import inventory

    args = json.loads(sys.argv[1])
    stop = threading.Event()

    def send():  # every 0.2 s on each switch port, until the capture is over
        while not stop.wait(0.2):
            for ifname, hexframe in args["frames"].items():
                with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
                    sock.bind((ifname, 0))
                    sock.send(bytes.fromhex(hexframe))

    class Keep(logging.Handler):
        def emit(self, record):
            log.append(record.getMessage())

    log = []
    logging.getLogger().addHandler(Keep(logging.INFO))
    logging.getLogger().setLevel(logging.INFO)
    sender = threading.Thread(target=send)
    sender.start()
    result = {}
    try:
""")

EPILOGUE = textwrap.dedent("""
    finally:
        stop.set()
        sender.join()
    result["log"] = log
    result["candidates"] = inventory.interface_candidates()
    print(json.dumps(result))
""")


def run_in(netns: str, body: str) -> dict:
    frames = {port: switch_frame(f"ge-0/0/{n}", vids).hex()
              for n, (port, vids) in enumerate(SWITCH_VLANS.items())}
    script = PRELUDE + textwrap.indent(textwrap.dedent(body), "    ") + EPILOGUE
    proc = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script,
                           json.dumps({"frames": frames, "timeout": TIMEOUT})],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def kernel_vlans(netns: str) -> dict[str, tuple[str, int]]:
    """``{name: (parent, vid)}`` of the namespace's VLAN interfaces, as iproute2 reports them."""
    links = json.loads(ip("-n", netns, "-d", "-j", "link", "show").stdout)
    return {li["ifname"]: (li["link"], li["linkinfo"]["info_data"]["id"]) for li in links
            if li.get("linkinfo", {}).get("info_kind") == "vlan"}


def test_lldp_names_the_vlans_for_all_and_for_one_interface(netns: str) -> None:
    result = run_in(netns, """
        request = vlans.parse("all")
        found, _ = vlans.wanted(request, ["vln0", "vln1", "vln2"], args["timeout"])
        result["all"] = [[v.entry, v.parent, v.vid] for v in found]
        request = vlans.parse("vln1,nosuch0,vln0.150")
        found, result["problems"] = vlans.wanted(request, ["vln0", "vln1", "vln2"],
                                                 args["timeout"])
        result["named"] = [[v.entry, v.parent, v.vid] for v in found]
    """)
    assert result["all"] == [["all", "vln0", 100], ["all", "vln0", 200], ["all", "vln1", 300]]
    assert result["named"] == [["vln0.150", "vln0", 150], ["vln1", "vln1", 300]]
    assert f"No LLDP frame on vln2 within {TIMEOUT:.1f} s" in result["log"]
    assert result["problems"] == ["ipa-enable-vlan-interfaces entry 'nosuch0': no interface "
                                  "'nosuch0' on this machine; skipped"]


def test_vlans_are_made_and_listed_in_the_inventory(vlan_netns: str) -> None:
    # An explicit VLAN and a named parent's LLDP VLANs; two bad entries are logged.
    result = run_in(vlan_netns, """
        result["made"] = vlans.bring_up("vln0.100,vln1,nosuch0.5,vln0.x",
                                        ["vln0", "vln1", "vln2"], args["timeout"])
    """)
    assert result["made"] == ["vln0.100", "vln1.300"]
    assert kernel_vlans(vlan_netns) == {"vln0.100": ("vln0", 100), "vln1.300": ("vln1", 300)}
    assert ("ipa-enable-vlan-interfaces entry 'vln0.x': VLAN id 'x' is not a number; skipped"
            in result["log"])
    assert ("ipa-enable-vlan-interfaces entry 'nosuch0.5': no interface 'nosuch0' on this "
            "machine; skipped") in result["log"]
    assert {"vln0.100", "vln1.300"} <= set(result["candidates"])

    # all, from the kernel parameter through upstream's name: the existing ones are no error.
    result = run_in(vlan_netns, """
        conf = config.load({"ipa-enable-vlan-interfaces": "all",
                            "ipa-lldp-timeout": str(args["timeout"])}, [],
                           config_files=[], config_dirs=[])
        config.use(conf)
        result["made"] = netutils.bring_up_vlan_interfaces(["vln0", "vln1", "vln2", "vln0.100"])
        result["is_vlan"] = netutils.is_vlan("vln0.200")
    """)
    assert result["made"] == ["vln0.200"]
    assert kernel_vlans(vlan_netns) == {"vln0.100": ("vln0", 100), "vln0.200": ("vln0", 200),
                                        "vln1.300": ("vln1", 300)}
    assert "VLAN interface vln1.300 already exists" in result["log"]
    assert f"No LLDP frame on vln2 within {TIMEOUT:.1f} s" in result["log"]
    assert result["is_vlan"]
    up = json.loads(ip("-n", vlan_netns, "-j", "link", "show", "vln0.200").stdout)[0]
    assert "UP" in up["flags"]


def test_agent_start_up_applies_the_kernel_parameter(netns: str) -> None:
    # The agent's own step, on every kernel: without 8021q, ip's failure is a log
    # line naming the entry, and start-up goes on.
    makes_vlans = vlan_support(netns) is None
    result = run_in(netns, """
        from ironic_python_agent import agent
        conf = config.load({"ipa-enable-vlan-interfaces": "vln1,vln0.x",
                            "ipa-lldp-timeout": str(args["timeout"])}, [],
                           config_files=[], config_dirs=[])
        # veth pairs have no /sys/class/net/<if>/device: name them as the candidates.
        inventory.interface_candidates = lambda net="/sys/class/net": ["vln0", "vln1", "vln2"]
        agent.Agent(conf, {})._bring_up_vlans()
    """)
    assert ("ipa-enable-vlan-interfaces entry 'vln0.x': VLAN id 'x' is not a number; skipped"
            in result["log"])
    if makes_vlans:
        assert kernel_vlans(netns) == {"vln1.300": ("vln1", 300)}
        assert "VLAN interfaces made: vln1.300" in result["log"]
    else:
        assert any(line.startswith("ipa-enable-vlan-interfaces entry 'vln1': cannot bring up "
                                   "vln1.300: ip link add link vln1 name vln1.300 type vlan")
                   for line in result["log"]), result["log"]
        assert "VLAN interfaces made: none" in result["log"]
