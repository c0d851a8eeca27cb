"""Sans-IO HTTP/1.1 codec (RFC 9112), strict and fast.

Bytes go in through :meth:`RequestParser.feed`, events come out of
:meth:`RequestParser.next_event`; responses are produced by plain functions
that return bytes.  :class:`ResponseParser` reads responses (for proxies and
clients) with the same header-block and body-framing readers.  Nothing here touches sockets, event loops or clocks, so the
same code serves the asyncio server, the tests and the fuzzers, and every
decision about *what* is on the wire is made in exactly one place.

Strictness is deliberate: request smuggling and cache poisoning live in the gaps
between lenient parsers, so anything RFC 9112 does not allow is rejected with a
:class:`ProtocolError` that carries the HTTP status a server should answer.

Speed is also deliberate: this is the hot path of the server.  A head that is
already complete in the buffer (the normal case) is parsed in one pass: one
``bytes.find`` for the end of the head, one ``bytes.translate`` to rule out
control characters, one ``split`` into lines, one short regex for the request
line and C-level string methods per field.  Only when
that fast path sees anything unusual (a split head, a malformed line, a limit
being hit) does the incremental line-by-line parser run; it is the reference
behaviour, and the fast path never accepts anything it would reject, so the
outcome never depends on how the bytes were split across ``feed`` calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, make_dataclass
from typing import Any, Final

from ...core.memo import Memo, remember

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "CLOSED",
    "ProtocolError",
    "RequestHead",
    "Body",
    "EndOfMessage",
    "Event",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
    "REASONS",
    "render_response_head",
    "encode_chunk",
    "encode_last_chunk",
]


# --------------------------------------------------------------------------
# Sentinels, errors, events
# --------------------------------------------------------------------------


class _Sentinel:
    """A named singleton; compared with ``is``.

    A class (rather than bare ``object()``) so that reprs in logs and test
    failures say ``NEED_DATA`` instead of ``<object at 0x...>``.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        # Pickling/copying yields the module global, preserving identity.
        return self._name


NEED_DATA: Final = _Sentinel("NEED_DATA")
"""More bytes are needed before another event can be produced."""
PAUSED: Final = _Sentinel("PAUSED")
"""The current message is complete; call ``start_next()`` (or ``take_buffer()``)."""
CLOSED: Final = _Sentinel("CLOSED")
"""The peer closed the connection cleanly between requests."""


class ProtocolError(Exception):
    """The request violates HTTP/1.1; the connection must not be reused.

    ``status`` is what a server should answer (400, 413, 414, 431, 501, 505)
    before closing; ``reason`` is a short human-readable explanation meant for
    logs, not for clients.  It is the only exception the parser raises for any
    input, so a server needs a single ``except`` clause around it.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status: int = status
        self.reason: str = reason

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


@dataclass(frozen=True, slots=True)
class RequestHead:
    """The request line and header section, plus the framing facts derived
    from them, so the server never re-parses Connection/Host/etc. itself."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    content_length: int | None
    chunked: bool
    keep_alive: bool
    expect_continue: bool
    upgrade: str | None
    host: str | None


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A response's status line and header section (what a proxy reads from
    its upstream), plus the framing facts derived from them.  ``keep_alive``
    is false when the body is delimited by the close, or the upstream said
    ``Connection: close`` (or is HTTP/1.0 without keep-alive)."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    content_length: int | None
    chunked: bool
    keep_alive: bool
    upgrade: str | None
    # The field lines as received, each ending in CRLF (no status line, no final empty line),
    # when the parser was made with ``keep_raw``: what a proxy filters and relays as bytes.
    raw: bytes = b""


@dataclass(frozen=True, slots=True)
class Body:
    """A piece of request content, delivered as soon as it arrives."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The request content is complete (trailers only for chunked bodies)."""

    trailers: list[tuple[str, str]]


Event = RequestHead | ResponseHead | Body | EndOfMessage


def _mutable_twin(cls: type) -> type:
    """Return a mutable class with exactly ``cls``'s slot layout.

    Frozen dataclasses pay ~100 ns per field in ``__init__`` (one
    ``object.__setattr__`` each).  The hot path instead builds the instance as
    this twin (plain slot stores) and then re-labels it with
    ``obj.__class__ = cls`` — allowed by CPython (and PyPy) precisely because
    the layouts are identical.  The result is a genuine, immutable ``cls``
    instance; for the 10-field RequestHead this cuts construction from ~1 µs
    to ~0.3 µs, a third of the per-request budget.
    """
    names = tuple(f.name for f in fields(cls))
    twin = make_dataclass(f"_{cls.__name__}Twin", names, slots=True, eq=False, repr=False, match_args=False)
    if twin.__slots__ != cls.__slots__:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}: slot layout mismatch")  # pragma: no cover
    probe = twin(*range(len(names)))
    probe.__class__ = cls  # fails loudly at import if a Python ever forbids it
    if probe != cls(*range(len(names))):
        raise TypeError(f"{cls.__name__}: twin construction mismatch")  # pragma: no cover
    return twin


_RequestHeadTwin: Final[type] = _mutable_twin(RequestHead)
_ResponseHeadTwin: Final[type] = _mutable_twin(ResponseHead)


# --------------------------------------------------------------------------
# Grammar (RFC 9110 §5.6.2 tchar, RFC 9112 §3, §5, §7.1)
# --------------------------------------------------------------------------

_TCHAR: Final = r"!#$%&'*+\-.^_`|~0-9A-Za-z"

