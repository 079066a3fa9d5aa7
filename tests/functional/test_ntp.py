# SPDX-License-Identifier: Apache-2.0
"""Clock sync against a real SNTP server on loopback (a UDP thread of this test).

The server answers as a stratum-2 server whose clock runs a known offset ahead
of ours; the agent's query must find that offset. The tests never set the
host's clock: the setter (clock_settime) is replaced by one that keeps the
offset it is handed.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from ironic_python_agent import errors, ntp

OFFSET = 1234.5


class SNTPServer:
    def __init__(self, offset: float, stratum: int = 2) -> None:
        self.offset = offset
        self.stratum = stratum
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            recv = time.time() + self.offset
            client_xmit = struct.unpack_from("!Q", data, 40)[0]
            xmit = time.time() + self.offset
            reply = ntp.PACKET.pack(0x24, self.stratum, 6, -20, 0, 0, b"GPS\0",
                                    ntp._to_ntp(recv - 10), client_xmit,
                                    ntp._to_ntp(recv), ntp._to_ntp(xmit))
            self.sock.sendto(reply, peer)


@pytest.fixture
def server() -> Iterator[SNTPServer]:
    srv = SNTPServer(OFFSET)
    srv.thread.start()
    yield srv
    srv.sock.close()


def test_query_finds_the_servers_offset(server: SNTPServer) -> None:
    assert ntp.query("127.0.0.1", server.port) == pytest.approx(OFFSET, abs=0.05)


def test_sync_clock_applies_the_offset(server: SNTPServer) -> None:
    applied: list[float] = []
    result = ntp.sync_clock("127.0.0.1", port=server.port, setter=applied.append)
    assert result == pytest.approx(OFFSET, abs=0.05) and applied == [result]
    assert ntp.sync_clock(None) is None and ntp.sync_clock("") is None


def test_unsynchronised_server_is_refused(server: SNTPServer) -> None:
    server.stratum = 0
    with pytest.raises(errors.ClockSyncError, match="not synchronised"):
        ntp.sync_clock("127.0.0.1", fail=True, port=server.port, setter=lambda o: None)


def test_failures_are_ignored_unless_fail_if_clock_not_set() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    start = time.monotonic()
    assert ntp.sync_clock("127.0.0.1", port=closed, setter=lambda o: None) is None
    with pytest.raises(errors.ClockSyncError, match="No usable answer"):
        ntp.sync_clock("127.0.0.1", fail=True, port=closed, setter=lambda o: None)
    assert time.monotonic() - start < 15
    with pytest.raises(errors.ClockSyncError, match="Invalid NTP server address"):
        ntp.sync_clock("pool.ntp.org; reboot", fail=True)


def test_server_names_are_validated() -> None:
    assert ntp.validate_server("10.0.0.1") == "10.0.0.1"
    assert ntp.validate_server("fd00::123") == "fd00::123"
    assert ntp.validate_server("ntp1.example.com") == "ntp1.example.com"
    for bad in ("", "-x", "a b", "x" * 254, "$(id)"):
        with pytest.raises(errors.CommandExecutionError):
            ntp.validate_server(bad)
