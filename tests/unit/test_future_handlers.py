"""A handler's ``asyncio.Future`` is waited on by the HTTP/1 connection without a task, and read
as the rule would read it: True (or None once answered) ends the exchange, anything else lets
the later rules try; errors answer as from a task. Also the raw field lines a proxy relays
(``Response.raw_head``, ``ResponseParser(keep_raw=True)``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import hemi.contrib._all  # noqa: F401  (registers app, rule, servers...)
from hemi.core.stage import Stage
from hemi.web.deferred import Deferred
from hemi.web.errors import HTTPError
from hemi.web.handlet import Handlet
from hemi.web.http1.codec import ResponseParser
from hemi.web.http1.conn import Http1Conn

from ..stageutil import stage_with_handlet
from .fake_transport import RecordingTransport, recorded_conn


class _Later(Handlet):
    """Returns a future the test settles (``pending``); ``/raw`` answers with raw fields."""

    pending: "list[tuple[asyncio.Future[Any], Any]]" = []

    def handle(self, req: Any, resp: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        _Later.pending.append((fut, resp))
        return fut


CONF = '''
stage {
    app "a" { .hostnames = ("*") .accessLog = false
        rule { _testLater {} }
        rule $path == "/second" { .returnCode = 200 .returnText = "second" }
    }
    httpxServer "main" { .address = "127.0.0.1:0" .forApps = ("a") }
}
'''


async def _serve() -> tuple[Stage, Http1Conn, RecordingTransport]:
    """A real stage, app and connection; only the client's transport is a recorder."""
    stage = await stage_with_handlet("_testLater", _Later, CONF)
    conn, transport = recorded_conn(stage)
    _Later.pending.clear()
    return stage, conn, transport