# Only HTTP/1.0 and HTTP/1.1 reach the fast path; everything else is diagnosed.
_REQUEST_LINE_RE: Final = re.compile(rf"([{_TCHAR}]+) ([!-~]+) HTTP/(1\.[01])")
_METHOD_RE: Final = re.compile(rf"[{_TCHAR}]+")
_TARGET_RE: Final = re.compile(r"[!-~]+")
_ANY_VERSION_RE: Final = re.compile(r"HTTP/[0-9]\.[0-9]")
# status-line = HTTP-version SP status-code SP [ reason-phrase ]; the SP
# before an empty reason is often missing in the wild and tolerated.
_STATUS_LINE_RE: Final = re.compile(r"HTTP/(1\.[01]) ([0-9]{3})(?: ([\t -~\x80-\xff]*))?")
# Names joined with "\n": validates all names, and catches empty ones, at once
# (only used when there is at least one name, so the join is never empty
# unless a name is).
_NAMES_RE: Final = re.compile(rf"[{_TCHAR}]+(?:\n[{_TCHAR}]+)*")
# Field names already proven to be tokens: validating a request's names is
# then one C-level set.issuperset() instead of a regex pass.  Only valid
# names ever enter, and the set is bounded so hostile clients cannot grow it.
_KNOWN_NAMES: Final[set[str]] = set()
_MAX_KNOWN_NAMES: Final = 4096
_FIELD_LINE_RE: Final = re.compile(rf"([{_TCHAR}]+):([\t -~\x80-\xff]*)")
# CTLs other than HTAB (incl. NUL, CR, LF, DEL): never allowed in a field value.
_CTL_BYTES: Final = bytes([*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])

_UNRESERVED_SUBDELIMS: Final = r"A-Za-z0-9\-._~!$&'()*+,;="
_HOST_RE: Final = re.compile(
    rf"(?:(?:[{_UNRESERVED_SUBDELIMS}]|%[0-9A-Fa-f]{{2}})+"
    rf"|\[(?:[0-9A-Fa-f:.]+|[vV][0-9A-Fa-f]+\.[{_UNRESERVED_SUBDELIMS}:]+)\])"
    r"(?::[0-9]{0,5})?"
)
_ABSOLUTE_FORM_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*://")

_MAX_CHUNK_SIZE_DIGITS: Final = 16
_MAX_CHUNK_EXT: Final = 1024
# Longest acceptable chunk-size line, excluding CRLF.
_MAX_CHUNK_LINE: Final = _MAX_CHUNK_SIZE_DIGITS + _MAX_CHUNK_EXT
_QUOTED: Final = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_TCHAR_B: Final = _TCHAR.encode()
_CHUNK_EXT_RE: Final = re.compile(
    rb"(?:[ \t]*;[ \t]*[" + _TCHAR_B + rb"]+(?:[ \t]*=[ \t]*(?:[" + _TCHAR_B + rb"]+|" + _QUOTED + rb"))?)*"
)
_CHUNK_LINE_RE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})(.{0,1024})", re.S)
_HEX_RUN_RE: Final = re.compile(rb"[0-9A-Fa-f]*")

_MAX_EMPTY_LINES: Final = 4  # RFC 9112 §2.2: "SHOULD ignore at least one"
_MAX_CL_DIGITS: Final = 18  # < 2**63: int() stays cheap, no absurd lengths

# Parser states.  Ordered so the hot ones are tested first in next_event().
_S_HEAD: Final = 0
_S_EOM: Final = 1
_S_PAUSED: Final = 2
_S_BODY: Final = 3
_S_CHUNK_SIZE: Final = 4
_S_CHUNK_DATA: Final = 5
_S_CHUNK_CRLF: Final = 6
_S_TRAILERS: Final = 7
_S_UNTIL_CLOSE: Final = 8  # responses only: the body ends when the peer closes
_S_CLOSED: Final = 9
_S_ERROR: Final = 10
_S_TAKEN: Final = 11


# --------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------


