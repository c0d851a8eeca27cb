"""Tests for hemi.web.conditional."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hemi.web.conditional import (
    content_range,
    evaluate_preconditions,
    if_range_allows,
    make_etag,
    multipart_byteranges,
    parse_etag_list,
    parse_range,
    unsatisfied_range,
)
from hemi.web.forms import MultipartParser, PartData, PartStart, parse_content_type
from hemi.web.httpdate import format_http_date

MTIME = 784111777.25
ETAG = make_etag(MTIME, 1234)
LM = format_http_date(MTIME)
BEFORE = format_http_date(MTIME - 1)
AFTER = format_http_date(MTIME + 1)
NOW = MTIME + 1000


def test_make_etag() -> None:
    assert make_etag(MTIME, 1234) == '"2ebc98a1-4d2"'
    assert make_etag(0, 0) == '"0-0"'
    assert make_etag(1.999, 16) == '"1-10"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"a"', (False, ['"a"'])),
        ('W/"a"', (False, ['W/"a"'])),
        ('"a", W/"b" ,"c"', (False, ['"a"', 'W/"b"', '"c"'])),
        ('"a,b", "c"', (False, ['"a,b"', '"c"'])),  # comma inside the quotes is data
        ('W/"x,y"', (False, ['W/"x,y"'])),
        ("*", (True, [])),
        (" * ", (True, [])),
        ('"a", *', (True, ['"a"'])),
        ("", (False, [])),
        (",,, ,", (False, [])),
        ('""', (False, ['""'])),
        ('"a", junk, "b"', (False, ['"a"'])),  # stops at the malformed member
        ('"a"b', (False, [])),
        ('"unterminated', (False, [])),
        ('w/"a"', (False, [])),  # W/ is case-sensitive
        ("abc", (False, [])),
        ('W/ "a"', (False, [])),
    ],
)
def test_parse_etag_list(value: str, expected: tuple[bool, list[str]]) -> None:
    assert parse_etag_list(value) == expected


def _pre(headers: dict[str, str], method: str = "GET", etag: str | None = ETAG,
         mtime: float | None = MTIME) -> int | None:
    return evaluate_preconditions(method, headers.get, etag, mtime, now=NOW)


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", {}, None),
        # If-Match: strong comparison
        ("PUT", {"If-Match": ETAG}, None),
        ("PUT", {"If-Match": "*"}, None),
        ("PUT", {"If-Match": '"nope"'}, 412),
        ("PUT", {"If-Match": "W/" + ETAG}, 412),  # weak never matches strongly
        ("PUT", {"If-Match": f'"nope", {ETAG}'}, None),
        ("PUT", {"If-Match": f'"x,{ETAG[1:-1]}"'}, 412),  # commas inside a quoted tag
        ("PUT", {"If-Match": "garbage"}, 412),
        ("GET", {"If-Match": '"nope"'}, 412),
        ("PUT", {"If-Match": ""}, None),  # empty = absent
        # If-Unmodified-Since
        ("PUT", {"If-Unmodified-Since": LM}, None),
        ("PUT", {"If-Unmodified-Since": AFTER}, None),
        ("PUT", {"If-Unmodified-Since": BEFORE}, 412),
        ("PUT", {"If-Unmodified-Since": "not a date"}, None),
        ("PUT", {"If-Match": ETAG, "If-Unmodified-Since": BEFORE}, None),  # ignored with If-Match
        # If-None-Match: weak comparison
        ("GET", {"If-None-Match": ETAG}, 304),
        ("HEAD", {"If-None-Match": ETAG}, 304),
        ("GET", {"If-None-Match": "W/" + ETAG}, 304),
        ("GET", {"If-None-Match": f'"a", "b", W/{ETAG}'}, 304),
        ("GET", {"If-None-Match": '"other"'}, None),
        ("GET", {"If-None-Match": "*"}, 304),
        ("PUT", {"If-None-Match": "*"}, 412),
        ("POST", {"If-None-Match": ETAG}, 412),
        ("DELETE", {"If-None-Match": '"other"'}, None),
        ("get", {"If-None-Match": ETAG}, 412),  # methods are case-sensitive
        ("GET", {"If-None-Match": f'"{ETAG[1:-1]},x"'}, None),
        # If-Modified-Since
        ("GET", {"If-Modified-Since": LM}, 304),
        ("GET", {"If-Modified-Since": AFTER}, 304),
        ("GET", {"If-Modified-Since": BEFORE}, None),
        ("HEAD", {"If-Modified-Since": LM}, 304),
        ("POST", {"If-Modified-Since": LM}, None),  # GET/HEAD only
        ("GET", {"If-Modified-Since": "yesterday"}, None),
        ("GET", {"If-Modified-Since": format_http_date(NOW + 10)}, None),  # future: invalid
        ("GET", {"If-None-Match": '"other"', "If-Modified-Since": LM}, None),  # IMS ignored
        ("GET", {"If-None-Match": ETAG, "If-Modified-Since": BEFORE}, 304),
        # precedence: If-Match failure wins over If-None-Match
        ("GET", {"If-Match": '"nope"', "If-None-Match": ETAG}, 412),
        ("GET", {"If-Unmodified-Since": BEFORE, "If-None-Match": ETAG}, 412),
        ("GET", {"If-Match": ETAG, "If-None-Match": ETAG}, 304),
    ],
)
def test_evaluate_preconditions(method: str, headers: dict[str, str], expected: int | None) -> None:
    assert _pre(headers, method) == expected


def test_preconditions_without_representation() -> None:
    assert _pre({"If-Match": "*"}, "PUT", None, None) == 412
    assert _pre({"If-None-Match": "*"}, "PUT", None, None) is None
    assert _pre({"If-Match": ETAG}, "PUT", None, None) == 412
    assert _pre({"If-None-Match": ETAG}, "GET", None, None) is None
    assert _pre({"If-Modified-Since": LM}, "GET", ETAG, None) is None
    assert _pre({"If-Unmodified-Since": BEFORE}, "PUT", ETAG, None) is None


def test_preconditions_weak_server_etag() -> None:
    weak = "W/" + ETAG
    assert _pre({"If-Match": weak}, "PUT", weak) == 412
    assert _pre({"If-None-Match": ETAG}, "GET", weak) == 304


def test_preconditions_default_clock() -> None:
    assert evaluate_preconditions("GET", {"If-Modified-Since": LM}.get, ETAG, MTIME) == 304


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("bytes=0-99", 1000, [(0, 99)]),
        ("bytes=0-0", 1000, [(0, 0)]),
        ("bytes=500-", 1000, [(500, 999)]),
        ("bytes=-100", 1000, [(900, 999)]),
        ("bytes=-5000", 1000, [(0, 999)]),
        ("bytes=900-5000", 1000, [(900, 999)]),
        ("bytes=999-999", 1000, [(999, 999)]),
        ("Bytes=0-1", 1000, [(0, 1)]),
        ("bytes = 0-1", 1000, [(0, 1)]),
        ("bytes=0-1, 5-6", 1000, [(0, 1), (5, 6)]),
        ("bytes=5-6,0-1", 1000, [(0, 1), (5, 6)]),  # sorted
        ("bytes=0-1,2-3", 1000, [(0, 3)]),  # adjacent coalesced
        ("bytes=0-10,5-20", 1000, [(0, 20)]),  # overlapping coalesced
        ("bytes=0-500,-600", 1000, [(0, 999)]),
        ("bytes=5-6,0-100,3-4", 1000, [(0, 100)]),
        ("bytes=0-1,,  ,2-3,", 1000, [(0, 3)]),
        ("bytes=1000-2000,0-0", 1000, [(0, 0)]),  # unsatisfiable ones dropped
        ("bytes=-0,0-0", 1000, [(0, 0)]),
        ("bytes=00000000000000000000000000000001-2", 1000, [(1, 2)]),
        ("bytes=0-99999999999999999999999999999999", 1000, [(0, 999)]),
        ("bytes=-99999999999999999999999999999999", 1000, [(0, 999)]),
        # unsatisfiable -> 416
        ("bytes=1000-", 1000, "unsatisfiable"),
        ("bytes=1000-1001", 1000, "unsatisfiable"),
        ("bytes=-0", 1000, "unsatisfiable"),
        ("bytes=99999999999999999999999999999999-", 1000, "unsatisfiable"),
        ("bytes=0-0", 0, "unsatisfiable"),
        ("bytes=0-", 0, "unsatisfiable"),
        ("bytes=-0", 0, "unsatisfiable"),
        ("bytes=-1", 0, None),  # empty file: satisfiable only by sending it whole
        # invalid -> ignore header
        ("", 1000, None),
        ("bytes", 1000, None),
        ("bytes=", 1000, None),
        ("bytes=,", 1000, None),
        ("items=0-1", 1000, None),
        ("bytes=a-b", 1000, None),
        ("bytes=1", 1000, None),
        ("bytes=-", 1000, None),
        ("bytes=--1", 1000, None),
        ("bytes=5-1", 1000, None),  # last < first
        ("bytes=0-1-2", 1000, None),
        ("bytes=+1-2", 1000, None),
        ("bytes=0x1-2", 1000, None),
        ("bytes=1 -2", 1000, None),
        ("bytes=0-1, x", 1000, None),  # one invalid spec invalidates all
        ("bytes=0-1;2-3", 1000, None),
        ("bytes=١-٢", 1000, None),  # non-ASCII digits
        ("bytes=0-1 bytes=2-3", 1000, None),
    ],
)
def test_parse_range(value: str, size: int, expected: object) -> None:
    assert parse_range(value, size) == expected


def test_parse_range_max_ranges() -> None:
    specs = ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(16))
    assert parse_range("bytes=" + specs, 1000) is not None
    assert parse_range("bytes=" + specs + ",900-901", 1000) is None
    assert parse_range("bytes=0-1,2-3,4-5", 1000, max_ranges=2) is None
    assert parse_range("bytes=0-1,,,,,,,2-3", 1000, max_ranges=2) == [(0, 3)]  # empties don't count


def test_range_amplification_is_defeated() -> None:
    # Many overlapping whole-file ranges must not multiply the response size.
    assert parse_range("bytes=" + ",".join(["0-"] * 16), 10**9) == [(0, 10**9 - 1)]
    assert parse_range("bytes=" + ",".join(["-1000000"] * 16), 1000) == [(0, 999)]
    # A huge header is rejected quickly once the range count is exceeded.
    assert parse_range("bytes=" + "0-0," * 1_000_000, 1000) is None
    # Many tiny adjacent ranges collapse into one.
    assert parse_range("bytes=" + ",".join(f"{i}-{i}" for i in range(16)), 1000) == [(0, 15)]


@given(
    st.lists(
        st.one_of(
            st.tuples(st.integers(0, 2000), st.none() | st.integers(0, 2000)),
            st.tuples(st.none(), st.integers(0, 2000)),
        ),
        min_size=1,
        max_size=16,
    ),
    st.integers(0, 1500),
)
def test_parse_range_properties(specs: list[tuple[int | None, int | None]], size: int) -> None:
    texts = []
    valid = True
    for first, last in specs:
        if first is None:
            texts.append(f"-{last}")
        else:
            if last is not None and last < first:
                valid = False
            texts.append(f"{first}-" + ("" if last is None else str(last)))
    result = parse_range("bytes=" + ",".join(texts), size)
    if not valid:
        assert result is None
        return
    # reference: the set of selected byte offsets
    covered: set[int] = set()
    for first, last in specs:
        if first is None:
            assert last is not None
            if last > 0:
                covered.update(range(max(size - last, 0), size))
        elif first < size:
            covered.update(range(first, min(last if last is not None else size - 1, size - 1) + 1))
    if not covered:
        if size == 0 and any(f is None and (l or 0) > 0 for f, l in specs):
            assert result is None
        else:
            assert result == "unsatisfiable"
        return
    assert isinstance(result, list)
    got: set[int] = set()
    for i, (first, last) in enumerate(result):
        assert 0 <= first <= last < size
        if i:
            assert first > result[i - 1][1] + 1  # sorted, disjoint, non-adjacent
        got.update(range(first, last + 1))
    assert got == covered


@given(st.text(max_size=60), st.integers(0, 10**6))
def test_parse_range_never_raises(value: str, size: int) -> None:
    parse_range(value, size)
    parse_range("bytes=" + value, size)


@pytest.mark.parametrize(
    ("value", "etag", "mtime", "expected"),
    [
        (None, ETAG, MTIME, True),
        ("", ETAG, MTIME, True),
        (ETAG, ETAG, MTIME, True),
        (f" {ETAG} ", ETAG, MTIME, True),
        ('"other"', ETAG, MTIME, False),
        ("W/" + ETAG, ETAG, MTIME, False),  # weak never matches
        ("W/" + ETAG, "W/" + ETAG, MTIME, False),
        (ETAG, "W/" + ETAG, MTIME, False),
        (ETAG, None, MTIME, False),
        (LM, ETAG, MTIME, True),
        (LM, ETAG, int(MTIME), True),
        (BEFORE, ETAG, MTIME, False),
        (AFTER, ETAG, MTIME, False),  # must be exactly equal
        (LM, ETAG, None, False),
        ("Sunday, 06-Nov-94 08:49:37 GMT", ETAG, MTIME, True),
        ("garbage", ETAG, MTIME, False),
        ('"unterminated', '"unterminated', MTIME, True),  # verbatim equality only
        ("*", ETAG, MTIME, False),
    ],
)
def test_if_range(value: str | None, etag: str | None, mtime: float | None, expected: bool) -> None:
    assert if_range_allows(value, etag, mtime) is expected


def test_content_range() -> None:
    assert content_range(0, 99, 1000) == "bytes 0-99/1000"
    assert content_range(999, 999, 1000) == "bytes 999-999/1000"
    assert unsatisfied_range(1000) == "bytes */1000"
    assert unsatisfied_range(0) == "bytes */0"


DATA = bytes(range(256)) * 8  # 2048 bytes


def _read(offset: int, length: int) -> bytes:
    return DATA[offset : offset + length]


def test_multipart_byteranges_exact_bytes() -> None:
    ctype, body = multipart_byteranges([(0, 3), (10, 11)], 2048, "text/plain", lambda o, n: b"x" * n, "BND")
    assert ctype == "multipart/byteranges; boundary=BND"
    assert body == (
        b"--BND\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-3/2048\r\n\r\nxxxx"
        b"\r\n--BND\r\nContent-Type: text/plain\r\nContent-Range: bytes 10-11/2048\r\n\r\nxx"
        b"\r\n--BND--\r\n"
    )


def test_multipart_byteranges_round_trip() -> None:
    ranges = [(0, 99), (500, 1023), (2000, 2047)]
    ctype, body = multipart_byteranges(ranges, len(DATA), "application/pdf", _read)
    mime, params = parse_content_type(ctype)
    assert mime == "multipart/byteranges"
    assert re.fullmatch(r"[0-9a-f]{32}", params["boundary"])
    # Reuse the multipart parser for framing; it insists on Content-Disposition, so
    # split manually instead.
    boundary = params["boundary"].encode()
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    parts = body[len(boundary) + 4 : -(len(boundary) + 8)].split(b"\r\n--" + boundary + b"\r\n")
    assert len(parts) == 3
    for (first, last), part in zip(ranges, parts):
        head, content = part.split(b"\r\n\r\n", 1)
        assert head.split(b"\r\n") == [
            b"Content-Type: application/pdf",
            f"Content-Range: bytes {first}-{last}/{len(DATA)}".encode(),
        ]
        assert content == DATA[first : last + 1]


def test_multipart_byteranges_no_content_type_and_quoted_boundary() -> None:
    ctype, body = multipart_byteranges([(0, 0)], 10, None, lambda o, n: b"a" * n, "a b")
    assert ctype == 'multipart/byteranges; boundary="a b"'
    assert b"Content-Type" not in body


@pytest.mark.parametrize(
    ("ranges", "boundary"),
    [
        ([], None),
        ([(5, 4)], None),
        ([(0, 2048)], None),
        ([(-1, 3)], None),
        ([(0, 1)], ""),
        ([(0, 1)], "bad\r\nboundary"),
        ([(0, 1)], "x" * 71),
        ([(0, 1)], "trailing "),
    ],
)
def test_multipart_byteranges_errors(ranges: list[tuple[int, int]], boundary: str | None) -> None:
    with pytest.raises(ValueError):
        multipart_byteranges(ranges, 2048, "text/plain", _read, boundary)


def test_multipart_byteranges_short_read() -> None:
    with pytest.raises(ValueError, match="short read"):
        multipart_byteranges([(0, 9)], 10, "text/plain", lambda o, n: b"abc")


def test_multipart_byteranges_parsed_by_form_parser_framing() -> None:
    # The RFC 2046 framing is shared with multipart/form-data; a part that adds a
    # Content-Disposition header parses cleanly, which checks CRLF placement.
    ctype, body = multipart_byteranges([(1, 2)], 10, "form-data; name=x", lambda o, n: b"ab", "B")
    body = body.replace(b"Content-Type: form-data", b"Content-Disposition: form-data")
    p = MultipartParser("B")
    events = p.feed(body) + p.feed(b"")
    assert isinstance(events[0], PartStart) and events[0].name == "x"
    assert b"".join(e.data for e in events if isinstance(e, PartData)) == b"ab"
