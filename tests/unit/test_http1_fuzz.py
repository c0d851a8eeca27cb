"""Property tests for the HTTP/1.1 request codec.

Three properties, each checked under random splits of the input into
``feed`` calls:

* robustness — any bytes give events/sentinels or ProtocolError, nothing else;
* split invariance — how the bytes are chunked never changes the outcome;
* strictness — whatever is accepted (even from mutated requests) satisfies the
  RFC 9112 rules the parser promises, and generated valid requests round-trip
  exactly.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hemi.web.http1.codec import encode_chunk, encode_last_chunk

from .test_http1_codec import bytewise, drive, whole

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
TCHAR_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+")
VALUE_RE = re.compile(r"(?:[!-~\x80-\xff](?:[\t -~\x80-\xff]*[!-~\x80-\xff])?)?")

CORPUS: list[bytes] = [
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h:8080\r\nUser-Agent: t\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"\r\nGET http://h/p HTTP/1.1\r\nHost:\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
]

INTERESTING = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b";", b"\x7f", b"\x80", b"\xff", b"0", b"f", b",", b"\r\n\r\n"]


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(raw)) for c in cuts})
    out, prev = [], 0
    for p in points:
        out.append(raw[prev:p])
        prev = p
    out.append(raw[prev:])
    return out


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        at = draw(st.integers(0, len(raw)))
        piece = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=3)))
        if kind == "insert":
            raw[at:at] = piece
        elif kind == "delete":
            del raw[at : at + draw(st.integers(1, 3))]
        elif kind == "replace":
            raw[at : at + len(piece)] = piece
        else:
            end = min(len(raw), at + draw(st.integers(1, 30)))
            raw[at:at] = raw[at:end]
    return bytes(raw)


def check_split_invariance(raw: bytes, cuts: list[int], **limits: int) -> list[Any]:
    """Whole (fast path), random split, and byte-at-a-time (incremental path)
    must all agree."""
    reference = whole(raw, **limits)
    assert drive(split_at(raw, cuts), **limits) == reference
    assert bytewise(raw, **limits) == reference
    return reference


def check_strictness(summary: list[Any]) -> None:
    """Everything accepted obeys the rules the codec promises."""
    for item in summary:
        if not isinstance(item, dict):
            continue
        assert TCHAR_RE.fullmatch(item["method"])
        assert re.fullmatch(r"[!-~]+", item["target"])
        assert item["version"] in ("1.0", "1.1")
        names = [n for n, _ in item["headers"]]
        for name, value in item["headers"]:
            assert TCHAR_RE.fullmatch(name) and name == name.lower()
            assert VALUE_RE.fullmatch(value), value
        assert names.count("content-length") <= 1
        assert names.count("transfer-encoding") <= 1
        assert names.count("host") <= 1
        if item["version"] == "1.1":
            assert names.count("host") == 1
        if item["chunked"]:
            assert item["version"] == "1.1" and item["content_length"] is None
            assert "content-length" not in names
        if item["content_length"] is not None:
            assert "transfer-encoding" not in names and item["content_length"] >= 0


@FUZZ
@given(raw=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_random_bytes(raw: bytes, cuts: list[int]) -> None:
    check_strictness(check_split_invariance(raw, cuts))


@FUZZ
@given(raw=st.binary(max_size=120).map(lambda b: b"GET / HTTP/1.1\r\n" + b), cuts=st.lists(st.integers(0, 140), max_size=8))
def test_random_bytes_after_request_line(raw: bytes, cuts: list[int]) -> None:
    check_strictness(check_split_invariance(raw, cuts))


@settings(FUZZ, max_examples=1500)
@given(raw=mutated(), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_mutated_requests(raw: bytes, cuts: list[int]) -> None:
    check_strictness(check_split_invariance(raw, cuts))


@settings(FUZZ, max_examples=800)
@given(raw=mutated(), cuts=st.lists(st.integers(0, 200), max_size=8), data=st.data())
def test_mutated_requests_small_limits(raw: bytes, cuts: list[int], data: st.DataObject) -> None:
    limits = {
        "max_head_size": data.draw(st.integers(1, 120)),
        "max_headers": data.draw(st.integers(1, 6)),
        "max_uri_size": data.draw(st.integers(1, 20)),
        "max_trailer_size": data.draw(st.integers(1, 20)),
    }
    check_strictness(check_split_invariance(raw, cuts, **limits))


# ---------------------------------------------------------------------------
# Generated valid requests round-trip exactly
# ---------------------------------------------------------------------------

RESERVED = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect"}
names_st = st.text(alphabet=TCHAR, min_size=1, max_size=12).filter(lambda n: n.lower() not in RESERVED)
value_st = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=20).map(
    lambda v: v.strip(" \t")
)
ows_st = st.sampled_from(["", " ", "\t", "  ", " \t"])


@st.composite
def valid_request(draw: st.DrawFn) -> tuple[bytes, dict[str, Any], bytes, list[tuple[str, str]]]:
    version = draw(st.sampled_from(["1.1", "1.0"]))
    method = draw(st.text(alphabet=TCHAR, min_size=1, max_size=8))
    target = draw(
        st.one_of(
            st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30).map(lambda t: "/" + t),
            st.just("*"),
            st.just("http://example.com/x?y"),
        )
    )
    fields = draw(st.lists(st.tuples(names_st, value_st), max_size=6))
    host = draw(st.sampled_from(["example.com", "h:8080", "[::1]", "a.b-c_d~e"]))
    fields_out: list[tuple[str, str]] = []
    lines = [f"{method} {target} HTTP/{version}"]
    if version == "1.1" or draw(st.booleans()):
        fields.insert(draw(st.integers(0, len(fields))), ("Host", host))
    else:
        host = None
    framing = draw(st.sampled_from(["none", "cl", "chunked"] if version == "1.1" else ["none", "cl"]))
    body = draw(st.binary(max_size=40)) if framing != "none" else b""
    trailers: list[tuple[str, str]] = []
    if framing == "cl":
        fields.append(("Content-Length", str(len(body))))
    elif framing == "chunked":
        fields.append(("Transfer-Encoding", draw(st.sampled_from(["chunked", "Chunked", "CHUNKED"]))))
        trailers = [(n.lower(), v) for n, v in draw(st.lists(st.tuples(names_st, value_st), max_size=2))]
    for name, value in fields:
        lines.append(f"{name}:{draw(ows_st)}{value}{draw(ows_st)}")
        fields_out.append((name.lower(), value))
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if framing == "cl":
        raw += body
    elif framing == "chunked":
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        prev = 0
        for c in [*cuts, len(body)]:
            raw += encode_chunk(body[prev:c])
            prev = c
        raw += encode_last_chunk(trailers)
    expected = {
        "method": method,
        "target": target,
        "version": version,
        "headers": fields_out,
        "content_length": len(body) if framing == "cl" else None,
        "chunked": framing == "chunked",
        "keep_alive": version == "1.1",
        "expect_continue": False,
        "upgrade": None,
        "host": host,
    }
    return raw, expected, body, trailers


@FUZZ
@given(requests=st.lists(valid_request(), min_size=1, max_size=3), cuts=st.lists(st.integers(0, 1000), max_size=10))
def test_valid_requests_round_trip(requests: list[tuple[bytes, dict[str, Any], bytes, list[tuple[str, str]]]], cuts: list[int]) -> None:
    raw = b"".join(r[0] for r in requests)
    expected: list[Any] = []
    for _, head, body, trailers in requests:
        expected.append(head)
        if body:
            expected.append(("body", body))
        expected += [("eom", trailers), "PAUSED"]
    expected.append("CLOSED")
    assert check_split_invariance(raw, cuts) == expected
