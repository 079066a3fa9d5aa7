# SPDX-License-Identifier: Apache-2.0
"""The HTTP/1.1 server under the agent API: keep-alive, deadlines, a connection cap.

It replaces werkzeug's development server loop (which closes every connection,
waits 10 ms draining each one, has no read deadline and spins on a failing
``accept``); the WSGI application (:mod:`ironic_python_agent.api`) is unchanged.

* One thread per open connection, at most ``limits.max_connections`` of them.
  A new connection above the cap first evicts the connection that has waited
  longest for a request (an idle keep-alive or a client that never sent its
  headers); when every connection is busy answering, the new one gets an
  immediate ``503`` and is closed.
* ``limits.read_timeout`` bounds the TLS handshake and the request head as a
  whole, each read of the body, and the idle time between keep-alive requests.
* ``accept`` failing with EMFILE/ENFILE spends a spare descriptor to take the
  pending connection and answer it ``503`` instead of spinning; when even that
  fails the loop backs off.
"""

from __future__ import annotations

import errno
import http.client
import io
import logging
import os
import selectors
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger(__name__)

SERVER_NAME = "lean-ipa"
MAX_LINE = 8192            # request line and each header line
MAX_HEADERS = 100
DRAIN_LIMIT = 1 << 20      # unread body bytes discarded to keep a connection; more closes it
HOUSEKEEPING = 0.25        # seconds between deadline checks
ACCEPT_BACKOFF = 0.1       # seconds to pause accepting when no descriptor is left at all
_BUSY_BODY = b'{"faultcode": "Server", "faultstring": "503: too many connections, retry later"}'
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s"
                 % (len(_BUSY_BODY), _BUSY_BODY))

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class Limits:
    """What one client may hold of the server."""

    max_connections: int = 100
    read_timeout: float = 10.0

    @classmethod
    def for_process(cls, max_connections: int, read_timeout: float) -> Limits:
        """Cap *max_connections* below the open-file limit (64 left for everything else)."""
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, ValueError, OSError):
            soft = -1
        if soft > 0:
            max_connections = max(1, min(max_connections, soft - 64))
        return cls(max_connections=max_connections, read_timeout=read_timeout)


