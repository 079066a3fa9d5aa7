# SPDX-License-Identifier: Apache-2.0
"""A real Ironic 39 on loopback: install, configure, start, and drive nodes over REST.

Used by the e2e tests and by ``tests/bench/agent_start.py``. Everything listens on
127.0.0.1; the database is sqlite in a work directory; the conductor uses the
``fake-hardware`` type, so nothing boots: the test starts the agent itself when a
node reaches a wait state.

Or Ironic runs inside a network namespace (``netns=``, see tests/netns.py), its
API on the namespace's bridge address, where guests on the bridge reach it and
it reaches their agents; the test's client goes through a relay from 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.netns import Namespace, Relay
from tests.processes import stop_process

IRONIC_REQUIREMENT = "ironic==39.0.0"
UPSTREAM_AGENT_REQUIREMENT = "ironic-python-agent==13.0.0"

TOP = Path(__file__).resolve().parents[2]

# Provision states where Ironic waits for a ramdisk (the test starts the agent then)
# and states that end a flow badly.
WAIT_STATES = frozenset({"clean wait", "wait call-back", "inspect wait", "service wait",
                         "rescue wait"})
FAILED_STATES = frozenset({"clean failed", "deploy failed", "inspect failed", "error",
                           "service failed", "rescue failed"})


def out_dir() -> Path:
    return Path(os.environ.get("LEAN_IPA_OUT", TOP / "out"))


def ensure_venv(path: Path, *requirements: str) -> Path:
    """A venv at *path* with *requirements* installed once; returns its bin/ directory.

    A stamp holds a hash of the requirements, so a second run costs one file read.
    A lock file keeps two concurrent sessions (tests and bench) from installing at
    the same time.
    """
    want = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    stamp = path / ".lean-ipa-stamp"
    bindir = path / "bin"
    if stamp.is_file() and stamp.read_text().strip() == want:
        return bindir
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text().strip() == want:
            return bindir
        if not (bindir / "python").exists():
            # The base interpreter, not the test venv's: Ironic must not see our packages.
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", str(path)], check=True)
        subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *requirements], check=True)
        stamp.write_text(want + "\n")
    return bindir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None,
                  netns: Namespace | None = None) -> None:
    """Wait until 127.0.0.1:*port* (or the bridge address of *netns*) takes connections."""
    where = f"{netns.address if netns else '127.0.0.1'}:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on "
                               f"{where}")
        with contextlib.suppress(OSError):
            if netns is not None:
                netns.connect(port, timeout=1).close()
                return
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {where} after {timeout:.0f} s")


@dataclass(frozen=True)
class IronicSettings:
    """The knobs tests vary; everything else in the config is fixed."""

    require_tls: bool = False
    erase_devices_metadata_priority: int = 99
    erase_devices_priority: int = 0
    heartbeat_timeout: int = 12
    callback_timeout: int = 180
    # [agent]enable_bios_bootloader_install: the agent may run a partition image's
    # own grub-install for BIOS (off by default in Ironic 39)
    bios_bootloader_install: bool = False


def render_config(settings: IronicSettings, workdir: Path, api_port: int, rpc_port: int,
                  api_host: str = "127.0.0.1") -> str:
    """ironic.conf for an all-in-one Ironic on loopback (see real-ironic.md), its API
    on *api_host* (the URL the ramdisk is given names it too)."""
    t = settings.callback_timeout
    sections: dict[str, dict[str, object]] = {
        "DEFAULT": {
            # The JSON-RPC client dials the conductor by this name.
            "host": "127.0.0.1",
            "auth_strategy": "noauth",
            "rpc_transport": "json-rpc",
            "debug": True,
            "state_path": workdir,
            # Nothing is in flight when a test stops Ironic; don't wait a minute for it.
            "graceful_shutdown_timeout": 2,
            "enabled_hardware_types": "fake-hardware",
            "enabled_power_interfaces": "fake",
            # noop management and pxe boot for the rescue node: the agent rescue
            # interface needs a boot interface that validates rescue (fake boot does
            # not), and pxe's unrescue sets the disk boot device (fake management
            # accepts pxe only). See rescue_node_fields().
            "enabled_management_interfaces": "fake,noop",
            "enabled_boot_interfaces": "fake,pxe",
            "enabled_deploy_interfaces": "direct,fake",
            "enabled_inspect_interfaces": "agent,no-inspect",
            "enabled_network_interfaces": "noop",
            # Every other interface type only loads what fake-hardware nodes use: the
            # defaults (ipmitool and redfish vendor interfaces, cinder storage...) need
            # host tools and clients a fresh test machine has no reason to have.
            "enabled_bios_interfaces": "no-bios",
            "enabled_console_interfaces": "no-console",
            "enabled_firmware_interfaces": "no-firmware",
            "enabled_raid_interfaces": "agent,no-raid",
            "enabled_rescue_interfaces": "agent,no-rescue",
            "enabled_storage_interfaces": "noop",
            "enabled_vendor_interfaces": "no-vendor",
        },
        "api": {"host_ip": api_host, "port": api_port,
                # Heartbeats every ~5 s instead of minutes.
                "ramdisk_heartbeat_timeout": settings.heartbeat_timeout},
        "json_rpc": {"host_ip": "127.0.0.1", "port": rpc_port, "auth_strategy": "noauth"},
        "database": {"connection": f"sqlite:///{workdir / 'ironic.sqlite'}"},
        "dhcp": {"dhcp_provider": "none"},
        # The API URL Ironic hands to the ramdisk (there is no keystone catalog).
        "service_catalog": {"endpoint_override": f"http://{api_host}:{api_port}"},
        "conductor": {"deploy_callback_timeout": t, "clean_callback_timeout": t,
                      "inspect_wait_timeout": t, "check_provision_state_interval": 5,
                      "automated_clean": True,
                      # file:// kernel and ramdisk URLs from the build output
                      # (deploy_kernel, rescue_ramdisk, ... of the rescue node).
                      "file_url_allowed_paths": out_dir()},
        "deploy": {"erase_devices_priority": settings.erase_devices_priority,
                   "erase_devices_metadata_priority": settings.erase_devices_metadata_priority,
                   "http_root": workdir / "httpboot"},
        "agent": {"require_tls": settings.require_tls, "command_timeout": 30,
                  "command_wait_interval": 1, "certificates_path": workdir / "certificates",
                  "deploy_logs_local_path": workdir / "deploy-logs",
                  "enable_bios_bootloader_install": settings.bios_bootloader_install},
        "inspector": {"callback_endpoint_override":
                      f"http://{api_host}:{api_port}/v1/continue_inspection",
                      "hooks": "$default_hooks,memory,cpus,root-device",
                      # The fake boot interface cannot boot a ramdisk: inspection is
                      # "unmanaged" and the test passes the callback URL to the agent.
                      "require_managed_boot": False},
        # pxe boot writes its configuration and caches the kernel and ramdisk here;
        # nothing serves them: the test boots the node itself.
        "pxe": {"tftp_root": workdir / "tftpboot",
                "tftp_master_path": workdir / "tftpboot" / "master_images",
                "images_path": workdir / "images",
                "instance_master_path": workdir / "master_images"},
        "oslo_concurrency": {"lock_path": workdir / "locks"},
    }
    lines: list[str] = []
    for name, options in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {value}" for key, value in options.items())
        lines.append("")
    return "\n".join(lines)


class IronicError(Exception):
    """Ironic answered an API call with an error, or a node failed its flow."""


class IronicService:
    """One all-in-one ``ironic`` process (API + conductor) with its own sqlite database.

    With *netns* the process runs inside that namespace, its API on the bridge
    address (:attr:`api_url`); :attr:`url` is the relay the host reaches it by.
    """

    def __init__(self, settings: IronicSettings, workdir: Path, bindir: Path,
                 netns: Namespace | None = None) -> None:
        self.settings = settings
        self.workdir = workdir
        self.bindir = bindir
        self.netns = netns
        self.relay: Relay | None = None
        self.api_port = free_port()
        self.rpc_port = free_port()
        self.conf = workdir / "ironic.conf"
        self.log = workdir / "ironic.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The API as the test process reaches it."""
        port = self.relay.port if self.relay is not None else self.api_port
        return f"http://127.0.0.1:{port}"

    @property
    def api_host(self) -> str:
        return self.netns.address if self.netns is not None else "127.0.0.1"

    @property
    def api_url(self) -> str:
        """The API where Ironic listens (inside the namespace, if any)."""
        return f"http://{self.api_host}:{self.api_port}"

    def start(self, timeout: float = 120) -> IronicClient:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("httpboot", "certificates", "deploy-logs", "locks", "tftpboot", "images",
                    "master_images"):
            (self.workdir / sub).mkdir(exist_ok=True)
        self.conf.write_text(render_config(self.settings, self.workdir, self.api_port,
                                           self.rpc_port, self.api_host))
        argv = [str(self.bindir / "ironic"), "--config-file", str(self.conf)]
        if self.netns is not None:
            argv = self.netns.command(argv)
        with open(self.log, "ab") as log:
            subprocess.run([str(self.bindir / "ironic-dbsync"), "--config-file", str(self.conf),
                            "create_schema"], check=True, stdout=log, stderr=log)
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for_port(self.api_port, timeout, self.proc, self.netns)
            if self.netns is not None:
                self.relay = self.netns.relay(self.api_port).__enter__()
            client = IronicClient(self.url)
            client.wait_for_conductor(timeout)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"Ironic did not come up: {exc}\n{self.log_tail()}") from exc
        return client

    def stop(self) -> None:
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self.proc is None:
            return
        stop_process(self.proc, timeout=30, kill_timeout=10)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def log_lines(self, needle: str) -> list[str]:
        """Lines of the Ironic log containing *needle* (for failure messages)."""
        try:
            return [line for line in self.log.read_text(errors="replace").splitlines()
                    if needle in line]
        except OSError:
            return []


