"""Sans-IO FastCGI 1.0 codec: the web-server side of a responder exchange, plus the CGI response head.

What a web server sends to an application (php-fpm and friends) is produced by plain functions
that return bytes: :func:`begin_request`, :func:`encode_params`, :func:`encode_stdin`,
:func:`abort_request`. What comes back is fed to a :class:`ResponseParser`, which turns records
into :class:`Stdout`, :class:`Stderr` and :class:`EndRequest` events. The STDOUT stream starts
with a CGI header block; :class:`CgiHeadParser` turns it into a :class:`ResponseHead`.

Nothing here touches sockets, event loops or clocks. Every protocol violation raises
:class:`FcgiError`, the only exception the codec raises for peer input; a proxy maps it to 502.

Wire facts that shape the encoders (checked against php-fpm's ``main/fastcgi.c``):

* php-fpm rejects a PARAMS record whose content plus padding exceeds 65535 bytes, so records are
  cut at :data:`MAX_RECORD_CONTENT` (0xFFF8, a multiple of 8: full records need no padding).
* php-fpm decodes every PARAMS record on its own, so a name-value pair never straddles two
  records unless it is itself larger than a record (then it must be split; the FastCGI spec
  allows it, php-fpm refuses such a request either way).
* Records are padded to a multiple of 8 bytes, as the spec recommends and php-fpm/nginx do.

The response parser never buffers more than one END_REQUEST record (8 + 255 bytes): STDOUT and
STDERR content is handed out as soon as it arrives, whatever the record boundaries.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ...core.memo import Memo
from ..cgihead import MAX_HEAD_SIZE, HeadBlockParser, ResponseHead, to_bytes

__all__ = [
    "VERSION_1",
    "HEADER_SIZE",
    "MAX_CONTENT_LENGTH",
    "MAX_PADDING_LENGTH",
    "MAX_RECORD_CONTENT",
    "NULL_REQUEST_ID",
    "BEGIN_REQUEST",
    "ABORT_REQUEST",
    "END_REQUEST",
    "PARAMS",
    "STDIN",
    "STDOUT",
    "STDERR",
    "DATA",
    "GET_VALUES",
    "GET_VALUES_RESULT",
    "UNKNOWN_TYPE",
    "RECORD_TYPE_NAMES",
    "RESPONDER",
    "AUTHORIZER",
    "FILTER",
    "KEEP_CONN",
    "REQUEST_COMPLETE",
    "CANT_MPX_CONN",
    "OVERLOADED",
    "UNKNOWN_ROLE",
    "MAX_HEAD_SIZE",
    "FcgiError",
    "Stdout",
    "Stderr",
    "EndRequest",
    "Event",
    "begin_request",
    "encode_params",
    "encode_stdin",
    "abort_request",
    "encode_record",
    "end_request",
    "decode_params",
    "ResponseParser",
    "ResponseHead",
    "HeadBlockParser",
    "CgiHeadParser",
]

# --------------------------------------------------------------------------
# Constants (FastCGI 1.0 specification, §8)
# --------------------------------------------------------------------------

VERSION_1: Final = 1
HEADER_SIZE: Final = 8
MAX_CONTENT_LENGTH: Final = 0xFFFF   # contentLength is a u16
MAX_PADDING_LENGTH: Final = 0xFF     # paddingLength is a u8
MAX_RECORD_CONTENT: Final = 0xFFF8   # what we put in one record: 8-aligned, content+padding <= 0xFFFF
NULL_REQUEST_ID: Final = 0           # management records

BEGIN_REQUEST: Final = 1
ABORT_REQUEST: Final = 2
END_REQUEST: Final = 3
PARAMS: Final = 4
STDIN: Final = 5
STDOUT: Final = 6
STDERR: Final = 7
DATA: Final = 8
GET_VALUES: Final = 9
GET_VALUES_RESULT: Final = 10
UNKNOWN_TYPE: Final = 11

RECORD_TYPE_NAMES: Final[dict[int, str]] = {
    BEGIN_REQUEST: "BEGIN_REQUEST", ABORT_REQUEST: "ABORT_REQUEST", END_REQUEST: "END_REQUEST",
    PARAMS: "PARAMS", STDIN: "STDIN", STDOUT: "STDOUT", STDERR: "STDERR", DATA: "DATA",
    GET_VALUES: "GET_VALUES", GET_VALUES_RESULT: "GET_VALUES_RESULT", UNKNOWN_TYPE: "UNKNOWN_TYPE",
}

# Roles (FCGI_BeginRequestBody.role)
RESPONDER: Final = 1
AUTHORIZER: Final = 2
FILTER: Final = 3

# Flags (FCGI_BeginRequestBody.flags)
KEEP_CONN: Final = 1

# Protocol statuses (FCGI_EndRequestBody.protocolStatus)
REQUEST_COMPLETE: Final = 0
CANT_MPX_CONN: Final = 1
OVERLOADED: Final = 2
UNKNOWN_ROLE: Final = 3

_HEADER: Final = struct.Struct(">BBHHBx")          # version, type, requestId, contentLength, paddingLength
_BEGIN_BODY: Final = struct.Struct(">HB5x")         # role, flags
_END_BODY: Final = struct.Struct(">IB3x")           # appStatus, protocolStatus
_LEN4: Final = struct.Struct(">I")
_PADDING: Final = bytes(8)
_MAX_NV_LENGTH: Final = 0x7FFFFFFF                  # 4-byte lengths carry 31 bits
_SHORT_PAIR: Final = struct.Struct(">BB").pack      # both lengths < 128: one byte each
_BYTE: Final = tuple(bytes((i,)) for i in range(128))


# --------------------------------------------------------------------------
# Errors and events
# --------------------------------------------------------------------------


class FcgiError(Exception):
    """The FastCGI exchange is broken (bad record, bad CGI head, or an unencodable request).

    ``reason`` is a short explanation for logs. The connection must not be reused; a proxy
    answers 502. It is the only exception the codec raises for any input from the peer.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason: str = reason


