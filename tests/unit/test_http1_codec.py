"""Table-driven tests for the sans-IO HTTP/1.1 codec (hemi.web.http1.codec).

Every row is fed twice — whole, and one byte at a time — and both runs must
produce exactly the same normalized outcome, which must match the row.  Error
rows are additionally re-run with a valid request appended, to prove a
rejected request is never followed by a request parsed from its bytes.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields
from typing import Any, Iterable

import pytest

from hemi.web.http1.codec import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    REASONS,
    Body,
    EndOfMessage,
    ProtocolError,
    RequestHead,
    RequestParser,
    encode_chunk,
    encode_last_chunk,
    render_response_head,
)

# ---------------------------------------------------------------------------
# Driver: run a parser the way a server does and summarize what came out
# ---------------------------------------------------------------------------

Summary = list[Any]


def head_summary(ev: RequestHead) -> dict[str, Any]:
    return {f.name: getattr(ev, f.name) for f in fields(RequestHead)}


def drive(chunks: Iterable[bytes], *, eof: bool = True, **limits: int) -> Summary:
    """Feed ``chunks`` (then EOF), pumping events after each feed.

    Output items: a dict per RequestHead, ("body", bytes) with consecutive
    Body events merged, ("eom", trailers), "PAUSED", "CLOSED", and finally
    ("error", status, reason) if a ProtocolError was raised.
    """
    p = RequestParser(**limits)
    out: Summary = []

    def pump() -> bool:
        while True:
            ev = p.next_event()
            if ev is NEED_DATA:
                return False
            if ev is CLOSED:
                out.append("CLOSED")
                return True
            if ev is PAUSED:
                out.append("PAUSED")
                p.start_next()
                continue
            if isinstance(ev, RequestHead):
                out.append(head_summary(ev))
            elif isinstance(ev, Body):
                assert type(ev.data) is bytes and ev.data, "Body events carry non-empty bytes"
                if out and isinstance(out[-1], tuple) and out[-1][0] == "body":
                    out[-1] = ("body", out[-1][1] + ev.data)
                else:
                    out.append(("body", ev.data))
            elif isinstance(ev, EndOfMessage):
                out.append(("eom", ev.trailers))
            else:  # pragma: no cover - would be a codec bug
                raise AssertionError(f"unexpected event {ev!r}")

    try:
        for chunk in chunks:
            if not chunk:
                continue  # b"" would mean EOF
            p.feed(chunk)
            if pump():
                return out
        if eof:
            p.feed(b"")
            pump()
    except ProtocolError as exc:
        out.append(("error", exc.status, exc.reason))
        # The parser is dead: the very same error, forever.
        for _ in range(2):
            with pytest.raises(ProtocolError) as again:
                p.next_event()
            assert again.value is exc
    return out


def whole(raw: bytes, **kw: Any) -> Summary:
    return drive([raw], **kw)


def bytewise(raw: bytes, **kw: Any) -> Summary:
    return drive([raw[i : i + 1] for i in range(len(raw))], **kw)


def matches(summary: Summary, expected: Any) -> bool:
    """Compare a summary with a row's expectation.

    ``expected`` is either an error — ``(status, reason)`` — or a list whose
    dict items give a *subset* of RequestHead fields to check.
    """
    if isinstance(expected, tuple):
        return bool(summary) and summary[-1] == ("error", *expected)
    if len(summary) != len(expected):
        return False
    for got, want in zip(summary, expected):
        if isinstance(want, dict):
            if not isinstance(got, dict) or any(got[k] != v for k, v in want.items()):
                return False
        elif got != want:
            return False
    return True


def H(**kw: Any) -> dict[str, Any]:
    return kw


EOM = ("eom", [])
END = [EOM, "PAUSED", "CLOSED"]

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
VALID_FOLLOWER = b"GET /smuggled HTTP/1.1\r\nHost: evil\r\n\r\n"

# ---------------------------------------------------------------------------
# Accepted requests
# ---------------------------------------------------------------------------

GOOD: list[tuple[str, bytes, list[Any]]] = [
    (
        "simple-get",
        GET,
        [
            H(
                method="GET",
                target="/",
                version="1.1",
                headers=[("host", "example.com")],
                content_length=None,
                chunked=False,
                keep_alive=True,
                expect_continue=False,
                upgrade=None,
                host="example.com",
            ),
            *END,
        ],
    ),
    (
        "headers-order-case-ows",
        b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nX-Foo:  bar baz \t\r\nX-EMPTY:\r\n"
        b"x-tab:\tv\r\nX-Obs: caf\xe9\x80\xff\r\nX-Foo: second\r\n\r\n",
        [
            H(
                target="/a%20b?x=1",
                headers=[
                    ("host", "h"),
                    ("x-foo", "bar baz"),
                    ("x-empty", ""),
                    ("x-tab", "v"),
                    ("x-obs", "caf\xe9\x80\xff"),
                    ("x-foo", "second"),
                ],
            ),
            *END,
        ],
    ),
    ("method-case-sensitive-tchar", b"get / HTTP/1.1\r\nHost: h\r\n\r\n", [H(method="get"), *END]),
    ("method-extension", b"M-SEARCH!#$%&'*+.^_`|~ * HTTP/1.1\r\nHost: h\r\n\r\n", [H(method="M-SEARCH!#$%&'*+.^_`|~", target="*"), *END]),
    (
        "post-content-length",
        b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        [H(method="POST", content_length=5, chunked=False), ("body", b"hello"), *END],
    ),
    ("content-length-zero", b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", [H(content_length=0), *END]),
    ("content-length-leading-zeros", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 003\r\n\r\nabc", [H(content_length=3), ("body", b"abc"), *END]),
    ("content-length-ows", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \t2 \r\n\r\nab", [H(content_length=2), ("body", b"ab"), *END]),
    (
        "content-length-18-digits",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 000000000000000001\r\n\r\nz",
        [H(content_length=1), ("body", b"z"), *END],
    ),
    (
        "chunked",
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        [H(chunked=True, content_length=None), ("body", b"hello world"), *END],
    ),
    (
        "chunked-case-ows-ext-hex",
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:  ChUnKeD \r\n\r\n"
        b'A;name=value;flag ; q="a \\"b\\" ;c"\r\n0123456789\r\n'
        b"0000000000000001\r\n!\r\n0;last\r\n\r\n",
        [H(chunked=True), ("body", b"0123456789!"), *END],
    ),
    (
        "chunked-trailers",
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Checksum: 123 \r\nX-Other:\tz\r\n\r\n",
        [H(chunked=True), ("body", b"abc"), ("eom", [("x-checksum", "123"), ("x-other", "z")]), "PAUSED", "CLOSED"],
    ),
    (
        "pipelined",
        GET + b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz" + b"GET /3 HTTP/1.0\r\n\r\n",
        [
            H(target="/"),
            EOM,
            "PAUSED",
            H(target="/2", content_length=3),
            ("body", b"xyz"),
            EOM,
            "PAUSED",
            H(target="/3", version="1.0", keep_alive=False, host=None),
            *END,
        ],
    ),
    ("http10-default-close", b"GET / HTTP/1.0\r\n\r\n", [H(version="1.0", keep_alive=False, host=None, headers=[]), *END]),
    ("http10-keep-alive", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", [H(version="1.0", keep_alive=True), *END]),
    ("http10-host-ok", b"GET / HTTP/1.0\r\nHost: h:80\r\n\r\n", [H(version="1.0", host="h:80"), *END]),
    ("http11-close", b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", [H(keep_alive=False), *END]),
    ("connection-token-list", b"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE ,bar\r\n\r\n", [H(keep_alive=False), *END]),
    ("connection-close-wins", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", [H(keep_alive=False), *END]),
    ("absolute-form", b"GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n", [H(target="http://example.com/p?q"), *END]),
    ("absolute-form-empty-host", b"GET http://example.com/ HTTP/1.1\r\nHost:\r\n\r\n", [H(host=""), *END]),
    ("options-asterisk", b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", [H(method="OPTIONS", target="*"), *END]),
    ("connect-authority", b"CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n", [H(method="CONNECT", target="h.example:443"), *END]),
    ("expect-100", b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx", [H(expect_continue=True), ("body", b"x"), *END]),
    ("expect-other-ignored", b"POST / HTTP/1.1\r\nHost: h\r\nExpect: foo\r\n\r\n", [H(expect_continue=False), *END]),
    ("expect-in-http10-ignored", b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", [H(expect_continue=False), *END]),
    (
        "upgrade",
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n",
        [H(upgrade="websocket", keep_alive=True), *END],
    ),
    ("upgrade-without-connection-token", b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", [H(upgrade=None), *END]),
    ("upgrade-ignored-in-http10", b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", [H(upgrade=None), *END]),
    ("leading-empty-lines", b"\r\n\r\n\r\n\r\n" + GET, [H(target="/"), *END]),
    ("host-port", b"GET / HTTP/1.1\r\nHost: a-b.c_d~e:8080\r\n\r\n", [H(host="a-b.c_d~e:8080"), *END]),
    ("host-ipv6", b"GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n", [H(host="[::1]:8443"), *END]),
    ("host-pct", b"GET / HTTP/1.1\r\nHost: a%2Db\r\n\r\n", [H(host="a%2Db"), *END]),
    ("no-data-eof", b"", ["CLOSED"]),
    ("empty-lines-then-eof", b"\r\n\r\n", ["CLOSED"]),
    ("get-with-body-framing", b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", [H(method="GET"), ("body", b"hi"), *END]),
]


@pytest.mark.parametrize("raw,expected", [r[1:] for r in GOOD], ids=[r[0] for r in GOOD])
def test_good_requests(raw: bytes, expected: list[Any]) -> None:
    got = whole(raw)
    assert matches(got, expected), got
    assert bytewise(raw) == got


# ---------------------------------------------------------------------------
# Rejected requests
# ---------------------------------------------------------------------------

TE_CHUNKED = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"

BAD: list[tuple[str, bytes, tuple[int, str]]] = [
    # line endings
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: h\r\n\r\n", (400, "bare LF")),
    ("bare-lf-header", b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", (400, "bare LF")),
    ("bare-lf-end-of-head", b"GET / HTTP/1.1\r\nHost: h\r\n\n", (400, "bare LF")),
    ("bare-lf-leading", b"\n" + GET, (400, "bare LF")),
    ("bare-cr-request-line", b"GET / HTTP/1.1\rHost: h\r\n\r\n", (400, "bare CR")),
    ("bare-cr-header-value", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", (400, "bare CR")),
    ("bare-cr-header-name", b"GET / HTTP/1.1\r\nHost: h\r\nX\r: b\r\n\r\n", (400, "bare CR")),
    ("bare-cr-head-end", b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", (400, "bare CR")),
    # request line
    ("method-bad-char", b"GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", (400, "bad method")),
    ("method-empty", b" / HTTP/1.1\r\nHost: h\r\n\r\n", (400, "bad method")),
    ("two-spaces", b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", (400, "malformed request line")),
    ("trailing-space", b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", (400, "malformed request line")),
    ("tab-separator", b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", (400, "malformed request line")),
    ("missing-version", b"GET /\r\nHost: h\r\n\r\n", (400, "malformed request line")),
    ("target-non-ascii", b"GET /caf\xe9 HTTP/1.1\r\nHost: h\r\n\r\n", (400, "bad request-target")),
    ("target-del", b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n", (400, "bad request-target")),
    ("target-nul", b"GET /\x00 HTTP/1.1\r\nHost: h\r\n\r\n", (400, "bad request-target")),
    ("http-2.0", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", (505, "http version not supported")),
    ("http-1.2", b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", (505, "http version not supported")),
    ("http-0.9", b"GET / HTTP/0.9\r\n\r\n", (505, "http version not supported")),
    ("http-1.1x", b"GET / HTTP/1.1x\r\nHost: h\r\n\r\n", (400, "bad http version")),
    ("http-lowercase", b"GET / http/1.1\r\nHost: h\r\n\r\n", (400, "bad http version")),
    ("http-11", b"GET / HTTP/11\r\nHost: h\r\n\r\n", (400, "bad http version")),
    ("too-many-empty-lines", b"\r\n" * 5 + GET, (400, "too many empty lines before request")),
    # header fields
    ("obs-fold-space", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  b\r\n\r\n", (400, "obs-fold not allowed")),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", (400, "obs-fold not allowed")),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", (400, "whitespace before colon")),
    ("tab-before-colon", b"GET / HTTP/1.1\r\nHost: h\r\nX\t: y\r\n\r\n", (400, "whitespace before colon")),
    ("nul-in-value", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", (400, "bad header value")),
    ("ctl-in-value", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x1bb\r\n\r\n", (400, "bad header value")),
    ("del-in-value", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", (400, "bad header value")),
    ("empty-name", b"GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n", (400, "empty header name")),
    ("empty-name-sole-field", b"GET / HTTP/1.1\r\n:Host: h\r\n\r\n", (400, "empty header name")),
    ("empty-name-sole-field-http10", b"GET / HTTP/1.0\r\n: x\r\n\r\n", (400, "empty header name")),
    ("missing-colon", b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", (400, "missing colon in header field")),
    ("bad-name-char", b"GET / HTTP/1.1\r\nHost: h\r\nX(y): z\r\n\r\n", (400, "bad header name")),
    ("non-ascii-name", b"GET / HTTP/1.1\r\nHost: h\r\nX\xe9: z\r\n\r\n", (400, "bad header name")),
    # framing
    ("cl-and-te", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", (400, "both content-length and transfer-encoding")),
    ("te-and-cl", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", (400, "both content-length and transfer-encoding")),
    ("duplicate-cl-same", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", (400, "duplicate content-length")),
    ("duplicate-cl-different", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nxy", (400, "duplicate content-length")),
    ("cl-plus", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello", (400, "bad content-length")),
    ("cl-minus", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", (400, "bad content-length")),
    ("cl-list", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1\r\n\r\nx", (400, "bad content-length")),
    ("cl-inner-space", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 1\r\n\r\nx", (400, "bad content-length")),
    ("cl-empty", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", (400, "bad content-length")),
    ("cl-hex", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n", (400, "bad content-length")),
    ("cl-superscript-digit", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \xb2\r\n\r\n", (400, "bad content-length")),
    ("cl-19-digits", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000000000000\r\n\r\n", (400, "bad content-length")),
    ("te-gzip-chunked", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", (501, "unsupported transfer-encoding")),
    ("te-gzip", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", (501, "unsupported transfer-encoding")),
    ("te-chunked-twice-list", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", (501, "unsupported transfer-encoding")),
    ("te-duplicate", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", (400, "duplicate transfer-encoding")),
    ("te-in-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", (400, "transfer-encoding in HTTP/1.0")),
    # chunked body
    ("chunk-size-zz", TE_CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n", (400, "bad chunk size")),
    ("chunk-size-empty", TE_CHUNKED + b"\r\n0\r\n\r\n", (400, "bad chunk size")),
    ("chunk-size-negative", TE_CHUNKED + b"-1\r\n0\r\n\r\n", (400, "bad chunk size")),
    ("chunk-size-17-digits", TE_CHUNKED + b"1" * 17 + b"\r\n", (400, "chunk size too long")),
    ("chunk-size-0x", TE_CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", (400, "bad chunk extension")),
    ("chunk-size-trailing-space", TE_CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", (400, "bad chunk extension")),
    ("chunk-ext-no-name", TE_CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n", (400, "bad chunk extension")),
    ("chunk-ext-exactly-1024-ok-then-bad-data", TE_CHUNKED + b"5;a=" + b"b" * 1021 + b"\r\nhelloX", (400, "missing CRLF after chunk data")),
    # A chunk-size line may be at most 16 + 1024 bytes before CRLF: 1041 is
    # rejected on length alone (also when it never ends), 1040 on its parts.
    ("chunk-line-1041", TE_CHUNKED + b"5;a=" + b"b" * 1037 + b"\r\nhello\r\n0\r\n\r\n", (400, "chunk size line too long")),
    ("chunk-line-1040", TE_CHUNKED + b"5;a=" + b"b" * 1036 + b"\r\nhello\r\n0\r\n\r\n", (400, "chunk extension too long")),
    ("chunk-line-partial-1041", TE_CHUNKED + b"5;a=" + b"b" * 1037, (400, "unexpected eof")),
    ("chunk-line-partial-1042", TE_CHUNKED + b"5;a=" + b"b" * 1038, (400, "chunk size line too long")),
    ("chunk-line-never-ends", TE_CHUNKED + b"5;a=" + b"b" * 1100, (400, "chunk size line too long")),
    ("chunk-ext-too-long", TE_CHUNKED + b"5;a=" + b"b" * 1100 + b"\r\nhello\r\n0\r\n\r\n", (400, "chunk size line too long")),
    ("chunk-ext-over-1024", TE_CHUNKED + b"5;a=" + b"b" * 1022 + b"\r\nhello\r\n0\r\n\r\n", (400, "chunk extension too long")),
    ("chunk-line-bare-lf", TE_CHUNKED + b"5\nhello\r\n0\r\n\r\n", (400, "bare LF")),
    ("chunk-missing-crlf", TE_CHUNKED + b"5\r\nhelloX\r\n0\r\n\r\n", (400, "missing CRLF after chunk data")),
    ("chunk-too-much-data", TE_CHUNKED + b"3\r\nhello\r\n0\r\n\r\n", (400, "missing CRLF after chunk data")),
    ("chunk-lf-only-after-data", TE_CHUNKED + b"5\r\nhello\n0\r\n\r\n", (400, "missing CRLF after chunk data")),
    ("chunk-cr-x-after-data", TE_CHUNKED + b"5\r\nhello\rX0\r\n\r\n", (400, "missing CRLF after chunk data")),
    ("trailer-obs-fold", TE_CHUNKED + b"0\r\nX: a\r\n b\r\n\r\n", (400, "obs-fold not allowed")),
    ("trailer-bad-value", TE_CHUNKED + b"0\r\nX: a\x00\r\n\r\n", (400, "bad header value")),
    ("trailer-bare-lf", TE_CHUNKED + b"0\r\nX: a\n\r\n", (400, "bare LF")),
    # Host
    ("missing-host", b"GET / HTTP/1.1\r\nX: y\r\n\r\n", (400, "missing host")),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", (400, "duplicate host")),
    ("host-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", (400, "bad host")),
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", (400, "bad host")),
    ("host-long-port", b"GET / HTTP/1.1\r\nHost: h:123456\r\n\r\n", (400, "bad host")),
    ("host-path", b"GET / HTTP/1.1\r\nHost: h/p\r\n\r\n", (400, "bad host")),
    ("host-bad-ipv6", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", (400, "bad host")),
    ("host-empty-origin-form", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", (400, "empty host")),
    ("host-bad-in-http10", b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n", (400, "bad host")),
    # EOF
    ("eof-in-request-line", b"GET / HTTP/1.1", (400, "unexpected eof")),
    ("eof-in-head", b"GET / HTTP/1.1\r\nHost: h\r\n", (400, "unexpected eof")),
    ("eof-lone-cr", b"\r", (400, "unexpected eof")),
    ("eof-in-cl-body", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello", (400, "unexpected eof")),
    ("eof-in-chunk-size", TE_CHUNKED + b"5", (400, "unexpected eof")),
    ("eof-in-chunk-data", TE_CHUNKED + b"5\r\nhel", (400, "unexpected eof")),
    ("eof-in-chunk-crlf", TE_CHUNKED + b"5\r\nhello\r", (400, "unexpected eof")),
    ("eof-in-trailers", TE_CHUNKED + b"0\r\nX: y\r\n", (400, "unexpected eof")),
    ("eof-in-second-request", GET + b"GET /2 HTTP/1.1\r\n", (400, "unexpected eof")),
]


@pytest.mark.parametrize("raw,expected", [r[1:] for r in BAD], ids=[r[0] for r in BAD])
def test_rejected_requests(raw: bytes, expected: tuple[int, str]) -> None:
    got = whole(raw)
    assert matches(got, expected), got
    assert bytewise(raw) == got


@pytest.mark.parametrize(
    "raw,expected",
    [r[1:] for r in BAD if r[2][1] != "unexpected eof"],
    ids=[r[0] for r in BAD if r[2][1] != "unexpected eof"],
)
def test_error_is_never_followed_by_a_request(raw: bytes, expected: tuple[int, str]) -> None:
    alone = whole(raw)
    for got in (whole(raw + VALID_FOLLOWER), bytewise(raw + VALID_FOLLOWER)):
        assert got == alone
        assert not any(isinstance(item, dict) and item["target"] == "/smuggled" for item in got)


def test_smuggling_cl_te_never_exposes_second_request() -> None:
    raw = (
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + VALID_FOLLOWER
    )
    assert whole(raw) == [("error", 400, "both content-length and transfer-encoding")]


# ---------------------------------------------------------------------------
# Limits (max_head_size, max_headers, max_uri_size, max_trailer_size)
# ---------------------------------------------------------------------------


def _head_of_size(n: int) -> bytes:
    """A valid head of exactly n bytes (n >= 40)."""
    base = b"GET / HTTP/1.1\r\nHost: h\r\nX: \r\n\r\n"
    pad = n - len(base)
    assert pad >= 0
    return b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * pad + b"\r\n\r\n"


LIMIT_ROWS: list[tuple[str, bytes, dict[str, int], Any]] = [
    ("head-exactly-at-limit", _head_of_size(200), {"max_head_size": 200}, [H(), *END]),
    ("head-one-over-limit", _head_of_size(201), {"max_head_size": 200}, (431, "request head too large")),
    ("huge-header-default", b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 20000 + b"\r\n\r\n", {}, (431, "request head too large")),
    ("huge-header-no-end", b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 20000, {}, (431, "request head too large")),
    ("request-line-over-head-limit", b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: h\r\n\r\n", {"max_head_size": 200, "max_uri_size": 1000}, (414, "request line too long")),
    ("request-line-no-end", b"GET /" + b"a" * 300, {"max_head_size": 200}, (414, "request line too long")),
    # Unterminated input is judged on its length alone, the same whole or split.
    ("request-line-partial-at-limit", b"GET /" + b"a" * 195, {"max_head_size": 200}, (400, "unexpected eof")),
    ("request-line-partial-over-limit", b"GET /" + b"a" * 196, {"max_head_size": 200}, (414, "request line too long")),
    ("head-partial-at-limit", b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 172, {"max_head_size": 200}, (400, "unexpected eof")),
    ("head-partial-over-limit", b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 173, {"max_head_size": 200}, (431, "request head too large")),
    ("huge-uri-default", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", {}, (414, "uri too long")),
    ("uri-exactly-at-limit", b"GET /" + b"a" * 99 + b" HTTP/1.1\r\nHost: h\r\n\r\n", {"max_uri_size": 100}, [H(target="/" + "a" * 99), *END]),
    ("uri-one-over-limit", b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: h\r\n\r\n", {"max_uri_size": 100}, (414, "uri too long")),
    ("headers-exactly-max", b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: 1\r\n" * 9 + b"\r\n", {"max_headers": 10}, [H(), *END]),
    ("too-many-headers", b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: 1\r\n" * 10 + b"\r\n", {"max_headers": 10}, (431, "too many header fields")),
    ("too-many-headers-default", b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: 1\r\n" * 100 + b"\r\n", {}, (431, "too many header fields")),
    (
        "leading-empty-lines-not-counted",
        b"\r\n\r\n" + _head_of_size(100),
        {"max_head_size": 100},
        [H(), *END],
    ),
    (
        "trailers-at-limit",
        TE_CHUNKED + b"0\r\nX: " + b"a" * 5 + b"\r\n\r\n",
        {"max_trailer_size": 12},
        [H(), ("eom", [("x", "aaaaa")]), "PAUSED", "CLOSED"],
    ),
    ("trailers-over-limit", TE_CHUNKED + b"0\r\nX: " + b"a" * 6 + b"\r\n\r\n", {"max_trailer_size": 12}, (431, "trailer section too large")),
    ("too-many-trailers", TE_CHUNKED + b"0\r\n" + b"T: 1\r\n" * 3 + b"\r\n", {"max_headers": 2}, (431, "too many trailer fields")),
]


@pytest.mark.parametrize("raw,limits,expected", [r[1:] for r in LIMIT_ROWS], ids=[r[0] for r in LIMIT_ROWS])
def test_limits(raw: bytes, limits: dict[str, int], expected: Any) -> None:
    got = whole(raw, **limits)
    assert matches(got, expected), got
    assert bytewise(raw, **limits) == got


def test_limit_errors_do_not_wait_for_end_of_head() -> None:
    """A head past the limit is rejected as soon as the limit is crossed,
    without the peer having to finish it (no unbounded buffering)."""
    p = RequestParser(max_head_size=100)
    p.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 200)
    with pytest.raises(ProtocolError) as e:
        p.next_event()
    assert e.value.status == 431
    p = RequestParser(max_head_size=100)
    p.feed(b"GET /" + b"a" * 200)
    with pytest.raises(ProtocolError) as e:
        p.next_event()
    assert e.value.status == 414


def test_bad_limits_rejected() -> None:
    with pytest.raises(ValueError):
        RequestParser(max_head_size=0)


# ---------------------------------------------------------------------------
# Streaming behaviour
# ---------------------------------------------------------------------------


def test_body_is_streamed_not_buffered() -> None:
    p = RequestParser()
    p.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    assert isinstance(p.next_event(), RequestHead)
    assert p.next_event() == Body(b"abc")
    assert p.next_event() is NEED_DATA
    p.feed(b"defghij" + b"GET")
    assert p.next_event() == Body(b"defghij")  # never past the declared length
    assert p.next_event() == EndOfMessage([])
    assert p.next_event() is PAUSED
    assert p.next_event() is PAUSED  # stays paused until start_next()
    assert p.buffered == 3
    p.start_next()
    assert p.next_event() is NEED_DATA
    p.feed(b" / HTTP/1.1\r\nHost: h\r\n\r\n")
    head = p.next_event()
    assert isinstance(head, RequestHead) and head.method == "GET"


def test_chunked_body_streamed_per_arrival() -> None:
    p = RequestParser()
    p.feed(TE_CHUNKED + b"a\r\n01234")
    assert isinstance(p.next_event(), RequestHead)
    assert p.next_event() == Body(b"01234")
    assert p.next_event() is NEED_DATA
    p.feed(b"56789\r\n0\r\n\r\n")
    assert p.next_event() == Body(b"56789")
    assert p.next_event() == EndOfMessage([])
    assert p.next_event() is PAUSED


def test_large_body_zero_copy() -> None:
    """A recv() buffer that is all body is handed out as-is."""
    p = RequestParser()
    p.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65536\r\n\r\n")
    assert isinstance(p.next_event(), RequestHead)
    data = bytes(65536)
    p.feed(data)
    ev = p.next_event()
    assert isinstance(ev, Body) and ev.data is data


def test_pipelined_bytes_wait_for_start_next() -> None:
    p = RequestParser()
    p.feed(GET + GET)
    assert isinstance(p.next_event(), RequestHead)
    assert p.next_event() == EndOfMessage([])
    assert p.next_event() is PAUSED
    assert p.buffered == len(GET)
    p.start_next()
    assert isinstance(p.next_event(), RequestHead)


def test_start_next_mid_message_is_a_bug() -> None:
    p = RequestParser()
    p.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n")
    p.next_event()
    with pytest.raises(RuntimeError):
        p.start_next()


def test_take_buffer_for_tunnels() -> None:
    p = RequestParser()
    p.feed(b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n\x16\x03\x01tls bytes")
    head = p.next_event()
    assert isinstance(head, RequestHead) and head.method == "CONNECT" and head.target == "h:443"
    assert p.next_event() == EndOfMessage([])
    assert p.next_event() is PAUSED
    assert p.take_buffer() == b"\x16\x03\x01tls bytes"
    assert p.buffered == 0
    assert p.next_event() is PAUSED  # detached: never parses again
    with pytest.raises(RuntimeError):
        p.feed(b"more")


def test_upgrade_then_take_buffer() -> None:
    p = RequestParser()
    p.feed(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
    head = p.next_event()
    assert isinstance(head, RequestHead) and head.upgrade == "websocket"
    assert p.next_event() == EndOfMessage([])
    assert p.take_buffer() == b"\x81\x05hello"


def test_eof_idle_after_request() -> None:
    p = RequestParser()
    p.feed(GET)
    p.feed(b"")
    assert isinstance(p.next_event(), RequestHead)
    assert p.next_event() == EndOfMessage([])
    assert p.next_event() is PAUSED
    p.start_next()
    assert p.next_event() is CLOSED
    assert p.next_event() is CLOSED
    with pytest.raises(RuntimeError):
        p.feed(b"x")


def test_dead_parser_ignores_input() -> None:
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\nHost: h\r\n\r\n")
    with pytest.raises(ProtocolError) as first:
        p.next_event()
    p.feed(GET)  # ignored
    p.start_next()  # no-op
    with pytest.raises(ProtocolError) as second:
        p.next_event()
    assert second.value is first.value
    assert (first.value.status, first.value.reason) == (400, "bare LF")
    assert str(first.value) == "400 bare LF"


def test_feed_accepts_bytes_like() -> None:
    p = RequestParser()
    p.feed(bytearray(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n"))
    p.feed(memoryview(b"ok"))
    assert isinstance(p.next_event(), RequestHead)
    ev = p.next_event()
    assert ev == Body(b"ok") and type(ev.data) is bytes


def test_events_are_frozen_slotted_dataclasses() -> None:
    p = RequestParser()
    p.feed(GET)
    head = p.next_event()
    assert type(head) is RequestHead
    with pytest.raises(FrozenInstanceError):
        head.method = "POST"  # type: ignore[misc]
    assert not hasattr(head, "__dict__")
    assert head == RequestHead("GET", "/", "1.1", [("host", "example.com")], None, False, True, False, None, "example.com")
    for cls in (Body, EndOfMessage):
        assert "__slots__" in cls.__dict__
    with pytest.raises(FrozenInstanceError):
        Body(b"x").data = b"y"  # type: ignore[misc]


def test_sentinels_are_distinct_and_named() -> None:
    assert len({id(NEED_DATA), id(PAUSED), id(CLOSED)}) == 3
    assert repr(NEED_DATA) == "NEED_DATA" and repr(PAUSED) == "PAUSED" and repr(CLOSED) == "CLOSED"


def test_same_host_revalidated_per_request_is_cached_but_correct() -> None:
    p = RequestParser()
    p.feed(GET + b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n" + b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n")
    for _ in range(2):
        assert isinstance(p.next_event(), RequestHead)
        p.next_event()
        p.start_next()
    with pytest.raises(ProtocolError) as e:
        p.next_event()
    assert e.value.reason == "bad host"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /x HTTP/1.1\r\nHost: h\r\nA: 1\r\nB:  2 \r\n\r\n",
        # Leading empty lines go through the incremental parser, the rest may
        # then take the fast path: both must agree (found by the fuzzer).
        b"\r\nGET / HTTP/1.1\r\n:Host: example.com\r\n\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nX : y\r\n\r\n",
        b"\r\nPOST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    ],
)
def test_every_two_way_split_gives_the_same_result(raw: bytes) -> None:
    reference = whole(raw)
    for cut in range(len(raw) + 1):
        assert drive([raw[:cut], raw[cut:]]) == reference, cut


# ---------------------------------------------------------------------------
# Serializer
# ---------------------------------------------------------------------------


def test_render_response_head() -> None:
    assert render_response_head(200, [("Content-Type", "text/plain"), ("content-length", "5")]) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 5\r\n\r\n"
    )
    assert render_response_head(404, []) == b"HTTP/1.1 404 Not Found\r\n\r\n"
    assert render_response_head(204, [], "1.0") == b"HTTP/1.0 204 No Content\r\n\r\n"
    assert render_response_head(299, [("x", "y")]) == b"HTTP/1.1 299 Unknown\r\nx: y\r\n\r\n"
    assert render_response_head(200, [("x-latin", "caf\xe9")]) == b"HTTP/1.1 200 OK\r\nx-latin: caf\xe9\r\n\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        [("x", "a\r\nSet-Cookie: evil=1")],
        [("x", "a\nb")],
        [("x", "a\rb")],
        [("x", "a\x00b")],
        [("x\r\ny", "v")],
        [("ok", "fine"), ("x\x00", "v")],
        [("x", "\u20ac")],  # not latin-1
    ],
)
def test_render_response_head_rejects_injection(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        render_response_head(200, headers)
    with pytest.raises(ValueError):
        encode_last_chunk(headers)


def test_render_response_head_bad_args() -> None:
    with pytest.raises(ValueError):
        render_response_head(200, [], "2.0")
    with pytest.raises(ValueError):
        render_response_head(1000, [])


def test_reasons_cover_required_codes() -> None:
    required = [100, 101, *range(200, 207), *range(301, 309), *range(400, 418), 421, 422, 425, 426, 428, 429, 431, 451, *range(500, 506)]
    for code in required:
        if code == 306:  # unused since RFC 7231; not a standard reason phrase
            continue
        assert code in REASONS, code
        assert render_response_head(code, []).startswith(b"HTTP/1.1 %d %s\r\n" % (code, REASONS[code]))
    assert REASONS[200] == b"OK" and REASONS[431] == b"Request Header Fields Too Large"


def test_encode_chunk() -> None:
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert encode_chunk(b"") == b""  # never a premature last-chunk
    assert encode_chunk(bytearray(b"ab")) == b"2\r\nab\r\n"


def test_encode_last_chunk() -> None:
    assert encode_last_chunk() == b"0\r\n\r\n"
    assert encode_last_chunk([]) == b"0\r\n\r\n"
    assert encode_last_chunk([("X-Sum", "1"), ("x-b", "2")]) == b"0\r\nX-Sum: 1\r\nx-b: 2\r\n\r\n"


def test_chunked_round_trip_through_parser() -> None:
    pieces = [b"a", b"", b"hello world", bytes(range(256))]
    body = b"".join(encode_chunk(x) for x in pieces) + encode_last_chunk([("X-Trailer", "v 1")])
    got = whole(TE_CHUNKED + body)
    assert got[1:] == [("body", b"".join(pieces)), ("eom", [("x-trailer", "v 1")]), "PAUSED", "CLOSED"]


# ---------------------------------------------------------------------------
# A keep-alive connection's repeated field section is parsed once
# ---------------------------------------------------------------------------


def _heads_on_one_connection(raws: list[bytes], bodies: list[bytes] | None = None) -> list[RequestHead | ProtocolError]:
    """Each head parsed by one parser in turn, as a keep-alive connection does (each request's
    body, as the parser frames it, goes to ``bodies``)."""
    p = RequestParser()
    out: list[RequestHead | ProtocolError] = []
    for raw in raws:
        p.feed(raw)
        try:
            ev = p.next_event()
        except ProtocolError as e:
            out.append(e)
            p = RequestParser()  # a dead parser stays dead; the next connection is a new one
            continue
        assert isinstance(ev, RequestHead)
        out.append(ev)
        body = b""
        while (rest := p.next_event()) is not PAUSED:  # its body, if any, then the next head
            assert rest is not NEED_DATA, raw
            if isinstance(rest, Body):
                body += rest.data
        if bodies is not None:
            bodies.append(body)
        p.start_next()
    return out


def _fresh(raw: bytes) -> RequestHead | ProtocolError:
    p = RequestParser()
    p.feed(raw)
    try:
        ev = p.next_event()
    except ProtocolError as e:
        return e
    assert isinstance(ev, RequestHead)
    return ev


def _same(a: RequestHead | ProtocolError, b: RequestHead | ProtocolError) -> bool:
    if isinstance(a, ProtocolError) or isinstance(b, ProtocolError):
        return isinstance(a, ProtocolError) and isinstance(b, ProtocolError) and a.status == b.status
    return head_summary(a) == head_summary(b)


FIELDS = b"Host: example.com\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n"


def test_repeated_fields_with_another_request_line_give_that_request() -> None:
    raws = [b"GET /a?x=1 HTTP/1.1\r\n" + FIELDS, b"DELETE /b HTTP/1.1\r\n" + FIELDS,
            b"GET /c HTTP/1.0\r\n" + FIELDS]
    heads = _heads_on_one_connection(raws)
    for raw, head in zip(raws, heads):
        assert _same(head, _fresh(raw)), (raw, head)
    a, b, c = heads
    assert isinstance(b, RequestHead) and b.method == "DELETE" and b.target == "/b"
    assert isinstance(c, RequestHead) and c.version == "1.0" and c.keep_alive  # 1.0 + keep-alive


def test_repeated_fields_are_a_new_list_each_time() -> None:
    """A handler that edits one request's headers must not edit the next one's."""
    p = RequestParser()
    heads = []
    for target in (b"/a", b"/b", b"/c"):
        p.feed(b"GET " + target + b" HTTP/1.1\r\n" + FIELDS)
        head = p.next_event()
        assert isinstance(head, RequestHead)
        heads.append(head)
        head.headers.append(("x-added", target.decode()))  # what a handler might do
        p.end_bodyless()
    assert [h.headers[-1] for h in heads] == [("x-added", "/a"), ("x-added", "/b"), ("x-added", "/c")]
    assert all(len(h.headers) == 4 for h in heads)


def test_fields_that_only_end_like_the_last_ones_are_parsed() -> None:
    """A head whose tail equals the last field section but that has more fields before it (or a
    broken request line) must not be taken for a repeat."""
    raws = [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-More: 1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1xxHost: a\r\n\r\n",     # the same tail, no line break before it
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: b\r\n\r\n"]  # as long as the last fields, not the same
    heads = _heads_on_one_connection(raws)
    assert isinstance(heads[1], RequestHead) and ("x-more", "1") in heads[1].headers
    assert isinstance(heads[3], ProtocolError) and heads[3].status == 400
    assert isinstance(heads[5], ProtocolError) and heads[5].status == 400
    assert isinstance(heads[7], RequestHead) and heads[7].host == "b"
    for raw, head in zip(raws, heads):
        assert _same(head, _fresh(raw)), raw


def test_repeated_fields_are_still_checked_against_the_request_line() -> None:
    """Semantics that depend on the request line (the version's framing rules, an absolute
    target with an empty Host) are checked for every head, not remembered."""
    te = b"Transfer-Encoding: chunked\r\nHost: a\r\n\r\n"
    heads = _heads_on_one_connection([b"POST / HTTP/1.1\r\n" + te + b"0\r\n\r\n", b"POST / HTTP/1.0\r\n" + te])
    assert isinstance(heads[0], RequestHead) and heads[0].chunked
    assert isinstance(heads[1], ProtocolError) and heads[1].status == 400


@pytest.mark.parametrize("seed", range(20))
def test_one_connection_parses_like_fresh_parsers(seed: int) -> None:
    """Differential: random sequences of heads (repeats, near-repeats, bad ones) on one parser
    give what a fresh parser gives for each."""
    import random

    rng = random.Random(seed)
    lines = [b"GET / HTTP/1.1", b"GET /x?y HTTP/1.0", b"HEAD /h HTTP/1.1", b"OPTIONS * HTTP/1.1",
             b"GET http://other.lan/p HTTP/1.1", b"GET / HTTP/2.0", b"G@T / HTTP/1.1"]
    sections = [(b"Host: a\r\n", b""), (b"Host: a\r\nConnection: close\r\n", b""), (b"Host: a\r\nHost: b\r\n", b""),
                (b"Host: \r\n", b""), (b"Host: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n", b""),
                (b"Host: a\r\nExpect: 100-continue\r\n", b""), (b"Accept: */*\r\n", b""),
                (b"Host: a\r\nBad Name: 1\r\n", b""), (b"Host: a\r\nContent-Length: 3\r\n", b"abc"),
                (b"Host: a\r\nTransfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n")]
    raws = []
    for _ in range(40):
        fields, body = rng.choice(sections)
        raws.append(rng.choice(lines) + b"\r\n" + fields + b"\r\n" + body)
    bodies: list[bytes] = []
    for raw, head in zip(raws, _heads_on_one_connection(raws, bodies)):
        assert _same(head, _fresh(raw)), raw
    # Each body framed as its own head says: what a repeated head frames wrongly shows here.
    assert bodies == [b"abc" if raw.endswith(b"abc") or raw.endswith(b"0\r\n\r\n") and b"chunked" in raw
                      else b"" for raw, head in zip(raws, _heads_on_one_connection(raws))
                      if isinstance(head, RequestHead)]


def test_a_large_field_section_is_not_remembered() -> None:
    """An idle connection must not hold a big head its client chose to send."""
    p = RequestParser()
    small = b"GET / HTTP/1.1\r\n" + FIELDS
    big = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: " + b"c" * 3000 + b"\r\n\r\n"
    for raw, remembered in ((small, True), (big, False), (small, True), (big, False)):
        p.feed(raw)
        assert isinstance(p.next_event(), RequestHead)
        p.end_bodyless()
        assert (p._last_parsed is not None) == remembered
        assert len(p._last_fields) < 2048


def test_a_remembered_request_line_is_held_to_each_parsers_uri_limit() -> None:
    """Request lines are remembered across connections; the target length limit is each
    parser's own, so a line another parser accepted is still refused here."""
    line = b"GET /" + b"a" * 80 + b" HTTP/1.1\r\n"
    roomy = _heads_on_one_connection([b"GET / HTTP/1.1\r\n" + FIELDS, line + FIELDS, line + FIELDS])
    assert all(isinstance(h, RequestHead) for h in roomy)
    p = RequestParser(max_uri_size=50)
    p.feed(b"GET / HTTP/1.1\r\n" + FIELDS)
    assert isinstance(p.next_event(), RequestHead)
    p.end_bodyless()
    p.feed(line + FIELDS)  # the same field section: the repeated-head path, the remembered line
    with pytest.raises(ProtocolError) as e:
        p.next_event()
    assert e.value.status == 414


def test_only_good_short_request_lines_are_remembered() -> None:
    from hemi.web.http1 import codec

    remembered = codec._request_line.__self__  # type: ignore[attr-defined]
    good, bad, long = b"GET /good-line HTTP/1.1", b"G@T /bad-line HTTP/1.1", b"GET /" + b"l" * 300 + b" HTTP/1.1"
    heads = _heads_on_one_connection([b"GET / HTTP/1.1\r\n" + FIELDS] + [raw + b"\r\n" + FIELDS
                                                                          for raw in (good, bad, good, long, long)])
    assert [type(h) for h in heads] == [RequestHead, RequestHead, ProtocolError, RequestHead, RequestHead, RequestHead]
    assert remembered[good] == ("GET", "/good-line", "1.1")
    assert bad not in remembered and long not in remembered
