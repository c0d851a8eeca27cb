"""Request smuggling and malformed input: each bad request is sent raw with a SECOND, valid
request appended in the same write. The server must answer exactly once (the expected
status) and close: a rejected request is never followed by a request parsed from its bytes.
"""

from __future__ import annotations

import pytest

from .h1util import Conn, exts_files

pytestmark = pytest.mark.timeout(60)

CONFIG = """
stage {{
    app "a" {{
        .hostnames = ("*")
        rule $path ^= "/echo" {{ testEcho {{ }} }}
        rule {{ .returnCode = 200 .returnText = "ok" }}
    }}
    httpxServer "main" {{
        .address = "127.0.0.1:{port}"
        .forApps = ("a")
        .maxContentSize = 1M
        .readTimeout = 3s
        .recvTimeout = 3s
    }}
}}
"""

SECOND = b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"


def post(headers: str, body: bytes = b"", version: str = "1.1", path: str = "/echo") -> bytes:
    return f"POST {path} HTTP/{version}\r\nHost: x\r\n{headers}\r\n".encode("latin-1") + body


CHUNKED = "Transfer-Encoding: chunked\r\n"

# (id, raw bytes, expected status)
CASES: list[tuple[str, bytes, int]] = [
    # Content-Length and Transfer-Encoding together, repeated, or malformed
    ("cl-and-te", post("Content-Length: 4\r\n" + CHUNKED, b"0\r\n\r\n"), 400),
    ("te-and-cl", post(CHUNKED + "Content-Length: 4\r\n", b"0\r\n\r\n"), 400),
    ("duplicate-cl-same", post("Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"), 400),
    ("duplicate-cl-different", post("Content-Length: 3\r\nContent-Length: 40\r\n", b"abc"), 400),
    ("cl-list", post("Content-Length: 3, 3\r\n", b"abc"), 400),
    ("cl-plus-sign", post("Content-Length: +3\r\n", b"abc"), 400),
    ("cl-minus-sign", post("Content-Length: -3\r\n", b"abc"), 400),
    ("cl-space-inside", post("Content-Length: 1 3\r\n", b"abc"), 400),
    ("cl-hex", post("Content-Length: 0x3\r\n", b"abc"), 400),
    ("cl-underscore", post("Content-Length: 1_0\r\n", b"abc"), 400),
    ("cl-unicode-digit", post("Content-Length: \u0663\r\n".encode("utf-8").decode("latin-1"), b"abc"), 400),
    ("cl-empty", post("Content-Length: \r\n", b""), 400),
    ("cl-absurd-digits", post("Content-Length: 99999999999999999999999\r\n", b"abc"), 400),
    ("cl-over-max-content", post("Content-Length: 999999999999999\r\n", b"abc"), 413),
    # Transfer-Encoding other than a single "chunked", or where it is not allowed
    ("te-gzip", post("Transfer-Encoding: gzip\r\n", b"0\r\n\r\n"), 501),
    ("te-list", post("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 501),
    ("te-chunked-twice", post("Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), 501),
    ("te-duplicate-header", post(CHUNKED + CHUNKED, b"0\r\n\r\n"), 400),
    ("te-xchunked", post("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), 501),
    ("te-vertical-tab", post("Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"), 400),
    ("te-space-before-colon", post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), 400),
    ("te-in-http10", post(CHUNKED, b"0\r\n\r\n", version="1.0"), 400),
    # Chunk framing
    ("chunk-size-not-hex", post(CHUNKED, b"zz\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-size-negative", post(CHUNKED, b"-3\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-size-0x", post(CHUNKED, b"0x3\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-size-leading-space", post(CHUNKED, b" 3\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-size-overflow", post(CHUNKED, b"1" + b"0" * 16 + b"\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-size-empty", post(CHUNKED, b"\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-missing-crlf-after-data", post(CHUNKED, b"3\r\nabcX\r\n0\r\n\r\n"), 400),
    ("chunk-data-longer-than-size", post(CHUNKED, b"3\r\nabcdef\r\n0\r\n\r\n"), 400),
    ("chunk-bare-lf-size-line", post(CHUNKED, b"3\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-bare-lf-after-data", post(CHUNKED, b"3\r\nabc\n0\r\n\r\n"), 400),
    ("chunk-bad-extension", post(CHUNKED, b"3;\x00\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-bad-trailer", post(CHUNKED, b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n"), 400),
    ("chunk-trailer-obs-fold", post(CHUNKED, b"3\r\nabc\r\n0\r\nX-T: a\r\n b\r\n\r\n"), 400),
    # Line endings and control bytes in the head
    ("bare-lf-head", b"POST /echo HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc", 400),
    ("bare-lf-one-line", b"POST /echo HTTP/1.1\r\nHost: x\nContent-Length: 3\r\n\r\nabc", 400),
    ("bare-cr-request-line", b"POST /echo HTTP/1.1\rHost: x\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("bare-cr-in-value", post("X-A: a\rContent-Length: 3\r\n", b"abc"), 400),
    ("obs-fold", post("X-A: a\r\n b\r\nContent-Length: 3\r\n", b"abc"), 400),
    ("obs-fold-tab", post("Content-Length: 3\r\n\tX-B: c\r\n", b"abc"), 400),
    ("nul-in-value", post("X-A: a\x00b\r\nContent-Length: 3\r\n", b"abc"), 400),
    ("nul-in-name", post("X-\x00A: b\r\nContent-Length: 3\r\n", b"abc"), 400),
    ("space-before-colon", post("Content-Length : 3\r\n", b"abc"), 400),
    ("tab-before-colon", post("Content-Length\t: 3\r\n", b"abc"), 400),
    ("space-in-name", post("Content Length: 3\r\n", b"abc"), 400),
    ("empty-name", post(": x\r\nContent-Length: 3\r\n", b"abc"), 400),
    ("no-colon", post("Content-Length 3\r\n", b"abc"), 400),
    # Request line
    ("two-spaces-after-method", b"GET  /echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("two-spaces-before-version", b"GET /echo  HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("tab-separator", b"GET\t/echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("lowercase-version", b"GET /echo http/1.1\r\nHost: x\r\n\r\n", 400),
    ("version-no-minor", b"GET /echo HTTP/1\r\nHost: x\r\n\r\n", 400),
    ("http2-version", b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("http12-version", b"GET /echo HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    ("http09-version", b"GET /echo HTTP/0.9\r\nHost: x\r\n\r\n", 505),
    ("no-version", b"GET /echo\r\nHost: x\r\n\r\n", 400),
    ("space-in-target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bad-method-char", b"G(ET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("target-not-origin-form", b"GET echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bad-percent-escape", b"GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("nul-escape-in-path", b"GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    # Host
    ("missing-host-http11", b"GET /echo HTTP/1.1\r\nX: y\r\n\r\n", 400),
    ("duplicate-host", b"GET /echo HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    ("bad-host", b"GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("host-with-userinfo-uri", b"GET http://u@x/echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
]


@pytest.fixture(scope="module")
def port(gorox_module):  # type: ignore[no-untyped-def]
    """One server for the whole table (every case uses its own connection)."""
    g = gorox_module(CONFIG, files=exts_files())
    yield g.port
    assert g.proc.poll() is None, "the server died:\n" + g.log()


@pytest.mark.parametrize("raw,status", [pytest.param(raw, status, id=name) for name, raw, status in CASES])
def test_rejected_request_is_answered_once_and_closed(port, raw: bytes, status: int) -> None:
    with Conn(port, timeout=5) as c:
        c.send(raw + SECOND)
        r = c.read_response()
        assert r is not None, "no response at all"
        assert r.status == status, r.body[:300]
        assert r.header("connection") == "close"
        assert c.closed_after(), "a second response or no close: bytes after a rejected request were parsed"


def test_valid_requests_still_work_after_the_table(port) -> None:
    """Control: the same second request is answered when the first one is valid."""
    with Conn(port) as c:
        c.send(post("Content-Length: 3\r\n", b"abc") + SECOND)
        assert c.read_response().json()["body_len"] == 3  # type: ignore[union-attr]
        assert c.read_response().body == b"ok"  # type: ignore[union-attr]


@pytest.mark.parametrize("raw", [
    pytest.param(post(CHUNKED, b"zz\r\nabc\r\n0\r\n\r\n", path="/"), id="bad-chunk-unread-body"),
    pytest.param(post(CHUNKED, b"3\r\nabcX\r\n0\r\n\r\n", path="/"), id="missing-crlf-unread-body"),
])
def test_bad_body_behind_a_fast_answer_closes(port, raw: bytes) -> None:
    """A fixed-text rule answers before the body is looked at; the bad body then ends the
    connection: still one response, and nothing parsed from the body's bytes."""
    with Conn(port) as c:
        c.send(raw + SECOND)
        r = c.read_response()
        assert r is not None and r.status == 200 and r.body == b"ok"
        assert c.closed_after()
