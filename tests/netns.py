# SPDX-License-Identifier: Apache-2.0
"""A network namespace with a bridge, for QEMU guests on a network the test owns.

:func:`network_namespace` creates a namespace with a unique name, its loopback
up and one bridge ``br0`` carrying *address* (e.g. ``192.168.150.1/24``); the
host's own network is never touched. Guests join the bridge through tap
devices (:meth:`Namespace.tap`) that QEMU opens by name, QEMU itself running
inside the namespace (``GuestSpec(netns=ns.name, netdev=ns.netdev(tap))``).
Nothing serves DHCP on the bridge unless a test starts it there.

Processes run inside with :meth:`Namespace.command` (``ip netns exec``);
sockets of the test process itself with :meth:`Namespace.socket`; a host
program reaches a server inside through :meth:`Namespace.relay` (a TCP relay
from 127.0.0.1 on the host). On leaving the ``with`` block the taps and the
namespace are deleted, whatever happened; stop the processes running inside
first (a process keeps its namespace alive)::

    with network_namespace("192.168.150.1/24") as ns:
        tap = ns.tap()
        proc = subprocess.Popen(ns.command(["qemu-system-x86_64", "-netdev",
                                            ns.netdev(tap) + ",id=net0", ...]))
        with ns.relay(8080) as relay:     # 127.0.0.1:relay.port -> 192.168.150.1:8080
            ...
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import itertools
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TypeVar

CLONE_NEWNET = 0x40000000
BRIDGE = "br0"
_numbers = itertools.count()
T = TypeVar("T")


def ip(*args: str) -> str:
    """Run ``ip`` with *args*; a failure raises naming the command and ip's message."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


class Namespace:
    """One network namespace and its bridge; see the module docstring."""

    def __init__(self, address: str, prefix: str = "lipa") -> None:
        self.interface = ipaddress.ip_interface(address)
        self.name = f"{prefix}-{os.getpid()}-{next(_numbers)}"
        self.taps: list[str] = []
        self.created = False

    @property
    def address(self) -> str:
        """The bridge's address, without the prefix length."""
        return str(self.interface.ip)

    @property
    def path(self) -> Path:
        return Path("/run/netns") / self.name

    def create(self) -> Namespace:
        ip("netns", "add", self.name)
        self.created = True
        ip("-n", self.name, "link", "set", "lo", "up")
        ip("-n", self.name, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", self.name, "addr", "add", str(self.interface), "dev", BRIDGE)
        ip("-n", self.name, "link", "set", BRIDGE, "up")
        return self

    def remove(self) -> None:
        """Delete the taps and the namespace (safe to call twice)."""
        for tap in self.taps:
            with contextlib.suppress(RuntimeError):
                ip("-n", self.name, "link", "delete", tap)
        self.taps = []
        if self.created:
            self.created = False
            ip("netns", "delete", self.name)

    def __enter__(self) -> Namespace:
        try:
            return self.create()
        except BaseException:
            self.remove()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()

    # -- guests ---------------------------------------------------------------

    def tap(self) -> str:
        """A new tap device on the bridge, up; its name (QEMU opens it by name)."""
        name = f"tap{len(self.taps)}"
        ip("-n", self.name, "tuntap", "add", "dev", name, "mode", "tap")
        self.taps.append(name)
        ip("-n", self.name, "link", "set", name, "master", BRIDGE)
        ip("-n", self.name, "link", "set", name, "up")
        return name

    @staticmethod
    def netdev(tap: str) -> str:
        """QEMU's ``-netdev`` value (without ``id=``) for *tap*."""
        return f"tap,ifname={tap},script=no,downscript=no"

    # -- processes and sockets ------------------------------------------------

    def command(self, argv: list[str]) -> list[str]:
        """*argv* run inside the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def enter(self, function: Callable[[], T]) -> T:
        """*function*'s result, called in a thread that joined the namespace.

        A network namespace belongs to a thread: the caller's stays where it is.
        Sockets made by *function* stay in the namespace for their life.
        """
        result: list[T] = []
        error: list[BaseException] = []

        def joined() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        code = ctypes.get_errno()
                        raise OSError(code, f"setns {self.path}: {os.strerror(code)}")
                finally:
                    os.close(fd)
                result.append(function())
            except BaseException as exc:  # re-raised in the caller's thread
                error.append(exc)

        thread = threading.Thread(target=joined, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return result[0]

    def socket(self, family: int = socket.AF_INET,
               kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket inside the namespace (bind or connect it as usual)."""
        return self.enter(lambda: socket.socket(family, kind))

    def connect(self, port: int, address: str = "", timeout: float = 10) -> socket.socket:
        """A TCP connection to *address* (the bridge's by default) inside the namespace."""
        sock = self.socket()
        sock.settimeout(timeout)
        try:
            sock.connect((address or self.address, port))
        except OSError:
            sock.close()
            raise
        sock.settimeout(None)
        return sock

    def relay(self, port: int, address: str = "") -> Relay:
        """A relay from 127.0.0.1 on the host to *address*:*port* inside (start it with
        ``with``)."""
        return Relay(lambda: self.connect(port, address))


class Relay:
    """Listens on 127.0.0.1 (a free port) and pipes each connection to ``connect()``.

    A connection that cannot be made is closed at once (the client sees a reset),
    as if nothing listened.
    """

    def __init__(self, connect: Callable[[], socket.socket]) -> None:
        self.connect = connect
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def __enter__(self) -> Relay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.open.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = self.connect()
        except OSError:
            client.close()
            return
        with self.lock:
            self.open.update((client, server))
        pump = threading.Thread(target=_pipe, args=(server, client), daemon=True)
        pump.start()
        _pipe(client, server)
        pump.join()
        with self.lock:
            self.open.difference_update((client, server))
        client.close()
        server.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy until *source* ends, then end *sink*'s sending side."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def network_namespace(address: str, prefix: str = "lipa") -> Iterator[Namespace]:
    """A :class:`Namespace` whose bridge has *address*; removed on exit."""
    with Namespace(address, prefix) as ns:
        yield ns
