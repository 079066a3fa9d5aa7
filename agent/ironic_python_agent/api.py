# SPDX-License-Identifier: Apache-2.0
"""The agent's REST API (werkzeug), exactly as the Ironic conductor expects it.

Errors are answered as ``{"faultcode": "Client"|"Server", "faultstring": "..."}``;
nothing ever answers with a traceback.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from ironic_python_agent import __version__, errors, jsonbody
from ironic_python_agent.extensions.base import BaseCommandResult

LOG = logging.getLogger(__name__)
DOCS_URL = "https://docs.openstack.org/ironic-python-agent/"
MEDIA_TYPE = "application/vnd.openstack.ironic-python-agent.v1+json"


class AgentLike(Protocol):
    """What the API needs from the agent."""

    started_at: float | None
    command_body_limit: int
    callback_url: str | None

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


def log_safe(text: str, limit: int = 2048) -> str:
    """*text* with control and non-ASCII characters escaped, so it cannot forge log lines."""
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isascii() and text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def _redacted(request: Request) -> str:
    qs = "&".join(
        f"{k}=***" if k == "agent_token" else f"{k}={v}"
        for k, vs in request.args.lists() for v in vs)
    return log_safe(request.path + (f"?{qs}" if qs else ""))


def parse_proxies(values: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``api_trusted_proxies`` entries (addresses or networks); a bad one is a ValueError."""
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip()]


def client_address(remote: str | None, forwarded: str | None,
                   proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """Who sent the request: the peer, or the X-Forwarded-For client of a trusted proxy.

    Walks X-Forwarded-For from the right, skipping trusted proxies; the first
    other address is the client.
    """
    peer = remote or "-"
    if not forwarded or not proxies or not _trusted(peer, proxies):
        return peer
    for hop in reversed([h.strip() for h in forwarded.split(",")]):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage in the header: keep the peer
    return peer


def _trusted(address: str, proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
             ) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


class Application:
    """The WSGI application. ``__call__`` is: match → handler → error funnel."""

    def __init__(self, agent: AgentLike, trusted_proxies: Sequence[str] = ()) -> None:
        self.agent = agent
        self.proxies = parse_proxies(trusted_proxies)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start = time.monotonic()
        request = Request(environ)
        response = self.dispatch(request)
        client = client_address(request.remote_addr, request.headers.get("X-Forwarded-For"),
                                self.proxies)
        LOG.info("%s - %s %s - %s (%.0fms)", client, log_safe(request.method, 16),
                 _redacted(request), response.status_code, (time.monotonic() - start) * 1000)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        # A fixed server name: nothing the client sends in Host comes back to it.
        adapter = URLS.bind("agent", script_name="/", url_scheme="http",
                            path_info=request.path, default_method=request.method,
                            query_args=request.query_string.decode("latin-1"))
        try:
            endpoint, values = adapter.match(method=request.method)
            return getattr(self, f"on_{endpoint}")(request, **values)
        except RequestRedirect as exc:  # the 308 slash redirect, as a relative reference
            parts = urllib.parse.urlsplit(exc.new_url)
            location = parts.path + (f"?{parts.query}" if parts.query else "")
            return Response(status=exc.code, headers={"Location": location})
        except HTTPException as exc:
            return fault_response(exc.code or 500, f"{exc.code} {exc.name}: {exc.description}")
        except errors.RESTError as exc:
            return fault_response(exc.status_code, str(exc))
        except Exception:  # noqa: BLE001 - the funnel: log it, never send a traceback
            LOG.exception("Unexpected error answering %s %s", request.method, request.path)
            return fault_response(500, "Internal error: see the agent log")

    # --- descriptions --------------------------------------------------------

    def _base_url(self) -> str:
        # The address the agent advertises to Ironic (never the request's Host header);
        # before it is known, links are relative.
        return (self.agent.callback_url or "").rstrip("/")

    def _links(self, request: Request, path: str) -> list[dict[str, str]]:
        return [{"href": self._base_url() + path, "rel": "self"},
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
        host = self._base_url()
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
            raise RequestEntityTooLarge(f"The request body is over {limit} bytes "
                                        "(command_body_limit).")
        try:
            # Parsed as it arrives: long strings go straight to their final str, so the
            # request costs about one body of memory, not three.
            body = jsonbody.read(request.stream, length or 0)
        except jsonbody.BodyError as exc:
            raise BadRequest(str(exc)) from None
        if (not isinstance(body, dict) or not isinstance(body.get("name"), str)
                or not isinstance(body.get("params"), dict)):
            raise BadRequest("Missing or invalid name or params")
        try:
            result = self.agent.execute_command(body["name"], **body["params"])
        except TypeError as exc:  # a param that clashes with execute_command's own
            raise errors.InvalidCommandParamsError(str(exc)) from None
        if _wait_requested(request):
            result.join()
        response = json_response(result)
        result.trim()  # a sync result is in the answer; the history keeps the short form
        return response

