"""Tests for hemi.web.fcgi.codec: request encoders, the response record parser, the CGI head parser."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hemi.web.fcgi import codec as fc
from hemi.web.fcgi.codec import (
    ABORT_REQUEST,
    BEGIN_REQUEST,
    DATA,
    END_REQUEST,
    GET_VALUES,
    GET_VALUES_RESULT,
    KEEP_CONN,
    MAX_RECORD_CONTENT,
    OVERLOADED,
    PARAMS,
    REQUEST_COMPLETE,
    RESPONDER,
    STDERR,
    STDIN,
    STDOUT,
    UNKNOWN_TYPE,
    CgiHeadParser,
    EndRequest,
    FcgiError,
    ResponseHead,
    ResponseParser,
    Stderr,
    Stdout,
    abort_request,
    begin_request,
    decode_params,
    encode_params,
    encode_record,
    encode_stdin,
    end_request,
)

from .cgiutil import assert_cut_anywhere_same, assert_same_head_at_every_cut, feed_byte_by_byte

# --------------------------------------------------------------------------
# A test-side record decoder, independent of the codec
# --------------------------------------------------------------------------


def records(data: bytes) -> list[tuple[int, int, int, bytes, bytes]]:
    """Split a byte stream into (version, type, request id, content, padding) records, strictly."""
    out = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 8, "truncated record header"
        version, rtype, rid, clen, plen, reserved = struct.unpack_from(">BBHHBB", data, pos)
        assert reserved == 0
        pos += 8
        content = data[pos:pos + clen]
        padding = data[pos + clen:pos + clen + plen]
        assert len(content) == clen and len(padding) == plen, "truncated record body"
        pos += clen + plen
        out.append((version, rtype, rid, content, padding))
    return out


def nv_decode(content: bytes) -> list[tuple[bytes, bytes]]:
    """A second, deliberately naive name-value decoder (the spec's §3.4 layout)."""
    out = []
    i = 0

    def length() -> int:
        nonlocal i
        if content[i] >> 7:
            n = int.from_bytes(content[i:i + 4], "big") & 0x7FFFFFFF
            i += 4
        else:
            n = content[i]
            i += 1
        return n

    while i < len(content):
        nl = length()
        vl = length()
        out.append((content[i:i + nl], content[i + nl:i + nl + vl]))
        i += nl + vl
    assert i == len(content)
    return out


def check_well_formed(data: bytes, rtype: int, rid: int) -> list[bytes]:
    """Every record: version 1, the type and id, content <= MAX_RECORD_CONTENT, zero padding to 8."""
    contents = []
    for version, t, r, content, padding in records(data):
        assert (version, t, r) == (1, rtype, rid)
        assert len(content) <= MAX_RECORD_CONTENT
        assert (len(content) + len(padding)) % 8 == 0 and len(padding) < 8
        assert padding == bytes(len(padding))
        assert len(content) + len(padding) <= 0xFFFF       # php-fpm's per-record limit
        contents.append(content)
    return contents


def rec(rtype: int, rid: int, content: bytes = b"", padding: bytes = b"", version: int = 1) -> bytes:
    """A raw record with explicit (possibly odd or non-zero) padding."""
    return struct.pack(">BBHHBx", version, rtype, rid, len(content), len(padding)) + content + padding


def end_body(app_status: int = 0, protocol_status: int = 0) -> bytes:
    return struct.pack(">IB3x", app_status, protocol_status)


# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), [
    ("BEGIN_REQUEST", 1), ("ABORT_REQUEST", 2), ("END_REQUEST", 3), ("PARAMS", 4), ("STDIN", 5),
    ("STDOUT", 6), ("STDERR", 7), ("DATA", 8), ("GET_VALUES", 9), ("GET_VALUES_RESULT", 10),
    ("UNKNOWN_TYPE", 11), ("RESPONDER", 1), ("AUTHORIZER", 2), ("FILTER", 3), ("KEEP_CONN", 1),
    ("REQUEST_COMPLETE", 0), ("CANT_MPX_CONN", 1), ("OVERLOADED", 2), ("UNKNOWN_ROLE", 3),
    ("VERSION_1", 1), ("HEADER_SIZE", 8), ("MAX_CONTENT_LENGTH", 65535), ("MAX_PADDING_LENGTH", 255),
    ("MAX_RECORD_CONTENT", 65528), ("NULL_REQUEST_ID", 0), ("MAX_HEAD_SIZE", 65536),
])
def test_constants(name: str, value: int) -> None:
    assert getattr(fc, name) == value
    assert name in fc.__all__


def test_public_names_exist() -> None:
    for name in fc.__all__:
        assert hasattr(fc, name), name


