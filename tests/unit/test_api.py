# SPDX-License-Identifier: Apache-2.0
"""Every route and error shape of the agent API, through werkzeug's test client."""

import json

import pytest
from werkzeug.test import Client

from ironic_python_agent.api import Application
from tests.agent_fixtures import TOKEN, SampleExtension, make_agent


@pytest.fixture
def agent():
    SampleExtension.release.clear()
    a = make_agent()
    yield a
    SampleExtension.release.set()


@pytest.fixture
def client(agent):
    return Client(Application(agent))


def post(client, name, params=None, wait=None, token=TOKEN, raw=None):
    qs = {"agent_token": token} if token else {}
    if wait is not None:
        qs["wait"] = wait
    data = raw if raw is not None else json.dumps({"name": name, "params": params or {}})
    return client.post("/v1/commands/", query_string=qs, data=data)


def test_root_and_v1(client, agent):
    agent.callback_url = "https://192.0.2.7:9999"
    r = client.get("/", headers={"Host": "evil.example:1"})
    body = r.json
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert body["name"] == "OpenStack Ironic Python Agent API"
    assert body["default_version"]["id"] == "v1"
    # Links carry the advertised address, never the client's Host header.
    assert body["versions"][0]["links"][0] == {"href": "https://192.0.2.7:9999/v1",
                                               "rel": "self"}
    v1 = client.get("/v1/", headers={"Host": "evil.example:1"}).json
    assert v1["commands"][1] == {"href": "https://192.0.2.7:9999/commands", "rel": "bookmark"}
    assert v1["media_types"][0]["type"] == \
        "application/vnd.openstack.ironic-python-agent.v1+json"


def test_links_are_relative_before_the_address_is_known(client):
    assert client.get("/", headers={"Host": "evil.example"}).json[
        "versions"][0]["links"][0]["href"] == "/v1"


def test_trailing_slash_redirects(client):
    for path in ("/v1", "/v1/commands"):
        r = client.get(path, headers={"Host": "evil.example"})
        assert r.status_code == 308 and r.headers["Location"] == path + "/"
    r = client.get("/v1/commands", query_string={"agent_token": TOKEN})
    assert r.headers["Location"] == f"/v1/commands/?agent_token={TOKEN}"


def test_status_needs_no_token(client, agent):
    agent.started_at = 12.5
    assert client.get("/v1/status").json == {"started_at": 12.5, "version": "13.0.0"}
    assert client.get("/status").status_code == 200