class _MessageParser:
    """What the request and response parsers share: the input buffer, the
    header-block readers (the one-pass fast path and the incremental reference
    path), the body-framing readers (Content-Length, chunked with trailers,
    until-close), and the error latch.

    A subclass supplies the start line (``_fast_start_line`` for the fast
    path, ``_parse_start_line`` to diagnose it), ``_finish_head`` (framing
    facts and the event) and ``_size_error``.
    """

    __slots__ = (
        "_buf",
        "_pos",
        "_state",
        "_eof",
        "_error",
        "_remaining",
        "_scan",
        "_req",
        "_fields",
        "_empty_lines",
        "_max_head",
        "_max_headers",
        "_max_trailer",
    )

    # Status given to every ProtocolError this parser raises (0: the
    # status each check names).  A response parser reports 502: whatever is
    # wrong with an upstream's answer, the client gets a bad gateway.
    _ERROR_STATUS: int = 0

    def __init__(self, **limits: int) -> None:
        for name, value in limits.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self._max_head = limits["max_head_size"]
        self._max_headers = limits["max_headers"]
        self._max_trailer = limits["max_trailer_size"]
        # The unconsumed input is self._buf[self._pos:].  A bytes object plus
        # an offset (not a bytearray) so that a Body can hand out the very
        # object passed to feed() without a copy.
        self._buf: bytes = b""
        self._pos: int = 0
        self._state: int = _S_HEAD
        self._eof: bool = False
        self._error: ProtocolError | None = None
        self._remaining: int = 0  # body / chunk bytes still expected
        # Incremental field-section state (slow path): offset of the next
        # unprocessed line relative to self._pos, the parsed start line,
        # and the fields seen so far.
        self._scan: int = 0
        self._req: tuple[str, ...] | None = None
        self._fields: list[tuple[str, str]] = []
        self._empty_lines: int = 0

    # -- input ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Append received bytes; ``b""`` signals that the peer closed.

        Never parses (that happens lazily in next_event) so feeding is cheap
        and a server can feed whatever recv() returned.
        """
        if not data:
            self._eof = True
            return
        if self._state >= _S_ERROR:
            if self._state == _S_TAKEN:
                raise RuntimeError("feed() after take_buffer()")
            return  # dead parser: the connection is being torn down anyway
        if self._eof:
            raise RuntimeError("feed() after EOF")
        if type(data) is not bytes:
            data = bytes(data)
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            self._buf = data
        else:
            # Compact while appending: offsets kept in _scan are relative to
            # _pos, so they survive.  Leftovers are bounded by the head /
            # chunk-line / trailer limits while parsing; in PAUSED the server
            # should watch `buffered` to apply back-pressure.
            self._buf = buf[pos:] + data if pos else buf + data
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes held but not yet consumed (for back-pressure decisions)."""
        return len(self._buf) - self._pos

    def take_buffer(self) -> bytes:
        """Hand over the unparsed bytes and stop parsing for good.

        Used when the connection stops speaking HTTP (CONNECT tunnel, accepted
        Upgrade): whatever the client sent after the request belongs to the new
        protocol.
        """
        data = self._buf[self._pos :]
        self._buf = b""
        self._pos = 0
        if self._state != _S_ERROR:
            self._state = _S_TAKEN
        return data

    def end_bodyless(self) -> None:
        """Skip the EndOfMessage of a head that declared no content, and start on the next
        message: what ``next_event()`` then ``start_next()`` would do, in one call, for the
        common GET. Only valid right after such a head."""
        if self._state != _S_EOM:
            raise RuntimeError("end_bodyless() after a head with content")
        self._begin_next()

    def _begin_next(self) -> None:
        """Reset to read the next head from whatever is left in the buffer."""
        self._state = _S_HEAD
        self._req = None
        self._scan = 0
        self._empty_lines = 0
        if self._pos >= len(self._buf):
            self._buf = b""
            self._pos = 0

    def start_next(self) -> None:
        """Begin parsing the next (pipelined) request from the leftover bytes.

        Explicit rather than automatic so that a server can finish (or refuse)
        the current exchange before a pipelined request is even looked at.
        """
        state = self._state
        if state == _S_PAUSED:
            self._begin_next()
            return
        if state == _S_ERROR or state == _S_CLOSED or state == _S_HEAD:
            return  # nothing to advance; next_event() reports the real state
        raise RuntimeError("start_next() called before the message was complete")

    # -- output --------------------------------------------------------------

    def next_event(self) -> RequestHead | ResponseHead | Body | EndOfMessage | _Sentinel:
        """Return the next event, NEED_DATA, PAUSED or CLOSED.

        Raises ProtocolError (and keeps raising it) on any protocol violation.
        """
        state = self._state
        try:
            if state == _S_HEAD:
                # ---- fast path: the whole head is already buffered ----------
                if self._scan == 0 and self._req is None:
                    buf = self._buf
                    pos = self._pos
                    end = buf.find(b"\r\n\r\n", pos)
                    if end >= 0 and end + 4 - pos <= self._max_head:
                        head = self._parse_whole_head(buf[pos:end])
                        if head is not None:
                            self._pos = end + 4
                            return head
                return self._parse_head_incrementally()
            if state == _S_EOM:
                self._state = _S_PAUSED
                return EndOfMessage([])
            if state == _S_PAUSED:
                return PAUSED
            if state == _S_BODY:
                return self._next_body()
            if state <= _S_TRAILERS:
                return self._next_chunked()
            if state == _S_UNTIL_CLOSE:
                return self._next_until_close()
            if state == _S_ERROR:
                assert self._error is not None
                raise self._error.with_traceback(None)
            if state == _S_CLOSED:
                return CLOSED
            return PAUSED  # _S_TAKEN: detached, nothing more will be parsed
        except ProtocolError as exc:
            if self._error is None:
                if self._ERROR_STATUS:
                    exc.status = self._ERROR_STATUS
                    exc.args = (exc.status, exc.reason)
                self._error = exc
                self._state = _S_ERROR
                self._buf = b""
                self._pos = 0
            raise

    # -- head ----------------------------------------------------------------

    def _parse_whole_head(self, raw: bytes) -> RequestHead | ResponseHead | None:
        """One-pass parse of a complete head (without its final CRLFCRLF).

        Returns None whenever anything is off, letting the incremental parser
        find the exact error in stream order; it raises only for semantic
        errors (framing, Host), which both paths share via _finish_head.
        """
        lines = raw.decode("latin-1").split("\r\n")
        # CTLs (NUL, DEL, CR, LF, ... but not HTAB) may only occur as the CRLF
        # line separators: count them all at once with one C-level translate
        # instead of inspecting each line.
        if len(raw) - len(raw.translate(None, _CTL_BYTES)) != 2 * len(lines) - 2:
            return None
        start = self._fast_start_line(lines[0])
        if start is None or len(lines) > self._max_headers + 1:
            return None
        headers: list[tuple[str, str]] = []
        append = headers.append
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                return None
            append((name.lower(), value.strip(" \t")))
        index = dict(headers)
        if not _KNOWN_NAMES.issuperset(index):
            if _NAMES_RE.fullmatch("\n".join(index)) is None:
                return None
            if len(_KNOWN_NAMES) < _MAX_KNOWN_NAMES:
                _KNOWN_NAMES.update(index)
        return self._finish_head(start, headers, index)

    def _parse_head_incrementally(self) -> RequestHead | ResponseHead | _Sentinel:
        """Reference parser: consume complete lines one by one, remembering
        progress, so errors surface at the earliest line that shows them
        (whatever the split) and a byte-at-a-time peer is never re-parsed
        from the start."""
        if self._scan_fields(self._max_head, True):
            req = self._req
            assert req is not None
            headers = self._fields
            self._fields = []
            self._req = None
            return self._finish_head(req, headers, dict(headers))
        if self._eof:
            if self._req is None and self._pos >= len(self._buf):
                self._state = _S_CLOSED
                return CLOSED
            raise ProtocolError(400, "unexpected eof")
        return NEED_DATA

    def _scan_fields(self, limit: int, is_head: bool) -> bool:
        """Consume complete lines of a head (start line + fields) or a
        trailer section, until its empty line (return True) or until the
        buffer runs out (return False).  Sizes are measured from self._pos,
        the section start, so the limit is exact whatever the split."""
        buf = self._buf
        pos = self._pos
        scan = pos + self._scan
        fields_ = self._fields
        max_fields = self._max_headers
        while True:
            nl = buf.find(b"\n", scan)
            if nl < 0:
                if len(buf) - pos > limit:
                    raise self._size_error(is_head)
                self._scan = scan - pos
                return False
            if nl + 1 - pos > limit:
                raise self._size_error(is_head)
            if nl == scan or buf[nl - 1] != 13:
                raise ProtocolError(400, "bare LF")
            line = buf[scan : nl - 1].decode("latin-1")
            scan = nl + 1
            if is_head and self._req is None:
                if not line:
                    # RFC 9112 §2.2: tolerate a few empty lines before a
                    # request; they do not count towards the head size.
                    self._empty_lines += 1
                    if self._empty_lines > _MAX_EMPTY_LINES:
                        raise ProtocolError(400, "too many empty lines before request")
                    pos = self._pos = scan
                    continue
                self._req = self._parse_start_line(line)
                continue
            if not line:
                self._pos = scan
                self._scan = 0
                return True
            fields_.append(_parse_field_line(line))
            if len(fields_) > max_fields:
                raise ProtocolError(431, "too many header fields" if is_head else "too many trailer fields")

    # -- bodies ----------------------------------------------------------------

    def _next_body(self) -> Body | _Sentinel:
        """Content-Length body: hand out what is there, never past the end."""
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail <= 0:
            if self._eof:
                raise ProtocolError(400, "unexpected eof")
            return NEED_DATA
        data = self._take(buf, pos, avail)
        if not self._remaining:
            self._state = _S_EOM
        return Body(data)

    def _take(self, buf: bytes, pos: int, avail: int) -> bytes:
        """Up to ``_remaining`` bytes of body from the buffer (``avail`` > 0 of them are there)."""
        remaining = self._remaining
        if avail <= remaining:
            data = buf[pos:] if pos else buf
            self._buf = b""
            self._pos = 0
            self._remaining = remaining - avail
        else:
            data = buf[pos : pos + remaining]
            self._pos = pos + remaining
            self._remaining = 0
        return data

    def _next_chunked(self) -> Body | EndOfMessage | _Sentinel:
        """Chunked body (RFC 9112 §7.1): size lines, data, CRLFs, trailers."""
        while True:
            state = self._state
            buf = self._buf
            pos = self._pos
            if state == _S_CHUNK_DATA:
                avail = len(buf) - pos
                if avail <= 0:
                    break
                data = self._take(buf, pos, avail)
                if not self._remaining:
                    self._state = _S_CHUNK_CRLF
                return Body(data)
            if state == _S_CHUNK_SIZE:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if len(buf) - pos > _MAX_CHUNK_LINE + 1:
                        raise ProtocolError(400, "chunk size line too long")
                    break
                if nl - pos > _MAX_CHUNK_LINE + 1:
                    raise ProtocolError(400, "chunk size line too long")
                if nl == pos or buf[nl - 1] != 13:
                    raise ProtocolError(400, "bare LF")
                size = _parse_chunk_size_line(buf[pos : nl - 1])
                self._pos = nl + 1
                if size:
                    self._remaining = size
                    self._state = _S_CHUNK_DATA
                else:
                    self._state = _S_TRAILERS
                    self._scan = 0
                    self._fields = []
                continue
            if state == _S_CHUNK_CRLF:
                avail = len(buf) - pos
                if avail >= 2:
                    if buf[pos] != 13 or buf[pos + 1] != 10:
                        raise ProtocolError(400, "missing CRLF after chunk data")
                    self._pos = pos + 2
                    self._state = _S_CHUNK_SIZE
                    continue
                if avail == 1 and buf[pos] != 13:
                    raise ProtocolError(400, "missing CRLF after chunk data")
                break
            # _S_TRAILERS
            if self._scan_fields(self._max_trailer, False):
                trailers = self._fields
                self._fields = []
                self._state = _S_PAUSED
                return EndOfMessage(trailers)
            break
        if self._eof:
            raise ProtocolError(400, "unexpected eof")
        return NEED_DATA

    def _next_until_close(self) -> Body | EndOfMessage | _Sentinel:
        """A response body without Content-Length or chunking: everything
        until the peer closes (RFC 9112 §6.3 item 8)."""
        buf = self._buf
        pos = self._pos
        if len(buf) > pos:
            data = buf[pos:] if pos else buf
            self._buf = b""
            self._pos = 0
            return Body(data)
        if self._eof:
            self._state = _S_PAUSED
            return EndOfMessage([])
        return NEED_DATA

    # -- hooks (per message kind) --------------------------------------------

    def _fast_start_line(self, line: str) -> tuple[str, ...] | None:
        """The start line's parts if it is plainly valid, else None."""
        raise NotImplementedError

    def _parse_start_line(self, line: str) -> tuple[str, ...]:
        """The start line's parts, or the precise ProtocolError."""
        raise NotImplementedError

    def _finish_head(self, start: tuple[str, ...], headers: list[tuple[str, str]], index: dict[str, str]) -> object:
        """Derive framing and connection facts from the start line and the
        fields, set the body state and return the head event.  Shared by both
        head parsers so semantics cannot drift between them."""
        raise NotImplementedError

    def _size_error(self, is_head: bool) -> ProtocolError:
        raise NotImplementedError


