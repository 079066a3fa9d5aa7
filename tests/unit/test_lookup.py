# SPDX-License-Identifier: Apache-2.0
"""Lookup and heartbeat against a fake Ironic on 127.0.0.1 (in process)."""

import socket

import pytest
from ironic_python_agent.jsonhttp import Session

from ironic_python_agent import errors, ironic
from ironic_python_agent.agent import TokenLost
from tests.agent_fixtures import make_agent
from tests.fake_ironic import FakeIronic


def client(*urls, version=None):
    return ironic.IronicClient(urls=list(urls), session=Session(), timeout=5,
                               api_version=version)


def dead_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_version_detection_and_headers():
    with FakeIronic(api_version="1.115") as fake:
        c = client(fake.url)
        assert c.version() == (1, 115)
        result, _ = c.lookup_once(["52:54:00:00:00:01"])
        assert result is not None and result.node["uuid"] == fake.node_uuid
        assert fake.lookups[0].headers["X-Openstack-Ironic-Api-Version"] == "1.62"
        c.heartbeat(fake.node_uuid, "https://127.0.0.1:9999", "tok", "PEM")
        beat = fake.heartbeats[0]
        assert beat.headers["X-Openstack-Ironic-Api-Version"] == "1.68"
        assert beat.body == {"callback_url": "https://127.0.0.1:9999", "agent_token": "tok",
                             "agent_version": "13.0.0", "agent_verify_ca": "PEM"}


def test_old_api_gets_no_token_fields():
    with FakeIronic(api_version="1.31") as fake:
        c = client(fake.url)
        c.heartbeat(fake.node_uuid, "http://127.0.0.1:9999", "tok", "PEM")
        assert fake.heartbeats[0].body == {"callback_url": "http://127.0.0.1:9999"}


def test_dead_url_is_skipped_and_the_live_one_goes_first():
    with FakeIronic() as fake:
        dead = dead_url()
        c = client(dead, fake.url)
        result, _ = c.lookup_once(["52:54:00:00:00:01"])
        assert result is not None
        assert c.urls == [fake.url, dead]


def test_lookup_retries_until_the_node_appears():
    with FakeIronic(known_macs=["52:54:00:00:00:02"]) as fake:
        c = client(fake.url)
        macs = iter([["52:54:00:00:00:01"]] * 3 + [["52:54:00:00:00:02"]] * 10)
        naps = []
        result = c.lookup(lambda: next(macs), timeout=30, interval=1, sleep=naps.append)
        assert result.node["uuid"] == fake.node_uuid
        assert len(naps) >= 3 and all(0 < n <= 60 for n in naps)


def test_lookup_gives_up_with_a_clear_error():
    c = client(dead_url())
    with pytest.raises(errors.LookupNodeError, match="no node found in Ironic"):
        c.lookup(lambda: ["52:54:00:00:00:01"], timeout=0.3, interval=0.05)


def test_heartbeat_errors_are_typed():
    with FakeIronic() as fake:
        c = client(fake.url)
        fake.heartbeat_status = 409
        with pytest.raises(errors.HeartbeatConflictError):
            c.heartbeat(fake.node_uuid, "http://x:1", "t", None)
        fake.heartbeat_status = 400
        with pytest.raises(errors.HeartbeatError):
            c.heartbeat(fake.node_uuid, "http://x:1", "t", None)
    with pytest.raises(errors.HeartbeatConnectionError):
        client(dead_url(), version=(1, 68)).heartbeat("u", "http://x:1", "t", None)


def test_backoff_grows_and_is_capped():
    top = lambda a, b: b  # noqa: E731 - the upper bound of the jitter
    assert [ironic.lookup_backoff(n, 1, rand=top) for n in (1, 2, 3, 10)] == [2, 4, 8, 60]


def lookup_result(**config):
    return ironic.LookupResult({"uuid": "u1", "properties": {}, "instance_info": {},
                                "driver_internal_info": {}},
                               {"heartbeat_timeout": 12, **config})


def test_process_lookup_data_adopts_token_and_config():
    agent = make_agent(token=None)
    agent.process_lookup_data(lookup_result(
        agent_token="a" * 43, tls_min_version="1.3", permitted_image_formats=["raw"],
        agent_md5_checksum_enable=True, agent_skip_bmc_detect=True))
    assert agent.get_token() == "a" * 43 and agent.heartbeat_timeout == 12
    assert agent.conf.tls_min_version == "1.3"
    assert agent.conf.permitted_image_formats == ["raw"]
    assert agent.conf.md5_enabled is True
    assert agent.node["skip_bmc_detect"] is True


def test_hidden_token_keeps_ours_or_is_fatal():
    agent = make_agent(token="p" * 43)
    agent.process_lookup_data(lookup_result(agent_token="******"))
    assert agent.get_token() == "p" * 43
    with pytest.raises(TokenLost):
        make_agent(token=None).process_lookup_data(lookup_result(agent_token="******"))
    short = make_agent(token=None)
    short.process_lookup_data(lookup_result(agent_token="short"))
    assert short.get_token() is None
