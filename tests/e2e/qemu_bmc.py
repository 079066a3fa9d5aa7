# SPDX-License-Identifier: Apache-2.0
"""A QEMU guest as an Ironic node, with the test playing its BMC.

Ironic's ``fake`` power interface powers nothing. :class:`QemuNode` stands in
for the BMC: :func:`drive` asks Ironic for a provision state change, starts the
guest when the node reaches a wait state (``inspect wait``, ``clean wait``,
``wait call-back``) and stops it when Ironic powers the node off or the flow
ends.

The guest (TCG, one vCPU) has a virtio NIC with the node's port MAC on QEMU
user networking (it reaches the host's 127.0.0.1 as 10.0.2.2) and a sparse
virtio disk that outlives the boots, so a deploy can be read back on the host
and an undeploy's cleaning seen. The agent in the guest listens on 9999; a host
port on 127.0.0.1 is forwarded to it and the agent advertises that
(``ipa-advertise-host=127.0.0.1 ipa-advertise-port=<port>``), which is also the
name its auto-TLS certificate carries.

Two ways to boot, :class:`KernelMedia` (``-kernel``/``-initrd``/``-append``)
and :class:`IsoMedia` (``-cdrom`` with an ISO made by ``iso-image-create
--append``, the flow's own parameters on an ``ir-vfd-dev`` USB stick holding
``parameters.txt``, as Ironic's virtual media does). The node is x86_64 (q35)
or, booting kernel + initramfs, arm64 (``virt``, Cortex-A57, see
``tests/boot/qemu.py``).

With ``driver_info/fast_track`` (:class:`NodeFlows` ``fast_track=True``) Ironic
leaves the node powered on between flows: the agent booted for inspection
also cleans and deploys, and :func:`drive` boots nothing when the guest runs.

Every boot's serial console is kept under the artefacts directory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import random
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, cast

from tests.boot.qemu import Guest, GuestSpec, random_mac
from tests.e2e import ironic
from tests.netns import Namespace
from tests.tinyipa_build import ensure_tinyipa

TOP = Path(__file__).resolve().parents[2]
ISO_TOOL = TOP / "iso" / "iso-image-create"
GIB = 1 << 30
# Root device selection skips disks under 4 GiB; sparse, so only written blocks cost.
DISK_SIZE = 5 * GIB
AGENT_PORT = 9999
# The guest's SSH port (the rescue login); a host port is forwarded to it on every boot.
SSH_PORT = 22
# How long Ironic may take to notice a guest that stopped by itself.
SELF_OFF_GRACE = 90
# The serial console's name in the guest, per architecture.
CONSOLES = {"x86_64": "ttyS0", "arm64": "ttyAMA0"}
# Printed by tinyipa's /init and by the agent once it runs.
AGENT_STARTED = re.compile(r"starting ironic-python-agent|ironic_python_agent\.\w+")


class NodeGuest(Guest):
    """A :class:`Guest` on a disk file that outlives it and a forward chosen in advance."""

    def __init__(self, spec: GuestSpec, disk: Path, host_port: int,
                 nvram: Path | None = None) -> None:
        super().__init__(spec)
        self.disk_path = disk
        self.host_port = host_port
        if nvram is not None:  # UEFI: the node's variable store, kept across boots
            self.vars_path = nvram

    def start(self) -> NodeGuest:
        # Unlike Guest.start, keep the disk as it is: it is the node's.
        self.forwards = {AGENT_PORT: self.host_port, SSH_PORT: ironic.free_port()}
        self.console_path.touch()
        argv = self.argv()
        (self._tmp / "qemu.argv").write_text(" ".join(argv) + "\n")
        self.started_at = time.monotonic()
        with open(self._tmp / "qemu.out", "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        return self

    def qemu_output(self) -> str:
        path = self._tmp / "qemu.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def discard(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


class Media(Protocol):
    """What the node boots; *params* are kernel-style parameters for this boot."""

    name: str

    def spec(self, node: QemuNode, params: str, workdir: Path) -> GuestSpec: ...


def base_params(node: QemuNode) -> str:
    """Parameters every boot needs: the console, Ironic's URL, what to advertise."""
    return (f"console={CONSOLES[node.arch]} panic=-1 ipa-api-url={node.api_url} "
            f"ipa-advertise-host=127.0.0.1 ipa-advertise-port={node.host_port}")


