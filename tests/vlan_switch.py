# SPDX-License-Identifier: Apache-2.0
"""A userspace Ethernet switch with one VLAN, for QEMU guests whose NICs send tagged frames.

QEMU's user network drops 802.1Q-tagged frames, and this host's kernel has no
``8021q`` and no bridge ``vlan_filtering``: the host cannot end a VLAN itself.
:class:`VlanSwitch` does it in a thread, between a guest's NICs (its *ports*)
and one tap device (its *uplink*, on the bridge of a namespace the test owns,
see tests/netns.py):

* each port is a unix stream socket the switch listens on; QEMU connects to it
  with ``-netdev stream`` (:meth:`VlanSwitch.netdev`), one frame per message
  behind a 4-byte big-endian length;
* a frame from a port tagged with the switch's VLAN ID loses its tag and is
  written to the tap; every other frame (untagged, another VLAN) is dropped;
  both are counted per port (:attr:`VlanSwitch.forwarded`, :attr:`dropped`);
* a frame read from the tap is tagged and sent to every connected port: an
  active-backup bond drops what arrives on its backup slave, and QEMU drops
  what arrives for a NIC whose link is cut.

The tap must be opened in its own namespace (:func:`open_tap` through
``Namespace.enter``); the switch closes it on exit::

    with network_namespace("192.168.160.1/24") as ns, \\
            VlanSwitch(ns.enter(lambda: open_tap(ns.tap())), vlan_id=100) as switch:
        spec = GuestSpec(..., netdev=switch.netdev(0),
                         extra_args=("-netdev", switch.netdev(1) + ",id=net1", ...))
"""

from __future__ import annotations

import fcntl
import os
import selectors
import shutil
import socket
import struct
import tempfile
import threading
from pathlib import Path
from types import TracebackType

TPID = 0x8100          # 802.1Q
HEADER = 14            # destination and source MAC, EtherType
ADDRESSES = 12
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
SEND_TIMEOUT = 5.0     # a port whose QEMU does not read for this long is dropped


# -- frames (pure) ---------------------------------------------------------------


def vlan_id(frame: bytes) -> int | None:
    """The 802.1Q VLAN ID of Ethernet *frame*, or None when it has no tag."""
    if len(frame) < HEADER + 4 or int.from_bytes(frame[12:14], "big") != TPID:
        return None
    return int.from_bytes(frame[14:16], "big") & 0x0FFF


def untag(frame: bytes) -> bytes:
    """*frame* without its 802.1Q tag."""
    if vlan_id(frame) is None:
        raise ValueError(f"frame of {len(frame)} bytes has no 802.1Q tag")
    return frame[:ADDRESSES] + frame[ADDRESSES + 4:]


def tag(frame: bytes, vid: int, priority: int = 0) -> bytes:
    """*frame* with an 802.1Q tag of VLAN *vid* (1-4094) and *priority* (0-7)."""
    if not 1 <= vid <= 4094:
        raise ValueError(f"VLAN ID {vid} is not in 1-4094")
    if not 0 <= priority <= 7:
        raise ValueError(f"priority {priority} is not in 0-7")
    if len(frame) < HEADER:
        raise ValueError(f"frame of {len(frame)} bytes is shorter than an Ethernet header")
    return frame[:ADDRESSES] + struct.pack("!HH", TPID, priority << 13 | vid) + frame[ADDRESSES:]


