"""Headers between ASGI (lists of ``(bytes, bytes)``) and hemi (lower-case ``str`` names and
``str`` values, latin-1 on the wire), for every scope type.

Request headers were parsed and checked by the codec: they are only encoded, and the
encoded pairs are remembered too (a client sends the same Host, User-Agent and Accept on
every request), so a scope's header list is built by a C loop of dict lookups. Response headers come from the app and are checked here — a name must
be a token and a value must hold no control character but HTAB, or a response could be split
— and names and short values seen once are remembered, already checked and decoded: apps send
the same few headers again and again.
"""

from __future__ import annotations

import re

from ...core.memo import Memo

__all__ = ["NORMAL", "CONTENT_TYPE", "CONTENT_LENGTH", "DROPPED", "request_headers", "response_head",
           "response_name", "response_value"]

# What a response header name means to the server.
NORMAL, CONTENT_TYPE, CONTENT_LENGTH, DROPPED = range(4)

_SPECIAL = {"content-type": CONTENT_TYPE, "content-length": CONTENT_LENGTH}
# The server frames the message and writes Date and Server itself.
for _name in ("transfer-encoding", "connection", "keep-alive", "upgrade", "te", "date", "server",
              "proxy-connection"):
    _SPECIAL[_name] = DROPPED

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]").search

_NAMES: dict[bytes, tuple[str, int]] = {}
_VALUES: dict[bytes, str] = {}
MAX_CACHED = 4096       # entries per cache; beyond it, names and values are checked every time
MAX_CACHED_VALUE = 64   # longer values (cookies, ETags, URLs) are rarely repeated


def _encode_pair(pair: tuple[str, str]) -> tuple[bytes, bytes]:
    name, value = pair
    # UTF-8 is the fast encoder and equals latin-1 for ASCII; obs-text takes latin-1.
    return name.encode(), value.encode() if value.isascii() else value.encode("latin-1")


# ``(name, value)`` -> ``(name bytes, value bytes)``; long values are never kept.
_encoded_pair = Memo(_encode_pair, MAX_CACHED, lambda pair, _: len(pair[1]) <= MAX_CACHED_VALUE).__getitem__


def request_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """A request's headers (lower-case names, as the codec gives them) for a scope."""
    return list(map(_encoded_pair, headers))


def response_name(raw: bytes) -> tuple[str, int]:
    """``(name, kind)`` for a header name an app sent; RuntimeError if it is not a token."""
    entry = _NAMES.get(raw)
    if entry is not None:
        return entry
    if type(raw) is not bytes:
        raise RuntimeError(f"ASGI app sent a header name that is not bytes: {raw!r}")
    low = raw.lower()
    if not _TOKEN(low):
        raise RuntimeError(f"ASGI app sent an invalid header name {raw!r}")
    name = low.decode()
    entry = (name, _SPECIAL.get(name, NORMAL))
    if len(_NAMES) < MAX_CACHED:
        _NAMES[raw] = entry
    return entry


def response_value(raw: bytes) -> str:
    """A header value an app sent, as ``str``; RuntimeError if it holds a control character."""
    value = _VALUES.get(raw)
    if value is not None:
        return value
    if type(raw) is not bytes:
        raise RuntimeError(f"ASGI app sent a header value that is not bytes: {raw!r}")
    if _CTL(raw):
        raise RuntimeError(f"ASGI app sent a header value with a control character: {raw!r}")
    value = raw.decode() if raw.isascii() else raw.decode("latin-1")
    if len(raw) <= MAX_CACHED_VALUE and len(_VALUES) < MAX_CACHED:
        _VALUES[raw] = value
    return value


# What a response's header list means to the server, by the list's items: an app sends the
# same few lists again and again (a JSON endpoint: its type and a length), so one dict lookup
# replaces checking and sorting each field. Values: the end-to-end fields, the content type
# and the app's Content-Length (None when absent).
ResponseHead = tuple[tuple[tuple[str, str], ...], "str | None", "int | None"]
MAX_CACHED_HEAD = 512   # bytes of names and values: a head with cookies is checked every time


def _response_head(items: tuple) -> ResponseHead:
    out: list[tuple[str, str]] = []
    ctype: str | None = None
    length: int | None = None
    for raw, value in items:
        name, what = _NAMES.get(raw) or response_name(raw)
        text = _VALUES.get(value) or response_value(value)
        if what == NORMAL:
            out.append((name, text))
        elif what == CONTENT_TYPE:
            ctype = text
        elif what == CONTENT_LENGTH:
            if not text.isdigit() or not text.isascii():
                raise RuntimeError(f"ASGI app sent an invalid content-length {value!r}")
            length = int(text)
    return tuple(out), ctype, length


def _worth_keeping(items: tuple, _: ResponseHead) -> bool:
    return sum(len(raw) + len(value) for raw, value in items) <= MAX_CACHED_HEAD


_response_heads = Memo(_response_head, MAX_CACHED, _worth_keeping)


def response_head(headers: "list | tuple") -> ResponseHead:
    """``(fields, content type, content length)`` for the headers of an ``http.response.start``
    (any iterable of pairs); RuntimeError for a bad name, value or length."""
    items = tuple(headers)  # (once: it may be an iterator)
    try:
        return _response_heads[items]
    except TypeError:  # an unhashable item (a list pair): checked, not remembered
        return _response_head(tuple(tuple(pair) for pair in items))
