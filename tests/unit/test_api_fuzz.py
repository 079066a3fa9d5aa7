# SPDX-License-Identifier: Apache-2.0
"""Random requests never get a 5xx, a traceback or a hang from the API."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from ironic_python_agent.api import Application
from tests.agent_fixtures import TOKEN, make_agent

AGENT = make_agent()
CLIENT = Client(Application(AGENT))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
names = st.sampled_from(["test.echo", "test.text", "test.fail", "test.crash", "test.nope",
                         "poll.get_node_info", "nope.x", "nodot", "", ".", "a.", "test.validated",
                         "log.nope", "system.nope"]) | st.text(max_size=30)
paths = st.sampled_from(["/", "/v1", "/v1/", "/v1/status", "/status", "/v1/commands",
                         "/v1/commands/", "/commands/", "/v1/commands/abc", "/v1/commands/%00",
                         "/v1/commands/../..", "/v2/"]) | st.text(max_size=30).filter(lambda t: "?" not in t and "#" not in t).map(lambda t: "/" + t)


def check(response, method="POST"):
    assert response.status_code < 500, response.get_data(as_text=True)
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    if response.status_code >= 400 and method != "HEAD":
        fault = json.loads(body)
        assert set(fault) == {"faultcode", "faultstring"}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=names, params=json_values, wait=st.sampled_from([None, "true", "false", "TRUE", "x"]),
       token=st.sampled_from([TOKEN, None, "", "x"]))
def test_run_command(name, params, wait, token):
    qs = {}
    if token is not None:
        qs["agent_token"] = token
    if wait is not None:
        qs["wait"] = wait
    body = {"name": name, "params": params}
    check(CLIENT.post("/v1/commands/", query_string=qs, data=json.dumps(body)))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=200))
def test_raw_bodies(raw):
    check(CLIENT.post("/v1/commands/", query_string={"agent_token": TOKEN}, data=raw))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=paths, method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
       token=st.sampled_from([TOKEN, None]))
def test_any_path(path, method, token):
    qs = {"agent_token": token} if token else {}
    check(CLIENT.open(path, method=method, query_string=qs), method)