def split_messages(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete length-prefixed messages at the start of *buffer* (QEMU's
    ``-netdev stream`` framing) and the incomplete rest."""
    messages = []
    start = 0
    while len(buffer) - start >= 4:
        size = int.from_bytes(buffer[start:start + 4], "big")
        if len(buffer) - start - 4 < size:
            break
        messages.append(buffer[start + 4:start + 4 + size])
        start += 4 + size
    return messages, buffer[start:]


def message(frame: bytes) -> bytes:
    """*frame* framed for ``-netdev stream``."""
    return len(frame).to_bytes(4, "big") + frame


# -- the tap ------------------------------------------------------------------


def open_tap(name: str) -> int:
    """A file descriptor on the existing tap device *name* of the caller's network
    namespace (frames without packet information), non-blocking."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        raise OSError(exc.errno, f"TUNSETIFF {name}: {exc.strerror}") from None
    return fd


# -- the switch -----------------------------------------------------------------


class VlanSwitch:
    """*ports* guest ports on VLAN *vlan_id*, one uplink tap; see the module docstring."""

    def __init__(self, tap: int, vlan_id: int, ports: int = 2) -> None:
        tag(bytes(HEADER), vlan_id)  # the ID is checked before anything is made
        self.tap = tap
        self.vlan_id = vlan_id
        self.forwarded = [0] * ports   # tagged frames from each port written to the tap
        self.dropped = [0] * ports     # frames from each port not on the VLAN
        self.flooded = 0               # frames from the tap sent to the ports
        # a short directory: unix socket paths have a limit of 107 bytes
        self.directory = Path(tempfile.mkdtemp(prefix="vlan-switch-"))
        self.listeners = []
        for port in range(ports):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(os.fspath(self.path(port)))
            listener.listen(1)
            self.listeners.append(listener)
        self.connections: dict[int, socket.socket] = {}
        self.buffers: dict[int, bytes] = {}
        self.selector = selectors.DefaultSelector()
        self.stopping = threading.Event()
        self.error: BaseException | None = None   # what stopped the thread, raised by close()
        self.thread = threading.Thread(target=self._run, name="vlan-switch", daemon=True)

    def path(self, port: int) -> Path:
        return self.directory / f"port{port}"

    def netdev(self, port: int) -> str:
        """QEMU's ``-netdev`` value (without ``id=``) for guest NIC *port*."""
        return f"stream,server=off,addr.type=unix,addr.path={self.path(port)}"

    def __enter__(self) -> VlanSwitch:
        self.thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the thread, close the sockets and the tap (safe to call twice); an
        error that stopped the thread early is raised here."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        for sock in [*self.connections.values(), *self.listeners]:
            sock.close()
        self.connections.clear()
        self.listeners = []
        if self.tap >= 0:
            os.close(self.tap)
            self.tap = -1
        self.selector.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        if self.error is not None:
            error, self.error = self.error, None
            raise RuntimeError(f"the VLAN switch stopped: {error!r}") from error

    # -- the thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._switch()
        except BaseException as exc:  # raised again by close(), in the test's thread
            self.error = exc

    def _switch(self) -> None:
        for port, listener in enumerate(self.listeners):
            self.selector.register(listener, selectors.EVENT_READ, ("accept", port))
        self.selector.register(self.tap, selectors.EVENT_READ, ("tap", -1))
        while not self.stopping.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                what, port = key.data
                if what == "accept":
                    self._accept(port)
                elif what == "port":
                    self._from_port(port)
                else:
                    self._from_tap()

    def _accept(self, port: int) -> None:
        connection, _ = self.listeners[port].accept()
        if port in self.connections:  # one QEMU per port: a second one replaces it
            self._disconnect(port)
        connection.settimeout(SEND_TIMEOUT)
        self.connections[port] = connection
        self.buffers[port] = b""
        self.selector.register(connection, selectors.EVENT_READ, ("port", port))

    def _disconnect(self, port: int) -> None:
        connection = self.connections.pop(port)
        self.selector.unregister(connection)
        connection.close()
        self.buffers.pop(port, None)

    def _from_port(self, port: int) -> None:
        try:
            data = self.connections[port].recv(65536)
        except OSError:
            data = b""
        if not data:  # QEMU went away
            self._disconnect(port)
            return
        frames, self.buffers[port] = split_messages(self.buffers[port] + data)
        for frame in frames:
            if vlan_id(frame) != self.vlan_id:
                self.dropped[port] += 1
                continue
            # Counted before the write: the frame can reach its receiver (a test that
            # then reads the counters) before this thread runs again.
            self.forwarded[port] += 1
            try:
                os.write(self.tap, untag(frame))
            except OSError:  # the tap is down: the frame is lost
                self.forwarded[port] -= 1

    def _from_tap(self) -> None:
        try:
            frame = os.read(self.tap, 65536)
        except OSError:  # nothing after all, or the tap is down
            return
        if len(frame) < HEADER:
            return
        data = message(tag(frame, self.vlan_id))
        for port in list(self.connections):
            try:
                self.connections[port].sendall(data)
            except OSError:  # gone, or not reading: a half-sent frame spoils the stream
                self._disconnect(port)
        self.flooded += 1
