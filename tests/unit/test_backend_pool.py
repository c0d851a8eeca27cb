"""The backend pool in-process (a real stage, real sockets to a local echo server): per-node
connection caps with their bounded, timed waiting queue, the synchronous ``take``, the
balancer's preference for nodes below their cap, and connections that hand their input to a
receiver instead of buffering it for reads."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import hemi.contrib._all  # noqa: F401
from hemi.config.errors import ConfigError
from hemi.core.stage import Dirs, Stage
from hemi.net.backend import BackendTimeout, ConnectError

from ..stageutil import make_stage

pytestmark = pytest.mark.timeout(30)


async def echo_server() -> tuple[asyncio.AbstractServer, str, list[str]]:
    """Echoes what it gets; records opens. "sleep" makes it answer nothing."""
    events: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        events.append("open")
        try:
            while data := await reader.read(65536):
                if data != b"sleep":
                    writer.write(data)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}", events


def run(tmp_path: Path, backend: str, body) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        server, addr, events = await echo_server()
        stage = await make_stage(tmp_path, backend.replace("ADDR", addr))
        try:
            await body(stage.get("backend", "b"), events)
        finally:
            await stage.shutdown()
            server.close()

    asyncio.run(main())


def test_a_full_node_queues_requests_and_hands_released_connections_over(tmp_path: Path) -> None:
    async def body(b, events) -> None:  # type: ignore[no-untyped-def]
        node = b.nodes[0]
        assert node.max_conns == 2
        first, second = await b.acquire(), await b.acquire()
        assert node.in_use == 2 and node.full and events.count("open") == 2
        third = asyncio.ensure_future(b.acquire())
        fourth = asyncio.ensure_future(b.acquire())
        await asyncio.sleep(0.05)
        assert not third.done() and not fourth.done() and len(node.waiters) == 2
        assert b.take(node) is None  # no jumping the queue, even with an idle connection later
        b.release(first, reusable=True)
        conn = await third
        assert conn is first and conn.requests == 2  # the released connection, not a new dial
        assert node.in_use == 2 and not fourth.done()
        b.release(second, reusable=False)  # closed: the waiter dials a connection of its own
        conn4 = await fourth
        assert conn4 is not second and node.dials == 3 and node.in_use == 2
        b.release(conn, reusable=True)
        b.release(conn4, reusable=True)
        assert node.in_use == 0 and node.waiters == type(node.waiters)()

    run(tmp_path, 'tcpsBackend "b" { .nodes = (["address": "ADDR", "maxConns": 2]) }', body)


def test_the_queue_is_bounded_and_timed(tmp_path: Path) -> None:
    async def body(b, events) -> None:  # type: ignore[no-untyped-def]
        node = b.nodes[0]
        held = await b.acquire()
        waiting = asyncio.ensure_future(b.acquire())
        await asyncio.sleep(0.01)
        with pytest.raises(ConnectError, match="already wait"):
            await b.acquire()  # maxQueuedPerNode = 1: the next one is refused at once
        started = time.monotonic()
        with pytest.raises(BackendTimeout, match="queueTimeout"):
            await waiting
        assert 0.15 <= time.monotonic() - started < 1.0
        assert node.in_use == 1  # the timed-out waiter holds nothing
        b.release(held, reusable=True)
        assert node.in_use == 0

    run(tmp_path, 'tcpsBackend "b" { .nodes = (["address": "ADDR", "maxConns": 1]) .maxQueuedPerNode = 1 '
                  '.queueTimeout = 200ms }', body)


def test_a_cancelled_waiter_passes_its_slot_on(tmp_path: Path) -> None:
    async def body(b, events) -> None:  # type: ignore[no-untyped-def]
        node = b.nodes[0]
        held = await b.acquire()
        gone = asyncio.ensure_future(b.acquire())
        after = asyncio.ensure_future(b.acquire())
        await asyncio.sleep(0.01)
        gone.cancel()  # a client that went away while queued
        await asyncio.sleep(0.01)
        b.release(held, reusable=True)
        conn = await after
        assert conn is held and node.in_use == 1
        # Handed the slot and cancelled before it could use it: the slot is not lost.
        third = asyncio.ensure_future(b.acquire())
        fourth = asyncio.ensure_future(b.acquire())
        await asyncio.sleep(0.01)
        b.release(conn, reusable=True)  # resolves third's waiter...
        third.cancel()                  # ...which is cancelled before it runs
        assert (await fourth) is conn and node.in_use == 1

    run(tmp_path, 'tcpsBackend "b" { .nodes = (["address": "ADDR", "maxConns": 1]) }', body)


def test_take_and_the_balancer_prefer_nodes_below_their_cap(tmp_path: Path) -> None:
    async def body(b, events) -> None:  # type: ignore[no-untyped-def]
        x, y = b.nodes
        conns = [await b.acquire(), await b.acquire()]
        assert {c.node for c in conns} == {x, y}  # the full one is passed over, whatever the turn
        assert b.take(x) is None  # full (and nothing idle)
        for c in conns:
            b.release(c, reusable=True)
        node = b.pick()
        conn = b.take(node)
        assert conn is not None and conn in conns and node.in_use == 1 and conn.requests == 2
        b.release(conn, reusable=True)

    server2: list[asyncio.AbstractServer] = []

    async def main() -> None:
        s1, a1, _ = await echo_server()
        s2, a2, _ = await echo_server()
        server2.append(s2)
        stage = await make_stage(tmp_path, f'tcpsBackend "b" {{ .nodes = (["address": "{a1}"], ["address": "{a2}"]) '
                                           f'.maxConnsPerNode = 1 }}')
        try:
            await body(stage.get("backend", "b"), [])
        finally:
            await stage.shutdown()
            s1.close()
            s2.close()

    asyncio.run(main())


def test_keep_conn_gateways_cap_nodes_at_keep_conns(tmp_path: Path) -> None:
    async def body(b, events) -> None:  # type: ignore[no-untyped-def]
        b.cap_nodes_at_keep_conns()
        assert [n.max_conns for n in b.nodes] == [3, 7, 0]  # an explicit maxConns wins; keepConns 0: no cap

    run(tmp_path, 'tcpsBackend "b" { .nodes = (["address": "ADDR", "keepConns": 3], '
                  '["address": "127.0.0.1:1", "keepConns": 3, "maxConns": 7], ["address": "127.0.0.1:2", "keepConns": 0]) }',
        body)


def test_a_listening_connection_hands_input_to_its_receiver(tmp_path: Path) -> None:
    class Receiver:
        def __init__(self) -> None:
            self.got: list[bytes] = []
            self.events: list[str] = []

        def data(self, data: bytes) -> None:
            self.got.append(data)

        def closed(self, exc: BaseException | None) -> None:
            self.events.append("closed")

        def timed_out(self) -> None:
            self.events.append("timeout")

    async def body(b, events) -> None:  # type: ignore[no-untyped-def]
        conn = await b.acquire()
        r = Receiver()
        conn.write(b"early")
        await asyncio.sleep(0.05)
        conn.listen(r)  # what arrived before listening goes first
        assert r.got == [b"early"]
        conn.write(b"more")
        await asyncio.sleep(0.05)
        assert b"".join(r.got) == b"earlymore" and conn.buffered == 0
        assert not conn.reusable_when_idle()  # never pooled while someone listens
        conn.write(b"sleep")
        await asyncio.sleep(0.35)
        assert r.events == ["timeout"]  # readTimeout without input
        conn.unlisten()
        conn.write(b"read again")
        assert await conn.read() == b"read again"  # unlistened: back to reads
        conn.listen(r)
        conn.abort()
        await asyncio.sleep(0.05)
        assert r.events == ["timeout", "closed"] and conn.receiver is None
        b.release(conn, reusable=True)
        assert b.nodes[0].idle == [] and b.nodes[0].in_use == 0

    run(tmp_path, 'tcpsBackend "b" { .nodes = (["address": "ADDR"]) .readTimeout = 200ms }', body)


def test_bad_node_caps_are_config_errors(tmp_path: Path) -> None:
    stage = Stage.from_text('stage { tcpsBackend "b" { .nodes = (["address": "127.0.0.1:1", "maxConns": -1]) } }',
                            Dirs.under(str(tmp_path)))
    with pytest.raises(ConfigError, match='"maxConns" must be an integer'):
        stage.configure()
