"""Writes held to the end of the loop iteration (hemi.net.batch): a held response goes out once
the iteration's callbacks are done, in one write per connection, and nothing a connection does
afterwards (a streamed write, a close, a half-close, a handover) lets bytes overtake it or lose
it; an abort drops it."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from typing import Any

import pytest

import hemi.contrib._all  # noqa: F401  (registers app, rule, servers...)
from hemi.core.stage import Dirs, Stage
from hemi.net.address import Address
from hemi.net.backend import BackendConn, BackendError, Node
from hemi.net.batch import Holder, WriteBatch, batch_for
from hemi.web.http1.conn import Http1Conn

from .fake_transport import RecordingTransport


CONF = '''
stage {
    app "a" { .hostnames = ("*") .accessLog = false
        rule $path == "/one" { .returnCode = 200 .returnText = "one" }
        rule $path == "/two" { .returnCode = 200 .returnText = "two" }
    }
    httpxServer "main" { .address = "127.0.0.1:0" .forApps = ("a") }
}
'''


async def _conn() -> tuple[Stage, Http1Conn, RecordingTransport]:
    stage = Stage.from_text(CONF, Dirs.under(tempfile.mkdtemp()))
    await stage.launch()
    server = stage.get("server", "main")
    conn = Http1Conn(server, server.gates[0])  # type: ignore[union-attr,arg-type]
    transport = RecordingTransport()
    conn.connection_made(transport)
    return stage, conn, transport


async def _end(stage: Stage, conn: Http1Conn) -> None:
    conn.connection_lost(None)  # leaves the gate: the stage's shutdown does not wait for it
    await stage.shutdown()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_response_is_held_until_the_iteration_ends_then_written_once() -> None:
    async def main() -> None:
        stage, conn, t = await _conn()
        conn.data_received(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n")
        assert t.events == []  # answered inline, but held
        await asyncio.sleep(0)
        assert len(t.events) == 1 and t.out.startswith(b"HTTP/1.1 200 OK\r\n") and t.out.endswith(b"\r\n\r\none")
        await _end(stage, conn)
    _run(main())


def test_pipelined_responses_of_one_iteration_go_out_in_one_write_in_order() -> None:
    async def main() -> None:
        stage, conn, t = await _conn()
        conn.data_received(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\nGET /two HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.sleep(0)
        assert len(t.events) == 1
        out = t.out
        assert out.count(b"HTTP/1.1 200 OK") == 2 and out.index(b"one") < out.index(b"two") and out.endswith(b"two")
        await _end(stage, conn)
    _run(main())


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    async def main() -> None:
        stage, conn, t = await _conn()
        conn.data_received(b"GET /one HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        # The reply says "connection: close": the connection closes right after it, and the
        # held bytes go first.
        assert [e[0] for e in t.events] == ["write", "close"]
        assert b"connection: close\r\n" in t.out and t.out.endswith(b"one")
        await asyncio.sleep(0)
        assert [e[0] for e in t.events] == ["write", "close"]  # nothing written twice

        stage2, conn2, t2 = await _conn()
        conn2.data_received(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n")
        conn2._close(abort=True)
        await asyncio.sleep(0)
        assert t2.events == [("abort",)]
        await _end(stage, conn)
        await _end(stage2, conn2)
    _run(main())


def test_a_streamed_body_never_overtakes_its_held_head() -> None:
    async def main() -> None:
        stage, conn, t = await _conn()
        conn.data_received(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n")
        t.clear()
        await asyncio.sleep(0)  # (the first exchange's held reply is written; start clean)
        t.clear()
        conn.send_head(200, [("content-type", "text/plain")], None)  # a streamed response: head held
        assert t.events == []
        await conn.write(b"piece")
        assert t.events[0][1].startswith(b"HTTP/1.1 200 OK") and b"transfer-encoding: chunked" in t.events[0][1]
        assert t.events[1][1] == b"5\r\npiece\r\n"
        await _end(stage, conn)
    _run(main())


def test_a_handover_sends_the_held_bytes_to_the_old_peer_first() -> None:
    async def main() -> None:
        stage, conn, t = await _conn()
        conn.data_received(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n")
        transport, rest = conn.take_over(asyncio.Protocol())
        assert [e[0] for e in t.events] == ["write", "protocol"]
        await _end(stage, conn)
    _run(main())


def _backend_conn(loop: asyncio.AbstractEventLoop) -> tuple[BackendConn, RecordingTransport]:
    node = Node(None, Address("127.0.0.1", 9))
    conn = BackendConn(node, loop=loop)
    t = RecordingTransport()
    conn.connection_made(t)
    return conn, t


def test_backend_writes_are_held_coalesced_and_flushed_before_anything_else() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        conn, t = _backend_conn(loop)
        conn.write(b"head;")
        conn.write(b"body")
        assert t.events == []
        await asyncio.sleep(0)
        assert t.events == [("write", b"head;body")]  # one write for the iteration

        t.clear()
        conn.write(b"a")
        conn.writelines([b"b", b"c"])  # a direct write sends the held bytes first
        assert t.out == b"abc"

        t.clear()
        conn.write(b"x")
        await conn.drain()
        assert t.events == [("write", b"x")]

        t.clear()
        conn.write(b"y")
        conn.write_eof()
        assert t.events == [("write", b"y"), ("eof",)]

        t.clear()
        conn.write(b"last")
        conn.close()
        assert t.events == [("write", b"last"), ("close",)]

        conn2, t2 = _backend_conn(loop)
        conn2.write(b"dropped")
        conn2.abort()
        await asyncio.sleep(0)
        assert t2.events == [("abort",)]

        conn3, t3 = _backend_conn(loop)
        conn3.write(b"lost")
        conn3.connection_lost(ConnectionResetError())
        await asyncio.sleep(0)
        assert t3.events == []
        with pytest.raises(BackendError):
            conn3.write(b"more")
    _run(main())


def test_one_failing_connection_does_not_hold_back_the_others(caplog: pytest.LogCaptureFixture) -> None:
    class Conn(Holder):
        def __init__(self, batch: WriteBatch) -> None:
            self.transport = None
            self.held = None
            self.held_bytes = 0
            self.batch = batch
            self.flushed = 0

    class Broken(Conn):
        def flush(self) -> None:
            raise RuntimeError("boom")

    class Good(Conn):
        def flush(self) -> None:
            self.flushed += 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        batch = WriteBatch(loop)
        good = Good(batch)
        Broken(batch).hold(b"x")
        good.hold(b"y")
        assert batch.scheduled and len(batch.pending) == 2
        await asyncio.sleep(0)
        assert good.flushed == 1 and not batch.scheduled and batch.pending == []
        assert batch_for(loop) is batch_for(loop)

    with caplog.at_level(logging.ERROR, logger="hemi.net"):
        _run(main())
    assert "flushing" in caplog.text and "boom" in caplog.text


def test_pipelined_big_responses_still_stop_at_the_transports_high_water_mark() -> None:
    """Held bytes beyond a limit go out at once, so the transport's pause_writing still stops
    the connection from answering more pipelined requests than the client reads."""
    big = "x" * 40000
    conf = CONF.replace('.returnText = "one"', f'.returnText = "{big}"')

    class _Slow(RecordingTransport):
        protocol: Any = None

        def write(self, data: bytes) -> None:
            super().write(data)
            if len(self.out) > 200_000 and not self.protocol.write_paused:
                self.protocol.pause_writing()  # the client reads nothing: the buffer fills

    async def main() -> None:
        stage = Stage.from_text(conf, Dirs.under(tempfile.mkdtemp()))
        await stage.launch()
        server = stage.get("server", "main")
        conn = Http1Conn(server, server.gates[0])  # type: ignore[union-attr,arg-type]
        t = _Slow()
        t.protocol = conn
        conn.connection_made(t)
        conn.data_received(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n" * 100)
        await asyncio.sleep(0)
        answered = t.out.count(b"HTTP/1.1 200 OK")
        assert conn.write_paused and conn.read_paused
        assert 5 <= answered <= 10, answered  # ~200 KB of 40 KB replies, not all 100 of them
        conn.resume_writing()
        await asyncio.sleep(0)
        assert t.out.count(b"HTTP/1.1 200 OK") > answered  # reading on once the client reads
        await _end(stage, conn)
    _run(main())