# The longest field section a connection remembers (see RequestParser._parse_whole_head): what
# curl, API clients and browsers without large cookies send. An idle keep-alive connection then
# holds a few kilobytes at most, not a 16 KiB head a client chose to send.
_MAX_REMEMBERED_FIELDS: Final = 2048


def _request_line_parts(line: bytes) -> tuple[str, ...] | None:
    m = _REQUEST_LINE_RE.fullmatch(line.decode("latin-1"))
    return m.groups() if m is not None else None


# Request lines seen before, already matched: ``b"GET /path HTTP/1.1"`` -> its three parts, or
# None. A site's hot URLs come again and again from every client, so a repeated line costs a
# dict lookup instead of a decode and a regex. Only lines that matched and are short are kept
# (a target is checked against each parser's own length limit on every use).
_MAX_REMEMBERED_LINE: Final = 256
_request_line: Final = Memo(_request_line_parts, 4096,
                            lambda line, parts: parts is not None and len(line) <= _MAX_REMEMBERED_LINE).__getitem__


class RequestParser(_MessageParser):
    """Incremental, strict HTTP/1.x request parser.

    Usage::

        p.feed(data)                       # b"" when the peer closed
        while (ev := p.next_event()) is not NEED_DATA: ...
            RequestHead -> Body* -> EndOfMessage -> PAUSED
        p.start_next()                     # then the next pipelined request

    Bytes after a message are kept, never parsed, until ``start_next()``:
    the server decides between keep-alive, close, or handing the raw stream
    to a tunnel with ``take_buffer()`` (CONNECT / Upgrade).

    After a ProtocolError the parser is dead and keeps raising the same error,
    so nothing following a rejected request can ever be interpreted as a
    request of its own (the classic smuggling vector).
    """

    __slots__ = ("_last_host", "_max_uri", "_last_fields", "_last_parsed", "_last_head")

    def __init__(
        self,
        *,
        max_head_size: int = 16384,
        max_headers: int = 100,
        max_uri_size: int = 8192,
        max_trailer_size: int = 16384,
    ) -> None:
        super().__init__(
            max_head_size=max_head_size,
            max_headers=max_headers,
            max_uri_size=max_uri_size,
            max_trailer_size=max_trailer_size,
        )
        self._max_uri = max_uri_size
        self._last_host: str | None = None  # Host already validated on this connection
        # The field section of the last head parsed whole, with its fields and their index: a
        # keep-alive client sends the same fields again and again (only the request line
        # differs), so each connection parses them once. See _parse_whole_head. Kept from the
        # CRLF that ends the request line: one endswith() finds both.
        self._last_fields = b""
        self._last_parsed: tuple[list[tuple[str, str]], dict[str, str]] | None = None
        # The last head made from those fields (with a Host): what _finish_head derived from
        # them holds for the next head of the same version too. See _repeat_head.
        self._last_head: RequestHead | None = None

    def _size_error(self, is_head: bool) -> ProtocolError:
        if not is_head:
            return ProtocolError(431, "trailer section too large")
        if self._req is None:
            return ProtocolError(414, "request line too long")
        return ProtocolError(431, "request head too large")

    def _parse_whole_head(self, raw: bytes) -> RequestHead | None:  # type: ignore[override]
        """The whole-head parse, except that a field section equal to the last one on this
        connection is not parsed again: only the request line is. The fields were validated
        then, byte for byte the same now; their list is copied so that a handler changing a
        request's headers cannot change the next request's."""
        parsed = self._last_parsed
        if parsed is not None:
            fields = self._last_fields  # with the CRLF that ends the request line
            nl = len(raw) - len(fields)
            if nl > 0 and raw.endswith(fields):
                # The request line regex admits no CTL, so the line needs no other check.
                start = self._known_start_line(raw[:nl])
                if start is not None:
                    headers, index = parsed
                    prev = self._last_head
                    if prev is not None and prev.version == start[2]:
                        return self._repeat_head(start, headers.copy(), prev)
                    head = self._finish_head(start, headers.copy(), index)
                    self._last_head = head if head.host else None
                    return head
        head = super()._parse_whole_head(raw)
        if head is not None and head.headers:  # type: ignore[union-attr]
            nl = raw.find(b"\r\n")
            if len(raw) - nl <= _MAX_REMEMBERED_FIELDS:
                headers = head.headers  # type: ignore[union-attr]
                self._last_fields = raw[nl:]
                self._last_parsed = (headers.copy(), dict(headers))  # _finish_head merges repeats
                self._last_head = head if head.host else None  # type: ignore[union-attr]
            elif parsed is not None:  # an idle connection holds no large section
                self._last_fields = b""
                self._last_parsed = None
                self._last_head = None
        return head  # type: ignore[return-value]

    def _repeat_head(self, start: tuple[str, ...], headers: list[tuple[str, str]], prev: RequestHead) -> RequestHead:
        """The head of a request line of ``prev``'s version with ``prev``'s very fields:
        everything _finish_head derives from the fields and the version (the framing, the
        parser's state after the head, keep-alive, Expect, Upgrade, the Host it checked) is
        ``prev``'s. Only a head with a Host is kept as ``prev``, so no check on an empty Host
        (which depends on the target) is skipped."""
        length = prev.content_length
        self._expect_body(length, prev.chunked)
        head = _RequestHeadTwin(start[0], start[1], start[2], headers, length, prev.chunked, prev.keep_alive,
                                prev.expect_continue, prev.upgrade, prev.host)
        head.__class__ = RequestHead
        return head  # type: ignore[no-any-return]

    def _expect_body(self, length: int | None, chunked: bool) -> None:
        """The state after a request head: its chunked or sized body, or its end."""
        if chunked:
            self._state = _S_CHUNK_SIZE
        elif length:
            self._remaining = length
            self._state = _S_BODY
        else:
            self._state = _S_EOM

    def _fast_start_line(self, line: str) -> tuple[str, ...] | None:
        return self._known_start_line(line.encode("latin-1"))  # (the line was latin-1 bytes)

    def _known_start_line(self, line: bytes) -> tuple[str, ...] | None:
        """The request line's parts if it is plainly valid (lines matched before are looked
        up) and its target within this parser's limit, else None."""
        parts = _request_line(line)
        if parts is None or len(parts[1]) > self._max_uri:
            return None
        return parts

    def _parse_start_line(self, line: str) -> tuple[str, str, str]:
        """Validate a request line, diagnosing precisely when it is wrong."""
        m = _REQUEST_LINE_RE.fullmatch(line)
        if m is not None:
            method, target, version = m.groups()
            if len(target) > self._max_uri:
                raise ProtocolError(414, "uri too long")
            return method, target, version
        if "\r" in line:
            raise ProtocolError(400, "bare CR")
        parts = line.split(" ")
        if len(parts) != 3:
            raise ProtocolError(400, "malformed request line")
        method, target, version = parts
        if _METHOD_RE.fullmatch(method) is None:
            raise ProtocolError(400, "bad method")
        if _TARGET_RE.fullmatch(target) is None:
            raise ProtocolError(400, "bad request-target")
        if len(target) > self._max_uri:
            raise ProtocolError(414, "uri too long")
        if _ANY_VERSION_RE.fullmatch(version) is not None:
            raise ProtocolError(505, "http version not supported")
        raise ProtocolError(400, "bad http version")

    def _finish_head(
        self,
        start: tuple[str, ...],
        headers: list[tuple[str, str]],
        index: dict[str, str],
    ) -> RequestHead:
        method, target, version = start
        is11 = version == "1.1"
        if len(index) != len(headers):
            index = _merge_duplicates(headers, index, _REQUEST_UNIQUE)
        host = index.get("host")
        cl = index.get("content-length")
        te = index.get("transfer-encoding")
        conn = index.get("connection")

        if host is None:
            if is11:
                raise ProtocolError(400, "missing host")
        elif host != self._last_host:
            if host:
                if _HOST_RE.fullmatch(host) is None:
                    raise ProtocolError(400, "bad host")
                self._last_host = host
            elif _ABSOLUTE_FORM_RE.match(target) is None:
                raise ProtocolError(400, "empty host")

        length, chunked = (None, False) if cl is None and te is None else _framing(cl, te, is11)
        self._expect_body(length, chunked)

        # RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored.
        keep_alive, upgrade = (is11, None) if conn is None else _connection(conn, index, is11, is11)
        expect_continue = False
        if is11:
            expect = index.get("expect")
            if expect is not None:
                expect_continue = expect.lower() == "100-continue"
        head = _RequestHeadTwin(
            method, target, version, headers, length, chunked, keep_alive, expect_continue, upgrade, host
        )
        head.__class__ = RequestHead
        return head  # type: ignore[no-any-return]