# --------------------------------------------------------------------------
# Request side
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("rid", "keep", "expected"), [
    (1, False, "0101000100080000" "0001000000000000"),
    (1, True, "0101000100080000" "0001010000000000"),
    (0x1234, True, "0101123400080000" "0001010000000000"),
    (65535, False, "0101ffff00080000" "0001000000000000"),
])
def test_begin_request(rid: int, keep: bool, expected: str) -> None:
    assert begin_request(rid, keep) == bytes.fromhex(expected)


def test_begin_request_role() -> None:
    assert begin_request(1, False, role=fc.AUTHORIZER)[8:10] == b"\x00\x02"


@pytest.mark.parametrize("rid", [0, -1, 65536, 1 << 20])
def test_bad_request_ids(rid: int) -> None:
    for call in (lambda: begin_request(rid, False), lambda: abort_request(rid), lambda: encode_stdin(rid, b"x"),
                 lambda: encode_params(rid, [("a", "b")]), lambda: ResponseParser(rid)):
        with pytest.raises(FcgiError) as ei:
            call()
        assert "request id" in ei.value.reason


@pytest.mark.parametrize(("rid", "expected"), [(1, "0102000100000000"), (258, "0102010200000000")])
def test_abort_request(rid: int, expected: str) -> None:
    assert abort_request(rid) == bytes.fromhex(expected)


@pytest.mark.parametrize(("data", "expected"), [
    (b"", "0105000100000000"),
    (b"a", "0105000100010700" "61" "00000000000000"),
    (b"abcdefgh", "0105000100080000" "6162636465666768"),
    (b"abcdefghi", "0105000100090700" "616263646566676869" "00000000000000"),
])
def test_encode_stdin_exact(data: bytes, expected: str) -> None:
    assert encode_stdin(1, data) == bytes.fromhex(expected)


