# SPDX-License-Identifier: Apache-2.0
"""A small JSON-over-HTTP(S) client for the Ironic API.

The agent's start-up path uses this instead of requests: importing requests
costs more time and memory than everything else the lookup needs.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any


class HTTPConnectionError(ConnectionError):
    """No answer: refused, reset, timed out, or not HTTP."""


@dataclass(frozen=True)
class Response:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise HTTPConnectionError(f"HTTP {self.status_code}: {self.text[:200]}")


class Session:
    """Requests-like ``request()``; one kept-alive connection per host, thread-safe."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._conns: dict[tuple[str, str, int | None], http.client.HTTPConnection] = {}

    def _connection(self, parts: urllib.parse.SplitResult,
                    timeout: float) -> http.client.HTTPConnection:
        key = (parts.scheme, parts.hostname or "", parts.port)
        conn = self._conns.get(key)
        if conn is None:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                                   timeout=timeout, context=self.context)
            elif parts.scheme == "http":
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                  timeout=timeout)
            else:
                raise HTTPConnectionError(f"unsupported URL scheme {parts.scheme!r}")
            self._conns[key] = conn
        conn.timeout = timeout
        return conn

    def request(self, method: str, url: str, *, params: dict[str, str] | None = None,
                data: str | bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 30.0) -> Response:
        parts = urllib.parse.urlsplit(url)
        target = parts.path or "/"
        query = urllib.parse.urlencode(params or {}, safe=",:")
        if parts.query or query:
            target += "?" + "&".join(q for q in (parts.query, query) if q)
        body = data.encode() if isinstance(data, str) else data
        with self._lock:
            # A kept-alive connection the server closed fails on first use: retry once.
            for attempt in (1, 2):
                conn = self._connection(parts, timeout)
                try:
                    conn.request(method, target, body=body, headers=headers or {})
                    resp = conn.getresponse()
                    content = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    self._conns.pop((parts.scheme, parts.hostname or "", parts.port), None)
                    reused = attempt == 1 and isinstance(
                        exc, (http.client.RemoteDisconnected, ConnectionResetError,
                              BrokenPipeError))
                    if reused:
                        continue
                    raise HTTPConnectionError(f"{method} {parts.scheme}://{parts.netloc}"
                                              f"{parts.path}: {exc or type(exc).__name__}"
                                              ) from exc
                if resp.will_close:
                    conn.close()
                    self._conns.pop((parts.scheme, parts.hostname or "", parts.port), None)
                return Response(resp.status, content)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()