def _framing(cl: str | None, te: str | None, is11: bool) -> tuple[int | None, bool]:
    """``(content length, chunked)`` from a message's Content-Length and Transfer-Encoding
    (RFC 9112 §6), for requests and responses alike (a response parser answers any error with
    502). Both at once is an error, never a choice: that ambiguity is how requests are smuggled
    and responses split (§6.3)."""
    if te is not None:
        if not is11:
            raise ProtocolError(400, "transfer-encoding in HTTP/1.0")
        if cl is not None:
            raise ProtocolError(400, "both content-length and transfer-encoding")
        if te.lower() != "chunked":
            raise ProtocolError(501, "unsupported transfer-encoding")
        return None, True
    if cl is not None:
        if len(cl) > _MAX_CL_DIGITS or not cl.isdigit() or not cl.isascii():
            raise ProtocolError(400, "bad content-length")
        return int(cl), False
    return None, False


def _connection(conn: str, index: dict[str, str], is11: bool, may_upgrade: bool) -> tuple[bool, str | None]:
    """What a Connection field says, for requests and responses alike: whether the connection
    stays open after this message (``is11`` is the default), and the protocol asked for by an
    ``upgrade`` option with its Upgrade field (lower case), if ``may_upgrade``."""
    c = conn.lower()
    if c == "keep-alive":
        return True, None
    if c == "close":
        return False, None
    tokens = {t.strip(" \t") for t in c.split(",")}
    keep_alive = is11
    if "close" in tokens:
        keep_alive = False
    elif "keep-alive" in tokens:
        keep_alive = True
    upgrade = None
    if may_upgrade and "upgrade" in tokens:
        upgrade = (index.get("upgrade") or "").lower() or None
    return keep_alive, upgrade