class IronicClient:
    """The few REST calls the tests need, always at the newest API version."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"X-OpenStack-Ironic-API-Version": "latest",
                                     "Accept": "application/json"})

    def call(self, method: str, path: str, body: Any = None, ok: Iterable[int] = (200,)) -> Any:
        resp = self.session.request(method, self.url + path, json=body, timeout=self.timeout)
        if resp.status_code not in set(ok):
            raise IronicError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    def wait_for_conductor(self, timeout: float) -> None:
        """Node writes fail until the conductor has registered fake-hardware."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException, IronicError):
                drivers = self.call("GET", "/v1/drivers")["drivers"]
                if any(d["name"] == "fake-hardware" and d["hosts"] for d in drivers):
                    return
            time.sleep(0.5)
        raise TimeoutError("the conductor did not register fake-hardware")

    def create_node(self, name: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "driver": "fake-hardware", "deploy_interface": "direct",
                "boot_interface": "fake", "power_interface": "fake",
                "management_interface": "fake", "network_interface": "noop",
                "inspect_interface": "no-inspect", **fields}
        node: dict[str, Any] = self.call("POST", "/v1/nodes", body, ok=(201,))
        return node

    def create_port(self, node_uuid: str, mac: str) -> dict[str, Any]:
        port: dict[str, Any] = self.call("POST", "/v1/ports",
                                         {"node_uuid": node_uuid, "address": mac,
                                          "pxe_enabled": True}, ok=(201,))
        return port

    def delete_node(self, node: str) -> None:
        self.call("DELETE", f"/v1/nodes/{node}", ok=(204,))

    def node(self, node: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/v1/nodes/{node}")
        return result

    def patch_node(self, node: str, **values: Any) -> dict[str, Any]:
        """Set top-level paths, e.g. ``instance_info={...}`` → ``/instance_info``."""
        ops = [{"op": "add", "path": f"/{key}", "value": value} for key, value in values.items()]
        result: dict[str, Any] = self.call("PATCH", f"/v1/nodes/{node}", ops)
        return result

    def set_maintenance(self, node: str, on: bool) -> None:
        if on:
            self.call("PUT", f"/v1/nodes/{node}/maintenance", {}, ok=(202,))
        else:
            self.call("DELETE", f"/v1/nodes/{node}/maintenance", ok=(202,))

    def set_power_state(self, node: str, target: str, timeout: float = 60) -> None:
        """Ask for *target* (``power on``, ``power off``) and wait until Ironic records it."""
        self.call("PUT", f"/v1/nodes/{node}/states/power", {"target": target}, ok=(202,))
        deadline = time.monotonic() + timeout
        while self.node(node).get("power_state") != target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node} not '{target}' after {timeout:.0f} s")
            time.sleep(0.5)

    def set_provision_state(self, node: str, target: str, **extra: Any) -> None:
        self.call("PUT", f"/v1/nodes/{node}/states/provision", {"target": target, **extra},
                  ok=(202,))

    def wait_for_state(self, node: str, wanted: Iterable[str], timeout: float = 240,
                       failed: Iterable[str] = FAILED_STATES,
                       abort: Callable[[], str | None] | None = None) -> dict[str, Any]:
        """Poll until the node's provision state is one of *wanted*.

        Raises :class:`IronicError` with the node's ``last_error`` when it lands in a
        failed state or when *abort* returns a reason (say, the agent exited), and
        :class:`TimeoutError` naming the state it was stuck in.
        """
        wanted, failed = set(wanted), set(failed) - set(wanted)
        deadline = time.monotonic() + timeout
        state = None
        while True:
            data = self.node(node)
            state = data["provision_state"]
            if state in wanted and data.get("target_provision_state") in (None, "", state):
                return data
            if state in wanted and state in WAIT_STATES:
                return data
            if state in failed:
                raise IronicError(f"node {node} went to '{state}': {data.get('last_error')}")
            reason = abort() if abort is not None else None
            if reason:
                raise IronicError(f"node {node} is '{state}' and {reason}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node} still '{state}' (target "
                                   f"{data.get('target_provision_state')}) after {timeout:.0f} s;"
                                   f" last_error: {data.get('last_error')}")
            time.sleep(0.5)


def start_ironic(settings: IronicSettings, workdir: Path,
                 netns: Namespace | None = None) -> tuple[IronicService, IronicClient]:
    """Install (once) and start an Ironic (inside *netns*, if given); the caller stops it."""
    bindir = ensure_venv(out_dir() / "venv-ironic", IRONIC_REQUIREMENT)
    service = IronicService(settings, workdir, bindir, netns)
    return service, service.start()


@contextlib.contextmanager
def running_ironic(settings: IronicSettings, workdir: Path,
                   netns: Namespace | None = None) -> Iterator[tuple[IronicService, IronicClient]]:
    service, client = start_ironic(settings, workdir, netns)
    try:
        yield service, client
    finally:
        service.stop()