@dataclass
class KernelMedia:
    """Direct kernel boot: the parameters go on the command line."""

    kernel: Path
    initrd: Path
    name: str = "kernel"

    def spec(self, node: QemuNode, params: str, workdir: Path) -> GuestSpec:
        return GuestSpec(name=node.name, kernel=self.kernel, initrd=self.initrd,
                         append=f"{base_params(node)} {params}".strip(),
                         memory_mib=node.memory_mib, mac=node.mac, disk_size=DISK_SIZE,
                         forward_ports=(AGENT_PORT,), arch=node.arch,
                         firmware=node.firmware)


@dataclass
class IsoMedia:
    """Virtual-media style boot from ``-cdrom`` (SeaBIOS, isolinux).

    The node's fixed parameters are baked into one ISO with ``iso-image-create
    --append`` (it adds ``boot_method=vmedia``); a flow's own parameters go to
    ``parameters.txt`` on a USB stick labelled ``ir-vfd-dev``, which the agent
    reads on top of the command line.
    """

    kernel: Path
    initrd: Path
    name: str = "iso"
    isos: dict[str, Path] = field(default_factory=dict)

    def iso_for(self, node: QemuNode, workdir: Path) -> Path:
        if node.name not in self.isos:
            iso = workdir / f"{node.name}.iso"
            proc = subprocess.run([str(ISO_TOOL), "-o", str(iso), "-k", str(self.kernel),
                                   "-i", str(self.initrd), "--append", base_params(node)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"iso-image-create failed: {proc.stderr[-2000:]}")
            self.isos[node.name] = iso
        return self.isos[node.name]

    def spec(self, node: QemuNode, params: str, workdir: Path) -> GuestSpec:
        if node.arch != "x86_64":
            raise ValueError(f"IsoMedia boots x86_64 nodes (SeaBIOS), not {node.arch}")
        extra: tuple[str, ...] = ()
        if params:
            stick = make_parameters_stick(workdir / f"{node.name}-vfd.img", params)
            extra = ("-device", "qemu-xhci,id=xhci",
                     "-drive", f"if=none,id=vfd,format=raw,file={stick}",
                     "-device", "usb-storage,bus=xhci.0,drive=vfd,removable=on")  # fmt: skip
        return GuestSpec(name=node.name, iso=self.iso_for(node, workdir),
                         memory_mib=node.memory_mib, mac=node.mac, disk_size=DISK_SIZE,
                         forward_ports=(AGENT_PORT,), extra_args=extra)


def make_parameters_stick(path: Path, params: str) -> Path:
    """A small FAT image labelled ``ir-vfd-dev`` with *params* in ``parameters.txt``."""
    path.unlink(missing_ok=True)
    subprocess.run(["mkfs.fat", "-C", "-n", "ir-vfd-dev", str(path), "1440"], check=True,
                   capture_output=True)
    text = path.with_suffix(".txt")
    text.write_text("\n".join(params.split()) + "\n")
    subprocess.run(["mcopy", "-o", "-i", str(path), str(text), "::/parameters.txt"],
                   check=True, capture_output=True)
    return path


@dataclass
class FlowTiming:
    """Seconds from the guest's start: to the agent starting, to the flow's end.

    A fast-track flow reuses the guest: no agent start, and its end counts from
    the one boot.
    """

    flow: str
    media: str
    agent_started: float | None
    finished: float
    # When the guest stopped by itself (the agent's standby.power_off), if it did.
    powered_itself_off: float | None = None
    node: dict[str, Any] = field(repr=False, default_factory=dict)


class QemuNode:
    """One enrolled node and the QEMU guest that is its hardware."""

    def __init__(self, name: str, media: Media, api_port: int, workdir: Path,
                 artefacts: Path, memory_mib: int = 1024, api_url: str = "",
                 arch: str = "x86_64", firmware: str = "bios") -> None:
        if arch not in CONSOLES:
            raise ValueError(f"arch must be one of {', '.join(CONSOLES)}, not {arch!r}")
        self.name = name
        self.arch = arch
        # "uefi": OVMF, with one variable store for all the node's boots (the
        # boot entries the agent writes survive into the next power-on)
        self.firmware = firmware
        self.nvram = workdir / f"{name}-OVMF_VARS.fd" if firmware == "uefi" else None
        self.media = media
        self.mac = random_mac()
        self.host_port = ironic.free_port()
        # Ironic's API as the guest reaches it (QEMU user networking by default)
        self.api_url = api_url or f"http://10.0.2.2:{api_port}"
        self.workdir = workdir
        self.artefacts = artefacts
        self.memory_mib = memory_mib
        self.disk = workdir / f"{name}-disk.img"
        with open(self.disk, "wb") as f:
            f.truncate(DISK_SIZE)
        self.guest: NodeGuest | None = None
        self.boots = 0
        self.uuid = ""

    # -- the BMC --------------------------------------------------------------

    def power_on(self, params: str, label: str) -> NodeGuest:
        self.power_off()
        self.boots += 1
        spec = self.media.spec(self, params, self.workdir)
        spec.name = f"{self.name}-{self.boots}-{label}"
        self.guest = NodeGuest(spec, self.disk, self.host_port, self.nvram).start()
        return self.guest

    def boot_from_disk(self, label: str, marker: str, timeout: float = 600) -> str:
        """Power on with no kernel, initrd or ISO, as a node after its deploy: the
        firmware boots what is on the disk. Returns the console once *marker* is on
        it (the guest is then stopped)."""
        self.power_off()
        self.boots += 1
        spec = GuestSpec(name=f"{self.name}-{self.boots}-{label}", firmware=self.firmware,
                         memory_mib=self.memory_mib, mac=self.mac, disk_size=DISK_SIZE,
                         forward_ports=(), arch=self.arch)
        self.guest = NodeGuest(spec, self.disk, self.host_port, self.nvram).start()
        try:
            self.guest.wait_for_console(marker, timeout=timeout)
            return self.guest.console()
        finally:
            self.power_off()

    def power_off(self) -> None:
        if self.guest is None:
            return
        guest, self.guest = self.guest, None
        guest.stop()
        self.keep_console(guest)
        guest.discard()

    def keep_console(self, guest: NodeGuest) -> Path:
        self.artefacts.mkdir(parents=True, exist_ok=True)
        dest = self.artefacts / f"{guest.spec.name}.console.log"
        with contextlib.suppress(OSError):
            shutil.copyfile(guest.console_path, dest)
            (self.artefacts / f"{guest.spec.name}.qemu.argv").write_text(
                " ".join(guest.argv()) + "\n")
        return dest

    def console_tail(self, chars: int = 4000) -> str:
        if self.guest is None:
            return "(no guest running)"
        return self.guest.console()[-chars:]

    def read_disk(self, length: int, offset: int = 0) -> bytes:
        with open(self.disk, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def close(self) -> None:
        self.power_off()
        self.disk.unlink(missing_ok=True)


class FlowFailed(AssertionError):
    """A flow did not reach its end state; the message carries the evidence."""


def explain(node: QemuNode, service: ironic.IronicService, what: str) -> str:
    parts = [what]
    if node.guest is not None:
        state = "running" if node.guest.running() else "exited"
        parts.append(f"--- guest {node.guest.spec.name} ({state}, {node.guest.elapsed:.0f} s),"
                     f" serial console tail:\n{node.console_tail()}")
        out = node.guest.qemu_output().strip()
        if out:
            parts.append(f"--- qemu output:\n{out[-1000:]}")
    errors = [line for line in service.log_lines(node.uuid)
              if " ERROR " in line or " WARNING " in line][-15:]
    parts.append(f"--- Ironic log ({service.log}), errors for the node:\n"
                 + "\n".join(line[:600] for line in errors))
    return "\n".join(parts)


def drive(node: QemuNode, service: ironic.IronicService, client: ironic.IronicClient,
          target: str, end_states: Iterable[str], *, wait_state: str, label: str,
          params: str = "", timeout: float = 600, keep_running: bool = False,
          **provision: Any) -> FlowTiming:
    """Request *target*, boot the guest at *wait_state*, wait for one of *end_states*.

    A guest still running from the previous flow (Ironic's fast track) is not
    booted again: the agent in it goes on. The guest is stopped when Ironic
    records the node powered off after the boot (end of cleaning, deploy
    tear-down, end of inspection) or when the flow ends, unless *keep_running*
    and the flow succeeded (a rescued node stays up, a fast-track node too).
    Raises :class:`FlowFailed` with the console and Ironic's errors otherwise.
    """
    ends = set(end_states)
    client.set_provision_state(node.uuid, target, **provision)
    guest = node.guest
    booted = guest is None or not guest.running()
    if guest is None or booted:
        try:
            client.wait_for_state(node.uuid, {wait_state}, timeout=120)
        except (ironic.IronicError, TimeoutError) as exc:
            raise FlowFailed(explain(node, service, str(exc))) from None
        guest = node.power_on(params, label)
    agent_started: float | None = None
    self_off: float | None = None
    deadline = time.monotonic() + timeout
    reached = False
    try:
        while True:
            if booted and agent_started is None and AGENT_STARTED.search(guest.console()):
                agent_started = guest.elapsed
            data = client.node(node.uuid)
            state = data["provision_state"]
            if state in ends and data.get("target_provision_state") in (None, ""):
                reached = True
                return FlowTiming(label, node.media.name, agent_started, guest.elapsed,
                                  self_off, data)
            if state in ironic.FAILED_STATES - ends:
                raise FlowFailed(explain(node, service, f"{label}: node went to '{state}': "
                                                        f"{data.get('last_error')}"))
            if self_off is None and guest.proc is not None and guest.proc.poll() is not None:
                self_off = guest.elapsed
            if self_off is not None and guest.elapsed - self_off > SELF_OFF_GRACE:
                # After the agent's power-off Ironic polls the power state for 30 s.
                raise FlowFailed(explain(node, service, f"{label}: the guest stopped by "
                                         f"itself at {self_off:.0f} s; the node is still "
                                         f"'{state}'"))
            if data.get("power_state") == "power off" and guest.running():
                # Ironic powered the node off: the BMC cuts the power.
                guest.stop()
            if time.monotonic() > deadline:
                raise FlowFailed(explain(node, service, f"{label}: node still '{state}' "
                                                        f"after {timeout:.0f} s"))
            time.sleep(0.5)
    finally:
        if not (keep_running and reached):
            node.power_off()


# -- images -------------------------------------------------------------------


def make_whole_disk_image(directory: Path, disk_format: str,
                          size: int = 4 << 20) -> tuple[Path, bytes]:
    """A small whole-disk image (MBR, one partition, random stretches).

    Returns the file to serve and the bytes the node's disk must start with.
    """
    rng = random.Random(f"{disk_format}-{size}")
    data = bytearray(size)
    for start in range(1 << 20, size, 1 << 20):
        data[start:start + (256 << 10)] = rng.randbytes(256 << 10)
    raw = directory / f"image-{disk_format}.raw"
    raw.write_bytes(bytes(data))
    subprocess.run(["sfdisk", "--quiet", str(raw)], input="label: dos\nstart=2048, type=83\n",
                   text=True, check=True, capture_output=True)
    content = raw.read_bytes()
    if disk_format == "raw":
        return raw, content
    converted = directory / f"image.{disk_format}"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", disk_format, str(raw),
                    str(converted)], check=True, capture_output=True)
    raw.unlink()
    return converted, content


