"""http1Proxy end to end: a real gorox in front of real upstream servers (Python ones from
``upstreams.py`` and Debian's nginx), driven by real clients (httpx, curl, raw sockets)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from hemi.config.errors import ConfigError
from hemi.core.stage import Dirs, Stage

from ..conftest import free_port, wait_port
from .h1util import Conn, fetch, wait_until
from .upstreams import ONE_WORKER, Farm, farm, nodes_list, pattern, proxy_config, start  # noqa: F401 (farm: a fixture)

pytestmark = pytest.mark.timeout(60)

# -- balancing --------------------------------------------------------------------------------------------

def test_round_robin_follows_weights_exactly(gorox, farm: Farm) -> None:
    a, b, c = farm.node("a"), farm.node("b"), farm.node("c")
    g = start(gorox, [(a, 3), (b, 2), (c, 1)])
    with httpx.Client(base_url=g.url()) as client:
        got = Counter(client.get("/who").text for _ in range(300))
    assert got == {"a": 150, "b": 100, "c": 50}
    # keep-alive both ways: one upstream connection per node served everything
    assert (a.accepted, b.accepted, c.accepted) == (1, 1, 1)


def test_random_follows_weights(gorox, farm: Farm) -> None:
    a, b = farm.node("a"), farm.node("b")
    g = start(gorox, [(a, 3), (b, 1)], backend='.balancer = "random"')
    with httpx.Client(base_url=g.url()) as client:
        got = Counter(client.get("/who").text for _ in range(400))
    assert 0.65 < got["a"] / 400 < 0.85, got


def test_ip_hash_is_stable_per_client_ip(gorox, farm: Farm) -> None:
    nodes = [farm.node(name) for name in "abc"]
    g = start(gorox, [(n, 1) for n in nodes], backend='.balancer = "ipHash"')
    chosen = {}
    for i in range(2, 10):
        ip = f"127.0.0.{i}"
        with httpx.Client(base_url=g.url(), transport=httpx.HTTPTransport(local_address=ip)) as client:
            got = Counter(client.get("/who").text for _ in range(40))
        assert len(got) == 1, (ip, got)  # every request of one client IP on one node
        chosen[ip] = next(iter(got))
        with httpx.Client(base_url=g.url(), transport=httpx.HTTPTransport(local_address=ip)) as client:
            assert client.get("/who").text == chosen[ip]  # and again on a new connection
    assert len(set(chosen.values())) >= 2, chosen  # different clients spread over nodes


def test_least_used_balances_slow_requests(gorox, farm: Farm) -> None:
    a, b = farm.node("a"), farm.node("b")
    # Weights would send 5 of 6 requests to a; leastUsed looks at what is in use.
    g = start(gorox, [(a, 5), (b, 1)], backend='.balancer = "leastUsed"')
    results: list[str] = []

    def one() -> None:
        with httpx.Client(base_url=g.url(), timeout=10) as client:
            results.append(client.get("/sleep?s=0.6").text)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join()
    assert results == ["slept"] * 10
    assert (a.max_in_flight, b.max_in_flight) == (5, 5)


# -- headers ----------------------------------------------------------------------------------------------

def test_headers_both_ways(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)], proxy="""
        .viaName = "edge"
        .addRequestHeaders = ["x-added": "yes"]
        .delRequestHeaders = ("x-secret")
        .addResponseHeaders = ["x-by": "gorox"]
        .delResponseHeaders = ("x-remove-me")""")
    r = httpx.get(g.url("/echo?q=1"), headers={
        "x-forwarded-for": "10.1.1.1", "via": "1.0 first", "x-secret": "s", "x-other": "o",
        "connection": "keep-alive, x-listed", "x-listed": "hop", "te": "trailers", "proxy-connection": "x",
        "keep-alive": "timeout=1"})
    assert r.status_code == 200
    seen = dict((k, v) for k, v in r.json()["headers"])
    assert r.json()["target"] == "/echo?q=1"
    assert seen["host"] == f"127.0.0.1:{g.port}"
    assert seen["via"] == "1.0 first, 1.1 edge"
    assert seen["x-forwarded-for"] == "10.1.1.1, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{g.port}"
    assert seen["x-added"] == "yes" and seen["x-other"] == "o"
    for hop in ("x-secret", "x-listed", "te", "proxy-connection", "keep-alive", "connection", "transfer-encoding"):
        assert hop not in seen, hop
    # response: hop-by-hop (incl. what its Connection lists) and deleted ones removed
    assert r.headers["x-keep"] == "1" and r.headers["x-by"] == "gorox"
    assert r.headers["via"] == "1.1 edge"
    for hop in ("x-remove-me", "x-hop", "keep-alive"):
        assert hop not in r.headers, hop
    assert r.headers["server"] == "gorox"
    assert r.headers["content-type"] == "application/json"


def test_host_rewrite(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)], proxy='.hostname = "inner.example" .colonPort = ":8080"')
    seen = dict((k, v) for k, v in httpx.get(g.url("/echo")).json()["headers"])
    assert seen["host"] == "inner.example:8080"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{g.port}"


def test_host_rewrite_omits_default_port(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)], proxy='.hostname = "inner.example" .colonPort = ":80"')
    seen = dict((k, v) for k, v in httpx.get(g.url("/echo")).json()["headers"])
    assert seen["host"] == "inner.example"


# -- bodies -----------------------------------------------------------------------------------------------

TEN_MIB = 10 << 20


@pytest.mark.parametrize("buffered", [False, True])
def test_large_bodies_both_ways(gorox, farm: Farm, buffered: bool) -> None:
    a = farm.node("a")
    flag = "true" if buffered else "false"
    g = start(gorox, [(a, 1)], proxy=f".bufferClientContent = {flag} .bufferServerContent = {flag}")
    data = os.urandom(TEN_MIB)
    digest = hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=g.url(), timeout=30) as client:
        sized = client.post("/echo", content=data).json()
        assert (sized["size"], sized["sha256"]) == (TEN_MIB, digest)
        assert ("content-length", str(TEN_MIB)) in [tuple(h) for h in sized["headers"]]

        def gen() -> Iterator[bytes]:
            for i in range(0, TEN_MIB, 1 << 20):
                yield data[i:i + (1 << 20)]

        chunked = client.post("/echo", content=gen()).json()  # no length: chunked to us
        assert (chunked["size"], chunked["sha256"]) == (TEN_MIB, digest)
        framing = dict(tuple(h) for h in chunked["headers"])
        assert framing.get("transfer-encoding") == ("chunked" if not buffered else None)

        big = client.get(f"/big?n={TEN_MIB}")
        assert big.headers["content-length"] == str(TEN_MIB)
        assert hashlib.sha256(big.content).hexdigest() == hashlib.sha256(pattern(TEN_MIB)).hexdigest()

        ch = client.get(f"/chunked?n={TEN_MIB}&parts=37")
        assert hashlib.sha256(ch.content).hexdigest() == hashlib.sha256(pattern(TEN_MIB)).hexdigest()
        assert "transfer-encoding" in ch.headers or ch.headers["content-length"] == str(TEN_MIB)


def test_chunked_response_keeps_trailers(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    r = fetch(g.port, b"GET /chunked?n=300000&parts=5 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.header("transfer-encoding") == "chunked"
    assert r.body == pattern(300000)
    assert dict(r.trailers)["x-sum"] == hashlib.sha256(pattern(300000)).hexdigest()


def test_request_trailers_are_forwarded(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    r = fetch(g.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\r\nabc\r\n0\r\nX-Check: 42\r\n\r\n")
    assert r.json()["size"] == 3 and r.json()["trailers"] == [["x-check", "42"]]


def test_body_until_close_and_streaming(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with httpx.Client(base_url=g.url()) as client:
        assert client.get("/close-body").text == "until the end"
        started = time.monotonic()
        with client.stream("GET", "/slow?parts=4&delay=0.3") as r:
            pieces = r.iter_raw()
            first = next(pieces)
            assert time.monotonic() - started < 1.0  # streamed, not buffered until the end
            rest = b"".join(pieces)
        assert first + rest == b"part00part01part02part03"


def test_head_204_304(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with Conn(g.port) as c:
        c.send(b"HEAD /head-len HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response(head=True)
        assert r.status == 200 and r.header("content-length") == "1234"
        for code in (204, 304):
            c.send(b"GET /status?code=%d HTTP/1.1\r\nHost: x\r\n\r\n" % code)
            r = c.read_response()
            assert r.status == code and r.header("x-status") == str(code)
            assert r.header("content-length") is None and r.header("transfer-encoding") is None
        c.send(b"GET /head-len HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().body == pattern(1234)  # the connection is still in sync
    assert a.accepted == 1


def test_expect_100_continue(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with Conn(g.port) as c:
        c.send(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert c._line() == b"HTTP/1.1 100 Continue"
        assert c._line() == b""
        c.send(b"hello")
        r = c.read_response()
        assert r.status == 200 and r.json()["size"] == 5
        assert "expect" not in dict(tuple(h) for h in r.json()["headers"])


# -- connections and failures -------------------------------------------------------------------------------

def test_upstream_close_and_http10_are_not_reused(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with httpx.Client(base_url=g.url()) as client:
        for _ in range(3):
            assert client.get("/close").text == "bye"
        assert a.accepted == 3
        for _ in range(2):
            assert client.get("/http10").text == "ok"
        assert a.accepted == 5
        for _ in range(3):
            client.get("/who")
        assert a.accepted == 6


def test_502_when_no_node_listens(gorox) -> None:
    g = gorox(proxy_config(nodes_list((f"127.0.0.1:{free_port()}",))), extra_args=ONE_WORKER)
    r = httpx.get(g.url("/who"))
    assert r.status_code == 502 and "Bad Gateway" in r.text


@pytest.mark.parametrize("path", ["/reset", "/garbage"])
def test_502_on_reset_or_garbage(gorox, farm: Farm, path: str) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with httpx.Client(base_url=g.url()) as client:
        assert client.get(path).status_code == 502
        # the client connection is fine, and a backend's only node is never taken out
        assert client.get("/who").text == "a"


def test_504_when_upstream_is_too_slow(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)], backend=".readTimeout = 500ms")
    started = time.monotonic()
    r = httpx.get(g.url("/sleep?s=3"), timeout=10)
    assert r.status_code == 504
    assert 0.4 < time.monotonic() - started < 2.0


def test_cut_response(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    # A small sized body is read whole before anything is sent: a cut one is a clean 502.
    assert httpx.get(g.url("/cut")).status_code == 502
    # A large one is streamed: once its head is out, the only signal left is cutting the client.
    with Conn(g.port) as c:
        c.send(b"GET /cut?len=1000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(EOFError):
            c.read_response()


def test_client_going_away_closes_the_upstream_connection(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with Conn(g.port) as c:
        c.send(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: a.requests == 1)
    assert a.hold_closed.wait(5), "the upstream connection stayed open after the client left"
    # and the proxy still works, on a new upstream connection
    assert httpx.get(g.url("/who")).text == "a"


def test_client_going_away_mid_body(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with Conn(g.port) as c:
        c.send(b"GET /slow?parts=20&delay=0.1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c._line().startswith(b"HTTP/1.1 200")
    assert wait_until(lambda: a.peer_closed == 1 or a.accepted == 1 and not a.writers, timeout=5)
    assert httpx.get(g.url("/who")).text == "a"


def test_idempotent_retry_on_another_node(gorox, farm: Farm) -> None:
    a, b = farm.node("a"), farm.node("b")
    g = start(gorox, [(a, 1), (b, 1)], backend=".maxFails = 0")  # resets must not take the nodes out
    with httpx.Client(base_url=g.url()) as client:
        # /reset on whichever node: the GET is sent once more, to the other node, which also resets
        assert client.get("/reset").status_code == 502
        assert a.requests == 1 and b.requests == 1
        # a POST is never sent twice
        a.requests = b.requests = 0
        assert client.post("/reset", content=b"x").status_code == 502
    assert a.requests + b.requests == 1


def test_local_rules_still_work(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    assert httpx.get(g.url("/local/x")).text == "local"


# -- forward proxy ------------------------------------------------------------------------------------------

def test_forward_proxy_with_curl(gorox, farm: Farm) -> None:
    a = farm.node("a")
    conf = """