# Final response heads already parsed, by (HEAD request, keep_raw) and then the head's bytes:
# see ResponseParser._parse_whole_head. Bounded; a long head (cookies) is never kept.
_MAX_CACHED_HEAD: Final = 1024
_MAX_CACHED_HEADS: Final = 256
_CachedHead = tuple[Any, int, int, int]   # the head, the parser's state and remaining length after it, its fields
_RESPONSE_HEADS: Final[tuple[tuple[dict[bytes, _CachedHead], dict[bytes, _CachedHead]], ...]] = (({}, {}), ({}, {}))


class ResponseParser(_MessageParser):
    """Incremental, strict HTTP/1.x response parser, for clients and proxies.

    Usage::

        p = ResponseParser(request_method="GET")
        p.feed(data)                       # b"" when the peer closed
        ResponseHead (1xx)* -> ResponseHead -> Body* -> EndOfMessage -> PAUSED
        p.start_next(request_method)       # the response to the next request

    The body length follows RFC 9112 §6.3: none for HEAD, 1xx, 204 and 304;
    chunked; Content-Length; else until the peer closes.  Informational
    responses (100, 103) are followed by the real one on the same parser; after
    a 101 the parser pauses and ``take_buffer()`` hands over the bytes of the
    new protocol.  CLOSED means the peer closed before sending any byte of a
    response (a pooled connection the upstream had already given up).

    Every ProtocolError carries status 502: a broken upstream answer is a bad
    gateway, whatever is wrong with it.  It shares the header-block and
    body-framing readers with :class:`RequestParser`, so the two accept the
    same field syntax and chunked framing.
    """

    __slots__ = ("_head_request", "_keep_raw", "_raw", "_last_whole")

    _ERROR_STATUS = 502

    def __init__(
        self,
        request_method: str = "GET",
        *,
        max_head_size: int = 65536,
        max_headers: int = 200,
        max_trailer_size: int = 16384,
        keep_raw: bool = False,
    ) -> None:
        super().__init__(max_head_size=max_head_size, max_headers=max_headers, max_trailer_size=max_trailer_size)
        self._head_request = request_method == "HEAD"
        # keep_raw: every ResponseHead also carries its validated field lines as bytes (``raw``).
        self._keep_raw = keep_raw
        self._raw = b""
        # The head (with its CRLFCRLF) of the last response take_whole took, what the cache
        # said of it, and for which kind of request: the next response usually starts with
        # the very same bytes (an upstream's Date changes once a second), so no search, slice
        # or hash is needed to know it.
        self._last_whole: tuple[bytes, _CachedHead, bool] | None = None

    def start_next(self, request_method: str = "GET") -> None:  # type: ignore[override]
        """Expect the response to a new request (on a kept-alive connection)."""
        if self._state == _S_PAUSED:  # the usual: the last response was read to its end
            self._begin_next()
        else:
            _MessageParser.start_next(self)  # (named: super() costs a lookup per response on 3.11)
        self._head_request = request_method == "HEAD"

    def take_whole(self, data: bytes) -> tuple[ResponseHead, bytes] | None:
        """``(head, body)`` when ``data``, with nothing buffered before it, is exactly one
        response whose head was parsed before (the cache below) with all of its
        Content-Length body: the parser is then where it is after that response's
        EndOfMessage. Anything else (a new head, a partial or chunked body, bytes after it):
        None, and nothing consumed: ``feed`` the data and take the events.

        Why: an upstream answers a small static file in one segment, the same head each time
        but for Date; a proxy takes it in one call instead of a feed and three events."""
        # (A head parsed partly, _scan or _req set, is still in the buffer: the second test sees it.)
        if self._state != _S_HEAD or self._pos < len(self._buf) or self._eof:
            return None
        last = self._last_whole
        if last is not None and last[2] == self._head_request and data.startswith(last[0]):
            end, hit = len(last[0]), last[1]  # the head this connection's last response had
        else:
            end = data.find(b"\r\n\r\n") + 4
            if end < 4:
                return None
            prefix = data[:end]
            hit = _RESPONSE_HEADS[self._head_request][self._keep_raw].get(prefix[:-4])
            if hit is None or hit[3] > self._max_headers:
                return None
            self._last_whole = (prefix, hit, self._head_request)
        head, state, remaining, _ = hit
        size = len(data) - end
        if state == _S_BODY:
            if size != remaining:
                return None
        elif state != _S_EOM or size:
            return None
        self._state = _S_PAUSED
        return head, data[end:]

    def _parse_whole_head(self, raw: bytes) -> ResponseHead | None:  # type: ignore[override]
        # An upstream sends the same head again and again (a static file's: only Date changes,
        # once a second): a final head parsed before is taken from the cache with the framing
        # state it left, not parsed again. Heads are immutable, so one object serves them all.
        cache = _RESPONSE_HEADS[self._head_request][self._keep_raw]
        hit = cache.get(raw)
        if hit is not None and hit[3] <= self._max_headers:  # (another parser may allow fewer)
            head, self._state, self._remaining, _ = hit
            return head
        if not self._keep_raw:
            head = super()._parse_whole_head(raw)
        else:
            nl = raw.find(b"\r\n")
            self._raw = raw[nl + 2:] + b"\r\n" if nl >= 0 else b""  # the very bytes validated next
            head = super()._parse_whole_head(raw)
            self._raw = b""
        if head is not None and head.status >= 200 and len(raw) <= _MAX_CACHED_HEAD:  # type: ignore[union-attr]
            remember(cache, raw, (head, self._state, self._remaining, len(head.headers)),  # type: ignore[union-attr]
                     _MAX_CACHED_HEADS)
        return head  # type: ignore[return-value]

    def _fast_start_line(self, line: str) -> tuple[str, ...] | None:
        m = _STATUS_LINE_RE.fullmatch(line)
        if m is None:
            return None
        return m.groups()  # type: ignore[return-value]

    def _parse_start_line(self, line: str) -> tuple[str, ...]:
        m = _STATUS_LINE_RE.fullmatch(line)
        if m is not None:
            return m.groups()  # type: ignore[return-value]
        if "\r" in line:
            raise ProtocolError(502, "bare CR")
        if _ANY_VERSION_RE.match(line) is not None and not line.startswith(("HTTP/1.0 ", "HTTP/1.1 ")):
            raise ProtocolError(502, "http version not supported")
        raise ProtocolError(502, "malformed status line")

    def _size_error(self, is_head: bool) -> ProtocolError:
        return ProtocolError(502, "response head too large" if is_head else "trailer section too large")

    def _finish_head(
        self,
        start: tuple[str, ...],
        headers: list[tuple[str, str]],
        index: dict[str, str],
    ) -> ResponseHead:
        version, status_text, reason = start
        status = int(status_text)
        if status < 100:
            raise ProtocolError(502, "bad status code")
        is11 = version == "1.1"
        if len(index) != len(headers):
            index = _merge_duplicates(headers, index, _RESPONSE_UNIQUE)
        cl = index.get("content-length")
        te = index.get("transfer-encoding")
        conn = index.get("connection")

        length, chunked = (None, False) if cl is None and te is None else _framing(cl, te, is11)

        keep_alive, upgrade = (is11, None) if conn is None else _connection(conn, index, is11, True)

        if status < 200:
            # No content; the final response follows, or (101) another protocol.
            if status == 101:
                keep_alive = False
                self._state = _S_PAUSED
            else:
                self._state = _S_HEAD
        elif self._head_request or status == 204 or status == 304:
            self._state = _S_EOM
        elif chunked:
            self._state = _S_CHUNK_SIZE
        elif length is not None:
            if length:
                self._remaining = length
                self._state = _S_BODY
            else:
                self._state = _S_EOM
        else:
            keep_alive = False
            self._state = _S_UNTIL_CLOSE
        raw = self._raw
        if self._keep_raw and not raw and headers:
            # A head that came in pieces (the incremental path): its fields, rendered back.
            raw = "".join([f"{name}: {value}\r\n" for name, value in headers]).encode("latin-1")
        head = _ResponseHeadTwin(version, status, reason or "", headers, length, chunked, keep_alive, upgrade, raw)
        head.__class__ = ResponseHead
        return head  # type: ignore[no-any-return]