@dataclass(slots=True)
class Stdout:
    """A piece of the application's STDOUT stream (never empty)."""

    data: bytes


@dataclass(slots=True)
class Stderr:
    """A piece of the application's STDERR stream (never empty)."""

    data: bytes


@dataclass(slots=True)
class EndRequest:
    """The application finished the request; always the last event of a response."""

    app_status: int
    protocol_status: int


Event = Stdout | Stderr | EndRequest


# --------------------------------------------------------------------------
# Request side: what a web server sends
# --------------------------------------------------------------------------


def _check_request_id(request_id: int) -> None:
    if not 1 <= request_id <= 0xFFFF:
        raise FcgiError(f"request id {request_id} out of range 1..65535")


def _padded(record_type: int, request_id: int, content: bytes | memoryview, out: list[bytes | memoryview]) -> None:
    """Append one record (header, content, padding to a multiple of 8) to ``out``."""
    n = len(content)
    pad = -n & 7
    out.append(_HEADER.pack(VERSION_1, record_type, request_id, n, pad))
    if n:
        out.append(content)
        if pad:
            out.append(_PADDING[:pad])


def encode_record(record_type: int, request_id: int, content: bytes = b"") -> bytes:
    """One record of any type with 8-byte padding; ``content`` must fit in one record.

    The building block of the other encoders; also what a test or a fake application uses to
    produce STDOUT/STDERR/END_REQUEST records.
    """
    if not 0 <= record_type <= 0xFF:
        raise FcgiError(f"record type {record_type} out of range")
    if not 0 <= request_id <= 0xFFFF:
        raise FcgiError(f"request id {request_id} out of range 0..65535")
    if len(content) > MAX_CONTENT_LENGTH:
        raise FcgiError(f"record content of {len(content)} bytes exceeds {MAX_CONTENT_LENGTH}")
    out: list[bytes | memoryview] = []
    _padded(record_type, request_id, content, out)
    return b"".join(out)


def begin_request(request_id: int, keep_conn: bool, role: int = RESPONDER) -> bytes:
    """BEGIN_REQUEST: ``keep_conn`` asks the application to leave the connection open afterwards."""
    _check_request_id(request_id)
    if not 0 <= role <= 0xFFFF:
        raise FcgiError(f"role {role} out of range")
    return _HEADER.pack(VERSION_1, BEGIN_REQUEST, request_id, 8, 0) + _BEGIN_BODY.pack(
        role, KEEP_CONN if keep_conn else 0)


def abort_request(request_id: int) -> bytes:
    """ABORT_REQUEST: the client went away; the application should end the request."""
    _check_request_id(request_id)
    return _HEADER.pack(VERSION_1, ABORT_REQUEST, request_id, 0, 0)


def end_request(request_id: int, app_status: int = 0, protocol_status: int = REQUEST_COMPLETE) -> bytes:
    """END_REQUEST as an application sends it (for tests and fake applications)."""
    if not 0 <= app_status <= 0xFFFFFFFF or not 0 <= protocol_status <= 0xFF:
        raise FcgiError("END_REQUEST status out of range")
    return encode_record(END_REQUEST, request_id, _END_BODY.pack(app_status, protocol_status))


