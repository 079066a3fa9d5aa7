# SPDX-License-Identifier: Apache-2.0
"""Boot an image under QEMU (TCG) for tests and benchmarks.

Generic over images: a kernel + initramfs + command line, or an ISO on
``-cdrom``; BIOS (SeaBIOS) or UEFI (OVMF); x86_64 (q35) or arm64 (``virt`` with
a Cortex-A57, UEFI from edk2's AAVMF, or the kernel booted directly). One vCPU, a virtio NIC on user
networking (the guest reaches the host's 127.0.0.1 as 10.0.2.2; ``forwards``
maps guest TCP ports to host ports on 127.0.0.1), a virtio disk backed by a
sparse temp file, a virtio RNG, and the serial console written to a file.

The console log is kept under ``out/test-artifacts/<name>/`` when the ``with``
block raises (or :meth:`Guest.keep_artefacts` is called); otherwise it is
deleted with the rest. QEMU is always killed on exit::

    with Guest(GuestSpec(name="tinyipa", kernel=k, initrd=i,
                         append="console=ttyS0 ipa-insecure=1")) as guest:
        guest.wait_for_console(r"login:|lookup", timeout=120)
        port = guest.forwards[9999]     # host port reaching the guest's 9999
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.processes import stop_process

TOP = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("LEAN_IPA_OUT", TOP / "out")) / "test-artifacts"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")    # qemu-efi-aarch64
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
# per guest architecture: QEMU, its machine and CPU, the UEFI code and variables
SYSTEMS = {
    "x86_64": ("qemu-system-x86_64", "q35", None, OVMF_CODE, OVMF_VARS),
    "arm64": ("qemu-system-aarch64", "virt", "cortex-a57", AAVMF_CODE, AAVMF_VARS),
}
# Secure Boot enforced: the SMM build (its variable store writable only from SMM)
# and a variable store with Microsoft's KEK and db enrolled, Secure Boot on.
OVMF_SECBOOT_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_MS_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
FIRMWARES = ("bios", "uefi", "uefi-secure")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def random_mac() -> str:
    """A locally administered MAC in QEMU's 52:54:00 range."""
    return "52:54:00:%02x:%02x:%02x" % tuple(random.randrange(256) for _ in range(3))


@dataclass
class GuestSpec:
    """What to boot and how. Give kernel+initrd(+append) or iso; with neither, the
    firmware boots the disk (UEFI: from the entries in ``nvram``; SeaBIOS: its MBR)."""

    name: str
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = "console=ttyS0"
    iso: Path | None = None
    firmware: str = "bios"                  # "bios", "uefi" or "uefi-secure"
    memory_mib: int = 1024
    # bytes; sparse, never written by the host. Over 4 GiB: the agent skips
    # smaller disks when it picks a root device (and retries for a while).
    disk_size: int = 8 << 30
    disk_serial: str = "lean-ipa-disk0"
    # a raw image the disk starts as (copied sparsely, grown to disk_size)
    disk_image: Path | None = None
    mac: str = field(default_factory=random_mac)
    forward_ports: tuple[int, ...] = (9999,)
    # where hostfwd sends them: QEMU's default is its first DHCP address,
    # 10.0.2.15; a guest with a static address (ip=...) needs that one here
    guest_address: str = ""
    machine: str = ""                       # the architecture's (q35, virt) when empty
    arch: str = "x86_64"                    # or "arm64"
    extra_args: tuple[str, ...] = ()
    # UEFI: the variable store (NVRAM) the guest starts with, copied like disk_image;
    # the firmware's empty one when None. Guest.vars_path is the guest's own copy.
    nvram: Path | None = None
    # QEMU runs inside this network namespace (``ip netns exec``), see tests/netns.py
    netns: str = ""
    # replaces the user network of the NIC, e.g. tests.netns.Namespace.netdev(tap);
    # no hostfwd then (forward_ports are not used)
    netdev: str = ""