@pytest.mark.parametrize("size", [1, 7, 8, 9, 1000, 65527, 65528, 65529, 65535, 65536, 131056, 131057, 300_001])
def test_encode_stdin_splits(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    out = encode_stdin(3, data)
    contents = check_well_formed(out, STDIN, 3)
    assert b"".join(contents) == data
    assert all(contents)                                   # no accidental end-of-stream record
    assert len(contents) == -(-size // MAX_RECORD_CONTENT)


def test_encode_stdin_accepts_bytes_like() -> None:
    assert encode_stdin(1, bytearray(b"abc")) == encode_stdin(1, b"abc")
    big = bytearray(70000)
    assert b"".join(check_well_formed(encode_stdin(1, big), STDIN, 1)) == bytes(big)


@pytest.mark.parametrize(("params", "expected"), [
    ([], "0104000100000000"),
    ([("A", "b")], "0104000100040400" "01014162" "00000000" "0104000100000000"),
    ([(b"A", b"")], "0104000100030500" "010041" "0000000000" "0104000100000000"),
    ([("", "")], "0104000100020600" "0000" "000000000000" "0104000100000000"),
])
def test_encode_params_exact(params: list, expected: str) -> None:
    assert encode_params(1, params) == bytes.fromhex(expected)


@pytest.mark.parametrize(("nlen", "vlen", "prefix"), [
    (127, 127, "7f7f"),
    (128, 1, "8000008001"),
    (1, 128, "0180000080"),
    (128, 128, "8000008080000080"),
    (1, 100_000, "01800186a0"),
])
def test_name_value_length_encoding(nlen: int, vlen: int, prefix: str) -> None:
    params = [(b"n" * nlen, b"v" * vlen)]
    out = encode_params(1, params)
    content = b"".join(check_well_formed(out, PARAMS, 1))
    assert content.startswith(bytes.fromhex(prefix))
    assert decode_params(content) == params == nv_decode(content)
    assert records(out)[-1][3] == b""                       # the empty PARAMS record ends the stream


CGI_PARAMS = [
    ("GATEWAY_INTERFACE", "CGI/1.1"), ("SERVER_SOFTWARE", "gorox"), ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_METHOD", "POST"), ("REQUEST_SCHEME", "http"), ("REQUEST_URI", "/index.php?a=1"),
    ("SERVER_NAME", "example.com"), ("REDIRECT_STATUS", "200"), ("SCRIPT_FILENAME", "/var/www/index.php"),
    ("SCRIPT_NAME", "/index.php"), ("QUERY_STRING", "a=1"), ("CONTENT_LENGTH", "3"),
    ("CONTENT_TYPE", "text/plain"), ("HTTP_HOST", "example.com"), ("HTTP_COOKIE", "x" * 300),
]


def test_encode_params_typical_request_is_one_record() -> None:
    out = encode_params(1, CGI_PARAMS)
    recs = records(out)
    assert len(recs) == 2 and recs[1][3] == b""
    assert decode_params(recs[0][3]) == [(n.encode(), v.encode()) for n, v in CGI_PARAMS]


def test_encode_params_large_value_split_over_records() -> None:
    big = bytes(range(256)) * 400                            # 100 KiB
    params = [("BEFORE", "1"), ("HTTP_X_BIG", big), ("AFTER", "2")]
    out = encode_params(9, params)
    contents = check_well_formed(out, PARAMS, 9)
    assert contents[-1] == b"" and len(contents) >= 3
    joined = b"".join(contents)
    assert decode_params(joined) == nv_decode(joined) == [(b"BEFORE", b"1"), (b"HTTP_X_BIG", big), (b"AFTER", b"2")]
    assert max(map(len, contents)) == MAX_RECORD_CONTENT


def test_encode_params_never_splits_a_pair_that_fits_in_a_record() -> None:
    # php-fpm decodes each PARAMS record on its own: every record must hold whole pairs.
    params = [(f"HTTP_X_{i}".encode(), bytes([65 + i % 26]) * (5000 + 37 * i)) for i in range(40)]
    out = encode_params(1, params)
    contents = check_well_formed(out, PARAMS, 1)[:-1]
    assert len(contents) > 2
    decoded = []
    for content in contents:
        decoded += decode_params(content)                    # each record decodes alone
    assert decoded == params


def test_encode_params_str_and_bytes() -> None:
    out = encode_params(1, [("SCRIPT_NAME", "/café.php"), (b"HTTP_X", "é".encode("latin-1")), ("RAW", "\udce9")])
    assert decode_params(b"".join(c for _, _, _, c, _ in records(out))) == [
        (b"SCRIPT_NAME", "/café.php".encode()), (b"HTTP_X", b"\xe9"), (b"RAW", b"\xe9")]
    assert encode_params(1, [("A", "b")]) == encode_params(1, [(b"A", b"b")]) == encode_params(1, [(b"A", bytearray(b"b"))])


@pytest.mark.parametrize("bad", [[("A", None)], [(1, "b")], [("\ud800", "x")]])
def test_encode_params_rejects_unencodable(bad: list) -> None:
    with pytest.raises(FcgiError):
        encode_params(1, bad)


@pytest.mark.parametrize(("args", "expected"), [
    ((STDOUT, 1, b"hi"), "0106000100020600" "6869" "000000000000"),
    ((STDERR, 2, b""), "0107000200000000"),
    ((GET_VALUES, 0, b""), "0109000000000000"),
])
def test_encode_record(args: tuple, expected: str) -> None:
    assert encode_record(*args) == bytes.fromhex(expected)


@pytest.mark.parametrize("args", [(256, 1, b""), (-1, 1, b""), (STDOUT, 65536, b""), (STDOUT, 1, bytes(65536))])
def test_encode_record_rejects(args: tuple) -> None:
    with pytest.raises(FcgiError):
        encode_record(*args)


def test_end_request() -> None:
    assert end_request(1) == bytes.fromhex("0103000100080000" "0000000000000000")
    assert end_request(1, 0xDEADBEEF, OVERLOADED) == bytes.fromhex("0103000100080000" "deadbeef02000000")
    with pytest.raises(FcgiError):
        end_request(1, 1 << 32)
    with pytest.raises(FcgiError):
        end_request(1, 0, 256)


@pytest.mark.parametrize("content", [b"\x05", b"\x01\x01a", b"\x80\x00\x00", b"\x80\x00\x00\x01", b"\x01\x80\x00\x00\x05ab",
                                     b"\x7f\x00" + b"a" * 126])
def test_decode_params_truncated(content: bytes) -> None:
    with pytest.raises(FcgiError):
        decode_params(content)


# --------------------------------------------------------------------------
# Response records
# --------------------------------------------------------------------------

HEAD = b"Status: 201 Created\r\nContent-Type: text/plain\r\n\r\n"
RESPONSE = (rec(STDOUT, 1, HEAD, b"\0" * 3) + rec(STDERR, 1, b"PHP Notice: x", b"\0" * 3)
            + rec(STDOUT, 1, b"hello, ", b"\0") + rec(STDOUT, 1, b"world", b"abc")
            + rec(STDOUT, 1) + rec(STDERR, 1, b"", b"\0" * 8) + rec(END_REQUEST, 1, end_body(7, 0), b"\0" * 5))


def collect(events: list) -> tuple[bytes, bytes, list[EndRequest]]:
    out = b"".join(e.data for e in events if isinstance(e, Stdout))
    err = b"".join(e.data for e in events if isinstance(e, Stderr))
    ends = [e for e in events if isinstance(e, EndRequest)]
    for e in events:
        assert isinstance(e, (Stdout, Stderr, EndRequest))
        if not isinstance(e, EndRequest):
            assert e.data and type(e.data) is bytes
    if ends:
        assert events[-1] is ends[0] and len(ends) == 1
    return out, err, ends


def test_response_whole() -> None:
    p = ResponseParser()
    events = p.feed(RESPONSE)
    assert events == [Stdout(HEAD), Stderr(b"PHP Notice: x"), Stdout(b"hello, world"), EndRequest(7, 0)]
    assert p.done
    p.eof()
    assert p.feed(b"") == []


@pytest.mark.parametrize("cut", range(1, len(RESPONSE)))
def test_response_split_at_every_byte(cut: int) -> None:
    p = ResponseParser()
    events = p.feed(RESPONSE[:cut])
    assert not p.done
    events += p.feed(RESPONSE[cut:])
    assert collect(events) == (HEAD + b"hello, world", b"PHP Notice: x", [EndRequest(7, 0)])


def test_response_byte_by_byte() -> None:
    p = ResponseParser()
    events = []
    for i in range(len(RESPONSE)):
        events += p.feed(RESPONSE[i:i + 1])
        assert p.done == (i == len(RESPONSE) - 1)           # END only once its padding is in
    assert collect(events) == (HEAD + b"hello, world", b"PHP Notice: x", [EndRequest(7, 0)])


def test_response_events_keep_stream_order() -> None:
    p = ResponseParser()
    data = (rec(STDOUT, 1, b"a") + rec(STDOUT, 1, b"b") + rec(STDERR, 1, b"e") + rec(STDOUT, 1, b"c")
            + rec(STDERR, 1, b"f") + rec(STDERR, 1, b"g"))
    assert p.feed(data) == [Stdout(b"ab"), Stderr(b"e"), Stdout(b"c"), Stderr(b"fg")]


@pytest.mark.parametrize(("app", "proto"), [(0, REQUEST_COMPLETE), (1, 0), (0xFFFFFFFF, 0), (0, OVERLOADED), (5, 200)])
def test_end_request_fields(app: int, proto: int) -> None:
    assert ResponseParser(3).feed(end_request(3, app, proto)) == [EndRequest(app, proto)]


def test_end_request_without_stream_end_records() -> None:
    # php-fpm closes its open STDOUT packet and sends END_REQUEST without an empty STDOUT record.
    p = ResponseParser()
    assert p.feed(encode_record(STDOUT, 1, b"x") + end_request(1)) == [Stdout(b"x"), EndRequest(0, 0)]


def test_zero_length_stdout_emits_nothing() -> None:
    p = ResponseParser()
    assert p.feed(rec(STDOUT, 1)) == []
    assert p.feed(rec(STDERR, 1, b"", b"\xff" * 255)) == []
    assert p.feed(end_request(1)) == [EndRequest(0, 0)]


def test_largest_records() -> None:
    big = bytes(range(256)) * 255 + bytes(range(255))         # 65535 bytes
    data = rec(STDOUT, 1, big, b"\x01" * 255) + rec(END_REQUEST, 1, end_body(), b"\x02" * 255)
    p = ResponseParser()
    assert p.feed(data) == [Stdout(big), EndRequest(0, 0)]
    p = ResponseParser()
    events = []
    for i in range(0, len(data), 997):
        events += p.feed(data[i:i + 997])
        assert len(p._buf) < 8 + 255 + 8                     # never buffers STDOUT content
    assert collect(events) == (big, b"", [EndRequest(0, 0)])


def test_feed_accepts_bytes_like() -> None:
    p = ResponseParser()
    assert p.feed(bytearray(encode_record(STDOUT, 1, b"abc"))) == [Stdout(b"abc")]
    assert p.feed(memoryview(end_request(1))) == [EndRequest(0, 0)]


def test_eof_before_end() -> None:
    p = ResponseParser()
    p.feed(encode_record(STDOUT, 1, b"abc"))
    with pytest.raises(FcgiError):
        p.eof()


@pytest.mark.parametrize(("data", "reason"), [
    (rec(STDOUT, 1, b"x", version=0), "version"),
    (rec(STDOUT, 1, b"x", version=2), "version"),
    (rec(STDOUT, 2, b"x"), "request id"),
    (rec(STDERR, 0, b"x"), "request id"),
    (rec(END_REQUEST, 2, end_body()), "request id"),
    (rec(BEGIN_REQUEST, 1, bytes(8)), "BEGIN_REQUEST"),
    (rec(ABORT_REQUEST, 1), "ABORT_REQUEST"),
    (rec(PARAMS, 1), "PARAMS"),
    (rec(STDIN, 1, b"x"), "STDIN"),
    (rec(DATA, 1, b"x"), "DATA"),
    (rec(GET_VALUES, 0), "GET_VALUES"),
    (rec(GET_VALUES_RESULT, 0, b"\x01\x01ab"), "GET_VALUES_RESULT"),
    (rec(UNKNOWN_TYPE, 0, bytes(8)), "UNKNOWN_TYPE"),
    (rec(0, 1), "unknown record type 0"),
    (rec(12, 1, b"x"), "unknown record type 12"),
    (rec(255, 1), "unknown record type 255"),
    (rec(END_REQUEST, 1, b""), "END_REQUEST body"),
    (rec(END_REQUEST, 1, bytes(7)), "END_REQUEST body"),
    (rec(END_REQUEST, 1, bytes(9)), "END_REQUEST body"),
    (rec(STDOUT, 1) + rec(STDOUT, 1, b"late"), "after the end"),
    (rec(STDERR, 1) + rec(STDERR, 1, b"late"), "after the end"),
    (end_request(1) + b"\x01", "after END_REQUEST"),
    (end_request(1) + rec(STDOUT, 1, b"x"), "after END_REQUEST"),
])
def test_response_errors(data: bytes, reason: str) -> None:
    p = ResponseParser()
    with pytest.raises(FcgiError) as ei:
        p.feed(data)
    assert reason in ei.value.reason
    with pytest.raises(FcgiError):                          # sticky: the connection is dead
        p.feed(encode_record(STDOUT, 1, b"ok"))
    # The same error, whatever the split (checked as soon as the bad header is complete).
    p = ResponseParser()
    with pytest.raises(FcgiError) as ei:
        for i in range(len(data)):
            p.feed(data[i:i + 1])
    assert reason in ei.value.reason


def test_data_after_end_in_a_later_feed() -> None:
    p = ResponseParser()
    p.feed(end_request(1))
    with pytest.raises(FcgiError, match="after END_REQUEST"):
        p.feed(b"\x01")


def test_stdout_end_does_not_close_stderr() -> None:
    p = ResponseParser()
    assert p.feed(rec(STDOUT, 1) + rec(STDERR, 1, b"e") + end_request(1)) == [Stderr(b"e"), EndRequest(0, 0)]


# --------------------------------------------------------------------------
# Response records: property-based
# --------------------------------------------------------------------------

chunk = st.tuples(st.sampled_from([STDOUT, STDERR]), st.binary(min_size=1, max_size=300),
                  st.binary(max_size=20))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chunk, max_size=12), st.binary(max_size=12), st.booleans(), st.data())