def _to_bytes(s: str | bytes) -> bytes:
    return to_bytes(s, FcgiError, "parameter")


def _nv_length(n: int) -> bytes:
    if n < 128:
        return _BYTE[n]
    if n > _MAX_NV_LENGTH:
        raise FcgiError("parameter longer than 2**31-1 bytes")
    return _LEN4.pack(n | 0x80000000)


def _nv_pair(name: str | bytes, value: str | bytes) -> bytes:
    """One name-value pair as it goes in a PARAMS record: the two lengths, the name, the value."""
    if type(name) is not bytes:
        name = _to_bytes(name)
    if type(value) is not bytes:
        value = _to_bytes(value)
    nl = len(name)
    vl = len(value)
    if nl < 128 and vl < 128:
        prefix = _SHORT_PAIR(nl, vl)
    else:
        prefix = _nv_length(nl) + _nv_length(vl)
    return b"".join((prefix, name, value))


MAX_CACHED_PAIRS: Final = 4096   # entries in the pair cache
MAX_CACHED_PAIR: Final = 160     # longer encoded pairs are built every time
# ``(name, value)`` -> the encoded pair. Most of a request's variables repeat from request to
# request (GATEWAY_INTERFACE, SERVER_*, DOCUMENT_ROOT, REQUEST_METHOD, HTTP_HOST,
# HTTP_USER_AGENT, the script of a busy URL...), so the PARAMS content is built by a C loop of
# dict lookups. Long pairs (cookies, long URIs) are never kept.
_encoded_pair = Memo(lambda pair: _nv_pair(*pair), MAX_CACHED_PAIRS,
                     lambda pair, encoded: len(encoded) <= MAX_CACHED_PAIR).__getitem__


def encode_params(request_id: int, params: Sequence[tuple[str | bytes, str | bytes]]) -> bytes:
    """The PARAMS stream: name-value pairs in records, then the empty PARAMS record that ends it.

    Each name and value may be ``str`` (encoded as UTF-8; ``surrogateescape`` lets strings that
    were decoded from arbitrary bytes that way round-trip) or ``bytes`` (sent as is; use bytes
    for values that must keep their exact wire form, e.g. latin-1 request header values).
    Pairs are packed whole into records of at most :data:`MAX_RECORD_CONTENT` bytes; only a
    pair larger than that is split across records.
    """
    _check_request_id(request_id)
    try:
        parts = list(map(_encoded_pair, params))   # one encoded pair per parameter
    except TypeError:  # an unhashable bytearray/memoryview among them: encode without the cache
        parts = [_nv_pair(name, value) for name, value in params]
    out: list[bytes | memoryview] = []
    content = b"".join(parts)
    total = len(content)
    if total <= MAX_RECORD_CONTENT:
        if total:
            _padded(PARAMS, request_id, content, out)
    else:
        record: list[bytes | memoryview] = []
        size = 0
        for pair in parts:
            n = len(pair)
            if size + n > MAX_RECORD_CONTENT and size:
                _padded(PARAMS, request_id, b"".join(record), out)
                record = []
                size = 0
            if n <= MAX_RECORD_CONTENT:
                record.append(pair)
                size += n
                continue
            # A pair bigger than a record: full records now, the tail starts the next record.
            view = memoryview(pair)
            cut = n - n % MAX_RECORD_CONTENT
            for j in range(0, cut, MAX_RECORD_CONTENT):
                _padded(PARAMS, request_id, view[j:j + MAX_RECORD_CONTENT], out)
            if cut < n:
                record.append(view[cut:])
                size = n - cut
        if size:
            _padded(PARAMS, request_id, b"".join(record), out)
    out.append(_HEADER.pack(VERSION_1, PARAMS, request_id, 0, 0))
    return b"".join(out)


def encode_stdin(request_id: int, data: bytes) -> bytes:
    """STDIN records carrying ``data``; ``encode_stdin(rid, b"")`` is the record that ends the stream.

    Call it once per body piece as the body streams in, then once with ``b""``.
    """
    _check_request_id(request_id)
    n = len(data)
    if n <= MAX_RECORD_CONTENT:
        pad = -n & 7
        if not pad:
            return _HEADER.pack(VERSION_1, STDIN, request_id, n, 0) + data
        return b"".join((_HEADER.pack(VERSION_1, STDIN, request_id, n, pad), data, _PADDING[:pad]))
    out: list[bytes | memoryview] = []
    view = memoryview(data)
    for i in range(0, n, MAX_RECORD_CONTENT):
        _padded(STDIN, request_id, view[i:i + MAX_RECORD_CONTENT], out)
    return b"".join(out)