class Guest:
    """A running QEMU guest; use as a context manager."""

    def __init__(self, spec: GuestSpec) -> None:
        if (spec.kernel is None) != (spec.initrd is None):
            raise ValueError("GuestSpec needs kernel and initrd together")
        if spec.firmware not in FIRMWARES:
            raise ValueError(f"firmware must be one of {FIRMWARES}, not {spec.firmware!r}")
        if spec.firmware == "uefi-secure" and spec.arch != "x86_64":
            raise ValueError("uefi-secure is x86_64 only (OVMF's Secure Boot build)")
        if spec.arch not in SYSTEMS:
            raise ValueError(f"arch must be one of {', '.join(SYSTEMS)}, not {spec.arch!r}")
        self.spec = spec
        self.forwards: dict[int, int] = {}
        self._tmp = Path(tempfile.mkdtemp(prefix=f"lean-ipa-{spec.name}-"))
        self.console_path = self._tmp / "console.log"
        self.disk_path = self._tmp / "disk0.img"
        self.vars_path = self._tmp / "OVMF_VARS.fd"  # UEFI guests' NVRAM (tests read it)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._keep = False

    # -- lifecycle ----------------------------------------------------------

    def argv(self) -> list[str]:
        """The QEMU command line (forwards must be allocated)."""
        spec = self.spec
        qemu, machine, cpu, code, variables = SYSTEMS[spec.arch]
        fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{host}-{spec.guest_address}:{guest}"
                       for guest, host in self.forwards.items())
        argv = [
            qemu,
            "-accel", "tcg",
            "-machine", (spec.machine or machine)
            + (",smm=on" if spec.firmware == "uefi-secure" else ""),
            *(["-cpu", cpu] if cpu else []),
            "-smp", "1",
            "-m", str(spec.memory_mib),
            "-display", "none", *(["-vga", "none"] if spec.arch == "x86_64" else []),
            "-monitor", "none",
            "-serial", f"file:{self.console_path}",
            "-no-reboot",
            "-netdev", (f"{spec.netdev},id=net0" if spec.netdev
                        else "user,id=net0" + (f",{fwd}" if fwd else "")),
            "-device", f"virtio-net-pci,netdev=net0,mac={spec.mac}",
            "-drive", f"file={self.disk_path},if=none,id=disk0,format=raw,cache=unsafe",
            "-device", f"virtio-blk-pci,drive=disk0,serial={spec.disk_serial}",
            "-device", "virtio-rng-pci",
        ]  # fmt: skip
        if spec.firmware in ("uefi", "uefi-secure"):
            secure = spec.firmware == "uefi-secure"
            vars_copy = self.vars_path
            if not vars_copy.exists():
                shutil.copyfile(spec.nvram or (OVMF_MS_VARS if secure else variables),
                                vars_copy)
            if secure:
                code = OVMF_SECBOOT_CODE
                argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
            argv += ["-drive", f"if=pflash,format=raw,readonly=on,file={code}",
                     "-drive", f"if=pflash,format=raw,file={vars_copy}"]
        if spec.iso is not None and spec.arch != "x86_64":
            # virt has no IDE: the ISO is a CD on virtio-scsi, which edk2 boots
            argv += ["-device", "virtio-scsi-pci,id=scsi0",
                     "-drive", f"file={spec.iso},if=none,id=cd0,format=raw,readonly=on,media=cdrom",
                     "-device", "scsi-cd,drive=cd0,bus=scsi0.0"]
        elif spec.iso is not None:
            argv += ["-cdrom", str(spec.iso), "-boot", "d"]
        elif spec.kernel is not None:
            argv += ["-kernel", str(spec.kernel), "-initrd", str(spec.initrd),
                     "-append", spec.append]
        inside = ["ip", "netns", "exec", spec.netns] if spec.netns else []
        return inside + argv + list(spec.extra_args)

    def start(self) -> Guest:
        if self.spec.disk_image is not None:
            subprocess.run(["cp", "--sparse=always", str(self.spec.disk_image),
                            str(self.disk_path)], check=True)
        with open(self.disk_path, "ab") as disk:
            disk.truncate(max(self.spec.disk_size, disk.tell()))
        self.forwards = ({} if self.spec.netdev else
                         {port: free_port() for port in self.spec.forward_ports})
        self.console_path.touch()
        argv = self.argv()
        (self._tmp / "qemu.argv").write_text(" ".join(argv) + "\n")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=open(self._tmp / "qemu.out", "wb"),
                                     stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        """Kill QEMU (always safe to call)."""
        if self.proc is None:
            return
        stop_process(self.proc, timeout=5, kill_timeout=None)
        self.proc = None

    def keep_artefacts(self) -> None:
        """Keep the console log even if the ``with`` block succeeds."""
        self._keep = True

    def __enter__(self) -> Guest:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        if exc_type is not None or self._keep:
            dest = ARTEFACTS / self.spec.name
            dest.mkdir(parents=True, exist_ok=True)
            for name in ("console.log", "qemu.argv", "qemu.out"):
                if (self._tmp / name).exists():
                    shutil.copyfile(self._tmp / name, dest / name)
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- observing ----------------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Seconds since QEMU was started."""
        return time.monotonic() - self.started_at

    def console(self) -> str:
        """The serial console so far."""
        return self.console_path.read_bytes().decode("utf-8", errors="replace")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for_console(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until *pattern* (a regex) appears on the serial console."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.console())
            if match:
                return match
            if not self.running():
                raise RuntimeError(f"QEMU exited before /{pattern}/ appeared on the "
                                   f"console; tail:\n{self.console()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"/{pattern}/ not on the console after {timeout:.0f}s;"
                                   f" tail:\n{self.console()[-3000:]}")
            time.sleep(0.5)