def serve_copies(directory: Path, images: dict[str, Path]) -> Path:
    """*directory* made with a sparse copy of each cached image under its name (the
    cache stays as it is whatever the server's clients do); returns *directory*."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, cached in images.items():
        subprocess.run(["cp", "--sparse=always", str(cached), str(directory / name)],
                       check=True)
    return directory


class _ImageHandler(http.server.SimpleHTTPRequestHandler):
    """Files of one directory, asked for directly or through this server as a proxy.

    A proxy request carries the absolute URL (``GET http://127.0.0.1:P/x``); only
    URLs naming this very server are answered.
    """

    def _origin_form(self) -> bool:
        if "://" not in self.path:
            return True
        parts = urllib.parse.urlsplit(self.path)
        host, port = cast(http.server.HTTPServer, self.server).server_address[:2]
        own = f"{host}:{port}"
        if parts.scheme != "http" or parts.netloc != own:
            self.send_error(403, "this proxy only reaches its own files")
            return False
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        return True

    def do_GET(self) -> None:
        if self._origin_form():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._origin_form():
            super().do_HEAD()

    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(format % args)  # type: ignore[attr-defined]


class ImageServer:
    """Serves one directory on 127.0.0.1 and is its own HTTP proxy.

    Ironic (on the host) checks ``http://127.0.0.1:P/img``; the guest cannot reach
    that address, so the node's ``driver_info/image_http_proxy`` is this server as
    the guest sees it, ``http://10.0.2.2:P``, and the agent fetches the same URL
    through it.

    With *netns* it listens on the namespace's bridge address instead, where
    Ironic and the guest both reach it (the proxy is the same address).
    """

    def __init__(self, directory: Path, netns: Namespace | None = None) -> None:
        handler = functools.partial(_ImageHandler, directory=str(directory))
        if netns is None:
            self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        else:
            self.httpd = http.server.ThreadingHTTPServer((netns.address, 0), handler,
                                                         bind_and_activate=False)
            self.httpd.socket.close()
            self.httpd.socket = netns.socket()
            self.httpd.server_bind()
            self.httpd.server_activate()
        self.netns = netns
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests  # type: ignore[attr-defined,no-any-return]

    def url(self, name: str) -> str:
        return f"http://{self.httpd.server_address[0]}:{self.port}/{name}"

    @property
    def guest_proxy(self) -> str:
        host = self.netns.address if self.netns is not None else "10.0.2.2"
        return f"http://{host}:{self.port}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def instance_info(url: str, image: Path, disk_format: str) -> dict[str, Any]:
    return {"image_source": url,
            "image_os_hash_algo": "sha256",
            "image_os_hash_value": hashlib.sha256(image.read_bytes()).hexdigest(),
            "image_disk_format": disk_format,
            "root_gb": 1}


# -- images to boot ---------------------------------------------------------------------


def tinyipa_image(out: Path) -> tuple[Path, Path]:
    """(kernel, initramfs) of ``./build.sh tinyipa``, rebuilt when its inputs changed.

    Shares the boot tests' freshness stamp (``out/tinyipa/.inputs-key``), so one
    session builds the image at most once.
    """
    return ensure_tinyipa(out)


# -- the flows ------------------------------------------------------------------------


# The fake management interface only takes the pxe boot device; Ironic skips
# setting disk for this vendor in UEFI mode (see real-ironic.md).
DEPLOY_PROPERTIES = {"vendor": "lenovo", "capabilities": "boot_mode:uefi"}


class NodeFlows:
    """The operator's flows on one QEMU node, each timed from the guest's start.

    With *fast_track* the node's ``driver_info/fast_track`` is on: inspection
    and cleaning leave the guest running (Ironic does not power it off) and the
    next flow drives the same agent, so one boot serves inspect, provide and
    deploy; only the deploy's tear-down powers the node off.
    """

    def __init__(self, node: QemuNode, service: ironic.IronicService,
                 client: ironic.IronicClient, fast_track: bool = False) -> None:
        self.node = node
        self.service = service
        self.client = client
        self.fast_track = fast_track
        self.timings: list[FlowTiming] = []

    def enroll(self, **fields: Any) -> str:
        """Create the node (*fields* override the interfaces and add driver_info...)."""
        if self.fast_track:
            fields["driver_info"] = {**fields.get("driver_info", {}), "fast_track": True}
        created = self.client.create_node(f"{self.node.name}-{time.monotonic_ns()}",
                                          **{"inspect_interface": "agent", **fields})
        self.node.uuid = str(created["uuid"])
        self.client.create_port(self.node.uuid, self.node.mac)
        self.client.set_provision_state(self.node.uuid, "manage")
        self.client.wait_for_state(self.node.uuid, {"manageable"}, timeout=60)
        if self.fast_track:
            # Fast track needs Ironic to see the power on; the fake power interface
            # reports what it was last told, and unmanaged inspection tells it nothing.
            self.client.set_power_state(self.node.uuid, "power on")
        return self.node.uuid

    def _drive(self, target: str, ends: set[str], wait_state: str, label: str,
               **kwargs: Any) -> FlowTiming:
        timing = drive(self.node, self.service, self.client, target, ends,
                       wait_state=wait_state, label=label, **kwargs)
        self.timings.append(timing)
        return timing

    def inspect(self) -> FlowTiming:
        callback = f"{self.node.api_url}/v1/continue_inspection"
        return self._drive("inspect", {"manageable"}, "inspect wait", "inspect",
                           params=f"ipa-inspection-callback-url={callback}",
                           keep_running=self.fast_track)

    def provide(self) -> FlowTiming:
        """manageable → cleaning (erase_devices_metadata) → available."""
        properties = {**self.client.node(self.node.uuid)["properties"], **DEPLOY_PROPERTIES}
        self.client.patch_node(self.node.uuid, properties=properties)
        return self._drive("provide", {"available"}, "clean wait", "clean",
                           keep_running=self.fast_track)

    def deploy(self, server: ImageServer, image: Path, disk_format: str, *,
               oob_power_off: bool = False, **instance: Any) -> FlowTiming:
        """available → active with a whole-disk image (*instance* adds to its
        instance_info, e.g. ``image_type="partition"``).

        With *oob_power_off* the tear-down is ``standby.sync`` and a BMC power-off
        (``driver_info/deploy_forces_oob_reboot``); without, the agent powers the
        guest off itself (``standby.power_off``) and Ironic then polls the power
        state before forcing it off.
        """
        driver_info = self.client.node(self.node.uuid)["driver_info"]
        self.client.patch_node(
            self.node.uuid,
            instance_info={**instance_info(server.url(image.name), image, disk_format),
                           **instance},
            driver_info={**driver_info, "deploy_forces_oob_reboot": oob_power_off,
                         "image_http_proxy": server.guest_proxy})
        label = "-".join(["deploy", *([str(instance["image_type"])] if "image_type" in instance
                                      else []), disk_format])
        return self._drive("active", {"active"}, "wait call-back", label)

    def rescue(self, password: str) -> FlowTiming:
        """active → rescuing → rescue wait → rescue; the rescued guest keeps running.

        Ironic hashes *password* and sends the hash in ``rescue.finalize_rescue``
        on the agent's heartbeat.
        """
        return self._drive("rescue", {"rescue"}, "rescue wait", "rescue", keep_running=True,
                           rescue_password=password)

    def unrescue(self, timeout: float = 180) -> FlowTiming:
        """rescue → unrescuing → active.

        Ironic powers the node off and on to boot the instance from its disk; the
        BMC stops the rescue guest (no instance is booted: the image is a test
        pattern, not an OS).
        """
        guest = self.node.guest
        started = guest.elapsed if guest is not None else 0.0
        self.client.set_provision_state(self.node.uuid, "unrescue")
        try:
            data = self.client.wait_for_state(self.node.uuid, {"active"}, timeout=timeout)
        except (ironic.IronicError, TimeoutError) as exc:
            raise FlowFailed(explain(self.node, self.service, f"unrescue: {exc}")) from None
        finished = guest.elapsed - started if guest is not None else 0.0
        self.node.power_off()
        timing = FlowTiming("unrescue", self.node.media.name, None, finished, None, data)
        self.timings.append(timing)
        return timing

    def undeploy(self) -> FlowTiming:
        """active → deleting → cleaning → available."""
        return self._drive("deleted", {"available"}, "clean wait", "undeploy")

    def retire(self) -> None:
        with contextlib.suppress(Exception):
            if not self.client.node(self.node.uuid).get("maintenance"):
                self.client.set_maintenance(self.node.uuid, True)
            self.client.delete_node(self.node.uuid)
