"""The HTTP/1 response parser: bytes in, events out, whatever the split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hemi.web.http1.codec import (CLOSED, NEED_DATA, PAUSED, Body, EndOfMessage, ProtocolError, ResponseHead,
                                  ResponseParser)


def events(data: bytes, method: str = "GET", *, eof: bool = False, split: int = 0) -> list:
    """All events for ``data`` (fed whole, or ``split`` bytes at a time), bodies joined."""
    p = ResponseParser(method)
    out: list = []
    pieces = [data] if not split else [data[i:i + split] for i in range(0, len(data), split)]
    for piece in pieces + ([b""] if eof else []):
        p.feed(piece)
        while True:
            ev = p.next_event()
            if ev is NEED_DATA or ev is PAUSED or ev is CLOSED:
                if ev is not NEED_DATA:
                    out.append(ev)
                break
            if type(ev) is Body and out and type(out[-1]) is Body:
                out[-1] = Body(out[-1].data + ev.data)
            else:
                out.append(ev)
        if out and out[-1] in (PAUSED, CLOSED):
            break
    return out


def head_of(data: bytes, method: str = "GET") -> ResponseHead:
    ev = events(data, method)[0]
    assert type(ev) is ResponseHead
    return ev


def error_of(data: bytes, method: str = "GET", eof: bool = True) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        events(data, method, eof=eof)
    return info.value


def test_content_length() -> None:
    evs = events(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
    head = evs[0]
    assert (head.version, head.status, head.reason) == ("1.1", 200, "OK")
    assert head.headers == [("content-type", "text/plain"), ("content-length", "5")]
    assert head.content_length == 5 and not head.chunked and head.keep_alive
    assert evs[1:] == [Body(b"hello"), EndOfMessage([]), PAUSED]


def test_chunked_with_trailers() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Sum: 9\r\n\r\n"
    evs = events(data)
    assert evs[0].chunked and evs[0].content_length is None
    assert evs[1:] == [Body(b"hello!"), EndOfMessage([("x-sum", "9")]), PAUSED]


def test_until_close() -> None:
    evs = events(b"HTTP/1.1 200 OK\r\n\r\nsome bytes", eof=True)
    assert not evs[0].keep_alive
    assert evs[1:] == [Body(b"some bytes"), EndOfMessage([]), PAUSED]


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    evs = events(b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status)
    assert evs[1:] == [EndOfMessage([]), PAUSED]
    assert evs[0].content_length == 10  # reported, not read


def test_head_response_has_no_body() -> None:
    evs = events(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", "HEAD")
    assert evs[0].content_length == 1234
    assert evs[1:] == [EndOfMessage([]), PAUSED]


def test_interim_then_final() -> None:
    data = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    evs = events(data)
    assert [e.status for e in evs if type(e) is ResponseHead] == [100, 103, 201]
    assert evs[-3:] == [Body(b"ok"), EndOfMessage([]), PAUSED]


def test_switching_protocols_hands_over_the_rest() -> None:
    p = ResponseParser()
    p.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello")
    head = p.next_event()
    assert head.status == 101 and head.upgrade == "websocket" and not head.keep_alive
    assert p.next_event() is PAUSED
    assert p.take_buffer() == b"\x81\x05hello"


@pytest.mark.parametrize("version,conn,keep", [
    ("1.1", None, True), ("1.1", "close", False), ("1.1", "Keep-Alive, X", True),
    ("1.0", None, False), ("1.0", "keep-alive", True), ("1.1", "foo, close", False),
])
def test_keep_alive(version: str, conn: str | None, keep: bool) -> None:
    field = f"Connection: {conn}\r\n".encode() if conn else b""
    head = head_of(b"HTTP/%s 200 OK\r\n%sContent-Length: 0\r\n\r\n" % (version.encode(), field))
    assert head.keep_alive is keep


def test_reason_may_be_empty_or_missing() -> None:
    assert head_of(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n").reason == ""
    assert head_of(b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n").status == 404
    assert head_of(b"HTTP/1.1 599 Whatever it is\xe9\r\nContent-Length: 0\r\n\r\n").reason == "Whatever it is\xe9"


def test_keep_alive_sequence_with_start_next() -> None:
    p = ResponseParser("HEAD")
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert p.next_event().status == 200
    assert p.next_event() == EndOfMessage([])
    assert p.next_event() is PAUSED
    p.start_next("GET")
    assert p.next_event().content_length == 3
    assert p.next_event() == Body(b"abc")
    assert p.next_event() == EndOfMessage([])


def test_closed_before_any_byte() -> None:
    assert events(b"", eof=True) == [CLOSED]


@pytest.mark.parametrize("data,reason", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", "unexpected eof"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "unexpected eof"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "unexpected eof"),
    (b"HTTP/2.0 200 OK\r\n\r\n", "http version not supported"),
    (b"ICY 200 OK\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 099 Low\r\n\r\n", "bad status code"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
     "both content-length and transfer-encoding"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", "duplicate content-length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad content-length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported transfer-encoding"),
    (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "transfer-encoding in HTTP/1.0"),
    (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "bad header name"),
    (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "bare CR"),
    (b"HTTP/1.1 200 OK\r\nX: 1\n\r\n", "bare LF"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
])
def test_errors_are_bad_gateway(data: bytes, reason: str) -> None:
    err = error_of(data)
    assert (err.status, err.reason) == (502, reason)


def test_error_is_sticky() -> None:
    p = ResponseParser()
    p.feed(b"NOPE\r\n\r\n")
    for _ in range(2):
        with pytest.raises(ProtocolError):
            p.next_event()


def test_head_size_limit() -> None:
    p = ResponseParser(max_head_size=1024)
    p.feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 2000 + b"\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        p.next_event()
    assert (info.value.status, info.value.reason) == (502, "response head too large")


def test_request_parser_errors_keep_their_status() -> None:
    # The shared readers report request errors with the request's status, responses with 502.
    from hemi.web.http1.codec import RequestParser
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    p.feed(b"")
    p.next_event(), p.next_event()
    with pytest.raises(ProtocolError) as info:
        p.next_event()
    assert info.value.status == 400


SAMPLES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhello world",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil close body",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SAMPLES), st.integers(min_value=1, max_value=40))
def test_any_split_gives_the_same_events(data: bytes, split: int) -> None:
    assert events(data, eof=True, split=split) == events(data, eof=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_gives_events_or_protocol_errors(data: bytes) -> None:
    try:
        events(b"HTTP/1.1 200 OK\r\n" + data, eof=True, split=7)
    except ProtocolError as e:
        assert e.status == 502


# -- heads parsed before come from a cache, with the framing they set ----------------------------------


def test_a_repeated_head_frames_each_response_as_the_first() -> None:
    """The same head bytes twice, for GET (a 5-byte body) and for HEAD (no body): each parser
    gets the framing of its own request, whatever the other left in the cache."""
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Cached: yes\r\n\r\nhello"
    for _ in range(2):
        assert events(data)[1:] == [Body(b"hello"), EndOfMessage([]), PAUSED]
        assert events(data, "HEAD")[1:] == [EndOfMessage([]), PAUSED]
    assert head_of(data) is head_of(data)   # one immutable head serves every response


def test_a_cached_head_still_meets_each_parsers_field_limit() -> None:
    data = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nContent-Length: 0\r\n\r\n"
    assert head_of(data).status == 200      # cached by a parser allowing 200 fields
    strict = ResponseParser("GET", max_headers=2)
    strict.feed(data)
    with pytest.raises(ProtocolError):
        strict.next_event()


def test_interim_and_chunked_heads_are_framed_every_time() -> None:
    data = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n")
    for _ in range(2):
        evs = events(data)
        assert [e.status for e in evs if type(e) is ResponseHead] == [100, 200]
        assert evs[-3:] == [Body(b"abc"), EndOfMessage([]), PAUSED]


# -- take_whole: one call for a known head with all of its body ----------------------------------------


def test_take_whole_answers_a_known_head_with_its_whole_body_in_one_call() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Whole: 1\r\n\r\nhello"
    p = ResponseParser("GET", keep_raw=True)
    assert p.take_whole(data) is None           # a head never parsed: the events path
    p.feed(data)
    first = [p.next_event() for _ in range(4)]
    assert first[1:] == [Body(b"hello"), EndOfMessage([]), PAUSED]
    for _ in range(3):                          # now known: head and body in one call, each time
        p.start_next("GET")
        got = p.take_whole(data)
        assert got is not None and got[0] is first[0] and got[1] == b"hello"
        assert p.next_event() is PAUSED and p.buffered == 0   # where EndOfMessage leaves it


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Whole: 1\r\n\r\nhel",           # the body not all here
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Whole: 1\r\n\r\nhelloHTTP/1.1",  # bytes after it
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Whole: 1\r\n",                  # not even the head
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",  # chunked
    b"HTTP/1.1 200 OK\r\nX-Whole: 1\r\n\r\nhello",                              # until close
])
def test_take_whole_leaves_anything_else_to_the_events(data: bytes) -> None:
    """Not exactly one sized response: None, nothing consumed, and feeding gives the very
    events a parser that never tried take_whole gives."""
    for _ in range(2):
        events(data)                             # any head among them is known now

    def drive(p: ResponseParser) -> list:
        p.feed(data)
        out = []
        for _ in range(4):
            ev = p.next_event()
            out.append(ev)
            if ev is NEED_DATA or ev is PAUSED:
                break
        return out

    tried = ResponseParser("GET")
    assert tried.take_whole(data) is None
    assert drive(tried) == drive(ResponseParser("GET"))


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Whole: 1\r\n\r\nhel",           # the body not all here
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Whole: 1\r\n\r\nhelloHTTP/1.1",  # bytes after it
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Whole: 1\r\n\r\n",              # the head alone
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Whole: 1\r\n",                  # not even the head
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Whole: 12\r\n\r\nhello",       # a longer head
])
def test_take_whole_after_a_response_it_took_is_as_strict(data: bytes) -> None:
    """A parser remembers the head of the last response it took whole, and knows the next
    one by its first bytes; what is not exactly that head with all of its body is still left
    to the events, nothing consumed."""
    known = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Whole: 1\r\n\r\nhello"
    events(known)
    p = ResponseParser("GET")
    assert p.take_whole(known) is not None
    p.start_next("GET")
    got = p.take_whole(data)
    if data.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Whole: 12"):
        assert got is None or got[1] == b"hello"   # another head: the cache decides, never the last one
        if got is not None:
            return
    else:
        assert got is None
    p.feed(data)
    fresh = ResponseParser("GET")
    fresh.feed(data)
    assert [p.next_event() for _ in range(3)] == [fresh.next_event() for _ in range(3)]


def test_take_whole_after_a_get_knows_a_head_requests_response_has_no_body() -> None:
    """The same head bytes frame a body for GET and none for HEAD: what the parser remembers
    of the last response it took is for the kind of request it answered."""
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Kind: 1\r\n\r\n"
    events(data + b"abc")
    events(data, "HEAD")
    p = ResponseParser("GET")
    assert p.take_whole(data + b"abc") is not None
    p.start_next("HEAD")
    got = p.take_whole(data)
    assert got is not None and got[1] == b""
    assert p.next_event() is PAUSED
    p.start_next("GET")
    assert p.take_whole(data) is None          # a GET's response: its 3 bytes are missing
    got = p.take_whole(data + b"abc")
    assert got is not None and got[1] == b"abc"


def test_take_whole_only_starts_a_response() -> None:
    """Bytes already buffered, a HEAD request's response, a parser past the head: None."""
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    events(data)
    p = ResponseParser("GET")
    p.feed(data[:5])
    assert p.take_whole(data) is None          # something buffered before it
    h = ResponseParser("HEAD")
    assert h.take_whole(data) is None          # a HEAD response has no body: 2 bytes too many
    events(data[:-2], "HEAD")
    assert h.take_whole(data[:-2])[1] == b""   # type: ignore[index]
    g = ResponseParser("GET")
    g.feed(data[:-1])
    g.next_event()
    assert g.take_whole(b"i") is None           # inside a body


@pytest.mark.parametrize("cut", [5, 17, 36])   # in the status line, after it, inside the fields
def test_take_whole_never_starts_over_a_head_parsed_in_part(cut: int) -> None:
    """A head the incremental parser has begun (start line read, fields scanned) is still in
    the buffer, so take_whole declines the rest instead of taking a cached head from it."""
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    events(data)  # the head is in the cache
    p = ResponseParser("GET")
    p.feed(data[:cut])
    assert p.next_event() is NEED_DATA
    assert p.take_whole(data) is None
    p.feed(data[cut:])
    head = p.next_event()
    assert type(head) is ResponseHead and head.status == 200
    assert p.next_event() == Body(b"hi")