class _BadRequest(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class _Body(io.RawIOBase):
    """The request body: exactly Content-Length bytes of the connection."""

    def __init__(self, rfile: Any, length: int) -> None:
        self._rfile = rfile
        self.remaining = length

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.remaining <= 0:
            return 0
        view = memoryview(buf).cast("B")
        n = self._rfile.readinto(view[:min(len(view), self.remaining)])
        if not n:
            raise ConnectionError("the client closed the connection inside the body")
        self.remaining -= n
        return n


class Connection:
    """One client connection; its thread serves requests until it closes."""

    def __init__(self, server: APIServer, sock: socket.socket, address: Any) -> None:
        self.server = server
        self.sock = sock
        self.address = address
        self.waiting = True       # between requests (or before the first): evictable
        self.deadline = time.monotonic() + server.limits.read_timeout
        self.closed = False
        self.rfile: Any = None

    def abort(self) -> None:
        """Wake the thread (blocked reading) by shutting the socket down under it."""
        self.closed = True
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def run(self) -> None:
        try:
            self._serve()
        except (OSError, ssl.SSLError, ValueError, ConnectionError):
            pass  # the client went away, timed out or was evicted
        except Exception:  # noqa: BLE001 - never take the server down with one client
            LOG.exception("Unexpected error on an API connection")
        finally:
            self.server._forget(self)
            # The buffered reader holds the descriptor open (and the WSGI environ, a
            # reference cycle, holds the reader): close both now, not at the next GC.
            try:
                if self.rfile is not None:
                    self.rfile.close()
                self.sock.close()
            except OSError:
                pass

    def _serve(self) -> None:
        limits = self.server.limits
        self.sock.settimeout(limits.read_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = self.server.ssl_context
        if ctx is not None:
            self.sock = ctx.wrap_socket(self.sock, server_side=True,
                                        do_handshake_on_connect=False)
            self.sock.do_handshake()
        rfile = self.rfile = self.sock.makefile("rb", buffering=64 * 1024)
        while not self.closed:
            self.waiting = True
            self.deadline = time.monotonic() + limits.read_timeout
            line = rfile.readline(MAX_LINE + 1)
            if not line:
                return
            if line in (b"\r\n", b"\n"):
                continue  # stray CRLF between requests (RFC 9112 2.2)
            self.waiting = False
            self.server._note_busy(self)
            keep = self._one_request(line, rfile)
            if not keep:
                return

    def _one_request(self, line: bytes, rfile: Any) -> bool:
        try:
            method, target, version, headers = self._read_head(line, rfile)
        except _BadRequest as exc:
            self._send_simple(exc.status, str(exc))
            return False
        # The head is in: from now on only per-read timeouts apply (the body may be big).
        self.deadline = float("inf")
        keep = _keep_alive(version, headers)
        if headers.get("Transfer-Encoding", "identity").lower() != "identity":
            self._send_simple(411, "Transfer-Encoding is not supported; send Content-Length")
            return False
        try:
            length = int(headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self._send_simple(400, "Invalid Content-Length")
            return False
        if headers.get("Expect", "").lower() == "100-continue":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = _Body(rfile, length)
        environ = self._environ(method, target, version, headers, body)
        status, out_headers, chunks = self._call_app(environ)
        if body.remaining:
            # Unread body (an early 401/413): discard a little to keep the connection,
            # never a lot.
            if body.remaining > DRAIN_LIMIT:
                keep = False
            else:
                try:
                    while body.remaining and body.read(64 * 1024):
                        pass
                except (OSError, ConnectionError):
                    keep = False
        if self.server.stopping:
            keep = False
        self._send(status, out_headers, chunks, keep, head=method == "HEAD")
        return keep

    def _read_head(self, line: bytes, rfile: Any) -> tuple[str, str, str, http.client.HTTPMessage]:
        if len(line) > MAX_LINE:
            raise _BadRequest(414, "Request line too long")
        try:
            method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
        except ValueError:
            raise _BadRequest(400, "Malformed request line") from None
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            raise _BadRequest(505, "HTTP version not supported")
        try:
            headers = http.client.parse_headers(rfile)
        except http.client.LineTooLong:
            raise _BadRequest(431, "Header line too long") from None
        except http.client.HTTPException:
            raise _BadRequest(431, "Too many headers") from None
        if len(headers) > MAX_HEADERS:
            raise _BadRequest(431, "Too many headers")
        return method, target, version, headers

    def _environ(self, method: str, target: str, version: str,
                 headers: http.client.HTTPMessage, body: _Body) -> dict[str, Any]:
        parts = urllib.parse.urlsplit(target)
        path = urllib.parse.unquote(parts.path, encoding="latin-1")
        host, port = self.server.server_address[:2]
        addr = self.address[0] if isinstance(self.address, tuple) else "<local>"
        if addr.startswith("::ffff:"):
            addr = addr[7:]
        environ: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self.server.ssl_context is not None else "http",
            "wsgi.input": io.BufferedReader(body, 64 * 1024) if body.remaining else io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": SERVER_NAME,
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": parts.query,
            "REQUEST_URI": target,
            "REMOTE_ADDR": addr,
            "REMOTE_PORT": str(self.address[1]) if isinstance(self.address, tuple) else "0",
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": version,
        }
        for key, value in headers.items():
            if "_" in key:
                continue  # X_Forwarded_For must not pass for X-Forwarded-For
            name = key.upper().replace("-", "_")
            value = value.replace("\r\n", "")
            if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                name = f"HTTP_{name}"
            if name in environ:
                environ[name] = f"{environ[name]},{value}"
            else:
                environ[name] = value
        return environ

    def _call_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        state: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            state["status"], state["headers"] = status, headers
            return lambda data: state.setdefault("written", []).append(data)

        result = self.server.app(environ, start_response)
        try:
            chunks = [bytes(c) for c in result]
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return state["status"], state["headers"], state.get("written", []) + chunks

    def _send(self, status: str, headers: list[tuple[str, str]], chunks: list[bytes],
              keep: bool, head: bool = False) -> None:
        length = sum(len(c) for c in chunks)
        lines = [f"HTTP/1.1 {status}"]
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                lines.append(f"{key}: {value}")
        lines.append(f"Content-Length: {length}")
        if not keep:
            lines.append("Connection: close")
        lines.append(f"Server: {SERVER_NAME}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # One write for head and body: no Nagle/delayed-ACK stall between them.
        self.sock.sendall(data + b"".join(chunks) if not head else data)

    def _send_simple(self, code: int, text: str) -> None:
        reason = http.client.responses.get(code, "Error")
        body = ('{"faultcode": "%s", "faultstring": "%d %s: %s"}' % (
            "Server" if code >= 500 else "Client", code, reason, text)).encode()
        try:
            self._send(f"{code} {reason}", [("Content-Type", "application/json")], [body],
                       keep=False)
        except OSError:
            pass


def _keep_alive(version: str, headers: http.client.HTTPMessage) -> bool:
    tokens = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
    if version == "HTTP/1.1":
        return "close" not in tokens
    return "keep-alive" in tokens


class APIServer:
    """Listen on *host*:*port* and serve *app*; :meth:`serve_forever` runs the accept loop."""

    def __init__(self, host: str, port: int, app: WSGIApp,
                 ssl_context: ssl.SSLContext | None = None,
                 limits: Limits = Limits()) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.limits = limits
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # "::" serves IPv4 too (as werkzeug's server did): create_server would set V6ONLY.
        dualstack = family == socket.AF_INET6 and host == "::" and socket.has_dualstack_ipv6()
        self.socket = socket.create_server((host, port), family=family, backlog=128,
                                           dualstack_ipv6=dualstack)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self.server_port = int(self.server_address[1])
        self.stopping = False
        self._lock = threading.Lock()
        self._connections: dict[Connection, None] = {}   # insertion order: oldest first
        self._spare: int | None = _spare_fd()
        self._wake_r, self._wake_w = os.pipe()
        self._stopped = threading.Event()
        self.evicted = 0
        self.refused = 0

    # --- bookkeeping, called from connection threads ---------------------------------

    def _forget(self, conn: Connection) -> None:
        with self._lock:
            self._connections.pop(conn, None)

    def _note_busy(self, conn: Connection) -> None:
        # Busy connections move to the end: eviction looks at the oldest waiting ones.
        with self._lock:
            if conn in self._connections:
                self._connections.pop(conn)
                self._connections[conn] = None

    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    # --- the accept loop ---------------------------------------------------------------

    def serve_forever(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.socket, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self.stopping:
                for key, _ in sel.select(HOUSEKEEPING):
                    if key.fileobj is self.socket:
                        self._accept_pending()
                self._expire()
        finally:
            sel.close()
            self._stopped.set()

    def _accept_pending(self) -> None:
        for _ in range(64):  # then look at deadlines again
            try:
                sock, address = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._out_of_descriptors()
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                raise
            self._admit(sock, address)

    def _out_of_descriptors(self) -> None:
        """Spend the spare descriptor on the pending client: answer 503 and close it."""
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
            try:
                sock, _ = self.socket.accept()
            except OSError:
                sock = None
            if sock is not None:
                _refuse(sock)
                self.refused += 1
            self._spare = _spare_fd()
            if self._spare is not None:
                return
        LOG.warning("No file descriptor left to accept API connections; pausing %.1f s",
                    ACCEPT_BACKOFF)
        time.sleep(ACCEPT_BACKOFF)
        if self._spare is None:
            self._spare = _spare_fd()

    def _admit(self, sock: socket.socket, address: Any) -> None:
        sock.setblocking(True)
        with self._lock:
            if len(self._connections) >= self.limits.max_connections:
                victim = next((c for c in self._connections if c.waiting), None)
                if victim is None:
                    refuse = True
                else:
                    refuse = False
                    self._connections.pop(victim)
            else:
                refuse, victim = False, None
            if not refuse:
                conn = Connection(self, sock, address)
                self._connections[conn] = None
        if victim is not None:
            victim.abort()
            self.evicted += 1
        if refuse:
            _refuse(sock)
            self.refused += 1
            return
        thread = threading.Thread(target=conn.run, name="agent-api-conn", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread left: same answer as the cap
            self._forget(conn)
            _refuse(sock)

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [c for c in self._connections if c.deadline < now]
        for conn in late:
            conn.abort()

    def shutdown(self) -> None:
        self.stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._stopped.wait(5)
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            if conn.waiting:
                conn.abort()

    def server_close(self) -> None:
        self.socket.close()
        for fd in (self._wake_r, self._wake_w, self._spare):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._spare = None


def _spare_fd() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _refuse(sock: socket.socket) -> None:
    """The quick 503: one non-blocking send, then close."""
    try:
        sock.setblocking(False)
        sock.send(BUSY_RESPONSE)
    except OSError:
        pass
    finally:
        sock.close()
