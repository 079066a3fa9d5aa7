# SPDX-License-Identifier: Apache-2.0
"""The agent's REST API (werkzeug), exactly as the Ironic conductor expects it.

Errors are answered as ``{"faultcode": "Client"|"Server", "faultstring": "..."}``;
nothing ever answers with a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ironic_python_agent import __version__, errors
from ironic_python_agent.extensions.base import BaseCommandResult

LOG = logging.getLogger(__name__)
DOCS_URL = "https://docs.openstack.org/ironic-python-agent/"
MEDIA_TYPE = "application/vnd.openstack.ironic-python-agent.v1+json"


class AgentLike(Protocol):
    """What the API needs from the agent."""

    started_at: float | None
    command_body_limit: int

    def get_token(self) -> str | None: ...
    def token_required(self) -> bool: ...
    def execute_command(self, command_name: str, **params: Any) -> BaseCommandResult: ...
    def list_command_results(self) -> list[BaseCommandResult]: ...
    def get_command_result(self, result_id: str) -> BaseCommandResult: ...


URLS = Map([
    Rule("/", endpoint="root", methods=["GET"]),
    Rule("/v1/", endpoint="v1", methods=["GET"]),
    Rule("/v1/status", endpoint="status", methods=["GET"]),
    Rule("/status", endpoint="status", methods=["GET"]),
    Rule("/v1/commands/", endpoint="list_commands", methods=["GET"]),
    Rule("/commands/", endpoint="list_commands", methods=["GET"]),
    Rule("/v1/commands/<string:result_id>", endpoint="get_command", methods=["GET"]),
    Rule("/commands/<string:result_id>", endpoint="get_command", methods=["GET"]),
    Rule("/v1/commands/", endpoint="run_command", methods=["POST"]),
    Rule("/commands/", endpoint="run_command", methods=["POST"]),
], strict_slashes=True)


class Unauthorized(HTTPException):
    code = 401
    description = "Token invalid."


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "serialize"):
        return obj.serialize()
    return str(obj)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=_json_default), status=status,
                    mimetype="application/json")


def fault_response(status: int, text: str) -> Response:
    return json_response({"faultcode": "Server" if status >= 500 else "Client",
                          "faultstring": text}, status)


def _wait_requested(request: Request) -> bool:
    return request.args.get("wait", "").lower() == "true"


def _redacted(request: Request) -> str:
    qs = "&".join(
        f"{k}=***" if k == "agent_token" else f"{k}={v}"
        for k, vs in request.args.lists() for v in vs)
    return request.path + (f"?{qs}" if qs else "")


class Application:
    """The WSGI application. ``__call__`` is: match → handler → error funnel."""

    def __init__(self, agent: AgentLike) -> None:
        self.agent = agent

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start = time.monotonic()
        request = Request(environ)
        request.max_content_length = self.agent.command_body_limit
        response = self.dispatch(request)
        client = (request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
                  or request.headers.get("X-Real-IP") or request.remote_addr)
        LOG.info("%s - %s %s - %s (%.0fms)", client, request.method, _redacted(request),
                 response.status_code, (time.monotonic() - start) * 1000)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = URLS.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match()
            return getattr(self, f"on_{endpoint}")(request, **values)
        except HTTPException as exc:
            if exc.code is not None and exc.code < 400:  # the 308 slash redirect
                return exc.get_response(request.environ)  # type: ignore[return-value]
            return fault_response(exc.code or 500, f"{exc.code} {exc.name}: {exc.description}")
        except errors.RESTError as exc:
            return fault_response(exc.status_code, str(exc))
        except Exception:  # noqa: BLE001 - the funnel: log it, never send a traceback
            LOG.exception("Unexpected error answering %s %s", request.method, request.path)
            return fault_response(500, "Internal error: see the agent log")

    # --- descriptions --------------------------------------------------------

    def _links(self, request: Request, path: str) -> list[dict[str, str]]:
        return [{"href": request.host_url.rstrip("/") + path, "rel": "self"},
                {"href": DOCS_URL, "rel": "describedby", "type": "text/html"}]

    def on_root(self, request: Request) -> Response:
        version = {"id": "v1", "links": self._links(request, "/v1")}
        return json_response({
            "name": "OpenStack Ironic Python Agent API",
            "description": "Ironic Python Agent is a provisioning agent for OpenStack Ironic",
            "versions": [version],
            "default_version": version,
        })

    def on_v1(self, request: Request) -> Response:
        host = request.host_url.rstrip("/")
        return json_response({
            "id": "v1",
            "links": self._links(request, "/v1"),
            "commands": [{"href": host + "/v1/commands", "rel": "self"},
                         {"href": host + "/commands", "rel": "bookmark"}],
            "status": [{"href": host + "/v1/status", "rel": "self"},
                       {"href": host + "/status", "rel": "bookmark"}],
            "media_types": [{"base": "application/json", "type": MEDIA_TYPE}],
        })

    def on_status(self, request: Request) -> Response:
        return json_response({"started_at": self.agent.started_at, "version": __version__})

    # --- commands ------------------------------------------------------------

    def _check_token(self, request: Request) -> None:
        if not self.agent.token_required():
            return
        known = self.agent.get_token()
        given = request.args.get("agent_token", "")
        if not known or not given or not hmac.compare_digest(known.encode(), given.encode()):
            raise Unauthorized()

    def on_list_commands(self, request: Request) -> Response:
        self._check_token(request)
        return json_response({"commands": self.agent.list_command_results()})

    def on_get_command(self, request: Request, result_id: str) -> Response:
        self._check_token(request)
        result = self.agent.get_command_result(result_id)
        if _wait_requested(request):
            result.join()
        return json_response(result)

    def on_run_command(self, request: Request) -> Response:
        self._check_token(request)
        length = request.content_length
        limit = self.agent.command_body_limit
        if length is not None and length > limit:
            raise RequestEntityTooLarge(f"The request body is over {limit} bytes.")
        try:
            raw = request.get_data(cache=False)
        except RequestEntityTooLarge:
            raise RequestEntityTooLarge(f"The request body is over {limit} bytes.") from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"Failed to decode JSON object: {exc}") from None
        if (not isinstance(body, dict) or not isinstance(body.get("name"), str)
                or not isinstance(body.get("params"), dict)):
            raise BadRequest("Missing or invalid name or params")
        try:
            result = self.agent.execute_command(body["name"], **body["params"])
        except TypeError as exc:  # a param that clashes with execute_command's own
            raise errors.InvalidCommandParamsError(str(exc)) from None
        if _wait_requested(request):
            result.join()
        return json_response(result)