# Fields that may appear once only (repeats are smuggling vectors), with the
# reason given when they do not.
_REQUEST_UNIQUE: Final = (
    ("content-length", "duplicate content-length"),
    ("transfer-encoding", "duplicate transfer-encoding"),
    ("host", "duplicate host"),
)
_RESPONSE_UNIQUE: Final = _REQUEST_UNIQUE[:2]


def _merge_duplicates(
    headers: list[tuple[str, str]], index: dict[str, str], unique: tuple[tuple[str, str], ...]
) -> dict[str, str]:
    """Reject repeated framing/Host fields (smuggling vectors) and fold
    repeated list-valued fields into one comma list (RFC 9110 §5.3)."""
    counts: dict[str, int] = {}
    for name, _ in headers:
        counts[name] = counts.get(name, 0) + 1
    for name, reason in unique:
        if counts.get(name, 0) > 1:
            raise ProtocolError(400, reason)
    merged = dict(index)
    for name in ("connection", "upgrade", "expect"):
        if counts.get(name, 0) > 1:
            merged[name] = ", ".join(v for n, v in headers if n == name)
    if counts.get("expect", 0) > 1:
        # Any one of them asking for 100-continue counts.
        values = [v.lower() for n, v in headers if n == "expect"]
        if "100-continue" in values:
            merged["expect"] = "100-continue"
    return merged