def test_valid_responses_any_split(chunks: list, end_pad: bytes, close_streams: bool, data: st.DataObject) -> None:
    wire = b"".join(rec(t, 5, c, pad) for t, c, pad in chunks)
    if close_streams:
        wire += rec(STDOUT, 5) + rec(STDERR, 5)
    wire += rec(END_REQUEST, 5, end_body(1, 0), end_pad)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    p = ResponseParser(5)
    events = []
    last = 0
    for c in cuts + [len(wire)]:
        events += p.feed(wire[last:c])
        last = c
    expected_out = b"".join(c for t, c, _ in chunks if t == STDOUT)
    expected_err = b"".join(c for t, c, _ in chunks if t == STDERR)
    assert collect(events) == (expected_out, expected_err, [EndRequest(1, 0)])
    assert p.done


def run_split(wire: bytes, cuts: list[int]) -> tuple[list, bool]:
    p = ResponseParser()
    events: list = []
    last = 0
    try:
        for c in sorted(cuts) + [len(wire)]:
            events += p.feed(wire[last:c])
            last = c
    except FcgiError as e:
        assert isinstance(e.reason, str) and e.reason
        return events, True
    return events, False


record_bytes = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda t, r, c, p, v: rec(t, r, c, p, v), st.integers(0, 13), st.sampled_from([0, 1, 2]),
              st.binary(max_size=40), st.binary(max_size=10), st.sampled_from([1, 1, 1, 0, 2])),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record_bytes, max_size=8), st.data())
