"""Tests for hemi.web.uwsgi.codec: the request packet and the response head parser."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hemi.web.fcgi.codec import FcgiError
from hemi.web.uwsgi import codec as uc
from hemi.web.uwsgi.codec import (
    MAX_VARS_SIZE,
    HttpHeadParser,
    ResponseHead,
    UwsgiError,
    decode_packet_header,
    decode_vars,
    encode_request,
)

from .cgiutil import assert_cut_anywhere_same, assert_same_head_at_every_cut, feed_byte_by_byte


def naive_vars(block: bytes) -> list[tuple[bytes, bytes]]:
    """A test-side decoder, independent of the codec."""
    out = []
    i = 0
    while i < len(block):
        kl = int.from_bytes(block[i:i + 2], "little")
        k = block[i + 2:i + 2 + kl]
        i += 2 + kl
        vl = int.from_bytes(block[i:i + 2], "little")
        v = block[i + 2:i + 2 + vl]
        i += 2 + vl
        assert len(k) == kl and len(v) == vl
        out.append((k, v))
    assert i == len(block)
    return out


def split_packet(packet: bytes) -> tuple[int, int, bytes]:
    m1, size, m2 = decode_packet_header(packet)
    assert len(packet) == 4 + size
    return m1, m2, packet[4:]


def test_public_names_exist() -> None:
    for name in uc.__all__:
        assert hasattr(uc, name), name
    assert uc.PACKET_HEADER_SIZE == 4 and MAX_VARS_SIZE == 65535 and uc.MAX_HEAD_SIZE == 65536


# --------------------------------------------------------------------------
# Request packet
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("vars", "m1", "m2", "expected"), [
    ([], 0, 0, "00000000"),
    ([("A", "b")], 0, 0, "00060000" "0100" "41" "0100" "62"),
    ([("REQUEST_METHOD", "GET")], 0, 0, "00150000" "0e00" "524551554553545f4d4554484f44" "0300" "474554"),
    ([(b"K", b"")], 5, 7, "05050007" "0100" "4b" "0000"),
    ([("", "")], 255, 255, "ff0400ff" "0000" "0000"),
    ([("A", "1"), ("B", "22")], 0, 0, "000d0000" "0100" "41" "0100" "31" "0100" "42" "0200" "3232"),
])
def test_encode_request_exact(vars: list, m1: int, m2: int, expected: str) -> None:
    assert encode_request(vars, m1, m2) == bytes.fromhex(expected)


WSGI_VARS = [
    ("REQUEST_METHOD", "POST"), ("REQUEST_URI", "/app?x=1"), ("PATH_INFO", "/app"), ("QUERY_STRING", "x=1"),
    ("SERVER_PROTOCOL", "HTTP/1.1"), ("SERVER_NAME", "example.com"), ("SERVER_PORT", "80"),
    ("REMOTE_ADDR", "127.0.0.1"), ("CONTENT_LENGTH", "11"), ("CONTENT_TYPE", "text/plain"),
    ("HTTP_HOST", "example.com"), ("HTTP_USER_AGENT", "test/1.0"), ("HTTP_X_UNICODE", "snow ☃"),
]


def test_round_trip_typical() -> None:
    packet = encode_request(WSGI_VARS)
    m1, m2, block = split_packet(packet)
    assert (m1, m2) == (0, 0)
    assert decode_vars(block) == WSGI_VARS
    assert naive_vars(block) == [(k.encode(), v.encode()) for k, v in WSGI_VARS]
    # The body follows the packet raw: the packet's own length tells where it starts.
    body = b"hello world"
    wire = packet + body
    size = struct.unpack_from("<H", wire, 1)[0]
    assert wire[4 + size:] == body


def test_str_bytes_and_surrogates() -> None:
    packet = encode_request([("PATH_INFO", "/café"), (b"HTTP_X", b"\xe9\xff"), ("RAW", "\udce9")])
    _, _, block = split_packet(packet)
    assert naive_vars(block) == [(b"PATH_INFO", "/café".encode()), (b"HTTP_X", b"\xe9\xff"), (b"RAW", b"\xe9")]
    decoded = decode_vars(block)
    assert decoded == [("PATH_INFO", "/café"), ("HTTP_X", "\udce9\udcff"), ("RAW", "\udce9")]
    assert encode_request(decoded) == packet                 # any bytes survive decode -> encode
    assert encode_request([("A", "b")]) == encode_request([(b"A", b"b")]) == encode_request([(bytearray(b"A"), b"b")])


def test_limits_exact() -> None:
    # One var filling the block exactly: 2 + 1 + 2 + 65530 = 65535.
    packet = encode_request([("K", "v" * 65530)])
    assert decode_packet_header(packet) == (0, 65535, 0)
    assert decode_vars(packet[4:]) == [("K", "v" * 65530)]
    # A key or value of 65535 bytes is encodable on its own terms, but cannot fit in a block.
    with pytest.raises(UwsgiError, match="exceeds"):
        encode_request([("K", "v" * 65531)])
    with pytest.raises(UwsgiError, match="exceeds"):
        encode_request([("K", "v" * 65535)])


@pytest.mark.parametrize(("vars", "m1", "m2", "reason"), [
    ([("K", "v" * 65536)], 0, 0, "longer than 65535"),
    ([("K" * 65536, "")], 0, 0, "longer than 65535"),
    ([("A", "x" * 40000), ("B", "y" * 40000)], 0, 0, "exceeds 65535"),
    ([("K", "v" * 10)] * 7000, 0, 0, "exceeds 65535"),
    ([], 256, 0, "modifier"),
    ([], 0, 256, "modifier"),
    ([], -1, 0, "modifier"),
    ([("A", None)], 0, 0, "str or bytes"),
    ([(3, "b")], 0, 0, "str or bytes"),
    ([("\ud800", "b")], 0, 0, "UTF-8"),
])
def test_encode_request_errors(vars: list, m1: int, m2: int, reason: str) -> None:
    with pytest.raises(UwsgiError) as ei:
        encode_request(vars, m1, m2)
    assert reason in ei.value.reason


def test_decode_packet_header() -> None:
    assert decode_packet_header(b"\x05\x34\x12\x09rest") == (5, 0x1234, 9)
    for short in (b"", b"\x00", b"\x00\x00\x00"):
        with pytest.raises(UwsgiError):
            decode_packet_header(short)


def test_decode_vars_truncated_at_every_position() -> None:
    block = encode_request([("AB", "cde"), ("F", ""), ("", "g")])[4:]
    boundaries = {0, 2 + 2 + 2 + 3, 2 + 2 + 2 + 3 + 2 + 1 + 2}
    for cut in range(len(block)):
        if cut in boundaries:
            assert len(decode_vars(block[:cut])) == sorted(boundaries).index(cut)
        else:
            with pytest.raises(UwsgiError, match="truncated"):
                decode_vars(block[:cut])
    assert decode_vars(block) == [("AB", "cde"), ("F", ""), ("", "g")]


@pytest.mark.parametrize("block", [b"\x01", b"\x05\x00ab", b"\x01\x00a\x01", b"\x01\x00a\x05\x00xy", b"\xff\xff"])
def test_decode_vars_errors(block: bytes) -> None:
    with pytest.raises(UwsgiError):
        decode_vars(block)


keys = st.one_of(st.binary(max_size=50), st.text(max_size=20))
vals = st.one_of(st.binary(max_size=300), st.text(max_size=40), st.integers(0, 20_000).map(lambda n: b"x" * n))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(keys, vals), max_size=10), st.integers(0, 255), st.integers(0, 255))
def test_round_trip_property(vars: list, m1: int, m2: int) -> None:
    as_bytes = [(k.encode("utf-8", "surrogateescape") if isinstance(k, str) else k,
                 v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v) for k, v in vars]
    size = sum(4 + len(k) + len(v) for k, v in as_bytes)
    if size > MAX_VARS_SIZE:
        with pytest.raises(UwsgiError):
            encode_request(vars, m1, m2)
        return
    packet = encode_request(vars, m1, m2)
    assert decode_packet_header(packet) == (m1, size, m2)
    block = packet[4:]
    assert naive_vars(block) == as_bytes
    assert [(k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
            for k, v in decode_vars(block)] == as_bytes


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_fuzz_decode_vars(raw: bytes) -> None:
    try:
        result = decode_vars(raw)
    except UwsgiError as e:
        assert e.reason
        return
    assert encode_request(result)[4:] == raw                  # a decodable block is canonical


# --------------------------------------------------------------------------
# Response head
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "status", "reason", "headers", "rest"), [
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>", 200, "OK", [("content-type", "text/html")], b"<p>"),
    (b"HTTP/1.0 404 Not Found\r\n\r\n", 404, "Not Found", [], b""),
    (b"HTTP/1.1 204\r\n\r\n", 204, "", [], b""),
    (b"HTTP/1.1 200 \r\n\r\n", 200, "", [], b""),
    (b"HTTP/1.1 500 Internal  Server Error \r\n\r\n", 500, "Internal  Server Error", [], b""),
    (b"HTTP/1.1 301 Moved\nLocation: /x\n\nbody", 301, "Moved", [("location", "/x")], b"body"),
    (b"HTTP/1.1 200 OK\r\nLocation: /x\r\n\r\n", 200, "OK", [("location", "/x")], b""),
    (b"HTTP/1.1 200 OK\r\nStatus: 404\r\n\r\n", 200, "OK", [("status", "404")], b""),
    (b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSET-COOKIE: b=2\r\n\r\n", 200, "OK",
     [("set-cookie", "a=1"), ("set-cookie", "b=2")], b""),
    (b"HTTP/1.1 200 OK\r\n\r\nbody\r\n\r\nmore", 200, "OK", [], b"body\r\n\r\nmore"),
    (b"HTTP/1.1 200 OK\r\n\n", 200, "OK", [], b""),
    (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", 103, "Early Hints",
     [("link", "</a.css>")], b"HTTP/1.1 200 OK\r\n\r\n"),
    # CGI-style heads (no status line)
    (b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nx", 404, "Not Found", [("content-type", "text/plain")], b"x"),
    (b"Content-Type: text/plain\n\nx", 200, "", [("content-type", "text/plain")], b"x"),
    (b"Location: http://example.com/\r\n\r\n", 302, "", [("location", "http://example.com/")], b""),
    (b"\r\nx", 200, "", [], b"x"),
])
def test_http_head(raw: bytes, status: int, reason: str, headers: list, rest: bytes) -> None:
    head = HttpHeadParser().feed(raw)
    assert head == ResponseHead(status, reason, headers, rest)
    assert_same_head_at_every_cut(HttpHeadParser, raw, head)


def test_http_head_byte_by_byte() -> None:
    raw = b"HTTP/1.1 201 Created\r\nLocation: /new\nX: y\r\n\r\n"
    assert feed_byte_by_byte(HttpHeadParser, raw) == (201, "Created", [("location", "/new"), ("x", "y")], b"")


@pytest.mark.parametrize(("raw", "reason"), [
    (b"HTTP/2 200 OK\r\n\r\n", "status line"),
    (b"HTTP/2.0 200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 abc OK\r\n\r\n", "status line"),
    (b"HTTP/1.1  200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 O\x00K\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\rX\r\n\r\n", "status line"),
    (b"HTTP/1.1 099 Low\r\n\r\n", "out of range"),
    (b"HTTP/1.1 600 High\r\n\r\n", "out of range"),
    (b"HTTP/1.1 200 OK\r\nbad line\r\n\r\n", "malformed header"),
    (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "malformed header"),
    (b"http/1.1 200 OK\r\n\r\n", "malformed header"),
    (b"Status: 700\r\n\r\n", "out of range"),
    (b"Status: 200\r\nStatus: 200\r\n\r\n", "duplicate"),
    (b"A: b\r\nHTTP/1.1 200 OK\r\n\r\n", "malformed header"),
])
def test_http_head_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(UwsgiError) as ei:
        HttpHeadParser().feed(raw)
    assert reason in ei.value.reason
    assert not isinstance(ei.value, FcgiError)


def test_http_head_size_bound() -> None:
    line = b"X-Fill: " + b"a" * 90 + b"\r\n"
    start = b"HTTP/1.1 200 OK\r\n"                            # 17 bytes
    exact = start + line * 655 + b"X: " + b"b" * 12 + b"\r\n" + b"\r\n"
    assert len(exact) == 65536
    head = HttpHeadParser().feed(exact + b"body")
    assert head is not None and head.rest == b"body"
    with pytest.raises(UwsgiError, match="larger than"):
        HttpHeadParser().feed(start + b"Y: z\r\n" + exact[len(start):])
    p = HttpHeadParser()
    with pytest.raises(UwsgiError, match="larger than"):
        p.feed(start)
        for _ in range(1000):
            p.feed(line)
    p = HttpHeadParser(max_size=10)
    with pytest.raises(UwsgiError):
        p.feed(b"HTTP/1.1 200 OK\r\n\r\n")


def test_http_head_errors_are_sticky() -> None:
    p = HttpHeadParser()
    with pytest.raises(UwsgiError):
        p.feed(b"HTTP/9 200 OK\r\n\r\n")
    with pytest.raises(UwsgiError, match="status line"):
        p.feed(b"HTTP/1.1 200 OK\r\n\r\n")


def test_http_head_spent_after_head() -> None:
    p = HttpHeadParser()
    assert p.feed(b"HTTP/1.1 200 OK\r\n\r\n") is not None
    with pytest.raises(RuntimeError):
        p.feed(b"x")


head_alphabet = st.sampled_from([b"\r\n", b"\n", b"\r", b": ", b":", b" ", b"HTTP/1.1 ", b"HTTP/1.0 200 OK",
                                 b"HTTP/", b"200", b"404 Not", b"Status", b"Location", b"A", b"\x00", b"\xe9"])
head_bytes = st.one_of(st.binary(max_size=80), st.lists(head_alphabet, max_size=25).map(b"".join))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(head_bytes, st.integers(0, 100), st.data())
def test_fuzz_http_head(raw: bytes, max_size: int, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=6))
    assert_cut_anywhere_same(lambda: HttpHeadParser(max_size=max_size), raw, cuts, UwsgiError)