def test_unknown_path_and_wrong_method(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.json["faultcode"] == "Client"
    assert r.json["faultstring"].startswith("404 Not Found: ")
    r = client.delete("/v1/commands/", query_string={"agent_token": TOKEN})
    assert r.status_code == 405 and r.json["faultstring"].startswith("405 Method Not Allowed")


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x"])
def test_commands_need_the_token(client, token):
    qs = {"agent_token": token} if token is not None else {}
    for r in (client.get("/v1/commands/", query_string=qs),
              client.get("/v1/commands/x", query_string=qs),
              post(client, "test.echo", token=token)):
        assert r.status_code == 401
        assert r.json == {"faultcode": "Client", "faultstring": "401 Unauthorized: Token invalid."}


def test_no_token_yet_means_401():
    client = Client(Application(make_agent(token=None)))
    assert client.get("/v1/commands/", query_string={"agent_token": "x" * 43}).status_code == 401


def test_standalone_without_token_fails_closed():
    client = Client(Application(make_agent(token=None, standalone=True)))
    assert client.get("/v1/commands/").status_code == 401
    assert post(client, "test.echo", token=None).status_code == 401


def test_standalone_unauthenticated_only_when_allowed():
    client = Client(Application(make_agent(token=None, standalone=True,
                                           allow_unauthenticated_standalone=True)))
    assert client.get("/v1/commands/").status_code == 200


def test_sync_command_result_shape(client):
    r = post(client, "test.echo", {"a": 1})
    assert r.status_code == 200
    body = r.json
    assert set(body) == {"id", "command_name", "command_status", "command_error", "command_result"}
    assert body["command_name"] == "echo" and body["command_status"] == "SUCCEEDED"
    assert body["command_result"] == {"a": 1} and body["command_error"] is None
    assert post(client, "test.text").json["command_result"] == {"result": "hello"}


def test_history_in_order_and_by_id(client):
    ids = [post(client, "test.echo", {"n": i}).json["id"] for i in range(3)]
    listed = client.get("/v1/commands/", query_string={"agent_token": TOKEN}).json["commands"]
    assert [c["id"] for c in listed] == ids
    one = client.get(f"/v1/commands/{ids[1]}", query_string={"agent_token": TOKEN}).json
    assert one["command_result"] == {"n": 1}
    r = client.get("/v1/commands/nope", query_string={"agent_token": TOKEN})
    assert r.status_code == 404
    assert r.json["faultstring"] == "Not found: Command Result with id nope not found."


def test_failures_are_results_with_error_objects(client):
    body = post(client, "test.fail").json
    assert body["command_status"] == "FAILED"
    assert body["command_error"] == {"type": "CleaningError", "code": 500,
                                     "message": "Clean step failed", "details": "bad step"}
    body = post(client, "test.crash").json
    assert body["command_status"] == "FAILED"
    assert body["command_error"]["type"] == "CommandExecutionError"
    assert body["command_error"]["details"] == "boom"
    # Upstream's history became unserialisable here; ours stays readable.
    r = client.get("/v1/commands/", query_string={"agent_token": TOKEN})
    assert r.status_code == 200 and len(r.json["commands"]) == 2


def test_unexpected_param_is_a_typeerror_result(client):
    body = post(client, "test.text", {"bogus": 1}).json
    assert body["command_status"] == "FAILED"
    assert body["command_error"]["type"] == "TypeError"


def test_async_command_runs_and_busy_is_409(client, agent):
    body = post(client, "test.slow", wait="false").json
    assert body["command_status"] == "RUNNING" and body["command_name"] == "slow"
    r = post(client, "test.echo")
    assert r.status_code == 409
    assert r.json == {"faultcode": "Client", "faultstring": "Agent is busy: executing command slow"}
    SampleExtension.release.set()
    done = client.get(f"/v1/commands/{body['id']}",
                      query_string={"agent_token": TOKEN, "wait": "TRUE"}).json
    assert done["command_status"] == "SUCCEEDED"
    assert done["command_result"] == {"result": "slow: done"}
    assert agent._force.is_set()  # a finished async command asks for a heartbeat
    assert post(client, "test.echo").status_code == 200


def test_async_failures(client):
    body = post(client, "test.acrash", wait="true").json
    assert body["command_status"] == "FAILED"
    assert body["command_error"]["type"] == "CommandExecutionError"
    assert body["command_error"]["details"] == "async boom"
    body = post(client, "test.mismatch", wait="true").json
    assert body["command_status"] == "CLEAN_VERSION_MISMATCH"
    assert body["command_error"]["code"] == 409


def test_validator_errors_are_400(client):
    r = post(client, "test.validated", {"image_info": {}})
    assert r.status_code == 400
    assert r.json["faultstring"] == "Invalid command parameters: Image is missing 'id' field."


@pytest.mark.parametrize("raw,status,text", [
    (b"{not json", 400, "400 Bad Request: Failed to decode JSON object"),
    (b"[]", 400, "400 Bad Request: Missing or invalid name or params"),
    (b'{"name": "test.echo"}', 400, "400 Bad Request: Missing or invalid name or params"),
    (b'{"name": "test.echo", "params": []}', 400, "Missing or invalid name or params"),
    (b'{"name": 5, "params": {}}', 400, "Missing or invalid name or params"),
    (b'{"name": "nodot", "params": {}}', 400,
     "Invalid command: Command name must be of the form <extension>.<name>"),
    (b'{"name": "nope.cmd", "params": {}}', 404, "Not found: Extension with id nope not found."),
    (b'{"name": "test.nope", "params": {}}', 400, "Invalid command: Unknown command: nope"),
    (b"\xff\xfe", 400, "Failed to decode JSON object"),
])
def test_bad_requests(client, raw, status, text):
    r = post(client, None, raw=raw)
    assert r.status_code == status
    assert text in r.json["faultstring"]
    assert r.json["faultcode"] == "Client"


def test_body_limit_is_413():
    agent = make_agent()
    agent.command_body_limit = 1024
    client = Client(Application(agent))
    r = post(client, "test.echo", {"x": "a" * 2048})
    assert r.status_code == 413 and r.json["faultstring"].startswith("413 ")