def test_fuzz_response_parser(parts: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(parts)
    whole_events, whole_failed = run_split(wire, [])
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    split_events, split_failed = run_split(wire, cuts)
    assert whole_failed == split_failed
    if not whole_failed:
        assert collect(whole_events) == collect(split_events)


# --------------------------------------------------------------------------
# CGI response head
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "status", "reason", "headers", "rest"), [
    (b"Content-Type: text/html\r\n\r\nbody", 200, "", [("content-type", "text/html")], b"body"),
    (b"Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\n<h1>", 404, "Not Found",
     [("content-type", "text/html")], b"<h1>"),
    (b"Content-Type: text/html\r\nStatus: 500\r\n\r\n", 500, "", [("content-type", "text/html")], b""),
    (b"Status:  204   No   Content \r\n\r\n", 204, "No   Content", [], b""),
    (b"Status: 200\tOK\r\n\r\n", 200, "OK", [], b""),
    (b"STATUS: 418 I'm a teapot\r\n\r\n", 418, "I'm a teapot", [], b""),
    (b"Location: http://example.com/x\r\n\r\n", 302, "", [("location", "http://example.com/x")], b""),
    (b"Location: /local\r\n\r\n", 302, "", [("location", "/local")], b""),
    (b"Location:\r\n\r\n", 200, "", [("location", "")], b""),
    (b"Status: 301 Moved Permanently\r\nLocation: /new\r\n\r\n", 301, "Moved Permanently", [("location", "/new")], b""),
    (b"Location: /new\r\nStatus: 303\r\n\r\n", 303, "", [("location", "/new")], b""),
    (b"Content-Type: text/plain\n\nlf body\n", 200, "", [("content-type", "text/plain")], b"lf body\n"),
    (b"A: 1\r\nB: 2\n\r\nmixed", 200, "", [("a", "1"), ("b", "2")], b"mixed"),
    (b"A: 1\nB: 2\r\n\nmixed", 200, "", [("a", "1"), ("b", "2")], b"mixed"),
    (b"X-Pad:   v a l  \t\r\n\r\n", 200, "", [("x-pad", "v a l")], b""),
    (b"X-Empty:\r\nX-Empty2:   \r\n\r\n", 200, "", [("x-empty", ""), ("x-empty2", "")], b""),
    (b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nCONTENT-Length: 3\r\n\r\nabc", 200, "",
     [("set-cookie", "a=1"), ("set-cookie", "b=2"), ("content-length", "3")], b"abc"),
    (b"X-Latin: caf\xe9\r\n\r\n", 200, "", [("x-latin", "caf\xe9")], b""),
    (b"\r\nbody only", 200, "", [], b"body only"),
    (b"\nbody only", 200, "", [], b"body only"),
    (b"A: b\r\n\r\nbody\r\n\r\nmore\n\n", 200, "", [("a", "b")], b"body\r\n\r\nmore\n\n"),
    (b"X-Odd-Name_1.~!#$%&'*+^`|: v\r\n\r\n", 200, "", [("x-odd-name_1.~!#$%&'*+^`|", "v")], b""),
    (b"Status: 100 Continue\r\n\r\n", 100, "Continue", [], b""),
    (b"Status: 599\r\n\r\n", 599, "", [], b""),
])
def test_cgi_head(raw: bytes, status: int, reason: str, headers: list, rest: bytes) -> None:
    head = CgiHeadParser().feed(raw)
    assert head == ResponseHead(status, reason, headers, rest)
    assert (head.status, head.reason, head.headers, head.rest) == (status, reason, headers, rest)
    s, _r, _h, b = head                                      # unpacks as the 4-tuple
    assert type(b) is bytes and type(s) is int
    assert_same_head_at_every_cut(CgiHeadParser, raw, head)  # the same result whatever the split


