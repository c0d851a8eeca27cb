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


def test_repeated_fields_are_relayed_as_each_request_has_them(gorox, farm: Farm) -> None:
    """The upstream fields of a body-less request are rendered once per set of (headers,
    client, scheme, authority): every request must still reach the upstream with its own
    target, its own fields and its own client's address."""
    import json
    import socket

    a = farm.node("a")
    g = start(gorox, [(a, 1)], proxy='.addRequestHeaders = ["x-added": "yes"]')

    def echo(c: Conn, target: str, fields: str) -> dict:
        c.send(f"GET {target} HTTP/1.1\r\n{fields}\r\n".encode())
        r = c.read_response()
        assert r.status == 200, r
        return json.loads(r.body)

    def fields_of(seen: dict) -> dict[str, str]:
        return {k: v for k, v in seen["headers"]}

    base = "Host: x\r\nX-A: 1\r\n"
    with Conn(g.port) as c:
        first = echo(c, "/echo?one", base)
        again = echo(c, "/echo?two", base)  # same fields, another target
        other = echo(c, "/echo", "Host: x\r\nX-A: 2\r\n")  # same names, another value
        hidden = echo(c, "/echo", "Host: x\r\nConnection: x-a\r\nX-A: 3\r\n")  # X-A is hop-by-hop here
        host = echo(c, "/echo", "Host: y\r\nX-A: 1\r\n")
    assert first["target"] == "/echo?one" and again["target"] == "/echo?two"
    assert fields_of(first)["x-a"] == "1" and fields_of(again)["x-a"] == "1" and fields_of(other)["x-a"] == "2"
    assert "x-a" not in fields_of(hidden) and "connection" not in fields_of(hidden)
    assert fields_of(host)["x-forwarded-host"] == "y" and fields_of(first)["x-forwarded-host"] == "x"
    for seen in (first, again, other, hidden, host):
        f = fields_of(seen)
        assert f["x-added"] == "yes" and f["x-forwarded-for"] == "127.0.0.1", f
    # The same fields from another client address: its own X-Forwarded-For.
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", g.port))
    with Conn(g.port, sock=s) as c:
        seen = echo(c, "/echo?one", base)
    assert fields_of(seen)["x-forwarded-for"] == "127.0.0.2"


def test_client_half_closing_gives_the_exchange_up(gorox, farm: Farm) -> None:
    """A client that closes its side while its request is with the upstream is gone as far as
    a proxy is concerned (nginx's default): the upstream connection is closed, not pooled, and
    so is the client's."""
    import socket

    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with Conn(g.port) as c:
        c.send(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().body == b"a"  # the pool is warm: what follows is the hot path
        c.send(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: a.requests == 2)
        c.sock.shutdown(socket.SHUT_WR)
        assert a.hold_closed.wait(5), "the upstream connection stayed open after the client's EOF"
        c.sock.settimeout(5)
        assert c.sock.recv(100) == b""  # and ours is closed, with no answer
    assert httpx.get(g.url("/who")).text == "a"
