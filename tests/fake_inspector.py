# SPDX-License-Identifier: Apache-2.0
"""A loopback inspection callback: records every post, answers from a script.

Serves ``POST /v1/continue`` (ironic-inspector) and ``POST
/v1/continue_inspection`` (Ironic) on 127.0.0.1 (a QEMU guest on user
networking reaches it as 10.0.2.2). ``script`` holds ``(status, body)``
answers used in order; once it runs out every post gets 202
``{"uuid": node_uuid}``::

    with FakeInspector() as inspector:
        inspector.script = [(503, "busy")]
        ... post to inspector.url() ...
        inspector.wait_for_posts(2, timeout=30)
        inspector.posts[-1].body["inventory"]
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

PATHS = ("/v1/continue", "/v1/continue_inspection")


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeInspector:
    node_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    script: list[tuple[int, Any]] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    port: int = 0
    _server: BaseWSGIServer | None = None
    _thread: threading.Thread | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.method != "POST" or request.path not in PATHS:
            return Response("not found", status=404)(environ, start_response)
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            return Response("not JSON", status=400)(environ, start_response)
        self.posts.append(Post(request.path, dict(request.headers), body))
        status, answer = self.script.pop(0) if self.script else (202, {"uuid": self.node_uuid})
        return Response(json.dumps(answer), status=status,
                        mimetype="application/json")(environ, start_response)

    def url(self, path: str = "/v1/continue", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def wait_for_posts(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.posts) >= count, f"{len(self.posts)} posts after {timeout} s"

    def __enter__(self) -> FakeInspector:
        self._server = make_server("127.0.0.1", self.port, self, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