def test_cgi_head_byte_by_byte() -> None:
    raw = b"Status: 404 Not Found\r\nX-A: b\nContent-Type: text/html\r\n\r\n"
    assert feed_byte_by_byte(CgiHeadParser, raw) == ResponseHead(404, "Not Found", [("x-a", "b"), ("content-type", "text/html")], b"")


@pytest.mark.parametrize(("raw", "reason"), [
    (b"no colon here\r\n\r\n", "malformed header"),
    (b"A: b\r\n folded\r\n\r\n", "malformed header"),
    (b"\tA: b\r\n\r\n", "malformed header"),
    (b"Name : v\r\n\r\n", "malformed header"),
    (b"Bad Name: v\r\n\r\n", "malformed header"),
    (b": v\r\n\r\n", "malformed header"),
    (b"A(b): v\r\n\r\n", "malformed header"),
    (b"A: b\x00c\r\n\r\n", "malformed header"),
    (b"A: b\rc\r\n\r\n", "malformed header"),
    (b"A: b\x7f\r\n\r\n", "malformed header"),
    (b"A: b\r\r\n\r\n", "malformed header"),
    (b"\r\rA: b\r\n\r\n", "malformed header"),
    (b"Caf\xe9: v\r\n\r\n", "malformed header"),
    (b"HTTP/1.1 200 OK\r\n\r\n", "malformed header"),
    (b"Status: abc\r\n\r\n", "Status"),
    (b"Status: 20\r\n\r\n", "Status"),
    (b"Status: 2000\r\n\r\n", "Status"),
    (b"Status: 200OK\r\n\r\n", "Status"),
    (b"Status:\r\n\r\n", "Status"),
    (b"Status: 099 Low\r\n\r\n", "out of range"),
    (b"Status: 600 High\r\n\r\n", "out of range"),
    (b"Status: 200\r\nStatus: 404\r\n\r\n", "duplicate"),
])
def test_cgi_head_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(FcgiError) as ei:
        CgiHeadParser().feed(raw)
    assert reason in ei.value.reason
    p = CgiHeadParser()
    with pytest.raises(FcgiError):
        for i in range(len(raw)):
            p.feed(raw[i:i + 1])