def decode_params(content: bytes) -> list[tuple[bytes, bytes]]:
    """Decode a PARAMS stream's content (all its records' content concatenated).

    The application side of :func:`encode_params`, for tests and fake applications.
    """
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    end = len(content)
    while pos < end:
        lengths = []
        for _ in range(2):
            if pos >= end:
                raise FcgiError("truncated name-value pair")
            b = content[pos]
            if b < 128:
                lengths.append(b)
                pos += 1
            else:
                if pos + 4 > end:
                    raise FcgiError("truncated name-value length")
                lengths.append(_LEN4.unpack_from(content, pos)[0] & _MAX_NV_LENGTH)
                pos += 4
        nl, vl = lengths
        if pos + nl + vl > end:
            raise FcgiError("truncated name-value pair")
        out.append((bytes(content[pos:pos + nl]), bytes(content[pos + nl:pos + nl + vl])))
        pos += nl + vl
    return out


# --------------------------------------------------------------------------
# Response side: records from the application
# --------------------------------------------------------------------------

_S_HEADER: Final = 0    # waiting for an 8-byte record header
_S_STDOUT: Final = 1    # inside STDOUT content; _left bytes to go
_S_STDERR: Final = 2    # inside STDERR content; _left bytes to go
_S_PADDING: Final = 3   # skipping _left bytes of padding
_S_END: Final = 4       # waiting for the whole END_REQUEST body + padding (_left bytes)
_S_DONE: Final = 5      # END_REQUEST seen


