# SPDX-License-Identifier: Apache-2.0
"""A loopback HTTP server for image tests and benchmarks, with misbehaviours.

Each served path has a :class:`Behaviour`: drop the connection at chosen
offsets (each offset once), serve slowly, announce a wrong length, ignore
Range, or answer an error status a number of times. Bodies go out with
``sendfile`` so the server is not what limits a benchmark.

    with ImageServer() as srv:
        url = srv.serve("/img.raw", path, Behaviour(drop_at=[5 << 20]))
"""

from __future__ import annotations

import http.server
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self


@dataclass
class Behaviour:
    drop_at: list[int] = field(default_factory=list)  # absolute offsets, each used once
    bytes_per_second: float = 0.0  # 0 = as fast as possible
    length_delta: int = 0  # added to the announced Content-Length
    ranges: bool = True
    status: int = 0  # answer this status ...
    status_times: int = 0  # ... this many times (0 with status set = always)
    auth: str | None = None  # required Authorization header value
    redirect_to: str | None = None
    stall_at: list[int] = field(default_factory=list)  # pause here once, for stall_seconds
    stall_seconds: float = 0.0


@dataclass
class Served:
    path: str
    behaviour: Behaviour
    requests: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0  # body bytes put on the wire, all requests together
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, sent: int) -> None:
        with self.lock:  # requests are served by concurrent threads
            self.sent += sent


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path
        proxied = path.startswith(("http://", "https://"))
        if proxied:  # a proxy request: the request line holds the absolute URL
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        entry = self.server.routes.get(path.split("?", 1)[0])
        if entry is None:
            self._status(404)
            return
        b = entry.behaviour
        entry.requests.append({"range": self.headers.get("Range"),
                               "authorization": self.headers.get("Authorization"),
                               "path": self.path, "proxied": proxied})
        if b.redirect_to:
            self.send_response(302)
            self.send_header("Location", b.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if b.status and (b.status_times == 0 or len(entry.requests) <= b.status_times):
            self._status(b.status)
            return
        if b.auth is not None and self.headers.get("Authorization") != b.auth:
            self._status(401)
            return
        size = os.path.getsize(entry.path)
        start = 0
        rng = self.headers.get("Range")
        if rng and b.ranges and rng.startswith("bytes="):
            start = int(rng[6:].split("-", 1)[0])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start + b.length_delta))
        self.send_header("Accept-Ranges", "bytes" if b.ranges else "none")
        self.send_header("ETag", '"v1"')
        # A validator caches (Squid) need before they store a body.
        self.send_header("Last-Modified", self.date_time_string(
            int(os.path.getmtime(entry.path))))
        self.end_headers()
        self.wfile.flush()
        stop = size
        drop = next((d for d in sorted(b.drop_at) if start <= d < size), None)
        if drop is not None:
            b.drop_at.remove(drop)
            stop = drop
        stall = next((d for d in sorted(b.stall_at) if start <= d < stop), None)
        with open(entry.path, "rb") as f:
            if stall is not None:
                b.stall_at.remove(stall)
                self._send(entry, f, start, stall, b.bytes_per_second)
                time.sleep(b.stall_seconds)
                start = stall
            self._send(entry, f, start, stop, b.bytes_per_second)
        if drop is not None or b.length_delta > 0:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def do_HEAD(self) -> None:
        """What Ironic asks before a deploy (is the image there?): headers only."""
        entry = self.server.routes.get(self.path.split("?", 1)[0])
        if entry is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(os.path.getsize(entry.path)))
        self.send_header("Accept-Ranges", "bytes" if entry.behaviour.ranges else "none")
        self.send_header("ETag", '"v1"')
        self.send_header("Last-Modified", self.date_time_string(
            int(os.path.getmtime(entry.path))))
        self.end_headers()

    def _send(self, entry: Served, f: Any, start: int, stop: int, rate: float) -> None:
        try:
            if not rate:
                if stop > start:
                    entry.count(self.connection.sendfile(f, start, stop - start))
                return
            step = max(int(rate / 20), 1)
            pos = start
            while pos < stop:
                n = min(step, stop - pos)
                entry.count(self.connection.sendfile(f, pos, n))
                pos += n
                time.sleep(n / rate)
        except OSError:
            self.close_connection = True

    def _status(self, code: int) -> None:
        body = f"status {code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Served]


class ImageServer:
    """An HTTP server on 127.0.0.1 (ephemeral port) in a background thread."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.routes = {}
        self.port = self._server.server_address[1]
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, file: str | os.PathLike[str],
              behaviour: Behaviour | None = None) -> str:
        self._server.routes[path] = Served(os.fspath(file), behaviour or Behaviour())
        return self.url(path)

    def requests(self, path: str) -> list[dict[str, Any]]:
        return self._server.routes[path].requests

    def bytes_sent(self, path: str) -> int:
        """Body bytes served for *path* so far (what a cache in front saves)."""
        return self._server.routes[path].sent

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