def test_cgi_head_size_bound() -> None:
    line = b"X-Fill: " + b"a" * 90 + b"\r\n"                 # 100 bytes
    exact = line * 655 + b"X: " + b"b" * 29 + b"\r\n" + b"\r\n"
    assert len(exact) == 65536
    head = CgiHeadParser().feed(exact + b"body")
    assert head is not None and head.rest == b"body" and len(head.headers) == 656
    too_big = b"X: c\r\n" + exact
    with pytest.raises(FcgiError, match="larger than"):
        CgiHeadParser().feed(too_big)
    # Without a terminator, the error comes as soon as the limit is reached.
    p = CgiHeadParser()
    with pytest.raises(FcgiError, match="larger than"):
        for _ in range(1000):
            p.feed(line)


@pytest.mark.parametrize("max_size", [0, 1, 5, 9, 10, 11, 20])
def test_cgi_head_small_bound_is_split_independent(max_size: int) -> None:
    raw = b"A: 123\r\n\r\nbody"                              # head is 10 bytes
    ok = max_size >= 10
    for cut in range(len(raw) + 1):
        p = CgiHeadParser(max_size=max_size)
        try:
            head = p.feed(raw[:cut]) or p.feed(raw[cut:])
        except FcgiError:
            assert not ok
        else:
            assert ok and head is not None and head[:3] == (200, "", [("a", "123")])


@pytest.mark.parametrize("raw", [b"bad line\r\n\r\n", b"Status: 1\r\n\r\n", b"X: " + b"a" * 70000])
def test_cgi_head_errors_are_sticky(raw: bytes) -> None:
    p = CgiHeadParser()
    with pytest.raises(FcgiError) as first:
        p.feed(raw)
    with pytest.raises(FcgiError) as again:
        p.feed(b"A: b\r\n\r\n")
    assert again.value.reason == first.value.reason


def test_cgi_head_spent_after_head() -> None:
    p = CgiHeadParser()
    assert p.feed(b"A: b\n\n") is not None
    with pytest.raises(RuntimeError):
        p.feed(b"more")


def test_cgi_head_through_the_record_parser() -> None:
    wire = (encode_record(STDOUT, 1, b"Status: 404 Not Found\r\nContent-") + encode_record(STDOUT, 1, b"Type: text/html\r\n\r")
            + encode_record(STDOUT, 1, b"\n<p>missing</p>") + encode_record(STDOUT, 1) + end_request(1))
    rp = ResponseParser()
    hp = CgiHeadParser()
    head = None
    body = b""
    for i in range(0, len(wire), 5):
        for ev in rp.feed(wire[i:i + 5]):
            if isinstance(ev, Stdout):
                if head is None:
                    head = hp.feed(ev.data)
                    if head is not None:
                        body += head.rest
                else:
                    body += ev.data
    assert head is not None and head[:3] == (404, "Not Found", [("content-type", "text/html")])
    assert body == b"<p>missing</p>" and rp.done


head_alphabet = st.sampled_from([b"\r\n", b"\n", b"\r", b": ", b":", b" ", b"\t", b"Status", b"Location", b"200",
                                 b"404 x", b"A", b"b", b"\x00", b"\xff", b"HTTP/1.1 ", b"-"])
head_bytes = st.one_of(st.binary(max_size=80), st.lists(head_alphabet, max_size=25).map(b"".join))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(head_bytes, st.integers(0, 100), st.data())
def test_fuzz_cgi_head(raw: bytes, max_size: int, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=6))
    assert_cut_anywhere_same(lambda: CgiHeadParser(max_size=max_size), raw, cuts, FcgiError)


# --------------------------------------------------------------------------
# Request side: property-based round trips
# --------------------------------------------------------------------------

names = st.one_of(st.binary(max_size=140), st.text(max_size=20))
values = st.one_of(st.binary(max_size=200), st.text(max_size=40),
                   st.integers(0, 140_000).map(lambda n: b"v" * n))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(names, values), max_size=12), st.integers(1, 65535))
def test_params_round_trip(params: list, rid: int) -> None:
    out = encode_params(rid, params)
    contents = check_well_formed(out, PARAMS, rid)
    assert contents[-1] == b"" and all(contents[:-1])
    expected = [(n.encode("utf-8", "surrogateescape") if isinstance(n, str) else n,
                 v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v) for n, v in params]
    joined = b"".join(contents)
    assert decode_params(joined) == nv_decode(joined) == expected


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(st.binary(max_size=3000), st.integers(0, 200_000).map(lambda n: bytes([n % 256]) * n)))
def test_stdin_round_trip(data: bytes) -> None:
    out = encode_stdin(1, data)
    contents = check_well_formed(out, STDIN, 1)
    assert b"".join(contents) == data
    assert (contents == [b""]) == (data == b"")


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_decode_params(raw: bytes) -> None:
    try:
        pairs = decode_params(raw)
    except FcgiError:
        return
    # Re-encoding may be shorter (a 4-byte length for a short string is valid but not canonical),
    # but it decodes to the same pairs.
    assert decode_params(b"".join(c for _, _, _, c, _ in records(encode_params(1, pairs)))) == pairs
    assert sum(len(n) + len(v) for n, v in pairs) <= len(raw)


