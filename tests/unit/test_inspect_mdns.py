# SPDX-License-Identifier: Apache-2.0
"""mDNS: packet encoding/decoding, and a lookup answered by a responder on 127.0.0.1."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from ironic_python_agent import errors, mdns

INSTANCE = "baremetal._openstack._tcp.local."
HOST = "ironic-1.local."


def _answers(address: str = "192.0.2.5", port: int = 6385,
             txt: dict[str, str] | None = None) -> tuple[list[bytes], list[bytes]]:
    rtype, packed = mdns.encode_address(address)
    answers = [mdns.encode_record(INSTANCE, mdns.TYPE_SRV, mdns.encode_srv(HOST, port)),
               mdns.encode_record(INSTANCE, mdns.TYPE_TXT,
                                  mdns.encode_txt({"path": "/baremetal"} if txt is None else txt))]
    return answers, [mdns.encode_record(HOST, rtype, packed)]


Responder = Callable[[mdns.Message], bytes | None]


@contextmanager
def responder(answer: Responder) -> Iterator[tuple[tuple[str, int], list[mdns.Message]]]:
    """A unicast DNS responder on 127.0.0.1 that records the queries it got."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    queries: list[mdns.Message] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                packet, peer = sock.recvfrom(9000)
            except TimeoutError:
                continue
            query = mdns.decode_message(packet)
            queries.append(query)
            reply = answer(query)
            if reply is not None:
                sock.sendto(reply, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname(), queries
    finally:
        stop.set()
        thread.join()
        sock.close()


def test_query_asks_srv_and_txt_with_unicast_bit() -> None:
    packet = mdns.encode_query(0x1234, [(INSTANCE, mdns.TYPE_SRV), (INSTANCE, mdns.TYPE_TXT)])
    ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", packet)
    assert (ident, flags, qd, an, ns, ar) == (0x1234, 0, 2, 0, 0, 0)
    assert packet[12:12 + 11] == b"\x09baremetal\x0a"
    # class IN with the QU bit, after the first name and type
    assert struct.unpack_from("!HH", packet, 12 + len(mdns.encode_name(INSTANCE))) == (33, 0x8001)
    assert mdns.decode_message(packet).questions == ((INSTANCE, 33), (INSTANCE, 16))


def test_decode_follows_compression_pointers() -> None:
    # A hand-built answer in which the SRV target and the A record name point back.
    head = struct.pack("!HHHHHH", 7, 0x8400, 0, 2, 0, 0)
    name = mdns.encode_name(INSTANCE)
    # "local." inside the first name: header, then "\x09baremetal", "\x0a_openstack", "\x04_tcp"
    local_at = 12 + 10 + 11 + 5
    srv_rdata = struct.pack("!HHH", 0, 0, 443) + b"\x06ironic" + b"\xc0" + bytes([local_at])
    srv = name + struct.pack("!HHIH", 33, 0x8001, 120, len(srv_rdata)) + srv_rdata
    target_at = len(head) + len(name) + 10 + 6
    a = (b"\xc0" + bytes([target_at]) + struct.pack("!HHIH", 1, 0x8001, 120, 4)
         + bytes([198, 51, 100, 7]))
    message = mdns.decode_message(head + srv + a)
    assert message.records[0].target == "ironic.local."
    assert message.records[0].port == 443
    assert message.records[1].name == "ironic.local."
    assert message.records[1].address == "198.51.100.7"
    assert mdns.endpoint_from_records("baremetal", message.records) == (
        "https://198.51.100.7:443", {})


def test_decode_rejects_loops_and_truncation() -> None:
    head = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="loop"):
        mdns.decode_message(head + b"\xc0\x0c")
    with pytest.raises(ValueError):
        mdns.decode_message(head[:8])
    answers, extra = _answers()
    packet = mdns.encode_response(1, [], answers, extra)
    with pytest.raises(ValueError):
        mdns.decode_message(packet[:-2])


def test_endpoint_from_records_protocol_path_and_params() -> None:
    answers, extra = _answers(port=80, txt={"path": "baremetal", "ipa_ntp_server": "192.0.2.1",
                                            "ipa_debug": "1"})
    records = mdns.decode_message(mdns.encode_response(1, [], answers, extra)).records
    url, params = mdns.endpoint_from_records("baremetal", records)  # type: ignore[misc]
    assert url == "http://192.0.2.5:80/baremetal"
    assert params == {"ipa_ntp_server": "192.0.2.1", "ipa_debug": "1"}
    assert mdns.config_overrides(params, ["inspection_callback_url", "ntp_server"]) == {
        "ntp_server": "192.0.2.1"}


def test_endpoint_prefers_a_routable_address_and_brackets_ipv6() -> None:
    answers, _ = _answers(txt={"protocol": "https"})
    extra = [mdns.encode_record(HOST, *mdns.encode_address("127.0.0.1")),
             mdns.encode_record(HOST, *mdns.encode_address("2001:db8::5"))]
    records = mdns.decode_message(mdns.encode_response(1, [], answers, extra)).records
    assert mdns.endpoint_from_records("baremetal", records) == ("https://[2001:db8::5]:6385", {})
    assert mdns.endpoint_from_records("baremetal-introspection", records) is None


def test_get_endpoint_from_a_loopback_responder() -> None:
    def answer(query: mdns.Message) -> bytes | None:
        answers, extra = _answers(address="127.0.0.1")
        return mdns.encode_response(query.ident, list(query.questions), answers, extra)

    with responder(answer) as (server, queries):
        url, params = mdns.get_endpoint("baremetal", server=server, timeout=2)
    assert url == "https://127.0.0.1:6385/baremetal"
    assert params == {}
    assert queries[0].questions == ((INSTANCE, mdns.TYPE_SRV), (INSTANCE, mdns.TYPE_TXT))


def test_get_endpoint_asks_for_the_address_when_left_out() -> None:
    def answer(query: mdns.Message) -> bytes | None:
        answers, extra = _answers(address="127.0.0.1")
        if query.questions[0][0] == INSTANCE:
            return mdns.encode_response(query.ident, list(query.questions), answers)
        return mdns.encode_response(query.ident, list(query.questions), extra)

    with responder(answer) as (server, queries):
        url, _ = mdns.get_endpoint("baremetal", server=server, timeout=2)
    assert url == "https://127.0.0.1:6385/baremetal"
    assert queries[1].questions == ((HOST, mdns.TYPE_A), (HOST, mdns.TYPE_AAAA))


def test_get_endpoint_fails_clearly_after_its_attempts() -> None:
    with responder(lambda query: None) as (server, queries):
        with pytest.raises(errors.ServiceLookupFailure,
                           match="baremetal-introspection.*3 attempts"):
            mdns.get_endpoint("baremetal-introspection", server=server, timeout=0.2)
    assert len(queries) == 3
