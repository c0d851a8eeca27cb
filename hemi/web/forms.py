"""HTML form decoding: urlencoded pairs, Content-Type parameters, multipart/form-data.

Sans-IO on purpose: the HTTP/1, HTTP/2 and HTTP/3 front ends all deliver request bodies
in chunks of their own choosing, and one parser that is fed bytes serves them all and can
be tested by splitting input at every byte.  Form bodies come from untrusted clients, so
every dimension (field count, header size, field size, part count) is bounded and a
violation raises :class:`FormError` carrying the HTTP status to answer with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import unquote, unquote_to_bytes

__all__ = [
    "FormError",
    "parse_qsl",
    "parse_content_type",
    "MultipartParser",
    "MultipartEvent",
    "PartStart",
    "PartData",
    "PartEnd",
    "MultipartDone",
]


class FormError(ValueError):
    """A form body the server refuses; ``status`` is the response to send (400 or 413)."""

    status: int

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------
# application/x-www-form-urlencoded


def _unquote_plus(raw: bytes) -> str:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace")


def parse_qsl(data: str | bytes, *, max_fields: int = 1000) -> list[tuple[str, str]]:
    """Decode a query string or urlencoded body into ``(name, value)`` pairs, in order.

    Follows the WHATWG urlencoded parser: split on ``&``, ``+`` is a space, percent
    escapes are UTF-8 (bad sequences become U+FFFD rather than errors, as browsers do).
    A pair without ``=`` has value ``""``; pairs with an empty name are dropped.  More than
    ``max_fields`` pairs raise ``FormError(413)`` so a client cannot make us build a list
    of millions of tuples.
    """
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = data.encode("utf-8", "replace")
    else:
        raw = bytes(data)
    out: list[tuple[str, str]] = []
    for field in raw.split(b"&"):
        if not field or field[0] == 61:  # empty, or empty name ("=x")
            continue
        if len(out) >= max_fields:
            raise FormError(f"more than {max_fields} form fields", 413)
        name, _, value = field.partition(b"=")
        out.append((_unquote_plus(name), _unquote_plus(value) if value else ""))
    return out


# ---------------------------------------------------------------------------------------
# Header parameters (Content-Type, Content-Disposition)

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(
    r"[ \t]*;[ \t]*(" + _TOKEN + r')[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^;"]*?))[ \t]*(?=;|\Z)',
    re.S,
)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)
# Escape only RFC 2045 tspecials: browsers send Windows paths like "C:\dir\a.txt"
# unescaped, and dropping their backslashes would mangle them (Go does the same).
_LENIENT_PAIR_RE = re.compile(r'\\([()<>@,;:\\"/\[\]?=])')


def _parse_params(s: str, i: int, lenient: bool = False) -> dict[str, str]:
    """``; name=value`` parameters from ``s[i:]``; malformed ones skipped, first one wins.

    First-wins for duplicates: a repeated ``boundary`` or ``name`` is an attack on parser
    differentials, and any fixed choice is better than an accidental one.
    """
    params: dict[str, str] = {}
    n = len(s)
    match = _PARAM_RE.match
    while i < n:
        m = match(s, i)
        if m is None:
            j = s.find(";", i + 1)
            if j < 0:
                break
            i = j
            continue
        name = m.group(1).lower()
        q = m.group(2)
        if q is not None:
            if "\\" in q:
                q = (_LENIENT_PAIR_RE if lenient else _QUOTED_PAIR_RE).sub(r"\1", q)
            value = q
        else:
            value = m.group(3)
        if name not in params:
            params[name] = value
        i = m.end()
    return params


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type into the lower-cased media type and its parameters.

    Parameter names are lower-cased (they are case-insensitive), values unquoted with
    backslash escapes resolved; values keep their case (a boundary is case-sensitive).
    Malformed parameters are skipped rather than failing the whole header.
    """
    semi = value.find(";")
    if semi < 0:
        return value.strip(" \t").lower(), {}
    return value[:semi].strip(" \t").lower(), _parse_params(value, semi)


def _decode_ext_value(value: str) -> str | None:
    """RFC 8187 ``charset'lang'pct-encoded`` (as in ``filename*``); None if unusable."""
    parts = value.split("'", 2)
    if len(parts) != 3:
        return None
    charset = parts[0].strip().lower()
    if charset in ("utf-8", "utf8"):
        encoding = "utf-8"
    elif charset in ("iso-8859-1", "latin-1", "latin1", "us-ascii"):
        encoding = "latin-1"
    else:
        return None  # no arbitrary codecs chosen by the client
    return unquote(parts[2], encoding=encoding, errors="replace")


