"""The response head of CGI-style gateways (RFC 3875 §6): header lines up to an empty line.

FastCGI applications start their STDOUT stream with a CGI header block; uwsgi application
servers answer with an HTTP status line or the same CGI block. Both codecs subclass
:class:`HeadBlockParser` and only choose their error type and whether a status line may come
first, so the grammar lives here once. Sans-IO: bytes in, a :class:`ResponseHead` out.
"""

from __future__ import annotations

import re
from typing import ClassVar, Final, NamedTuple

from ..core.memo import remember

__all__ = ["MAX_HEAD_SIZE", "HeadError", "ResponseHead", "HeadBlockParser"]

MAX_HEAD_SIZE: Final = 64 * 1024
"""Default bound on a response head (header lines plus the empty line)."""


class HeadError(Exception):
    """A malformed or oversized head, from a bare :class:`HeadBlockParser`; the codecs' subclasses
    raise their own error type (``FcgiError``, ``UwsgiError``) instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason: str = reason


class ResponseHead(NamedTuple):
    """A parsed response head.

    ``reason`` is the phrase the application gave, or "" (the caller then uses the standard
    one). ``headers`` keep their order; names are lower-case, values stripped of SP/HTAB and
    decoded as latin-1 (bytes on the wire). ``rest`` is what followed the head in the bytes fed:
    the start of the body.
    """

    status: int
    reason: str
    headers: list[tuple[str, str]]
    rest: bytes


_FIELDS_RE: Final = re.compile(r"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t -~\x80-\xff]*\r?\n)*")
_STATUS_VALUE_RE: Final = re.compile(r"([0-9]{3})(?:[ \t]+(.*))?")
_STATUS_LINE_RE: Final = re.compile(r"HTTP/1\.[0-9] ([0-9]{3})(?: ([\t -~\x80-\xff]*))?")


# An application sends the same head again and again (PHP's "X-Powered-By" and "Content-type"
# for every page of a script): heads parsed before are looked up, not parsed again. Only heads
# that parsed without error are kept; bounded, and long heads (cookies) are never kept.
MAX_CACHED_HEAD: Final = 512
MAX_CACHED_HEADS: Final = 1024
_PARSED: Final[tuple[dict[bytes, tuple[int, str, tuple[tuple[str, str], ...]]], ...]] = ({}, {})  # by allow_status_line


def _find_head_end(buf: bytes | bytearray, scan: int, limit: int) -> tuple[int, int]:
    """(end of the last header line incl. its LF, start of the body), or (-1, -1).

    The head ends at the first empty line; lines end with CRLF or LF, in any mix. Only
    ``buf[scan:limit]`` is searched: a CRLF head (the common case) is found without touching
    the body, and nothing past the size limit is ever scanned.
    """
    first = buf[:1]
    if first == b"\n":
        return 0, 1
    if first == b"\r" and buf[1:2] == b"\n":
        return 0, 2
    j = buf.find(b"\n\r\n", scan, limit)
    i = buf.find(b"\n\n", scan, j + 2 if j >= 0 else limit)
    if i >= 0:
        return i + 1, i + 2
    if j >= 0:
        return j + 1, j + 3
    return -1, -1


class HeadBlockParser:
    """Incremental parser of a response head: header lines up to an empty line, CRLF or LF.

    The shared machinery of ``hemi.web.fcgi.codec.CgiHeadParser`` and
    ``hemi.web.uwsgi.codec.HttpHeadParser``; subclasses choose the error type and whether an
    ``HTTP/1.x NNN reason`` status line may come first. Rules for a CGI head (no status line): ``Status: NNN [reason]`` sets the status
    and is removed from the headers; otherwise a non-empty ``Location`` means 302; otherwise
    200. With a status line, every header, ``Status`` included, is kept as it is.

    ``feed`` returns None until the head is complete, then the :class:`ResponseHead`; after
    that the parser is spent (body bytes go to the caller's body handling, not here; another
    ``feed`` is a RuntimeError). Errors are sticky: once raised, every ``feed`` raises. A head
    larger than ``max_size`` bytes, a malformed line, obs-fold, a control character in a
    value, a bad or duplicate ``Status`` and a status outside 100..599 are errors.
    """

    __slots__ = ("max_size", "_buf", "_scan", "_done", "_failed")

    error: ClassVar[type[Exception]] = HeadError
    allow_status_line: ClassVar[bool] = False

    def __init__(self, max_size: int = MAX_HEAD_SIZE) -> None:
        self.max_size: int = max_size
        self._buf = bytearray()
        self._scan = 0
        self._done = False
        self._failed: str | None = None

    def feed(self, data: bytes) -> ResponseHead | None:
        if self._failed is not None:
            raise self.error(self._failed)
        if self._done:
            raise RuntimeError("the response head was already parsed")
        try:
            return self._feed(data)
        except self.error as e:
            self._failed = str(e)
            self._buf = bytearray()
            raise

    def _feed(self, data: bytes) -> ResponseHead | None:
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        end, body = _find_head_end(buf, self._scan, self.max_size + 3)
        if end < 0:
            if len(buf) >= self.max_size:
                raise self.error(f"response head larger than {self.max_size} bytes")
            if buf is not self._buf:
                self._buf += buf
            self._scan = max(0, len(buf) - 2)
            return None
        self._done = True
        self._buf = bytearray()
        if body > self.max_size:
            raise self.error(f"response head larger than {self.max_size} bytes")
        raw = bytes(buf[:end])
        cache = _PARSED[self.allow_status_line]
        parsed = cache.get(raw)
        if parsed is None:
            status, reason, headers = self._parse(raw.decode("latin-1"))
            if end <= MAX_CACHED_HEAD:
                remember(cache, raw, (status, reason, tuple(headers)), MAX_CACHED_HEADS)
        else:
            status, reason, fields = parsed
            headers = list(fields)
        return ResponseHead(status, reason, headers, buf[body:] if type(buf) is bytes else bytes(buf[body:]))

    def _parse(self, block: str) -> tuple[int, str, list[tuple[str, str]]]:
        error = self.error
        status = 0
        reason = ""
        status_line = False
        fields = block
        if self.allow_status_line and block.startswith("HTTP/"):
            nl = block.index("\n")   # the block ends with LF
            line = block[:nl]
            if line[-1:] == "\r":
                line = line[:-1]
            m = _STATUS_LINE_RE.fullmatch(line)
            if m is None:
                raise error("malformed status line")
            status = int(m[1])
            reason = (m[2] or "").strip(" \t")
            status_line = True
            fields = block[nl + 1:]
        # One regex over all the field lines ("name:value", each ending in LF or CRLF), then a
        # partition per line: the grammar of a per-line match at a fraction of its cost.
        if _FIELDS_RE.fullmatch(fields) is None:
            raise error("malformed header line")
        lines = fields.split("\n")
        lines.pop()                  # the block ends with LF: the last piece is ""
        headers: list[tuple[str, str]] = []
        location = False
        for line in lines:
            name, _, value = line.partition(":")
            name = name.lower()
            value = value.strip(" \t\r")   # a CR can only be the line's end (the regex saw to it)
            if not status_line:
                if name == "status":
                    if status:
                        raise error("duplicate Status header")
                    s = _STATUS_VALUE_RE.fullmatch(value)
                    if s is None:
                        raise error("malformed Status header")
                    status = int(s[1])
                    reason = (s[2] or "").strip(" \t")
                    if not 100 <= status <= 599:
                        raise error(f"status {status} out of range")
                    continue
                if name == "location" and value:
                    location = True
            headers.append((name, value))
        if not status:
            status = 302 if location else 200
        elif not 100 <= status <= 599:
            raise error(f"status {status} out of range")
        return status, reason, headers


def to_bytes(s: "str | bytes", error: type[Exception], what: str) -> bytes:
    """A name or value for a FastCGI/uwsgi packet: bytes pass unchanged, str is UTF-8 (with
    surrogateescape, so bytes-as-str round-trip); anything else raises ``error``."""
    if type(s) is bytes:
        return s
    if isinstance(s, str):
        try:
            return s.encode()
        except UnicodeEncodeError:
            pass
        try:
            return s.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise error(f"{what} is not encodable as UTF-8") from None
    if isinstance(s, (bytes, bytearray, memoryview)):
        return bytes(s)
    raise error(f"{what} must be str or bytes, not {type(s).__name__}")
