"""Conditional requests (RFC 9110 §13) and range requests (RFC 9110 §14).

Pure functions over header values, so the static-file handler, proxies and caches share
one careful implementation of the precedence rules, and they can be tested without a
server.  Everything a client sends is treated as hostile: bad values are ignored the way
the RFC tells recipients to, never raised, and range sets are bounded and coalesced so a
request cannot make a small file produce a huge response.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Literal

from .httpdate import parse_http_date

__all__ = [
    "make_etag",
    "parse_etag_list",
    "strong_match",
    "weak_match",
    "evaluate_preconditions",
    "parse_range",
    "if_range_allows",
    "content_range",
    "unsatisfied_range",
    "multipart_byteranges",
]

RangeResult = list[tuple[int, int]] | None | Literal["unsatisfiable"]

_OWS = " \t"


def make_etag(mtime: float, size: int) -> str:
    """Strong entity-tag ``"<mtime-hex>-<size-hex>"`` for a file, like nginx does.

    Cheap (no hashing of content) yet changes whenever a file is rewritten with a new
    modification time or length, which is what caches need to revalidate.
    """
    return f'"{math.floor(mtime):x}-{size:x}"'


def parse_etag_list(value: str) -> tuple[bool, list[str]]:
    """Parse ``"*"`` or a comma-separated list of entity-tags.

    Returns ``(any, tags)``: ``any`` is True when a ``*`` member is present; ``tags`` are
    the entity-tags verbatim (``W/`` prefix kept).  Commas inside quoted tags are data, not
    separators.  Parsing stops at the first malformed member, keeping what came before, so
    garbage can never make a tag match that the client did not send.
    """
    tags: list[str] = []
    star = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c in " \t,":
            i += 1
            continue
        if c == "*":
            star = True
            i += 1
            continue
        start = i
        if value.startswith("W/", i):
            i += 2
        if i >= n or value[i] != '"':
            break
        end = value.find('"', i + 1)
        if end < 0:
            break
        i = end + 1
        if i < n and value[i] not in " \t,":  # e.g. '"a"b' is not an entity-tag
            break
        tags.append(value[start:i])
    return star, tags


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def strong_match(a: str | None, b: str | None) -> bool:
    """RFC 9110 §8.8.3.2 strong comparison: both strong and identical."""
    return a is not None and b is not None and a == b and not a.startswith("W/")


def weak_match(a: str | None, b: str | None) -> bool:
    """RFC 9110 §8.8.3.2 weak comparison: opaque-tags equal, ``W/`` ignored."""
    return a is not None and b is not None and _opaque(a) == _opaque(b)


def _header(get_header: Callable[[str], str | None], name: str) -> str | None:
    """A header value, with empty treated as absent (many header APIs cannot tell them apart)."""
    v = get_header(name)
    if v is None:
        return None
    v = v.strip(_OWS)
    return v or None


def evaluate_preconditions(
    method: str,
    get_header: Callable[[str], str | None],
    etag: str | None,
    mtime: float | None,
    *,
    now: float | None = None,
) -> int | None:
    """Evaluate If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since.

    Follows the order of RFC 9110 §13.2.2 and returns 412 or 304 when the request must
    stop there, or None to proceed.  ``etag``/``mtime`` describe the selected
    representation; both None means there is none (so ``If-Match: *`` fails and
    ``If-None-Match: *`` does not match).  If-Range is separate: see :func:`if_range_allows`.
    ``now`` (default: the clock) is used to ignore an If-Modified-Since in the future, which
    RFC 9110 §13.1.3 says is invalid.
    """
    exists = etag is not None or mtime is not None
    is_get = method == "GET" or method == "HEAD"
    mtime_s = math.floor(mtime) if mtime is not None else None

    # Step 1 and 2.
    im = _header(get_header, "If-Match")
    if im is not None:
        star, tags = parse_etag_list(im)
        if star:
            if not exists:
                return 412
        elif not any(strong_match(t, etag) for t in tags):
            return 412
    else:
        ius = _header(get_header, "If-Unmodified-Since")
        if ius is not None and mtime_s is not None:
            date = parse_http_date(ius)
            if date is not None and mtime_s > date:
                return 412

    # Step 3 and 4.
    inm = _header(get_header, "If-None-Match")
    if inm is not None:
        star, tags = parse_etag_list(inm)
        matched = exists if star else any(weak_match(t, etag) for t in tags)
        if matched:
            return 304 if is_get else 412
    elif is_get:
        ims = _header(get_header, "If-Modified-Since")
        if ims is not None and mtime_s is not None:
            date = parse_http_date(ims)
            if date is not None:
                if now is None:
                    now = time.time()
                if date <= now and mtime_s <= date:
                    return 304
    return None


_DIGITS = frozenset("0123456789")
# Positions longer than this many digits are clamped: no representation is that big, and
# converting a 5000-digit string to int is slow (and over CPython's str->int limit).
_MAX_DIGITS = 18
_HUGE = 10**_MAX_DIGITS


def _pos(s: str) -> int | None:
    """A non-negative decimal, ASCII digits only; None if not one.  Huge values clamp."""
    if not s or not _DIGITS.issuperset(s):
        return None
    s = s.lstrip("0")
    if len(s) > _MAX_DIGITS:
        return _HUGE
    return int(s) if s else 0


def parse_range(value: str, size: int, max_ranges: int = 16) -> RangeResult:
    """Parse a ``Range: bytes=...`` header against a representation of ``size`` bytes.

    Returns the satisfiable ranges as inclusive ``(first, last)`` pairs, sorted and with
    overlapping or adjacent ranges merged (so the response is never larger than the file,
    defeating range amplification); ``"unsatisfiable"`` when none overlaps (→ 416); or
    None when the header must be ignored (→ plain 200): not ``bytes``, invalid syntax, or
    more than ``max_ranges`` ranges.  A zero-length representation has no expressible
    byte range: a non-empty suffix range is satisfiable by sending it whole (None),
    anything else is unsatisfiable.
    """
    eq = value.find("=")
    if eq < 0 or value[:eq].strip(_OWS).lower() != "bytes":
        return None
    ranges: list[tuple[int, int]] = []
    count = 0
    whole = False  # a satisfiable suffix range on an empty representation
    for spec in value[eq + 1 :].split(","):
        spec = spec.strip(_OWS)
        if not spec:
            continue  # empty list elements are allowed (RFC 9110 §5.6.1)
        count += 1
        if count > max_ranges:
            return None
        dash = spec.find("-")
        if dash < 0:
            return None
        first_s = spec[:dash]
        last_s = spec[dash + 1 :]
        if first_s:
            first = _pos(first_s)
            if first is None:
                return None
            if last_s:
                last = _pos(last_s)
                if last is None or last < first:
                    return None
            else:
                last = size - 1
            if first >= size:
                continue  # unsatisfiable, but others may be satisfiable
            ranges.append((first, min(last, size - 1)))
        else:
            suffix = _pos(last_s)
            if suffix is None:
                return None
            if suffix == 0:
                continue
            if size == 0:
                whole = True
                continue
            ranges.append((max(size - suffix, 0), size - 1))
    if count == 0:
        return None  # "bytes=" with no range-spec is invalid (range-set is 1#range-spec)
    if not ranges:
        return None if whole else "unsatisfiable"
    if len(ranges) == 1:
        return ranges
    ranges.sort()
    merged = [ranges[0]]
    for first, last in ranges[1:]:
        pfirst, plast = merged[-1]
        if first <= plast + 1:
            if last > plast:
                merged[-1] = (pfirst, last)
        else:
            merged.append((first, last))
    return merged


def if_range_allows(value: str | None, etag: str | None, mtime: float | None) -> bool:
    """Whether a Range request may be honoured given its If-Range (RFC 9110 §13.1.5).

    Absent (or empty) → True.  An entity-tag must match ``etag`` strongly; weak tags never
    do.  Otherwise the value must be an HTTP-date exactly equal to ``mtime`` in whole
    seconds.  Anything else, including garbage, → False, meaning send the whole
    representation: that is always a correct answer.
    """
    if value is None:
        return True
    value = value.strip(_OWS)
    if not value:
        return True
    if value.startswith('"') or value.startswith("W/"):
        return strong_match(value, etag)
    if mtime is None:
        return False
    date = parse_http_date(value)
    return date is not None and date == math.floor(mtime)


def content_range(start: int, end: int, size: int) -> str:
    """``Content-Range`` for the inclusive byte range ``start..end`` of ``size`` bytes."""
    return f"bytes {start}-{end}/{size}"


def unsatisfied_range(size: int) -> str:
    """``Content-Range`` for a 416 response (RFC 9110 §14.4)."""
    return f"bytes */{size}"


# RFC 2046 bchars; a boundary may contain a space but not end with one.
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")
_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _check_boundary(boundary: str) -> None:
    if not 1 <= len(boundary) <= 70 or not _BCHARS.issuperset(boundary) or boundary[-1] == " ":
        raise ValueError(f"invalid multipart boundary: {boundary!r}")


def multipart_byteranges(
    ranges: Iterable[tuple[int, int]],
    size: int,
    content_type: str | None,
    read: Callable[[int, int], bytes],
    boundary: str | None = None,
) -> tuple[str, bytes]:
    """Build a ``multipart/byteranges`` body (RFC 9110 §14.6) for a 206 response.

    ``read(offset, length)`` must return exactly ``length`` bytes starting at ``offset``;
    a short read raises ``ValueError`` rather than emitting parts whose Content-Range lies.
    The boundary defaults to 32 random hex digits, so it cannot occur in the content by
    chance.  Returns ``(content_type_header, body)``.  Each part carries Content-Type
    (omitted when ``content_type`` is empty or None) and Content-Range.
    """
    if boundary is None:
        boundary = secrets.token_hex(16)
    else:
        _check_boundary(boundary)
    bb = boundary.encode("ascii")
    type_line = f"Content-Type: {content_type}\r\n".encode("latin-1") if content_type else b""
    out: list[bytes] = []
    lead = b"--" + bb + b"\r\n"
    for first, last in ranges:
        if not 0 <= first <= last < size:
            raise ValueError(f"range {first}-{last} outside representation of {size} bytes")
        length = last - first + 1
        data = read(first, length)
        if len(data) != length:
            raise ValueError(f"short read: wanted {length} bytes at {first}, got {len(data)}")
        out.append(lead)
        out.append(type_line)
        out.append(f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n".encode("ascii"))
        out.append(data)
        lead = b"\r\n--" + bb + b"\r\n"
    if not out:
        raise ValueError("no ranges")
    out.append(b"\r\n--" + bb + b"--\r\n")
    param = boundary if _TCHARS.issuperset(boundary) else '"' + boundary + '"'
    return f"multipart/byteranges; boundary={param}", b"".join(out)
