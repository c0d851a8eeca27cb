"""http1Proxy's hot path (a body-less request over an idle pooled connection, answered from the
connection's callbacks): every test first warms the pool with one request, so what follows runs
on the hot path, and checks that it behaves as the coroutine path does — streaming, 502/504, a
client that goes away, a pooled connection the upstream had closed."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest

from .h1util import Conn, wait_until
from .upstreams import Farm, farm, pattern, start  # noqa: F401 (farm: a fixture)

pytestmark = pytest.mark.timeout(60)


def warm(client: httpx.Client, node) -> int:  # type: ignore[no-untyped-def]
    """One request that leaves a pooled upstream connection; the upstream's accept count."""
    assert client.get("/who").text == node.name
    return node.accepted


def test_large_chunked_and_close_delimited_bodies_stream(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with httpx.Client(base_url=g.url()) as client:
        accepted = warm(client, a)
        r = client.get("/big?n=1000000")  # beyond what is gathered: streamed from a task
        assert r.status_code == 200 and r.content == pattern(1000000)
        r = client.get("/chunked?n=5000&parts=3")
        assert r.content == pattern(5000)
        assert r.headers.get("x-sum") is None or r.headers["x-sum"] == hashlib.sha256(pattern(5000)).hexdigest()
        assert client.get("/who").text == "a"
        assert a.accepted == accepted  # all of it over the one pooled connection
        r = client.get("/close-body")
        assert r.text == "until the end"
        assert client.get("/who").text == "a"  # a new connection replaces the closed one


def test_timeouts_and_broken_answers(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)], backend=".readTimeout = 500ms")
    with httpx.Client(base_url=g.url(), timeout=10) as client:
        warm(client, a)
        started = time.monotonic()
        assert client.get("/sleep?s=3").status_code == 504
        assert 0.4 < time.monotonic() - started < 2.0
        for path in ("/cut", "/garbage", "/reset"):
            warm(client, a)
            assert client.get(path).status_code == 502, path
        assert client.get("/who").text == "a"


def test_a_pooled_connection_the_upstream_closed_is_retried(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with httpx.Client(base_url=g.url()) as client:
        accepted = warm(client, a)
        a.kill()  # the pooled connection dies with it
        a.start()
        r = client.get("/who")  # the hot path finds it closed: sent again on a new connection
        assert r.status_code == 200 and r.text == "a" and a.accepted == accepted + 1


def test_client_going_away_closes_the_pooled_upstream_connection(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with Conn(g.port) as c:
        c.send(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().body == b"a"
        c.send(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: a.requests == 2)
    assert a.hold_closed.wait(5), "the upstream connection stayed open after the client left"
    assert httpx.get(g.url("/who")).text == "a"