# ---------------------------------------------------------------------------------------
# multipart/form-data


@dataclass(frozen=True, slots=True)
class PartStart:
    """A part begins.  ``headers`` are ``(lower-cased name, value)`` in order."""

    name: str
    filename: str | None
    content_type: str | None
    headers: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class PartData:
    """A chunk of the current part's content (never empty)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    """The current part is complete."""


@dataclass(frozen=True, slots=True)
class MultipartDone:
    """The closing delimiter was seen; anything after it is epilogue and ignored."""


MultipartEvent = PartStart | PartData | PartEnd | MultipartDone

# RFC 2046 §5.1.1 bchars.
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")
_MAX_PADDING = 256  # transport-padding (LWSP) tolerated after a delimiter

_PREAMBLE, _HEADERS, _BODY, _EPILOGUE, _EOF, _FAILED = range(6)
# What follows a "\r\n--boundary" match.
_NEED, _NOT, _NEXT, _CLOSE = range(4)


class MultipartParser:
    """Streaming multipart/form-data parser (RFC 7578, RFC 2046 framing).

    Call :meth:`feed` with each chunk of the body and ``b""`` at the end; it returns the
    events completed so far.  Part content is passed through as it arrives, so memory
    stays bounded by the part-header limit plus the delimiter length, however large a
    file is.  Search is done with :meth:`bytes.find` for ``CRLF--boundary``; only the last
    few bytes that might start a delimiter are held back between calls.

    Once a :class:`FormError` has been raised the parser is dead and raises again.
    """

    __slots__ = (
        "_delim",
        "_buf",
        "_state",
        "_parts",
        "_field_size",
        "_is_file",
        "_hscan",
        "_error",
        "max_parts",
        "max_header_size",
        "max_field_size",
    )

    def __init__(
        self,
        boundary: str,
        *,
        max_parts: int = 128,
        max_header_size: int = 8192,
        max_field_size: int = 1 << 20,
    ) -> None:
        if (
            not isinstance(boundary, str)
            or not 1 <= len(boundary) <= 70
            or not _BCHARS.issuperset(boundary)
            or boundary[-1] == " "
        ):
            raise FormError("invalid multipart boundary", 400)
        self._delim = b"\r\n--" + boundary.encode("ascii")
        # A leading CRLF lets the first boundary (which has none) match the same
        # delimiter as all the others.
        self._buf = b"\r\n"
        self._state = _PREAMBLE
        self._parts = 0
        self._field_size = 0
        self._is_file = False
        self._hscan = 0  # bytes of the pending header block already searched
        self._error: FormError | None = None
        self.max_parts = max_parts
        self.max_header_size = max_header_size
        self.max_field_size = max_field_size

    def feed(self, data: bytes) -> list[MultipartEvent]:
        """Consume ``data`` (``b""`` = end of input) and return the resulting events.

        Raises FormError(400) for malformed input, including a body that ends before the
        closing delimiter, and FormError(413) when a limit is exceeded.
        """
        state = self._state
        if state == _FAILED:
            assert self._error is not None
            raise FormError(str(self._error), self._error.status)
        events: list[MultipartEvent] = []
        if not data:
            if state == _EOF:
                return events
            if state != _EPILOGUE:
                self._fail(FormError("multipart body ends before its closing delimiter", 400))
            self._state = _EOF
            self._buf = b""
            return events
        if state == _EPILOGUE:
            return events
        if state == _EOF:
            raise RuntimeError("MultipartParser.feed() after end of input")
        buf = self._buf + data if self._buf else bytes(data)
        try:
            pos = self._run(buf, events)
        except FormError as exc:
            self._fail(exc)
        self._buf = buf[pos:] if pos < len(buf) else b""
        return events

    def _fail(self, exc: FormError) -> NoReturn:
        self._state = _FAILED
        self._error = exc
        self._buf = b""
        raise exc

    def _emit(self, buf: bytes, start: int, end: int, events: list[MultipartEvent]) -> None:
        if end > start:
            if not self._is_file:
                self._field_size += end - start
                if self._field_size > self.max_field_size:
                    raise FormError(f"form field larger than {self.max_field_size} bytes", 413)
            events.append(PartData(buf[start:end]))

    def _after(self, buf: bytes, j: int) -> tuple[int, int]:
        """Classify the bytes after a ``CRLF--boundary`` match at ``j``."""
        n = len(buf)
        if j >= n:
            return _NEED, 0
        c = buf[j]
        if c == 45:  # '-'
            if j + 1 >= n:
                return _NEED, 0
            return (_CLOSE, j + 2) if buf[j + 1] == 45 else (_NOT, 0)
        k = j
        while k < n and (c == 32 or c == 9):
            k += 1
            if k - j > _MAX_PADDING:
                raise FormError("too much padding after a multipart boundary", 400)
            if k < n:
                c = buf[k]
        if k >= n:
            return _NEED, 0
        if c != 13:
            return _NOT, 0
        if k + 1 >= n:
            return _NEED, 0
        if buf[k + 1] != 10:
            return _NOT, 0
        return _NEXT, k + 2

    def _run(self, buf: bytes, events: list[MultipartEvent]) -> int:
        """Process ``buf`` as far as possible; return how many bytes were consumed."""
        delim = self._delim
        dlen = len(delim)
        n = len(buf)
        pos = 0
        while True:
            state = self._state
            if state == _HEADERS:
                if n - pos < 2:
                    return pos
                if buf[pos] == 13 and buf[pos + 1] == 10:
                    hend = pos
                    body = pos + 2
                else:
                    hend = buf.find(b"\r\n\r\n", pos + max(self._hscan - 3, 0))
                    if hend < 0:
                        # +3: the block may be complete but its CRLFCRLF not yet
                        if n - pos > self.max_header_size + 3:
                            raise FormError("multipart part headers too large", 413)
                        self._hscan = n - pos
                        return pos
                    body = hend + 4
                if hend - pos > self.max_header_size:
                    raise FormError("multipart part headers too large", 413)
                self._hscan = 0
                events.append(self._start_part(buf[pos:hend]))
                self._state = _BODY
                pos = body
                continue

            # _PREAMBLE or _BODY: look for the next delimiter.
            in_body = state == _BODY
            search = pos
            while True:
                i = buf.find(delim, search)
                if i < 0:
                    # Hold back a tail that may be the start of a delimiter.  The
                    # delimiter has CR only at its start, so only the last CR can begin one.
                    end = n
                    cr = buf.rfind(b"\r", max(search, n - dlen + 1))
                    if cr >= 0 and delim.startswith(buf[cr:]):
                        end = cr
                    if in_body:
                        self._emit(buf, pos, end, events)
                    return end
                kind, nxt = self._after(buf, i + dlen)
                if kind == _NOT:
                    search = i + 1
                    continue
                if in_body:
                    self._emit(buf, pos, i, events)
                if kind == _NEED:
                    return i
                if in_body:
                    events.append(PartEnd())
                if kind == _CLOSE:
                    self._state = _EPILOGUE
                    events.append(MultipartDone())
                    return n
                self._state = _HEADERS
                pos = nxt
                break

    def _start_part(self, block: bytes) -> PartStart:
        self._parts += 1
        if self._parts > self.max_parts:
            raise FormError(f"more than {self.max_parts} multipart parts", 413)
        headers: list[tuple[str, str]] = []
        if block:
            for line in block.decode("utf-8", "replace").split("\r\n"):
                if line[:1] in (" ", "\t"):  # obsolete line folding
                    if not headers:
                        raise FormError("malformed multipart part header", 400)
                    hname, hvalue = headers[-1]
                    headers[-1] = (hname, (hvalue + " " + line.strip(" \t")).strip(" \t"))
                    continue
                colon = line.find(":")
                hname = line[:colon].strip(" \t").lower() if colon > 0 else ""
                if not hname or "\n" in line or "\r" in line:
                    raise FormError("malformed multipart part header", 400)
                headers.append((hname, line[colon + 1 :].strip(" \t")))
        disposition: str | None = None
        content_type: str | None = None
        for hname, hvalue in headers:
            if hname == "content-disposition" and disposition is None:
                disposition = hvalue
            elif hname == "content-type" and content_type is None:
                content_type = hvalue
        if disposition is None:
            raise FormError("multipart part without Content-Disposition", 400)
        semi = disposition.find(";")
        dtype = (disposition if semi < 0 else disposition[:semi]).strip(" \t").lower()
        if dtype != "form-data":
            raise FormError(f"multipart part disposition is not form-data: {dtype!r}", 400)
        params = _parse_params(disposition, semi, lenient=True) if semi >= 0 else {}
        name = params.get("name")
        if name is None:
            raise FormError("multipart part without a name", 400)
        filename: str | None = None
        ext = params.get("filename*")
        if ext is not None:
            filename = _decode_ext_value(ext)
        if filename is None:
            filename = params.get("filename")
        self._is_file = filename is not None
        self._field_size = 0
        return PartStart(name, filename, content_type, headers)
