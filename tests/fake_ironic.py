# SPDX-License-Identifier: Apache-2.0
"""A small fake Ironic API for tests: the three calls an agent makes.

Serves, on 127.0.0.1 (a QEMU guest on user networking reaches it as 10.0.2.2):

* ``GET /`` — the root version document; ``default_version.version`` is
  ``api_version`` (``"1.115"``, Ironic 39, by default).
* ``GET /v1/lookup?addresses=<mac>,...[&node_uuid=...]`` — recorded in
  :attr:`FakeIronic.lookups`. Answers 404 until one of ``known_macs`` is asked
  for (any MAC matches when ``known_macs`` is None), then 200 with a node and a
  ``config`` holding ``heartbeat_timeout`` and a 43-character ``agent_token``
  (plus ``config_extra``, e.g. ``{"tls_min_version": "1.2"}``).
* ``POST /v1/heartbeat/<uuid>`` — the JSON body is recorded in
  :attr:`FakeIronic.heartbeats`; answers 202 (or ``heartbeat_status``).

Usage::

    with FakeIronic() as ironic:            # port 0: the OS picks one
        boot_guest(f"ipa-api-url=http://10.0.2.2:{ironic.port}")
        lookup = ironic.wait_for_lookup(timeout=120)
        beat = ironic.wait_for_heartbeat(timeout=120)
        beat.body["callback_url"]

Every request is also appended to :attr:`FakeIronic.requests` as
``(method, path, query)`` for debugging.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: requests are recorded in FakeIronic.requests."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass(frozen=True)
class Lookup:
    """One ``GET /v1/lookup`` as received."""

    addresses: tuple[str, ...]
    node_uuid: str | None
    headers: dict[str, str]
    matched: bool
    at: float


@dataclass(frozen=True)
class Heartbeat:
    """One ``POST /v1/heartbeat/<uuid>`` as received."""

    node_uuid: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


@dataclass
class FakeIronic:
    """A fake Ironic API server running in a thread.

    :param known_macs: MACs (any case) that find the node; None means any MAC.
    :param config_extra: merged into the lookup answer's ``config``.
    :param node_extra: merged into the lookup answer's ``node``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    api_version: str = "1.115"
    node_uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    agent_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    heartbeat_timeout: int = 300
    known_macs: Iterable[str] | None = None
    config_extra: dict[str, Any] = field(default_factory=dict)
    node_extra: dict[str, Any] = field(default_factory=dict)
    heartbeat_status: int = 202

    lookups: list[Lookup] = field(default_factory=list, init=False)
    heartbeats: list[Heartbeat] = field(default_factory=list, init=False)
    requests: list[tuple[str, str, str]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._map = Map([
            Rule("/", methods=["GET"], endpoint="root"),
            Rule("/v1/lookup", methods=["GET"], endpoint="lookup"),
            Rule("/v1/heartbeat/<node_uuid>", methods=["POST"], endpoint="heartbeat"),
        ])

    # -- the server ---------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL as seen from the host."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeIronic:
        self._server = make_server(self.host, self.port, self._wsgi, threaded=True,
                                   request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fake-ironic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeIronic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- waiting for the agent ----------------------------------------------

    def wait_for_lookup(self, timeout: float, matched: bool = True) -> Lookup:
        """The first lookup (that found the node, unless *matched* is False)."""
        return self._wait(lambda: next((lk for lk in self.lookups
                                        if lk.matched or not matched), None),
                          timeout, "lookup")

    def wait_for_heartbeat(self, timeout: float, count: int = 1) -> Heartbeat:
        """The *count*-th heartbeat."""
        return self._wait(lambda: (self.heartbeats[count - 1]
                                   if len(self.heartbeats) >= count else None),
                          timeout, f"heartbeat #{count}")

    def _wait(self, probe: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = probe()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"fake Ironic: no {what} within {timeout:.0f}s; "
                        f"requests so far: {self.requests}")
                self._cond.wait(min(left, 1.0))

    # -- the API ------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._cond:
            self.requests.append((request.method, request.path,
                                  request.query_string.decode()))
            self._cond.notify_all()
        try:
            endpoint, args = self._map.bind_to_environ(environ).match()
            response = getattr(self, f"on_{endpoint}")(request, **args)
        except HTTPException as exc:
            response = self._json({"error_message": json.dumps(
                {"faultstring": exc.description, "debuginfo": None})}, exc.code or 500)
        return response(environ, start_response)

    @staticmethod
    def _json(body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json")

    def on_root(self, request: Request) -> Response:
        version = {"id": "v1", "status": "CURRENT", "min_version": "1.1",
                   "version": self.api_version,
                   "links": [{"href": f"{request.host_url}v1/", "rel": "self"}]}
        return self._json({"name": "OpenStack Ironic API",
                           "description": "Fake Ironic for lean-ipa tests",
                           "default_version": version, "versions": [version]})

    def on_lookup(self, request: Request) -> Response:
        addresses = tuple(a.strip().lower() for a in
                          request.args.get("addresses", "").split(",") if a.strip())
        wanted = None if self.known_macs is None else {m.lower() for m in self.known_macs}
        matched = bool(addresses) and (wanted is None or bool(wanted & set(addresses)))
        if request.args.get("node_uuid") == self.node_uuid:
            matched = True
        with self._cond:
            self.lookups.append(Lookup(addresses, request.args.get("node_uuid"),
                                       dict(request.headers), matched, time.time()))
            self._cond.notify_all()
        if not matched:
            raise NotFound("Node could not be found.")
        node = {"uuid": self.node_uuid, "properties": {}, "instance_info": {},
                "driver_internal_info": {}, "links": [], **self.node_extra}
        config = {"heartbeat_timeout": self.heartbeat_timeout,
                  "agent_token": self.agent_token, "agent_token_required": True,
                  "agent_md5_checksum_enable": False,
                  "disable_deep_image_inspection": False,
                  "permitted_image_formats": ["raw", "gpt", "qcow2", "iso"],
                  "agent_skip_bmc_detect": False,
                  "enable_bios_bootloader_install": False,
                  "tls_min_version": "1.3", "tls_cipher_suites": None,
                  "metrics": {"backend": "noop", "prepend_host": False,
                              "prepend_uuid": False, "prepend_host_reverse": True,
                              "global_prefix": None},
                  "metrics_statsd": {"statsd_host": "localhost", "statsd_port": 8125},
                  **self.config_extra}
        return self._json({"node": node, "config": config})

    def on_heartbeat(self, request: Request, node_uuid: str) -> Response:
        try:
            body = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError:
            body = {"_unparsable": request.get_data(as_text=True)}
        with self._cond:
            self.heartbeats.append(Heartbeat(node_uuid, body, dict(request.headers),
                                             time.time()))
            self._cond.notify_all()
        if node_uuid != self.node_uuid:
            raise NotFound(f"Node {node_uuid} could not be found.")
        return Response(b"", status=self.heartbeat_status)