async def _request(conn: Http1Conn, path: str) -> "tuple[asyncio.Future[Any], Any]":
    conn.data_received(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    fut, resp = _Later.pending.pop()
    assert conn.task is fut  # waited on as it is: no task wraps it
    return fut, resp


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_future_answers_falls_through_and_fails_like_a_task() -> None:
    async def main() -> None:
        stage, conn, t = await _serve()
        fut, resp = await _request(conn, "/x")
        resp.send(b"done", "text/plain")
        fut.set_result(True)
        await _settle()
        assert t.out.startswith(b"HTTP/1.1 200 OK\r\n") and t.out.endswith(b"\r\n\r\ndone")
        assert conn.req is None and conn.task is None  # the exchange ended: the next may come

        t.out = b""
        fut, resp = await _request(conn, "/second")
        fut.set_result(False)  # not answered: the next rule's turn
        await _settle()
        assert t.out.startswith(b"HTTP/1.1 200 OK\r\n") and t.out.endswith(b"second"), t.out
        assert conn.req is None

        t.out = b""
        fut, resp = await _request(conn, "/nothing")
        fut.set_result(None)  # nothing sent, no later rule matches: 404
        await _settle()
        assert t.out.startswith(b"HTTP/1.1 404 "), t.out

        t.out = b""
        fut, resp = await _request(conn, "/x")
        resp.send(b"sent")
        fut.set_result(None)  # None once answered counts as answered
        await _settle()
        assert t.out.startswith(b"HTTP/1.1 200 OK\r\n") and t.out.endswith(b"sent") and conn.req is None

        t.out = b""
        fut, resp = await _request(conn, "/x")
        fut.set_exception(HTTPError(503, "busy"))
        await _settle()
        assert t.out.startswith(b"HTTP/1.1 503 "), t.out
        assert conn.req is None

        t.out = b""
        fut, resp = await _request(conn, "/x")
        fut.set_exception(ValueError("bug"))
        await _settle()
        assert t.out.startswith(b"HTTP/1.1 500 "), t.out

        t.out = b""
        fut, resp = await _request(conn, "/x")
        conn.connection_lost(None)  # the client left: the future is cancelled, nothing is written
        await _settle()
        assert fut.cancelled() and t.out == b""
        await stage.shutdown()

    asyncio.run(main())


def test_raw_head_is_sent_as_is_after_the_tuples() -> None:
    async def main() -> None:
        stage, conn, t = await _serve()
        fut, resp = await _request(conn, "/x")
        resp.headers.append(("x-first", "1"))
        resp.raw_head = b"Content-Type: text/x\r\nETag: \"a\"\r\n"
        resp.send(b"body")
        fut.set_result(True)
        await _settle()
        head, _, body = t.out.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[1:4] == [b"x-first: 1", b"Content-Type: text/x", b"ETag: \"a\""], lines
        assert b"content-length: 4" in lines and body == b"body"
        assert not any(line.lower().startswith(b"content-type: application") for line in lines)

        t.out = b""
        fut, resp = await _request(conn, "/x")
        resp.raw_head = b"X-Upstream: 1\r\n"
        fut.set_exception(HTTPError(502, "bad"))  # an error page never carries the relayed fields
        await _settle()
        assert t.out.startswith(b"HTTP/1.1 502 ") and b"X-Upstream" not in t.out
        conn.connection_lost(None)
        await stage.shutdown()

    asyncio.run(main())


@pytest.mark.parametrize("split", [0, 30])
def test_response_parser_keeps_the_raw_fields(split: int) -> None:
    data = b"HTTP/1.1 200 OK\r\nServer: up\r\nX-A:  b \r\nContent-Length: 2\r\n\r\nhi"
    p = ResponseParser("GET", keep_raw=True)
    if split:
        p.feed(data[:split])
        p.next_event()
        p.feed(data[split:])
    else:
        p.feed(data)
    head = p.next_event()
    assert head.headers == [("server", "up"), ("x-a", "b"), ("content-length", "2")]  # type: ignore[union-attr]
    # Whole: the very bytes; in pieces: the fields rendered back, one line each, same order.
    expected = b"Server: up\r\nX-A:  b \r\nContent-Length: 2\r\n" if not split else \
        b"server: up\r\nx-a: b\r\ncontent-length: 2\r\n"
    assert head.raw == expected  # type: ignore[union-attr]
    plain = ResponseParser("GET")
    plain.feed(data)
    assert plain.next_event().raw == b""  # type: ignore[union-attr]


# -- Deferred: the connection hears of the answer in the callback that settles it ------------------------


class _Hooked(Deferred):
    """A Deferred whose producer records that its consumer gave up."""

    __slots__ = ("gave_up",)

    def __init__(self, loop: Any, gave_up: Any) -> None:
        super().__init__(loop)
        self.gave_up = gave_up

    def _given_up(self) -> None:
        self.gave_up()


class _Deferring(Handlet):
    """Returns a Deferred the test settles; records whether its producer heard of a cancel."""

    pending: "list[tuple[Any, Any]]" = []
    cancelled: list[bool] = []

    def handle(self, req: Any, resp: Any) -> Any:
        d = _Hooked(asyncio.get_running_loop(), lambda: _Deferring.cancelled.append(True))
        _Deferring.pending.append((d, resp))
        return d


DEFERRING_CONF = CONF.replace("_testLater", "_testDeferring")


async def _serve_deferring() -> tuple[Stage, Http1Conn, RecordingTransport]:
    stage = await stage_with_handlet("_testDeferring", _Deferring, DEFERRING_CONF)
    conn, transport = recorded_conn(stage)
    _Deferring.pending.clear()
    _Deferring.cancelled.clear()
    return stage, conn, transport


def test_a_deferred_ends_the_exchange_within_the_call_that_settles_it() -> None:
    async def main() -> None:
        stage, conn, t = await _serve_deferring()
        # Two pipelined requests: the second is read as soon as the first is answered.
        conn.data_received(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n")
        d, resp = _Deferring.pending.pop()
        assert conn.task is d
        resp.send(b"a", "text/plain")
        d.set_result(True)
        # No loop pass yet: the exchange ended and the next request is already waiting on its own.
        assert len(_Deferring.pending) == 1 and conn.task is _Deferring.pending[0][0]
        d2, resp2 = _Deferring.pending.pop()
        d2.set_exception(HTTPError(503, "busy"))  # an error goes the task's way
        await _settle()
        assert t.out.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 503 " in t.out, t.out
        assert conn.req is None

        t.out = b""
        conn.data_received(b"GET /second HTTP/1.1\r\nhost: x\r\n\r\n")
        d, _ = _Deferring.pending.pop()
        d.set_result(False)  # not answered: the later rule answers, as with a future
        await _settle()
        assert t.out.endswith(b"second"), t.out

        conn.data_received(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n")
        d, _ = _Deferring.pending.pop()
        t.out = b""
        conn.connection_lost(None)  # the client left: the producer's hook runs at once
        assert d.cancelled() and _Deferring.cancelled == [True] and t.out == b""
        d.set_result(True)          # a late answer is ignored
        await stage.shutdown()

    asyncio.run(main())


def test_a_deferred_can_be_awaited_and_an_awaiter_cancelled_cancels_it() -> None:
    """The rules' slow path (and the HTTP/2 and HTTP/3 streams to come) await what handlers return."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        d = Deferred(loop)
        waiter = loop.create_task(_await(d))
        await asyncio.sleep(0)
        d.set_result(True)
        assert await waiter is True

        hooked: list[int] = []
        d = _Hooked(loop, lambda: hooked.append(1))
        waiter = loop.create_task(_await(d))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert d.cancelled() and hooked == [1]

        d = Deferred(loop)
        d.set_exception(HTTPError(502, "x"))
        with pytest.raises(HTTPError):
            await d
        heard: list[Any] = []
        d.listen(heard.append)  # already settled: told at once
        assert heard == [d]

    async def _await(d: Any) -> Any:
        return await d

    asyncio.run(main())
