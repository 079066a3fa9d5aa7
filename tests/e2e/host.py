# SPDX-License-Identifier: Apache-2.0
"""The host side of an e2e run: the agent as a process, its NIC, its disk, an image server.

Nothing here touches a device or link it did not create, and everything listens on
127.0.0.1.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import itertools
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e import ironic
from tests.processes import stop_process

# ---------------------------------------------------------------------------
# The agent's NIC


def random_mac() -> str:
    # Locally administered, unicast.
    octets = [0x52, 0x54, 0x00] + [random.randrange(256) for _ in range(3)]
    return ":".join(f"{o:02x}" for o in octets)


_link_numbers = itertools.count()


@dataclass
class HostLink:
    """A link carrying *mac* that the agent's lookup reports.

    A ``dummy`` link when the kernel has the module, else one end of a veth pair.
    The name has the ``<name>.<number>`` form of a VLAN interface: the upstream agent
    only reports interfaces with a ``device`` in sysfs, bonds, or names of that form,
    and the harness must work for it too.
    """

    mac: str = field(default_factory=random_mac)
    name: str = ""

    def create(self) -> HostLink:
        n = f"{os.getpid() % 10000}{next(_link_numbers)}"
        self.name = f"lipa{n}.7"[:15]
        dummy = subprocess.run(["ip", "link", "add", self.name, "address", self.mac,
                                "type", "dummy"], capture_output=True, text=True)
        if dummy.returncode != 0:
            subprocess.run(["ip", "link", "add", self.name, "address", self.mac, "type", "veth",
                            "peer", "name", f"lipa{n}p"[:15]], check=True)
        return self

    def remove(self) -> None:
        if self.name:
            subprocess.run(["ip", "link", "del", self.name], capture_output=True)
            self.name = ""


@contextlib.contextmanager
def host_link() -> Iterator[HostLink]:
    link = HostLink().create()
    try:
        yield link
    finally:
        link.remove()


# ---------------------------------------------------------------------------
# The agent's disk


@dataclass
class LoopDevice:
    """A loop device on a sparse file this test made; detached at teardown."""

    backing: Path
    size: int
    device: str = ""

    def attach(self) -> LoopDevice:
        with open(self.backing, "wb") as f:
            f.truncate(self.size)
        self.device = subprocess.run(["losetup", "--find", "--show", str(self.backing)],
                                     check=True, capture_output=True, text=True).stdout.strip()
        return self

    def detach(self) -> None:
        if self.device:
            subprocess.run(["losetup", "--detach", self.device], capture_output=True)
            self.device = ""
        with contextlib.suppress(OSError):
            self.backing.unlink()

    def read(self, length: int, offset: int = 0) -> bytes:
        with open(self.device, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def write(self, data: bytes, offset: int = 0) -> None:
        with open(self.device, "r+b") as f:
            f.seek(offset)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def loop_device(directory: Path, size: int = 64 << 20) -> Iterator[LoopDevice]:
    loop = LoopDevice(directory / f"disk-{os.getpid()}-{time.monotonic_ns()}.img", size)
    try:
        yield loop.attach()
    finally:
        loop.detach()


# ---------------------------------------------------------------------------
# Images on loopback HTTP


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(format % args)  # type: ignore[attr-defined]


class ImageServer:
    """Serves the files of one directory on 127.0.0.1 (HEAD, GET, Range not needed)."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.directory = directory
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests  # type: ignore[attr-defined,no-any-return]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------
# The agent process


def our_agent_command() -> list[str]:
    """Our console script, from the venv running the tests."""
    script = Path(sys.executable).parent / "ironic-python-agent"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ironic_python_agent.cmd.agent"]


def upstream_agent_command() -> list[str]:
    bindir = ironic.ensure_venv(ironic.out_dir() / "venv-upstream",
                                ironic.UPSTREAM_AGENT_REQUIREMENT)
    return [str(bindir / "ironic-python-agent")]


def upstream_shims(directory: Path) -> Path:
    """A PATH directory with the host tools upstream expects but a test host lacks.

    The upstream agent runs ``udevadm settle`` while listing disks and dies without
    it; no udev daemon runs on a build host, so settling is a no-op anyway.
    """
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "udevadm"
    if not shim.exists():
        shim.write_text("#!/bin/sh\n# e2e shim: no udev daemon on this host\nexit 0\n")
        shim.chmod(0o755)
    return directory


# Commands an agent runs at the end of a deploy or a rescue to power the machine off
# or reboot it. As a host process it would take the test machine down with it (and
# falls back to /proc/sysrq-trigger when they fail), so every e2e agent runs with
# these shadowed by no-ops that only leave a note.
HOST_GUARDED_COMMANDS = ("poweroff", "reboot", "shutdown", "halt", "systemctl", "hwclock",
                         "kexec")


def host_guards(directory: Path) -> Path:
    """A PATH directory shadowing :data:`HOST_GUARDED_COMMANDS` with logged no-ops."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in HOST_GUARDED_COMMANDS:
        shim = directory / name
        if not shim.exists():
            shim.write_text(f"#!/bin/sh\necho \"e2e guard: not running {name} $*\" >&2\n"
                            "exit 0\n")
            shim.chmod(0o755)
    return directory


def render_agent_config(api_url: str | None, port: int, auto_tls: bool,
                        extra: Mapping[str, object] | None = None) -> str:
    """A private [DEFAULT] section: talk to *api_url*, listen and advertise on loopback.

    Without *api_url* the agent must get it elsewhere (kernel parameters).
    """
    options: dict[str, object] = {
        **({"api_url": api_url} if api_url else {}),
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "advertise_host": "127.0.0.1",
        "advertise_port": port,
        "enable_auto_tls": auto_tls,
        "lookup_timeout": 300,
        "lookup_interval": 1,
        "debug": True,
        **(extra or {}),
    }
    return "[DEFAULT]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())


class AgentProcess:
    """An agent (ours or upstream) running on the host with a private config file.

    Its stdout and stderr go to *log*, which the tests keep as an artefact.
    """

    def __init__(self, command: list[str], workdir: Path, api_url: str, *, auto_tls: bool,
                 extra: Mapping[str, object] | None = None,
                 sections: Mapping[str, Mapping[str, object]] | None = None,
                 name: str = "agent", args: list[str] | None = None,
                 path_prefix: list[Path] | None = None,
                 env: Mapping[str, str] | None = None,
                 api_url_in_config: bool = True) -> None:
        self.port = ironic.free_port()
        self.workdir = workdir
        self.conf = workdir / f"{name}.conf"
        self.log = workdir / f"{name}.log"
        text = render_agent_config(api_url if api_url_in_config else None, self.port,
                                   auto_tls, extra)
        for section, options in (sections or {}).items():
            text += f"\n[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(text)
        self.argv = [*command, "--config-file", str(self.conf), *(args or [])]
        self.path_prefix = [str(p) for p in path_prefix or []]
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> AgentProcess:
        log = open(self.log, "ab")
        log.write(f"==== {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n".encode())
        log.flush()
        self.started_at = time.monotonic()
        # An empty environment but PATH: the agent must not depend on ours.
        path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        env = {"PATH": os.pathsep.join([*self.path_prefix, path]),
               "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", **self.extra_env}
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.workdir,
                                     start_new_session=True)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        """Resident memory of the agent process (and its children), from /proc."""
        total = 0
        for pid in [self.pid, *_children(self.pid)]:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = stop_process(self.proc, timeout=15, kill_timeout=10)
        self.proc = None
        return code

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(p) for p in text.split()]
    return kids + [g for k in kids for g in _children(k)]
