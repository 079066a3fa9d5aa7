# SPDX-License-Identifier: Apache-2.0
"""Streaming HTTP(S) downloads that survive dropped connections.

:class:`ImageStream` is a file-like reader over one image spread across
several URLs. When a connection drops or stalls mid-stream it reopens the URL
with ``Range: bytes=<offset>-`` and carries on; a server that ignores Range
answers 200, and the stream then reads and discards the bytes it already
returned, so callers always see each byte exactly once, in order.

It is built on :mod:`http.client` rather than requests: ``readinto`` lets the
caller fill its own page-aligned buffers, which the writer hands to the disk
with ``O_DIRECT`` without another copy.
"""

from __future__ import annotations

import base64
import http.client
import logging
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from ironic_python_agent import errors, tls

LOG = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_DISCARD_CHUNK = 1 << 20


@dataclass(frozen=True)
class DownloadOptions:
    """Everything that shapes a download; built from agent.conf by the caller."""

    connect_timeout: float = 60.0
    retries: int = 9
    retry_interval: float = 10.0
    insecure: bool = False
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    tls_min_version: str | None = None
    proxies: Mapping[str, str] = field(default_factory=dict)
    no_proxy: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    max_duration: float = 0.0
    # Injected so tests of the retry logic don't sleep.
    sleep: Callable[[float], None] = time.sleep


def redact_url(url: str) -> str:
    """*url* fit for logs and errors: no password, no query-string values."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if user else f"***@{host}"
    query = parts.query
    if query:
        # Temporary URLs carry their signature in the query; keep the keys only.
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}=***" for k, _ in pairs) if pairs else "***"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def basic_auth_header(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Basic {token}"


def _tls_context(opts: DownloadOptions) -> ssl.SSLContext:
    return tls.client_context(opts.insecure, opts.cafile, opts.certfile, opts.keyfile,
                              opts.tls_min_version)


def _bypass_proxy(host: str, no_proxy: str | None) -> bool:
    if not no_proxy:
        return False
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.lstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
    return False


def _connect(url: str, opts: DownloadOptions) -> tuple[http.client.HTTPConnection, str]:
    """A connection for *url* (through a proxy if one applies) and the request target."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
    host = parts.hostname or ""
    port = parts.port
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = None if _bypass_proxy(host, opts.no_proxy) else opts.proxies.get(parts.scheme)
    timeout = opts.connect_timeout
    conn: http.client.HTTPConnection
    if proxy:
        pparts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        phost, pport = pparts.hostname or "", pparts.port or 3128
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(phost, pport, timeout=timeout,
                                               context=_tls_context(opts))
            conn.set_tunnel(host, port or 443)
        else:
            conn = http.client.HTTPConnection(phost, pport, timeout=timeout)
            target = url  # plain HTTP proxies take the absolute URL
    elif parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=_tls_context(opts))
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    return conn, target