def _parse_field_line(line: str) -> tuple[str, str]:
    """Validate one field line (header or trailer), diagnosing precisely."""
    m = _FIELD_LINE_RE.fullmatch(line)
    if m is not None:
        return m.group(1).lower(), m.group(2).strip(" \t")
    if line[0] in " \t":
        raise ProtocolError(400, "obs-fold not allowed")
    name, sep, value = line.partition(":")
    if not sep:
        if "\r" in line:
            raise ProtocolError(400, "bare CR")
        raise ProtocolError(400, "missing colon in header field")
    if not name:
        raise ProtocolError(400, "empty header name")
    if name[-1] in " \t":
        raise ProtocolError(400, "whitespace before colon")
    if _METHOD_RE.fullmatch(name) is None:
        if "\r" in name:
            raise ProtocolError(400, "bare CR")
        raise ProtocolError(400, "bad header name")
    if "\r" in value:
        raise ProtocolError(400, "bare CR")
    raise ProtocolError(400, "bad header value")


def _parse_chunk_size_line(line: bytes) -> int:
    """chunk-size [chunk-ext] (CRLF already removed) -> size."""
    m = _CHUNK_LINE_RE.fullmatch(line)
    if m is not None:
        ext = m.group(2)
        if not ext or _CHUNK_EXT_RE.fullmatch(ext) is not None:
            return int(m.group(1), 16)
    hex_run = _HEX_RUN_RE.match(line)
    digits = hex_run.end() if hex_run is not None else 0
    if digits == 0:
        raise ProtocolError(400, "bad chunk size")
    if digits > _MAX_CHUNK_SIZE_DIGITS:
        raise ProtocolError(400, "chunk size too long")
    if len(line) - digits > _MAX_CHUNK_EXT:
        raise ProtocolError(400, "chunk extension too long")
    if b"\r" in line:
        raise ProtocolError(400, "bare CR")
    raise ProtocolError(400, "bad chunk extension")


# --------------------------------------------------------------------------
# Serializer
# --------------------------------------------------------------------------

REASONS: Final[dict[int, bytes]] = {
    100: b"Continue",
    101: b"Switching Protocols",
    102: b"Processing",
    103: b"Early Hints",
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    203: b"Non-Authoritative Information",
    204: b"No Content",
    205: b"Reset Content",
    206: b"Partial Content",
    207: b"Multi-Status",
    208: b"Already Reported",
    226: b"IM Used",
    300: b"Multiple Choices",
    301: b"Moved Permanently",
    302: b"Found",
    303: b"See Other",
    304: b"Not Modified",
    305: b"Use Proxy",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    402: b"Payment Required",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    406: b"Not Acceptable",
    407: b"Proxy Authentication Required",
    408: b"Request Timeout",
    409: b"Conflict",
    410: b"Gone",
    411: b"Length Required",
    412: b"Precondition Failed",
    413: b"Content Too Large",
    414: b"URI Too Long",
    415: b"Unsupported Media Type",
    416: b"Range Not Satisfiable",
    417: b"Expectation Failed",
    421: b"Misdirected Request",
    422: b"Unprocessable Content",
    423: b"Locked",
    424: b"Failed Dependency",
    425: b"Too Early",
    426: b"Upgrade Required",
    428: b"Precondition Required",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    451: b"Unavailable For Legal Reasons",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
    506: b"Variant Also Negotiates",
    507: b"Insufficient Storage",
    508: b"Loop Detected",
    511: b"Network Authentication Required",
}

# Precomputed status lines: the common case is a single dict lookup.
_STATUS_LINES: Final[dict[tuple[str, int], bytes]] = {
    (version, code): b"HTTP/%s %d %s\r\n" % (version.encode(), code, reason)
    for version in ("1.1", "1.0")
    for code, reason in REASONS.items()
}


def _render_fields(fields_: list[tuple[str, str]]) -> bytes:
    """``name: value\\r\\n`` lines, latin-1, refusing CR/LF/NUL.

    The guard runs on the joined text with three C-level counts instead of
    per-field checks: each field contributes exactly one CR and one LF, so
    any extra one means an injected line.
    """
    if not fields_:
        return b""
    text = "".join([f"{name}: {value}\r\n" for name, value in fields_])
    n = len(fields_)
    if text.count("\r") != n or text.count("\n") != n or "\0" in text:
        raise ValueError("CR, LF or NUL in a header name or value")
    return text.encode("latin-1")  # UnicodeEncodeError is a ValueError


def render_response_head(status: int, headers: list[tuple[str, str]], version: str = "1.1") -> bytes:
    """Serialize a status line and header fields (and the blank line).

    Unknown codes get the reason "Unknown" (clients must not depend on it);
    a CR, LF or NUL in any name or value raises ValueError rather than
    letting application data split the response.
    """
    line = _STATUS_LINES.get((version, status))
    if line is None:
        if version not in ("1.1", "1.0"):
            raise ValueError(f"unsupported HTTP version {version!r}")
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise ValueError(f"bad status code {status!r}")
        line = b"HTTP/%s %d Unknown\r\n" % (version.encode(), status)
    if not headers:
        return line + b"\r\n"
    return line + _render_fields(headers) + b"\r\n"


def encode_chunk(data: bytes) -> bytes:
    """Frame one chunk.  Empty data yields b"": a zero-size chunk would be
    the last-chunk and end the body prematurely."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def encode_last_chunk(trailers: list[tuple[str, str]] | None = None) -> bytes:
    """The last-chunk, optional trailer fields, and the final CRLF."""
    if not trailers:
        return b"0\r\n\r\n"
    return b"0\r\n" + _render_fields(trailers) + b"\r\n"
