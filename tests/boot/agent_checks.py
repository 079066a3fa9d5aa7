# SPDX-License-Identifier: Apache-2.0
"""Query an agent booted under QEMU, as the boot tests of every image do.

The agent's heartbeat names its callback URL (port 9999 in the guest); the host
reaches it through the guest's hostfwd on 127.0.0.1. With automatic TLS the
certificate names the guest's own address, so the chain is checked against the
CA the agent sent in the heartbeat, not the host name::

    beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=300, heartbeat_timeout=180)
    api = AgentAPI.from_heartbeat(guest, beat, ironic.agent_token)
    inventory = check_booted_agent(api, guest.spec)
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic

AGENT_PORT = 9999  # the agent's API port inside the guest


@dataclass
class AgentAPI:
    """The booted agent's REST API as the host reaches it."""

    base: str                # e.g. "https://127.0.0.1:<host port>"
    ca: str | None           # PEM the agent sent (automatic TLS), or None
    agent_token: str
    timeout: float = 120

    @classmethod
    def from_heartbeat(cls, guest: Guest, beat: dict[str, Any], agent_token: str,
                       timeout: float = 120) -> AgentAPI:
        """The API at the heartbeat's ``callback_url``, through the guest's hostfwd."""
        callback = urllib.parse.urlsplit(beat["callback_url"])
        assert callback.port == AGENT_PORT, beat["callback_url"]
        base = f"{callback.scheme}://127.0.0.1:{guest.forwards[AGENT_PORT]}"
        return cls(base, beat.get("agent_verify_ca"), agent_token, timeout)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; the decoded JSON answer (an HTTP error status raises)."""
        context = None
        if self.base.startswith("https"):
            context = (ssl.create_default_context(cadata=self.ca) if self.ca
                       else ssl._create_unverified_context())
            context.check_hostname = False  # the certificate names the guest's address
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout,
                                    context=context) as response:
            return json.loads(response.read())

    def command(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run ``name`` (``<extension>.<command>``) and wait for its result."""
        query = urllib.parse.urlencode({"wait": "true", "agent_token": self.agent_token})
        result: dict[str, Any] = self.request("POST", f"/v1/commands/?{query}",
                                              {"name": name, "params": params or {}})
        return result


def lookup_and_heartbeat(guest: Guest, ironic: FakeIronic, lookup_timeout: float,
                         heartbeat_timeout: float) -> dict[str, Any]:
    """Wait for the agent's lookup (with the guest's MAC) and first heartbeat
    (with the token the lookup gave); returns the heartbeat's body."""
    lookup = ironic.wait_for_lookup(timeout=lookup_timeout)
    assert guest.spec.mac in lookup.addresses, lookup.addresses
    beat: dict[str, Any] = ironic.wait_for_heartbeat(timeout=heartbeat_timeout).body
    assert beat["agent_token"] == ironic.agent_token, beat
    return beat


def agent_status(api: AgentAPI) -> dict[str, Any]:
    """``GET /v1/status``, which must name the agent's version."""
    status: dict[str, Any] = api.request("GET", "/v1/status")
    assert status["version"], status
    return status


def hardware_inventory(api: AgentAPI) -> dict[str, Any]:
    """The inventory ``poll.get_hardware_info`` returns (the command must succeed)."""
    result = api.command("poll.get_hardware_info")
    assert result["command_status"] == "SUCCEEDED", result
    inventory: dict[str, Any] = result["command_result"]
    return inventory


def virtio_disk(inventory: dict[str, Any], spec: GuestSpec,
                check_serial: bool = True) -> dict[str, Any]:
    """The guest's virtio disk (/dev/vda) in ``inventory``, with the size (and the
    serial) QEMU gave it."""
    disks = {d["name"]: d for d in inventory["disks"]}
    assert "/dev/vda" in disks, disks
    disk = disks["/dev/vda"]
    assert disk["size"] == spec.disk_size, disks
    if check_serial:
        assert disk["serial"] == spec.disk_serial, disk
    return disk


def check_inventory(inventory: dict[str, Any], spec: GuestSpec,
                    check_serial: bool = True) -> None:
    """The inventory (the agent's, or the one Ironic stored from inspection) lists
    the guest's virtio disk and MAC."""
    virtio_disk(inventory, spec, check_serial)
    macs = {i["mac_address"] for i in inventory["interfaces"]}
    assert spec.mac in macs, macs


def check_booted_agent(api: AgentAPI, spec: GuestSpec,
                       check_serial: bool = True) -> dict[str, Any]:
    """Status answers, the inventory lists the virtio disk and the guest's MAC;
    returns the inventory."""
    agent_status(api)
    inventory = hardware_inventory(api)
    check_inventory(inventory, spec, check_serial)
    return inventory


def finalize_rescue(api: AgentAPI, password: str) -> None:
    """``rescue.finalize_rescue`` as Ironic 39 sends it: a SHA-256 crypt hash of
    *password* (its default ``rescue_password_hash_algorithm``), ``hashed: true``."""
    hashed = subprocess.run(["openssl", "passwd", "-5", "-stdin"], input=password, check=True,
                            capture_output=True, text=True).stdout.strip()
    result = api.command("rescue.finalize_rescue", {"rescue_password": hashed, "hashed": True})
    assert result["command_status"] == "SUCCEEDED", result


def rescue_ssh(port: int, password: str, command: str, attempts: int = 10) -> str:
    """Run *command* over SSH as ``rescue`` with *password* (sshpass + OpenSSH) on the
    guest's port 22 forwarded to 127.0.0.1:*port*; its stdout, stripped.

    Retries while the server is not up yet (host keys are made on first start,
    slow under TCG); a refused password fails at once with "Permission denied".
    """
    argv = ["sshpass", "-p", password, "ssh", "-p", str(port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no",
            "-o", "PreferredAuthentications=password", "-o", "ConnectTimeout=30",
            "rescue@127.0.0.1", command]
    last = None
    for _ in range(attempts):
        # dropbear may still be making its host key under TCG: retry a while.
        last = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if last.returncode == 0 or "Permission denied" in last.stderr:
            break
        time.sleep(3)
    assert last is not None and last.returncode == 0, last.stderr if last else None
    return last.stdout.strip()