def _url_auth(url: str) -> tuple[str, dict[str, str]]:
    """Credentials embedded in *url* become an Authorization header."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    return clean, {"Authorization": basic_auth_header(user, password)}


class HTTPStatusError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status} {reason}")


def open_url(url: str, opts: DownloadOptions, offset: int = 0,
             validator: str | None = None, end: int | None = None) -> http.client.HTTPResponse:
    """GET *url* from byte *offset* (to byte *end*, inclusive), following
    redirects; the response is unread.

    Raises :class:`HTTPStatusError` for answers other than 200/206, and
    ``OSError``/``http.client.HTTPException`` for transport failures.
    """
    for _ in range(MAX_REDIRECTS + 1):
        clean, auth = _url_auth(url)
        conn, target = _connect(clean, opts)
        headers = {"Accept-Encoding": "identity", "User-Agent": "lean-ipa",
                   **auth, **opts.headers}
        if offset or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end}"
            if validator:
                headers["If-Range"] = validator
        try:
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            url = urllib.parse.urljoin(url, resp.getheader("Location", ""))
            conn.close()
            continue
        if resp.status not in (200, 206):
            reason = resp.reason
            conn.close()
            raise HTTPStatusError(resp.status, reason)
        return resp
    raise HTTPStatusError(310, "too many redirects")


def fetch_bytes(url: str, opts: DownloadOptions, limit: int = 64 << 20) -> bytes:
    """The whole body of a small document (checksum file, configdrive), with retries."""
    last: Exception | None = None
    for attempt in range(opts.retries + 1):
        if attempt:
            opts.sleep(opts.retry_interval)
        try:
            resp = open_url(url, opts)
            try:
                data = resp.read(limit + 1)
            finally:
                resp.close()
            if len(data) > limit:
                raise errors.ImageDownloadFatalError(
                    redact_url(url), f"document larger than {limit} bytes")
            return data
        except HTTPStatusError as exc:
            if 400 <= exc.status < 500:
                raise errors.ImageDownloadFatalError(redact_url(url), str(exc)) from None
            last = exc
        except (OSError, http.client.HTTPException) as exc:
            last = exc
    raise errors.ImageDownloadError(redact_url(url), f"{last}")


def _content_range_start(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` → (100, 1000); unknown parts are None."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    start = span.split("-", 1)[0]
    try:
        return int(start), (int(total) if total.strip() != "*" else None)
    except ValueError:
        return None, None


class ImageStream:
    """A read-once stream over the image at *urls*, resuming after failures.

    ``size`` is the expected total length when the server announced one.
    Errors are agent errors naming the URL without credentials.
    """

    def __init__(self, image_id: str, urls: Sequence[str], opts: DownloadOptions) -> None:
        if not urls:
            raise errors.ImageDownloadError(image_id, "no URL given")
        self.image_id = image_id
        self.urls = list(urls)
        self.opts = opts
        self.offset = 0
        self.size: int | None = None
        self.resumes = 0
        self.url_index = 0
        self._resp: http.client.HTTPResponse | None = None
        self._validator: str | None = None
        self._started = time.monotonic()
        self._failures: list[str] = []
        self._eof = False
        self._stalls = 0
        self._last_drop = -1
        self._fatal = False
        self._all_fatal = True

    @property
    def url(self) -> str:
        return self.urls[self.url_index]

    # -- opening ---------------------------------------------------------------

    def open(self) -> None:
        """Connect to the first URL that answers; the first read does it too."""
        if self._resp is None and not self._eof:
            self._reopen()

    def _reopen(self) -> None:
        """(Re)connect from ``self.offset``: retries per URL, then the next URL."""
        reason = ""
        while self.url_index < len(self.urls):
            url = self.url
            for attempt in range(self.opts.retries + 1):
                if attempt:
                    self.opts.sleep(self.opts.retry_interval)
                self._check_duration()
                try:
                    self._start(url)
                    return
                except HTTPStatusError as exc:
                    reason = str(exc)
                    if 400 <= exc.status < 500 and exc.status != 416:
                        self._fatal = True  # the server said no: retrying won't help
                        break
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                LOG.warning("Image %s: %s failed (%s), attempt %d of %d", self.image_id,
                            redact_url(url), reason, attempt + 1, self.opts.retries + 1)
            self._give_up_url(reason)
        self._raise_failed()

    def _give_up_url(self, reason: str) -> None:
        self._failures.append(f"{redact_url(self.url)}: {reason}")
        self._all_fatal = self._all_fatal and self._fatal
        self._fatal = False
        self.url_index += 1
        self._stalls = 0

    def _raise_failed(self) -> None:
        cls = (errors.ImageDownloadFatalError if self._all_fatal
               else errors.ImageDownloadError)
        raise cls(self.image_id, f"stopped at byte {self.offset} of {self._size_text()}: "
                  + "; ".join(self._failures))

    def _start(self, url: str) -> None:
        resp = open_url(url, self.opts, self.offset, self._validator)
        length = resp.getheader("Content-Length")
        if resp.status == 206:
            start, total = _content_range_start(resp.getheader("Content-Range"))
            if start != self.offset:
                resp.close()
                raise http.client.HTTPException(
                    f"server resumed at byte {start}, wanted {self.offset}")
            if total is not None:
                self._learn_size(total)
        else:
            if length is not None and length.isdigit():
                self._learn_size(int(length))
            if self.offset:
                # Range ignored: the body starts again at byte 0.
                LOG.info("Image %s: %s ignores Range, skipping %d bytes already written",
                         self.image_id, redact_url(url), self.offset)
                self._discard(resp, self.offset)
        self._validator = resp.getheader("ETag") or resp.getheader("Last-Modified")
        if self._validator and self._validator.startswith("W/"):
            self._validator = None  # weak validators cannot guard a Range
        self._resp = resp

    def _learn_size(self, size: int) -> None:
        if self.size is None:
            self.size = size
        elif self.size != size:
            LOG.warning("Image %s: size changed from %d to %d between connections",
                        self.image_id, self.size, size)
            self.size = size

    def _discard(self, resp: http.client.HTTPResponse, count: int) -> None:
        left = count
        while left:
            got = resp.read(min(left, _DISCARD_CHUNK))
            if not got:
                resp.close()
                raise http.client.IncompleteRead(b"", left)
            left -= len(got)

    def _check_duration(self) -> None:
        limit = self.opts.max_duration
        if limit and time.monotonic() - self._started > limit:
            raise errors.ImageDownloadTimeoutError(
                f"Download of image {self.image_id} from {redact_url(self.url)} "
                f"took longer than {limit} seconds")

    def _size_text(self) -> str:
        return f"{self.size} bytes" if self.size is not None else "unknown size"

    # -- reading ---------------------------------------------------------------

    def readinto(self, buf: memoryview | bytearray | Any) -> int:
        """Fill *buf* as far as the image goes; 0 only at the end of the image."""
        view = memoryview(buf).cast("B")
        filled = 0
        while filled < len(view) and not self._eof:
            if self._resp is None:
                self._reopen()
            assert self._resp is not None
            try:
                got = self._resp.readinto(view[filled:])
            except (OSError, http.client.HTTPException) as exc:
                self._drop(f"{type(exc).__name__}: {exc}")
                continue
            if got == 0:
                if self.size is not None and self.offset < self.size:
                    self._drop(f"connection closed at byte {self.offset} of {self.size}")
                    continue
                self._eof = True
                self._close()
                break
            filled += got
            self.offset += got
        if filled:
            self._check_duration()
        return filled

    def _drop(self, reason: str) -> None:
        """Resume after a failure; a URL that keeps failing at the same byte is given up."""
        LOG.warning("Image %s: download from %s interrupted at byte %d of %s (%s); resuming",
                    self.image_id, redact_url(self.url), self.offset, self._size_text(), reason)
        self._close()
        self.resumes += 1
        self._stalls = self._stalls + 1 if self.offset == self._last_drop else 0
        self._last_drop = self.offset
        if self._stalls > self.opts.retries:
            self._give_up_url(reason)
            if self.url_index >= len(self.urls):
                self._raise_failed()
        elif self._stalls:
            self.opts.sleep(self.opts.retry_interval)
        self._reopen()

    def _close(self) -> None:
        if self._resp is not None:
            try:
                self._resp.close()
            except OSError:
                pass
            self._resp = None

    def close(self) -> None:
        self._eof = True
        self._close()

    def rewind(self) -> None:
        """Start the stream again from byte 0 (a second pass over the image)."""
        self._close()
        self.offset = 0
        self._eof = False
        self._stalls = 0
        self._last_drop = -1

    def read_range(self, start: int, length: int) -> bytes | None:
        """Bytes [start, start+length) from a second connection to the current URL,
        or None when the server does not answer Range (or the image changed).

        Used by streaming readers for metadata that comes after the data it
        maps. The same URL and no query of our own, so a caching proxy can
        answer from its copy.
        """
        if self.size is not None:
            length = min(length, self.size - start)
        if length <= 0:
            return b""
        last: Exception | None = None
        for attempt in range(self.opts.retries + 1):
            if attempt:
                self.opts.sleep(self.opts.retry_interval)
            try:
                resp = open_url(self.url, self.opts, start, self._validator,
                                end=start + length - 1)
                try:
                    got, _ = _content_range_start(resp.getheader("Content-Range"))
                    if resp.status != 206 or got != start:
                        LOG.info("Image %s: %s does not answer Range requests (HTTP %d)",
                                 self.image_id, redact_url(self.url), resp.status)
                        return None
                    data = resp.read(length)
                finally:
                    resp.close()
                if len(data) == length:
                    return data
                last = http.client.IncompleteRead(data, length - len(data))
            except HTTPStatusError as exc:
                if exc.status == 416 or 400 <= exc.status < 500:
                    return None
                last = exc
            except (OSError, http.client.HTTPException) as exc:
                last = exc
            LOG.warning("Image %s: Range request for bytes %d-%d failed (%s)", self.image_id,
                        start, start + length - 1, last)
        raise errors.ImageDownloadError(self.image_id, f"Range request for bytes {start}-"
                                        f"{start + length - 1} failed: {last}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def proxies_from_image_info(image_info: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
    """``image_info["proxies"]`` in either shape Ironic has used, plus no_proxy."""
    raw = image_info.get("proxies") or {}
    proxies = {k: v for k, v in raw.items() if k in ("http", "https") and v}
    no_proxy = raw.get("no_proxy") or image_info.get("no_proxy")
    return proxies, (str(no_proxy) if no_proxy else None)
