"""Backend health and pooling: nodes that die and come back under load (a real gorox and real
upstreams), and the backend API itself in-process (real sockets, a real stage)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from hemi.net.backend import BackendTimeout, ConnectError

from ..conftest import free_port
from ..stageutil import make_stage
from .h1util import wait_until
from .upstreams import ONE_WORKER, Farm, farm, nodes_list, proxy_config  # noqa: F401 (farm: a fixture)

pytestmark = pytest.mark.timeout(60)


class Load:
    """Clients sending GET /who in a loop; counts answers per node and failures."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.seen: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    r = client.get("/who")
                    result = r.text if r.status_code == 200 else f"status {r.status_code}"
                except httpx.HTTPError as e:
                    result = f"error {e!r}"
                with self.lock:
                    if result.startswith(("status", "error")):
                        self.failures.append(result)
                    else:
                        self.seen.append((time.monotonic(), result))

    def since(self, t: float) -> Counter:
        with self.lock:
            return Counter(name for when, name in self.seen if when >= t)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)


def test_killed_node_is_taken_out_and_comes_back_after_the_health_check(gorox, farm: Farm) -> None:
    a, b, c = farm.node("a"), farm.node("b"), farm.node("c")
    g = gorox(proxy_config(nodes_list((a.address,), (b.address,), (c.address,)),
                           backend=".healthCheck = true .healthInterval = 200ms .failTimeout = 30s"
                                   ' .healthPath = "/who"'), extra_args=ONE_WORKER)
    load = Load(g.url())
    try:
        assert wait_until(lambda: len(load.since(0)) == 3 and min(load.since(0).values()) > 30)
        b.kill()  # mid-traffic: connections reset, nothing listens any more
        killed = time.monotonic()
        time.sleep(1.0)
        after = time.monotonic()
        time.sleep(1.0)
        assert load.since(after)["b"] == 0 and load.since(after)["a"] > 30 and load.since(after)["c"] > 30
        assert load.failures == []
        b.start()  # same port; failTimeout (30 s) is far away: only the health check can bring it back
        back = time.monotonic()
        assert wait_until(lambda: load.since(back)["b"] > 30, timeout=5)
        assert time.monotonic() - killed < 10
    finally:
        load.finish()
    assert load.failures == []  # no idempotent request failed, at any time


def test_passive_health_without_checks(gorox, farm: Farm) -> None:
    a, b = farm.node("a"), farm.node("b")
    g = gorox(proxy_config(nodes_list((a.address,), (b.address,)),
                           backend=".maxFails = 1 .failTimeout = 1s"), extra_args=ONE_WORKER)
    load = Load(g.url(), clients=2)
    try:
        assert wait_until(lambda: load.since(0)["b"] > 20)
        b.kill()
        time.sleep(0.5)
        out = time.monotonic()
        time.sleep(0.5)
        assert load.since(out)["b"] == 0 and load.since(out)["a"] > 20
        b.start()
        back = time.monotonic()
        # out for failTimeout after its last failure, then tried again and kept
        assert wait_until(lambda: load.since(back)["b"] > 20, timeout=5)
    finally:
        load.finish()
    assert load.failures == []


def test_health_path_status_decides(gorox, farm: Farm) -> None:
    a = farm.node("a")
    sick = gorox(proxy_config(nodes_list((a.address,)),
                              backend='.healthCheck = true .healthInterval = 100ms .healthPath = "/status?code=503"'),
                 extra_args=ONE_WORKER)
    assert wait_until(lambda: httpx.get(sick.url("/who")).status_code == 502, timeout=3)
    fine = gorox(proxy_config(nodes_list((a.address,)),
                              backend='.healthCheck = true .healthInterval = 100ms .healthPath = "/status?code=204"'),
                 extra_args=ONE_WORKER)
    time.sleep(0.3)
    assert all(httpx.get(fine.url("/who")).text == "a" for _ in range(5))


# -- the backend API, in-process ------------------------------------------------------------------------------

async def echo_server(path: str | None = None) -> tuple[asyncio.AbstractServer, str, list]:
    """An echo server; returns it, its address, and a list of connection events."""
    events: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        events.append("open")
        while data := await reader.read(65536):
            if data == b"sleep":
                await asyncio.sleep(1)
                continue
            writer.write(data)
        events.append("closed")
        writer.close()

    if path is not None:
        server = await asyncio.start_unix_server(serve, path)
        return server, path, events
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}", events


