# SPDX-License-Identifier: Apache-2.0
"""Parse a JSON request body as it arrives, in about one body's worth of memory.

``json.loads(request.get_data())`` holds the raw bytes, their decoded text and
the parsed values at once: three times the body (a 64 MiB configdrive costs
200 MiB on a 256 MiB node). Here the body is read in pieces; every string
literal longer than :data:`BLOB_THRESHOLD` is decoded straight into its final
``str`` (grown in place) and left out of the rest of the text, which is parsed
by :func:`json.loads` once complete. That rest is capped at
:data:`MAX_STRUCTURE` bytes (its parsed objects are what cost memory) and its
nesting at :data:`MAX_DEPTH`.

The result equals ``json.loads`` of the whole body (UTF-8), or
:class:`BodyError` says what is wrong with it.
"""

from __future__ import annotations

import codecs
import json
import re
import secrets
from typing import Any, BinaryIO

BLOB_THRESHOLD = 64 * 1024
MAX_STRUCTURE = 1 << 20
MAX_DEPTH = 100
READ_SIZE = 1 << 20

_OUTSIDE = re.compile(rb'[\[\]{}"]')
_INSIDE = re.compile(rb'["\\]')
_CONTROL = re.compile("[\x00-\x1f]")
# A prefix of string content whose escapes are all complete.
_COMPLETE = re.compile(r'(?:[^\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
_HIGH_SURROGATE_END = re.compile(r'\\u[dD][89abAB][0-9a-fA-F]{2}$')


class BodyError(ValueError):
    """The body is not acceptable JSON; the message names the problem."""


DECODE = "Failed to decode JSON object"
NOT_UTF8 = f"{DECODE}: the body is not valid UTF-8"
TOO_DEEP = f"{DECODE}: nested deeper than {MAX_DEPTH} levels"


class _Blob:
    """One long string literal, decoded piece by piece into its final str."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._text = ""
        self._pending = ""  # escape sequence cut by a piece boundary

    def feed(self, raw: bytes | bytearray | memoryview, final: bool = False) -> None:
        try:
            piece = self._decoder.decode(raw, final)
        except UnicodeDecodeError as exc:
            raise BodyError(f"{NOT_UTF8}: {exc.reason}") from None
        if self._pending:
            piece = self._pending + piece
            self._pending = ""
        if _CONTROL.search(piece):
            raise BodyError(f"{DECODE}: invalid control character in a string")
        if "\\" in piece:
            end = _COMPLETE.match(piece).end()  # type: ignore[union-attr]
            if final and end != len(piece):
                raise BodyError(f"{DECODE}: invalid \\escape in a string")
            if not final and _HIGH_SURROGATE_END.search(piece, 0, end):
                end -= 6  # keep a surrogate pair together
            piece, self._pending = piece[:end], piece[end:]
            try:
                piece = json.loads(f'"{piece}"')
            except ValueError as exc:
                raise BodyError(f"{DECODE}: invalid escape in a string: {exc}") from None
        # A local with one reference grows in place (no copy of what is there).
        text, self._text = self._text, ""
        text += piece
        self._text = text

    def finish(self) -> str:
        self.feed(b"", final=True)
        text, self._text = self._text, ""
        return text


class _Splitter:
    def __init__(self) -> None:
        self.structure = bytearray()
        self.depth = 0
        self.in_string = False
        self.escape = False
        self.string_start = 0
        self.blob: _Blob | None = None
        self.blobs: dict[str, str] = {}
        self.marker = f"\x00lean-ipa-{secrets.token_hex(8)}-"

    def _content(self, data: bytes, start: int, end: int) -> None:
        if self.blob is not None:
            self.blob.feed(memoryview(data)[start:end])
            return
        self.structure += memoryview(data)[start:end]
        if len(self.structure) - self.string_start > BLOB_THRESHOLD:
            self.blob = _Blob()
            self.blob.feed(self.structure[self.string_start:])
            del self.structure[self.string_start:]

    def _end_string(self) -> None:
        if self.blob is not None:
            name = f"{self.marker}{len(self.blobs)}"
            self.blobs[name] = self.blob.finish()
            self.blob = None
            self.structure += json.dumps(name)[1:].encode()  # the quote is there already
        else:
            self.structure += b'"'
        self.in_string = False

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        if self.escape and n:
            self._content(data, 0, 1)
            self.escape, i = False, 1
        while i < n:
            if self.in_string:
                m = _INSIDE.search(data, i)
                if m is None:
                    self._content(data, i, n)
                    break
                j = m.start()
                if data[j] == 0x22:  # the closing quote
                    self._content(data, i, j)
                    self._end_string()
                    i = j + 1
                elif j + 1 < n:      # a backslash and what it escapes
                    self._content(data, i, j + 2)
                    i = j + 2
                else:                # a backslash ends the piece
                    self._content(data, i, n)
                    self.escape = True
                    break
            else:
                m = _OUTSIDE.search(data, i)
                end = n if m is None else m.end()
                self.structure += memoryview(data)[i:end]
                if m is not None:
                    c = data[m.start()]
                    if c in b"[{":
                        self.depth += 1
                        if self.depth > MAX_DEPTH:
                            raise BodyError(TOO_DEEP)
                    elif c in b"]}":
                        self.depth -= 1
                    else:
                        self.in_string = True
                        self.string_start = len(self.structure)
                i = end
            if len(self.structure) > MAX_STRUCTURE:
                raise BodyError(f"The JSON body has more than {MAX_STRUCTURE} bytes "
                                f"outside strings of {BLOB_THRESHOLD} bytes or more")

    def result(self) -> Any:
        if self.in_string:
            raise BodyError(f"{DECODE}: unterminated string")
        try:
            text = self.structure.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BodyError(f"{NOT_UTF8}: {exc.reason}") from None
        self.structure = bytearray()
        try:
            value = json.loads(text)
        except RecursionError:
            raise BodyError(TOO_DEEP) from None
        except ValueError as exc:
            raise BodyError(f"{DECODE}: {exc}") from None
        return self._restore(value) if self.blobs else value

    def _restore(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.blobs.pop(value, value) if value.startswith(self.marker) else value
        if isinstance(value, list):
            return [self._restore(v) for v in value]
        if isinstance(value, dict):
            return {self._restore(k): self._restore(v) for k, v in value.items()}
        return value


def loads(data: bytes) -> Any:
    """Parse *data* as :func:`read` would (for tests and small bodies)."""
    splitter = _Splitter()
    for start in range(0, len(data), READ_SIZE):
        splitter.feed(data[start:start + READ_SIZE])
    return splitter.result()


def read(stream: BinaryIO, length: int, piece: int = READ_SIZE) -> Any:
    """Read exactly *length* bytes of JSON from *stream* and parse them."""
    splitter = _Splitter()
    left = length
    while left > 0:
        data = stream.read(min(piece, left))
        if not data:
            raise BodyError(f"The body ended after {length - left} of {length} bytes")
        left -= len(data)
        splitter.feed(data)
        del data
    return splitter.result()
