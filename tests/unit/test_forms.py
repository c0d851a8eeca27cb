"""Tests for hemi.web.forms."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hemi.web.forms import (
    FormError,
    MultipartDone,
    MultipartEvent,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    parse_content_type,
    parse_qsl,
)

# ---- parse_qsl -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("", []),
        ("a=1", [("a", "1")]),
        ("a=1&b=2&a=3", [("a", "1"), ("b", "2"), ("a", "3")]),
        ("a=hello+world", [("a", "hello world")]),
        ("a=hello%20world%2B", [("a", "hello world+")]),
        ("a+b=c", [("a b", "c")]),
        ("%E2%82%AC=%e2%82%ac", [("€", "€")]),
        ("a", [("a", "")]),
        ("a=", [("a", "")]),
        ("a&b", [("a", ""), ("b", "")]),
        ("=x", []),
        ("=", []),
        ("&&&a=1&&", [("a", "1")]),
        ("a=1=2", [("a", "1=2")]),
        ("a=%", [("a", "%")]),
        ("a=%2", [("a", "%2")]),
        ("a=%zz", [("a", "%zz")]),
        ("a=%FF", [("a", "\ufffd")]),  # invalid UTF-8 -> replacement char
        ("a=%C3", [("a", "\ufffd")]),
        ("a=%00", [("a", "\x00")]),
        ("a=1;b=2", [("a", "1;b=2")]),  # ';' is not a separator
        ("a=€", [("a", "€")]),  # raw non-ASCII in a str
        ("%3D=%26", [("=", "&")]),
        ("%20=x", [(" ", "x")]),
        (b"a=1&b=%E2%82%AC", [("a", "1"), ("b", "€")]),
        (b"a=\xff", [("a", "\ufffd")]),
        (bytearray(b"x=y"), [("x", "y")]),
        ("a=\udcff", [("a", "\ufffd")]),  # surrogate-escaped byte
        ("a=\ud800", [("a", "?")]),  # lone surrogate cannot be encoded: replaced
    ],
)
def test_parse_qsl(data: str | bytes, expected: list[tuple[str, str]]) -> None:
    assert parse_qsl(data) == expected


def test_parse_qsl_max_fields() -> None:
    assert len(parse_qsl("&".join(["a=1"] * 1000))) == 1000
    with pytest.raises(FormError) as ei:
        parse_qsl("&".join(["a=1"] * 1001))
    assert ei.value.status == 413
    assert isinstance(ei.value, ValueError)
    assert parse_qsl("a&b&c", max_fields=3) == [("a", ""), ("b", ""), ("c", "")]
    with pytest.raises(FormError):
        parse_qsl("a&b&c&d", max_fields=3)
    # dropped (empty) fields do not count
    assert parse_qsl("&" * 100_000 + "a=1", max_fields=1) == [("a", "1")]


@given(st.lists(st.tuples(st.text(min_size=1), st.text()), max_size=20))
def test_parse_qsl_round_trips_urlencode(pairs: list[tuple[str, str]]) -> None:
    from urllib.parse import urlencode

    try:
        encoded = urlencode(pairs)
    except UnicodeEncodeError:
        return  # lone surrogates
    assert parse_qsl(encoded) == pairs


@given(st.binary(max_size=200))
def test_parse_qsl_never_raises_below_limit(data: bytes) -> None:
    for name, value in parse_qsl(data):
        assert name


# ---- parse_content_type ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/html", ("text/html", {})),
        ("Text/HTML; Charset=UTF-8", ("text/html", {"charset": "UTF-8"})),
        ("text/html;charset=utf-8", ("text/html", {"charset": "utf-8"})),
        ("text/html ; charset = utf-8 ", ("text/html", {"charset": "utf-8"})),
        ('multipart/form-data; boundary="abc def"', ("multipart/form-data", {"boundary": "abc def"})),
        ('a/b; x="q\\"uote"', ("a/b", {"x": 'q"uote'})),
        ('a/b; x="back\\\\slash"', ("a/b", {"x": "back\\slash"})),
        ('a/b; x="semi;colon"; y=2', ("a/b", {"x": "semi;colon", "y": "2"})),
        ('a/b; x=""', ("a/b", {"x": ""})),
        ("a/b; x=", ("a/b", {"x": ""})),
        ("a/b; x=1; x=2", ("a/b", {"x": "1"})),  # first wins
        ("a/b; X=1; x=2", ("a/b", {"x": "1"})),
        ("a/b; novalue; y=2", ("a/b", {"y": "2"})),  # malformed skipped
        ('a/b; x="unterminated; y=2', ("a/b", {"y": "2"})),
        ("a/b; =1; y=2", ("a/b", {"y": "2"})),
        ('a/b; x=a"b; y=2', ("a/b", {"y": "2"})),
        ("a/b;;; y=2;", ("a/b", {"y": "2"})),
        ("", ("", {})),
        ("  ", ("", {})),
        (";x=1", ("", {"x": "1"})),
        ("a/b; filename*=UTF-8''%e2%82%ac.txt", ("a/b", {"filename*": "UTF-8''%e2%82%ac.txt"})),
    ],
)
def test_parse_content_type(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_content_type(value) == expected


@given(st.text(max_size=80))
def test_parse_content_type_never_raises(value: str) -> None:
    mime, params = parse_content_type(value)
    assert mime == mime.lower()
    assert all(k == k.lower() for k in params)


# ---- multipart -------------------------------------------------------------------------

B = "----WebKitFormBoundary7MA4YWxkTrZu0gW"


def run(body: bytes, chunk: int | None = None, boundary: str = B, **kw: int) -> list[MultipartEvent]:
    """Feed ``body`` in ``chunk``-sized pieces; merge PartData runs for comparison."""
    p = MultipartParser(boundary, **kw)
    events: list[MultipartEvent] = []
    if chunk is None:
        events += p.feed(body)
    else:
        for i in range(0, len(body), chunk):
            events += p.feed(body[i : i + chunk])
    events += p.feed(b"")
    return merge(events)


def merge(events: list[MultipartEvent]) -> list[MultipartEvent]:
    out: list[MultipartEvent] = []
    for e in events:
        if isinstance(e, PartData):
            assert e.data  # never empty
            if out and isinstance(out[-1], PartData):
                out[-1] = PartData(out[-1].data + e.data)
                continue
        out.append(e)
    return out


def build(parts: list[tuple[list[str], bytes]], boundary: str = B, preamble: bytes = b"",
          epilogue: bytes = b"") -> bytes:
    bb = boundary.encode()
    out = [preamble, b"\r\n" if preamble else b""]
    for headers, content in parts:
        out.append(b"--" + bb + b"\r\n")
        for h in headers:
            out.append(h.encode() + b"\r\n")
        out.append(b"\r\n" + content + b"\r\n")
    out.append(b"--" + bb + b"--" + epilogue)
    return b"".join(out)


def field(name: str, value: bytes) -> tuple[list[str], bytes]:
    return [f'Content-Disposition: form-data; name="{name}"'], value


def file(name: str, filename: str, value: bytes, ctype: str = "application/octet-stream") -> tuple[list[str], bytes]:
    return [f'Content-Disposition: form-data; name="{name}"; filename="{filename}"', f"Content-Type: {ctype}"], value


# A body with the nastiest content: boundary fragments, CRLFs, near-delimiters.
NASTY = build(
    [
        field("a", b"hello"),
        field("empty", b""),
        field("crlf", b"\r\n\r\n"),
        file("f", "a.txt", b"\r\n--" + B.encode()[:-1] + b"\r\n-\r\n--\r\r\n--" + B.encode() + b"X tail\r"),
        file("g", "b.bin", bytes(range(256)) * 3),
        field("last", b"--" + B.encode()),
    ],
    preamble=b"This is the preamble.\r\n--" + B.encode() + b"junk",
    epilogue=b"\r\nThis is the epilogue --" + B.encode() + b"\r\n",
)


def test_simple_form() -> None:
    events = run(NASTY)
    starts = [e for e in events if isinstance(e, PartStart)]
    assert [s.name for s in starts] == ["a", "empty", "crlf", "f", "g", "last"]
    assert [s.filename for s in starts] == [None, None, None, "a.txt", "b.bin", None]
    assert starts[3].content_type == "application/octet-stream"
    assert starts[0].content_type is None
    assert starts[0].headers == [("content-disposition", 'form-data; name="a"')]
    # reassemble each part's data
    data: list[bytes] = []
    for e in events:
        if isinstance(e, PartStart):
            data.append(b"")
        elif isinstance(e, PartData):
            data[-1] += e.data
    assert data == [
        b"hello",
        b"",
        b"\r\n\r\n",
        b"\r\n--" + B.encode()[:-1] + b"\r\n-\r\n--\r\r\n--" + B.encode() + b"X tail\r",
        bytes(range(256)) * 3,
        b"--" + B.encode(),
    ]
    assert isinstance(events[-1], MultipartDone)
    assert sum(isinstance(e, PartEnd) for e in events) == 6


def test_every_chunk_size_matches_whole_feed() -> None:
    expected = run(NASTY)
    for size in range(1, len(NASTY) + 1):
        assert run(NASTY, size) == expected, size


def test_split_at_every_position() -> None:
    expected = run(NASTY)
    for cut in range(len(NASTY) + 1):
        p = MultipartParser(B)
        # b"" means end of input, so empty pieces are not fed
        events = [e for piece in (NASTY[:cut], NASTY[cut:]) if piece for e in p.feed(piece)]
        events += p.feed(b"")
        assert merge(events) == expected, cut


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(NASTY)), max_size=40))
def test_random_splits_match_whole_feed(cuts: list[int]) -> None:
    expected = run(NASTY)
    points = sorted(set(cuts))
    p = MultipartParser(B)
    events: list[MultipartEvent] = []
    prev = 0
    for c in points + [len(NASTY)]:
        if c > prev:
            events += p.feed(NASTY[prev:c])
        prev = c
    events += p.feed(b"")
    assert merge(events) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=64).filter(lambda b: b"\r\n--xx" not in b), min_size=1, max_size=5),
    st.data(),
)
def test_random_contents_round_trip(contents: list[bytes], data: st.DataObject) -> None:
    # Short boundary so random content often contains fragments of the delimiter.
    body = build([field(f"f{i}", c) for i, c in enumerate(contents)], boundary="xx")
    chunk = data.draw(st.integers(1, len(body)))
    events = run(body, chunk, boundary="xx")
    got = []
    for e in events:
        if isinstance(e, PartStart):
            got.append(b"")
        elif isinstance(e, PartData):
            got[-1] += e.data
    # A content ending in CR or starting a false delimiter still round-trips.
    assert got == contents


def test_boundary_at_start_without_preamble_and_transport_padding() -> None:
    body = b"--b \t \r\nContent-Disposition: form-data; name=x\r\n\r\nv\r\n--b\t\r\n" \
           b"Content-Disposition: form-data; name=y\r\n\r\nw\r\n--b--"
    events = run(body, boundary="b")
    assert [e.name for e in events if isinstance(e, PartStart)] == ["x", "y"]
    assert [e.data for e in events if isinstance(e, PartData)] == [b"v", b"w"]


def test_too_much_padding() -> None:
    body = b"--b" + b" " * 1000 + b"\r\n"
    with pytest.raises(FormError) as ei:
        run(body, boundary="b")
    assert ei.value.status == 400


def test_empty_form_and_no_parts() -> None:
    assert run(b"--b--", boundary="b") == [MultipartDone()]
    assert run(b"--b--\r\n", boundary="b") == [MultipartDone()]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"no boundary at all",
        b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\nvalue",  # truncated
        b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\nvalue\r\n--b",  # no closing --
        b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\nvalue\r\n--b-",
        b"--b\r\nContent-Disposition: form-data; name=x\r\n",  # in headers
        b"--b\r\n\r\nvalue\r\n--b--",  # no headers
        b"--b\r\nContent-Type: text/plain\r\n\r\nvalue\r\n--b--",  # no Content-Disposition
        b"--b\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--b--",  # no name
        b"--b\r\nContent-Disposition: form-data; filename=a\r\n\r\nv\r\n--b--",
        b"--b\r\nContent-Disposition: attachment; name=x\r\n\r\nv\r\n--b--",
        b"--b\r\nContent-Disposition form-data; name=x\r\n\r\nv\r\n--b--",  # no colon
        b"--b\r\n: form-data; name=x\r\n\r\nv\r\n--b--",  # empty header name
        b"--b\r\n folded\r\n\r\nv\r\n--b--",  # continuation first
        b"--b\r\nContent-Disposition: form-data; name=x\nX: y\r\n\r\nv\r\n--b--",  # bare LF
    ],
)
def test_malformed_bodies(body: bytes) -> None:
    for chunk in (None, 1, 3):
        with pytest.raises(FormError) as ei:
            run(body, chunk, boundary="b")
        assert ei.value.status == 400


@pytest.mark.parametrize(
    "boundary",
    ["", "x" * 71, "a\r\nb", "trailing ", "sem;colon", 'quo"te', "tab\tx", "é", "a\\b", "a[b]"],
)
def test_invalid_boundary(boundary: str) -> None:
    with pytest.raises(FormError) as ei:
        MultipartParser(boundary)
    assert ei.value.status == 400


@pytest.mark.parametrize("boundary", ["x", "x" * 70, "a b", "'()+_,-./:=?", "0123456789AZaz"])
def test_valid_boundaries(boundary: str) -> None:
    body = build([field("n", b"v")], boundary=boundary)
    events = run(body, 1, boundary=boundary)
    assert [e for e in events if isinstance(e, PartData)] == [PartData(b"v")]


def test_filename_variants() -> None:
    body = build(
        [
            (["Content-Disposition: form-data; name=\"u\"; filename*=UTF-8''%E2%82%AC%20rates.txt"], b"1"),
            (["Content-Disposition: form-data; name=\"both\"; filename=\"plain.txt\"; "
              "filename*=utf-8''%C3%A9.txt"], b"2"),
            (["Content-Disposition: form-data; name=\"bad\"; filename=\"fallback.txt\"; "
              "filename*=x-unknown''zzz"], b"3"),
            (["Content-Disposition: form-data; name=\"win\"; filename=\"C:\\dir\\a.txt\""], b"4"),
            (["Content-Disposition: form-data; name=\"q\"; filename=\"a\\\"b.txt\""], b"5"),
            (["Content-Disposition: form-data; name=\"empty\"; filename=\"\""], b""),
            (["content-disposition: FORM-DATA; NAME=lower; FileName=x.bin"], b"6"),
            (["Content-Disposition: form-data; name=\"utf\"; filename=\"резюме.pdf\""], b"7"),
            (["Content-Disposition: form-data; name=\"latin\"; filename*=iso-8859-1'en'%E9.txt"], b"8"),
            (["Content-Disposition: form-data;", " name=\"folded\""], b"9"),
            (["Content-Disposition: form-data; name=\"dup\"; name=\"second\""], b"10"),
            (["Content-Disposition: form-data; name=\"\""], b"11"),
        ]
    )
    starts = [e for e in run(body) if isinstance(e, PartStart)]
    assert [(s.name, s.filename) for s in starts] == [
        ("u", "€ rates.txt"),
        ("both", "é.txt"),
        ("bad", "fallback.txt"),
        ("win", "C:\\dir\\a.txt"),
        ("q", 'a"b.txt'),
        ("empty", ""),
        ("lower", "x.bin"),
        ("utf", "резюме.pdf"),
        ("latin", "é.txt"),
        ("folded", None),
        ("dup", None),
        ("", None),
    ]


def test_part_headers_kept() -> None:
    body = build([(["Content-Disposition: form-data; name=a", "X-Custom:  v  ", "Content-Type: text/plain; charset=utf-8"], b"x")])
    (start,) = [e for e in run(body) if isinstance(e, PartStart)]
    assert start.headers == [
        ("content-disposition", "form-data; name=a"),
        ("x-custom", "v"),
        ("content-type", "text/plain; charset=utf-8"),
    ]
    assert start.content_type == "text/plain; charset=utf-8"


def test_max_parts() -> None:
    body = build([field(f"f{i}", b"v") for i in range(5)])
    assert len([e for e in run(body, max_parts=5) if isinstance(e, PartStart)]) == 5
    with pytest.raises(FormError) as ei:
        run(body, max_parts=4)
    assert ei.value.status == 413


def test_max_field_size() -> None:
    body = build([field("a", b"x" * 100)])
    run(body, 7, max_field_size=100)
    with pytest.raises(FormError) as ei:
        run(body, 7, max_field_size=99)
    assert ei.value.status == 413
    # files are not limited by max_field_size
    run(build([file("a", "f", b"x" * 1000)]), 7, max_field_size=10)


def test_max_header_size() -> None:
    hdr = 'Content-Disposition: form-data; name="a"; filename="' + "x" * 500 + '"'
    body = build([([hdr], b"v")])
    run(body, 1, max_header_size=len(hdr))
    for chunk in (None, 1, 64):
        with pytest.raises(FormError) as ei:
            run(body, chunk, max_header_size=len(hdr) - 1)
        assert ei.value.status == 413
    # an endless header block is cut off without buffering it all
    p = MultipartParser("b", max_header_size=100)
    p.feed(b"--b\r\n")
    with pytest.raises(FormError):
        for _ in range(1000):
            p.feed(b"X" * 10)
    assert _ < 20


def test_failed_parser_stays_failed() -> None:
    p = MultipartParser("b", max_parts=0)
    with pytest.raises(FormError):
        p.feed(b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n")
    with pytest.raises(FormError) as ei:
        p.feed(b"more")
    assert ei.value.status == 413
    with pytest.raises(FormError):
        p.feed(b"")


def test_epilogue_ignored_and_eof_idempotent() -> None:
    p = MultipartParser("b")
    events = p.feed(b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--b--")
    assert events[-1] == MultipartDone()
    assert p.feed(b"anything --b\r\n at all") == []
    assert p.feed(b"") == []
    assert p.feed(b"") == []
    with pytest.raises(RuntimeError):
        p.feed(b"late")


def test_accepts_bytearray_and_memoryview() -> None:
    body = build([field("a", b"value")])
    p = MultipartParser(B)
    events = p.feed(bytearray(body[:10])) + p.feed(memoryview(body)[10:]) + p.feed(b"")
    assert PartData(b"value") in merge(events)


def test_streaming_large_file_bounded_memory_and_fast() -> None:
    """100 MiB file part: many PartData events, only a delimiter-sized tail held back."""
    chunk = os.urandom(1 << 16).replace(b"\r", b"\r\n--" + B.encode()[:5])  # near-misses
    total = 100 << 20
    p = MultipartParser(B)
    head = f'--{B}\r\nContent-Disposition: form-data; name="f"; filename="big.bin"\r\n\r\n'.encode()
    events = p.feed(head)
    assert isinstance(events[0], PartStart)
    fed = 0
    received = 0
    n_data = 0
    t0 = time.perf_counter()
    while fed < total:
        piece = chunk[: total - fed]
        for e in p.feed(piece):
            assert isinstance(e, PartData)
            received += len(e.data)
            n_data += 1
        fed += len(piece)
        assert fed - received <= len(B) + 4  # memory bound: held back at most a delimiter
        assert len(p._buf) <= len(B) + 4
    tail = p.feed(f"\r\n--{B}--\r\n".encode()) + p.feed(b"")
    received += sum(len(e.data) for e in tail if isinstance(e, PartData))
    assert received == total
    assert n_data > 1000
    assert tail[-2:] == [PartEnd(), MultipartDone()]
    assert time.perf_counter() - t0 < 5.0


def test_many_tiny_feeds_of_headers_are_not_quadratic() -> None:
    hdr = b'--b\r\nContent-Disposition: form-data; name="a"; x="' + b"y" * 8000 + b'"\r\n\r\nv\r\n--b--'
    t0 = time.perf_counter()
    p = MultipartParser("b")
    events: list[MultipartEvent] = []
    for i in range(len(hdr)):
        events += p.feed(hdr[i : i + 1])
    events += p.feed(b"")
    assert time.perf_counter() - t0 < 2.0
    assert merge(events)[-1] == MultipartDone()


def test_huge_preamble_is_discarded_not_buffered() -> None:
    p = MultipartParser("b")
    junk = b"x\r\n-" * 250_000  # 1 MB of near-delimiters, fed repeatedly
    for _ in range(10):
        assert p.feed(junk) == []
        assert len(p._buf) <= 4
    events = p.feed(b"\r\n--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--b--") + p.feed(b"")
    assert merge(events) == [PartStart("a", None, None, [("content-disposition", "form-data; name=a")]),
                             PartData(b"v"), PartEnd(), MultipartDone()]