class ResponseParser:
    """Turns the bytes an application sends for one request into events.

    ``feed`` returns the events completed by the bytes given so far; records may be split
    anywhere across feeds. Consecutive STDOUT (or STDERR) content within one ``feed`` is joined
    into one event, so the number of events does not grow with the number of records.
    :class:`EndRequest` is emitted once the whole END_REQUEST record, padding included, has
    arrived, so a kept-alive connection is clean when it is seen; any byte after it is an error.

    Accepted: STDOUT, STDERR and END_REQUEST records of ``request_id``. Rejected with
    :class:`FcgiError`: another version, another request id (including management records),
    any other record type, an END_REQUEST body that is not 8 bytes, stream content after that
    stream's empty end record, and data after END_REQUEST. The end records of STDOUT/STDERR are
    optional before END_REQUEST (php-fpm does not send them).
    """

    __slots__ = ("request_id", "_state", "_left", "_pad", "_buf", "_stdout_closed", "_stderr_closed", "_failed")

    def __init__(self, request_id: int = 1) -> None:
        _check_request_id(request_id)
        self.request_id: int = request_id
        self._state = _S_HEADER
        self._left = 0
        self._pad = 0
        self._buf = b""              # a partial record header or END_REQUEST record (< 263 bytes)
        self._stdout_closed = False
        self._stderr_closed = False
        self._failed: str | None = None

    @property
    def done(self) -> bool:
        """True once END_REQUEST has been parsed."""
        return self._state == _S_DONE

    def eof(self) -> None:
        """The connection closed: an error unless the request ended."""
        if self._state != _S_DONE:
            raise FcgiError("connection closed before END_REQUEST")

    def whole(self, data: bytes) -> tuple[bytes, int] | None:
        """``(stdout, protocol_status)`` when ``data`` is a whole response and nothing else —
        STDOUT records, then END_REQUEST, as an application writes a short answer in one go —
        and the parser is fresh; else None, and nothing is consumed: ``feed`` the same bytes.
        One pass over whole records, no events: the common case of a proxy's hot path."""
        if self._state != _S_HEADER or self._buf or self._failed is not None or type(data) is not bytes:
            return None
        unpack = _HEADER.unpack_from
        rid = self.request_id
        pieces: list[bytes] = []
        closed = False
        pos = 0
        n = len(data)
        while n - pos >= HEADER_SIZE:
            version, rtype, record_id, clen, pad = unpack(data, pos)
            start = pos + HEADER_SIZE
            end = start + clen
            if version != VERSION_1 or record_id != rid or end + pad > n:
                return None
            if rtype == STDOUT:
                if clen:
                    if closed:
                        return None
                    pieces.append(data[start:end])
                else:
                    closed = True
            elif rtype == END_REQUEST and clen == 8 and end + pad == n:
                self._state = _S_DONE
                self._stdout_closed = closed
                return (pieces[0] if len(pieces) == 1 else b"".join(pieces)), data[start + 4]
            else:
                return None
            pos = end + pad
        return None

    def feed(self, data: bytes) -> list[Event]:
        if self._failed is not None:
            raise FcgiError(self._failed)
        try:
            return self._feed(data)
        except FcgiError as e:
            self._failed = e.reason
            raise

    def _feed(self, data: bytes) -> list[Event]:
        if type(data) is not bytes:
            data = bytes(data)
        state = self._state
        if state == _S_DONE:
            if data:
                raise FcgiError("data after END_REQUEST")
            return []
        if self._buf:
            data = self._buf + data
            self._buf = b""
        events: list[Event] = []
        pending: list[bytes] = []     # joined into one event of pending_kind
        pending_kind = _S_STDOUT
        left = self._left
        pad = self._pad
        pos = 0
        n = len(data)
        # One pass per record in the common case: after a header the same iteration goes on to
        # the content, then to the padding, as far as the bytes at hand allow.
        while pos < n:
            if state == _S_HEADER:
                if n - pos < HEADER_SIZE:
                    self._buf = data[pos:]
                    break
                version, rtype, rid, clen, pad = _HEADER.unpack_from(data, pos)
                pos += HEADER_SIZE
                if version != VERSION_1:
                    raise FcgiError(f"unsupported FastCGI version {version}")
                if rtype == STDOUT or rtype == STDERR:
                    if rid != self.request_id:
                        raise FcgiError(f"record for request id {rid}, expected {self.request_id}")
                    if clen:
                        if self._stdout_closed if rtype == STDOUT else self._stderr_closed:
                            raise FcgiError(f"{RECORD_TYPE_NAMES[rtype]} content after the end of the stream")
                        state = _S_STDOUT if rtype == STDOUT else _S_STDERR
                        left = clen
                    else:
                        if rtype == STDOUT:
                            self._stdout_closed = True
                        else:
                            self._stderr_closed = True
                        if not pad:
                            continue
                        state = _S_PADDING
                        left = pad
                elif rtype == END_REQUEST:
                    if rid != self.request_id:
                        raise FcgiError(f"record for request id {rid}, expected {self.request_id}")
                    if clen != 8:
                        raise FcgiError(f"END_REQUEST body of {clen} bytes, expected 8")
                    state = _S_END
                    left = 8 + pad
                elif rtype in RECORD_TYPE_NAMES:
                    raise FcgiError(f"unexpected {RECORD_TYPE_NAMES[rtype]} record from the application")
                else:
                    raise FcgiError(f"unknown record type {rtype}")
                if pos >= n:
                    break
            if state == _S_STDOUT or state == _S_STDERR:
                take = n - pos
                if take > left:
                    take = left
                if pending and pending_kind != state:
                    events.append(Stdout(b"".join(pending)) if pending_kind == _S_STDOUT else Stderr(b"".join(pending)))
                    pending = []
                pending_kind = state
                pending.append(data[pos:pos + take] if take != n else data)
                pos += take
                left -= take
                if left:
                    break  # the record goes on in the next bytes
                if not pad:
                    state = _S_HEADER
                    continue
                state = _S_PADDING
                left = pad
            if state == _S_PADDING:
                take = n - pos
                if take >= left:
                    pos += left
                    left = 0
                    state = _S_HEADER
                else:
                    pos = n
                    left -= take
                continue
            # _S_END
            if n - pos < left:
                self._buf = data[pos:]
                break
            app_status, protocol_status = _END_BODY.unpack_from(data, pos)
            pos += left
            if pending:
                events.append(Stdout(b"".join(pending)) if pending_kind == _S_STDOUT else Stderr(b"".join(pending)))
                pending = []
            events.append(EndRequest(app_status, protocol_status))
            state = _S_DONE
            left = 0
            if pos < n:
                raise FcgiError("data after END_REQUEST")
        if pending:
            events.append(Stdout(b"".join(pending)) if pending_kind == _S_STDOUT else Stderr(b"".join(pending)))
        self._state = state
        self._left = left
        self._pad = pad
        return events


# --------------------------------------------------------------------------
# CGI response head (RFC 3875 §6): the grammar lives in hemi.web.cgihead
# --------------------------------------------------------------------------


class CgiHeadParser(HeadBlockParser):
    """The CGI header block at the start of a FastCGI STDOUT stream; errors are :class:`FcgiError`.

    Feed it :class:`Stdout` data until it returns a :class:`ResponseHead`. A ``Location``
    without ``Status`` is answered as a 302 redirect whatever its form (CGI local redirects,
    RFC 3875 §6.2.2, are not performed).
    """

    __slots__ = ()

    error = FcgiError
    allow_status_line = False
