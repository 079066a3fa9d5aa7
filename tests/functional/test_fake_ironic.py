# SPDX-License-Identifier: Apache-2.0
"""The fake Ironic the boot and functional tests rely on behaves like Ironic's API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.fake_ironic import FakeIronic


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_version_lookup_and_heartbeat() -> None:
    with FakeIronic(known_macs=["AA:BB:CC:DD:EE:FF"], heartbeat_timeout=42,
                    config_extra={"tls_min_version": "1.2"}) as ironic:
        status, root = get(ironic.url + "/")
        assert status == 200 and root["default_version"]["version"] == "1.115"

        status, body = get(ironic.url + "/v1/lookup?addresses=11:22:33:44:55:66")
        assert status == 404 and "faultstring" in json.loads(body["error_message"])

        status, body = get(ironic.url + "/v1/lookup?addresses=11:22:33:44:55:66,"
                                        "aa:bb:cc:dd:ee:ff")
        assert status == 200
        assert body["node"]["uuid"] == ironic.node_uuid
        for key in ("properties", "instance_info", "driver_internal_info"):
            assert body["node"][key] == {}
        assert body["config"]["heartbeat_timeout"] == 42
        assert body["config"]["tls_min_version"] == "1.2"
        assert len(body["config"]["agent_token"]) == 43
        assert ironic.wait_for_lookup(timeout=1).addresses == ("11:22:33:44:55:66",
                                                               "aa:bb:cc:dd:ee:ff")
        assert [lk.matched for lk in ironic.lookups] == [False, True]

        request = urllib.request.Request(
            f"{ironic.url}/v1/heartbeat/{ironic.node_uuid}", method="POST",
            data=json.dumps({"callback_url": "https://10.0.2.15:9999"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        beat = ironic.wait_for_heartbeat(timeout=1)
        assert beat.node_uuid == ironic.node_uuid
        assert beat.body == {"callback_url": "https://10.0.2.15:9999"}


def test_waiting_times_out_with_what_was_seen() -> None:
    with FakeIronic() as ironic:
        get(ironic.url + "/v1/lookup")           # no addresses: not a match
        with pytest.raises(TimeoutError, match="/v1/lookup"):
            ironic.wait_for_lookup(timeout=0.2)