stage {{
    app "fwd" {{
        .hostnames = ("*")
        rule {{ http1Proxy {{ .proxyMode = "forward" }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("fwd") }}
}}
"""
    g = gorox(conf, extra_args=ONE_WORKER)
    out = subprocess.run(["curl", "-sS", "-i", "-x", f"http://127.0.0.1:{g.port}", f"http://{a.address}/echo?x=1"],
                         capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    got = json.loads(body)
    assert got["target"] == "/echo?x=1"  # origin-form upstream
    assert dict((k, v) for k, v in got["headers"])["host"] == a.address
    for _ in range(3):
        subprocess.run(["curl", "-sS", "-x", f"http://127.0.0.1:{g.port}", f"http://{a.address}/who"],
                       capture_output=True, timeout=10, check=True)
    bad = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x", f"http://127.0.0.1:{g.port}",
                          f"http://127.0.0.1:{free_port()}/"], capture_output=True, timeout=10)
    assert bad.stdout == b"502"


# -- WebSocket ----------------------------------------------------------------------------------------------

def test_websocket_upgrade_is_tunnelled(gorox, farm: Farm) -> None:
    a = farm.node("a")
    g = start(gorox, [(a, 1)])
    with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
        s.sendall(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        status, _, rest = head.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101")
        assert b"upgrade: websocket" in status.lower() and b"connection: upgrade" in status.lower()
        assert b"x-node: a" in status
        frame = b"\x81\x85" + b"\x00\x00\x00\x00" + b"hello"  # a masked text frame, echoed as bytes
        s.sendall(frame)
        got = rest
        while len(got) < len(frame):
            got += s.recv(4096)
        assert got == frame
        big = os.urandom(2 << 20)
        sender = threading.Thread(target=s.sendall, args=(big,))
        sender.start()
        got = b""
        while len(got) < len(big):
            got += s.recv(1 << 20)
        sender.join()
        assert got == big
        s.shutdown(socket.SHUT_WR)  # our EOF reaches the upstream, which closes: so does the tunnel
        assert s.recv(10) == b""
    seen = dict(a.last_headers)
    assert seen["upgrade"] == "websocket" and seen["connection"] == "upgrade"
    assert seen["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="


# -- nginx as the upstream -------------------------------------------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# As root, nginx's workers would run as nobody and could not read the test's private temp dir.
NGINX_USER = "user root root; " if os.geteuid() == 0 else ""


def nginx_upstream(tmp: Path, port: int) -> subprocess.Popen:
    (tmp / "www").mkdir(parents=True, exist_ok=True)
    (tmp / "www" / "hello.txt").write_text("hello from nginx\n")
    (tmp / "www" / "big.bin").write_bytes(pattern(3 << 20))
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
{NGINX_USER}daemon off; worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    keepalive_timeout 1s;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location = /echo-host {{ return 200 "$http_host $http_x_forwarded_for $http_via"; }}
    }}
}}
""")
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")
def test_nginx_upstream(gorox, tmp_path: Path) -> None:
    port = free_port()
    proc = nginx_upstream(tmp_path / "nginx", port)
    try:
        g = gorox(proxy_config(nodes_list((f"127.0.0.1:{port}",))), extra_args=ONE_WORKER)
        with httpx.Client(base_url=g.url()) as client:
            r = client.get("/hello.txt")
            assert r.text == "hello from nginx\n" and r.headers["content-type"] == "text/plain"
            assert r.headers["server"] == "gorox" and "etag" in r.headers and "last-modified" in r.headers
            assert client.get("/big.bin").content == pattern(3 << 20)
            assert client.get("/echo-host").text == f"127.0.0.1:{g.port} 127.0.0.1 1.1 gorox"
            assert client.get("/nope").status_code == 404
            # conditional requests pass through
            again = client.get("/hello.txt", headers={"if-none-match": r.headers["etag"]})
            assert again.status_code == 304 and again.content == b""
            # nginx closes idle keep-alive connections after 1 s: the proxy notices and redials
            time.sleep(1.5)
            assert all(client.get("/hello.txt").status_code == 200 for _ in range(5))
    finally:
        proc.terminate()
        proc.wait(10)


# -- configuration ----------------------------------------------------------------------------------------

def config_problems(text: str, tmp_path: Path) -> str:
    import hemi.contrib._all  # noqa: F401
    stage = Stage.from_text(text, Dirs.under(str(tmp_path)))
    with pytest.raises(ConfigError) as info:
        stage.configure()
    return str(info.value)


@pytest.mark.parametrize("proxy,expected", [
    ('.toBackend = "nope"', 'names "nope", but the stage has no backend'),
    ('.toBackend = "tb"', 'names tcpsBackend "tb", expected an http1Backend'),
    ("", "needs .toBackend"),
    ('.toBackend = "up" .withStorer = "s"', "storers are not implemented yet"),
    ('.toBackend = "up" .proxyMode = "sideways"', '.proxyMode is "sideways"'),
])
def test_config_errors(tmp_path: Path, proxy: str, expected: str) -> None:
    text = f"""stage {{
        http1Backend "up" {{ .nodes = (["address": "127.0.0.1:1"]) }}
        tcpsBackend "tb" {{ .nodes = (["address": "127.0.0.1:2"]) }}
        app "a" {{ .hostnames = ("*") rule {{ http1Proxy {{ {proxy} }} }} }}
    }}"""
    assert expected in config_problems(text, tmp_path)


@pytest.mark.parametrize("nodes,expected", [
    ("", "missing required property .nodes"),
    ('.nodes = ()', ".nodes is empty"),
    ('.nodes = ("127.0.0.1:80")', "expected a dict"),
    ('.nodes = (["weight": 2])', 'needs "address"'),
    ('.nodes = (["address": "nohost"])', "has no port"),
    ('.nodes = (["address": "127.0.0.1:1", "weight": 0])', '"weight" must be an integer'),
    ('.nodes = (["address": "127.0.0.1:1", "wieght": 2])', "unknown key(s) wieght"),
    ('.nodes = (["address": "127.0.0.1:1"]) .balancer = "fastest"', '.balancer is "fastest"'),
])
def test_backend_config_errors(tmp_path: Path, nodes: str, expected: str) -> None:
    assert expected in config_problems(f'stage {{ http1Backend "up" {{ {nodes} }} }}', tmp_path)