def test_pool_reuse_keep_conns_and_alive_timeout(tmp_path: Path) -> None:
    async def main() -> None:
        server, addr, events = await echo_server()
        stage = await make_stage(tmp_path, f'tcpsBackend "b" {{ .nodes = (["address": "{addr}", "keepConns": 2]) '
                                           f'.aliveTimeout = 300ms }}')
        b = stage.get("backend", "b")
        try:
            conns = [await b.acquire() for _ in range(3)]
            assert events.count("open") == 3 and b.nodes[0].in_use == 3
            for c in conns:
                c.write(b"ping")
                assert await c.read() == b"ping"
                b.release(c, reusable=True)
            assert len(b.nodes[0].idle) == 2  # keepConns bounds the idle pool
            again = await b.acquire()
            assert again in conns and again.requests == 2  # reused, the warmest first
            again.write(b"x")
            assert await again.read() == b"x"
            again.unread(b"leftover")
            b.release(again, reusable=True)  # unread bytes: not clean, closed instead
            assert len(b.nodes[0].idle) == 1
            await asyncio.sleep(0.8)  # idle longer than aliveTimeout: the sweeper closes it
            assert b.nodes[0].idle == [] and events.count("closed") == 3
        finally:
            await stage.shutdown()
            server.close()

    asyncio.run(main())


def test_unix_socket_node_timeouts_and_dial_errors(tmp_path: Path) -> None:
    async def main() -> None:
        sock = str(tmp_path / "up.sock")
        server, _, events = await echo_server(sock)
        stage = await make_stage(tmp_path, f'tcpsBackend "b" {{ .nodes = (["address": "{sock}"]) .readTimeout = 200ms }}'
                                           f'tudsBackend "dead" {{ .nodes = (["address": "{tmp_path}/none.sock"], '
                                           f'["address": "127.0.0.1:{free_port()}"]) }}'
                                           f'tcpsBackend "lone" {{ .nodes = (["address": "127.0.0.1:{free_port()}"]) }}')
        b, dead, lone = stage.get("backend", "b"), stage.get("backend", "dead"), stage.get("backend", "lone")
        try:
            c = await b.acquire()
            c.write(b"over unix")
            assert await c.read() == b"over unix"
            c.write(b"sleep")
            started = time.monotonic()
            with pytest.raises(BackendTimeout):
                await c.read()
            assert 0.15 < time.monotonic() - started < 0.6
            b.release(c, reusable=False)
            assert c.closed
            with pytest.raises(ConnectError) as info:
                await dead.acquire()
            assert all(n.dials == 1 for n in dead.nodes)  # each node tried once
            assert not any(n.available for n in dead.nodes)  # and taken out (maxFails 1)
            with pytest.raises(ConnectError, match="no node available"):
                await dead.acquire()
            assert info.value.node in dead.nodes
            for _ in range(2):  # a lone node is never taken out: every request dials it again
                with pytest.raises(ConnectError, match="cannot connect"):
                    await lone.acquire()
            assert lone.nodes[0].dials == 2 and lone.nodes[0].available
        finally:
            await stage.shutdown()
            server.close()

    asyncio.run(main())


def test_tcps_active_check_marks_down_and_up(tmp_path: Path) -> None:
    async def main() -> None:
        server, addr, _ = await echo_server()
        port = int(addr.rsplit(":", 1)[1])
        stage = await make_stage(tmp_path, f'tcpsBackend "b" {{ .nodes = (["address": "{addr}"]) .healthCheck = true '
                                           f'.healthInterval = 50ms }}')
        node = stage.get("backend", "b").nodes[0]
        try:
            await asyncio.sleep(0.2)
            assert node.available
            server.close()
            await server.wait_closed()
            for _ in range(40):
                await asyncio.sleep(0.05)
                if not node.available:
                    break
            assert not node.available and node.down_until == float("inf")
            server2 = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port, reuse_address=True)
            for _ in range(40):
                await asyncio.sleep(0.05)
                if node.available:
                    break
            assert node.available
            server2.close()
        finally:
            await stage.shutdown()

    asyncio.run(main())


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="posix only")
def test_tls_to_upstream(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    import ssl
    ca = trustme.CA()
    cert = ca.issue_cert("upstream.test")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def main() -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        names: list[str | None] = []
        ctx.sni_callback = lambda sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
        addr = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        stage = await make_stage(tmp_path, f'tcpsBackend "ok" {{ .nodes = (["address": "{addr}"]) .tlsMode = true '
                                           f'.tlsVerify = true .tlsServerName = "upstream.test" .tlsCAFile = "{ca_file}" }}'
                                           f'tcpsBackend "bad" {{ .nodes = (["address": "{addr}"]) .tlsMode = true '
                                           f'.tlsVerify = true .tlsServerName = "other.test" .tlsCAFile = "{ca_file}" }}')
        try:
            c = await stage.get("backend", "ok").acquire()
            c.write(b"secret")
            assert await c.read() == b"secret"
            assert names[0] == "upstream.test"  # SNI sent
            with pytest.raises(ConnectError, match="TLS"):
                await stage.get("backend", "bad").acquire()  # wrong name: verification fails
        finally:
            await stage.shutdown()
            server.close()

    asyncio.run(main())