def test_keep_conn_flag() -> None:
    assert begin_request(1, True)[8 + 2] == KEEP_CONN
    assert begin_request(1, True)[8:10] == RESPONDER.to_bytes(2, "big")


# -- the caches on the hot path ---------------------------------------------------------------------


def test_encoded_pairs_are_remembered_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated pairs come from the cache and encode the same; a full cache starts over; a
    long pair is never kept; str and bytes spellings of a pair both work."""
    cache = fc._encoded_pair.__self__  # type: ignore[attr-defined]
    cache.clear()
    monkeypatch.setattr(cache, "limit", 3)
    params = [(b"A", b"1"), ("B", "2"), (b"C", b"x" * 300)]
    first = fc.encode_params(1, params)
    assert (b"A", b"1") in cache and ("B", "2") in cache
    assert (b"C", b"x" * 300) not in cache        # too long to keep
    assert fc.encode_params(1, params) == first
    clen = struct.unpack_from(">H", first, 4)[0]
    assert fc.decode_params(first[8:8 + clen]) == [(b"A", b"1"), (b"B", b"2"), (b"C", b"x" * 300)]
    cache.clear()
    assert fc.encode_params(1, params) == first   # what the cache gives is what encoding gives
    fc.encode_params(1, [(b"D", b"4"), (b"E", b"5")])
    assert len(cache) <= 3                        # a new generation, not unbounded growth


def test_unhashable_params_are_encoded_without_the_cache() -> None:
    out = fc.encode_params(1, [(bytearray(b"N"), memoryview(b"v")), [b"L", b"w"]])  # type: ignore[list-item]
    assert out == fc.encode_params(1, [(b"N", b"v"), (b"L", b"w")])
    with pytest.raises(FcgiError):
        fc.encode_params(1, [(b"N", 5)])  # type: ignore[list-item]


def test_a_head_seen_before_is_the_same_head_and_a_fresh_list() -> None:
    raw = b"X-Powered-By: PHP\r\nContent-type: text/html\r\n\r\nbody"
    first = CgiHeadParser().feed(raw)
    again = CgiHeadParser().feed(raw)
    assert first == again and first.rest == b"body"
    again.headers.append(("x-added", "by a caller"))   # a caller may change its list...
    assert CgiHeadParser().feed(raw).headers == first.headers  # ...the cached head is untouched


def test_a_bad_head_is_never_cached() -> None:
    raw = b"Status: 999\r\n\r\n"
    for _ in range(2):
        with pytest.raises(FcgiError):
            CgiHeadParser().feed(raw)


_OUT = fc.encode_record(fc.STDOUT, 1, b"Content-type: text/plain\r\n\r\nhi")
_END = fc.end_request(1)


@pytest.mark.parametrize("data, whole", [
    (_OUT + _END, (b"Content-type: text/plain\r\n\r\nhi", 0)),
    (_OUT + fc.encode_record(fc.STDOUT, 1, b"!") + fc.encode_record(fc.STDOUT, 1, b"") + _END,
     (b"Content-type: text/plain\r\n\r\nhi!", 0)),
    (_OUT + fc.end_request(1, 0, fc.OVERLOADED), (b"Content-type: text/plain\r\n\r\nhi", fc.OVERLOADED)),
    (_END, (b"", 0)),
    (_OUT + fc.encode_record(fc.STDERR, 1, b"warn") + _END, None),     # STDERR: the general path
    (_OUT + _END[:-3], None),                                           # cut short
    (_OUT + _END + b"x", None),                                         # more than a response
    (_OUT, None),                                                       # no END_REQUEST yet
    (fc.encode_record(fc.STDOUT, 2, b"hi") + fc.end_request(2), None),  # another request id
    (_OUT + fc.encode_record(fc.STDOUT, 1, b"") + fc.encode_record(fc.STDOUT, 1, b"late") + _END, None),
])
def test_whole_response_agrees_with_feed(data: bytes, whole: tuple[bytes, int] | None) -> None:
    """``whole`` takes a complete response in one pass or declines and consumes nothing; what
    it returns is what ``feed`` makes of the same bytes."""
    parser = ResponseParser(1)
    assert parser.whole(data) == whole

    def outcome(p: ResponseParser) -> object:
        try:
            return p.feed(data)
        except FcgiError as e:
            return e.reason

    expected = outcome(ResponseParser(1))
    if whole is None:
        assert outcome(parser) == expected   # declined: nothing was consumed
    else:
        assert parser.done
        assert isinstance(expected, list)
        stdout = b"".join(e.data for e in expected if isinstance(e, fc.Stdout))
        assert (stdout, expected[-1].protocol_status) == whole
