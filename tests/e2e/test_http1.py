"""HTTP/1.0 and HTTP/1.1 end to end: keep-alive, pipelining, chunked bodies both ways,
100-continue, trailers, HEAD, OPTIONS *, absolute-form targets, graceful shutdown and reload.

A real gorox process; clients are raw sockets (to see the exact bytes), httpx and curl."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from .h1util import Conn, exts_files, fetch, request, wait_until

pytestmark = pytest.mark.timeout(60)

CONFIG = """
stage {{
    app "a" {{
        .hostnames = ("*")
        .webRoot = "{base}/www"
        rule $method == "OPTIONS" {{ testEcho {{ }} }}
        rule $path == "/file" {{ testFile {{ }} }}
        rule $path ^= "/echo" {{ testEcho {{ }} }}
        rule $path ^= "/stream" {{ testStream {{ }} }}
        rule $path ^= "/slow" {{ testSlow {{ }} }}
        rule {{ .returnCode = 200 .returnText = "ok" }}
    }}
    app "b" {{
        .hostnames = ("b.test")
        rule $path ^= "/echo" {{ testEcho {{ }} }}
        rule {{ .returnCode = 200 .returnText = "app b" }}
    }}
    httpxServer "main" {{
        .address = "127.0.0.1:{port}"
        .forApps = ("a", "b")
        .maxContentSize = 1M
    }}
}}
"""


BIG = os.urandom(3 << 20)


@pytest.fixture
def g(gorox):  # type: ignore[no-untyped-def]
    return gorox(CONFIG, files={**exts_files(), "www/big.bin": BIG, "www/small.txt": "small file\n"})


# -- keep-alive -------------------------------------------------------------------------------------

def test_http11_keeps_alive_by_default(g) -> None:
    with Conn(g.port) as c:
        for _ in range(3):
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
            assert r is not None and r.status == 200 and r.body == b"ok"
            assert r.header("connection") is None
        assert not c.closed_after(0.3)


def test_http10_closes_by_default(g) -> None:
    r, closed = request(g.port, b"GET / HTTP/1.0\r\n\r\n")
    assert r is not None and r.status == 200 and r.body == b"ok"
    assert r.header("connection") == "close"
    assert closed


def test_http10_keep_alive_on_request(g) -> None:
    with Conn(g.port) as c:
        for _ in range(2):
            c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r is not None and r.status == 200
            assert r.header("connection") == "keep-alive"
        assert not c.closed_after(0.3)


def test_connection_close_is_honoured(g) -> None:
    r, closed = request(g.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r is not None and r.status == 200 and r.header("connection") == "close"
    assert closed


def test_http10_streamed_response_is_ended_by_close(g) -> None:
    r, closed = request(g.port, b"GET /stream?n=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert r is not None and r.status == 200
    assert r.header("transfer-encoding") is None and r.header("content-length") is None
    assert r.header("connection") == "close"
    assert r.body == b"piece 0\npiece 1\n"
    assert closed


# -- pipelining -------------------------------------------------------------------------------------

def test_pipelined_requests_answer_in_order(g) -> None:
    body = b"hello pipelined world"
    reqs = (b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo/2 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b"
            b"GET /echo/3 HTTP/1.1\r\nHost: x\r\n\r\n") % (len(body), body)
    with Conn(g.port) as c:
        c.send(reqs)
        out = [c.read_response() for _ in range(3)]
        assert [r.json()["path"] for r in out] == ["/echo/1", "/echo/2", "/echo/3"]  # type: ignore[union-attr]
        assert out[1].json()["body_sha"] == hashlib.sha256(body).hexdigest()  # type: ignore[union-attr]
        assert out[0].json()["body_len"] == out[2].json()["body_len"] == 0  # type: ignore[union-attr]
        assert not c.closed_after(0.3)


def test_deep_pipeline_of_fixed_answers(g) -> None:
    """Thousands of pipelined requests in one write, read only after a pause: answered in
    order, none lost (no recursion per request, output held back while we do not read)."""
    n = 3000
    with Conn(g.port, timeout=10) as c:
        import threading
        sender = threading.Thread(target=c.send, args=(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * n,))
        sender.start()
        time.sleep(0.5)
        bodies = [c.read_response().body for _ in range(n)]  # type: ignore[union-attr]
        sender.join()
        assert bodies == [b"ok"] * n
        assert not c.closed_after(0.2)
    assert "Error" not in g.log()


def test_pipelined_fast_path_with_unread_body(g) -> None:
    """A fixed-text rule does not read the body: the server drops it and parses what follows."""
    reqs = (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /"
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            b"GET /d HTTP/1.1\r\nHost: b.test\r\n\r\n")
    with Conn(g.port) as c:
        c.send(reqs)
        bodies = [c.read_response().body for _ in range(4)]  # type: ignore[union-attr]
        assert bodies == [b"ok", b"ok", b"ok", b"app b"]
        assert not c.closed_after(0.3)


def test_requests_trickling_in_byte_by_byte(g) -> None:
    """The same exchanges whatever the segmentation: heads, chunked bodies and trailers split
    at every byte."""
    reqs = (b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo/2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nwxyz"
            b"GET /echo/3 HTTP/1.1\r\nHost: x\r\n\r\n")
    with Conn(g.port, timeout=10) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(reqs)):
            c.send(reqs[i:i + 1])
            time.sleep(0.001)
        r1, r2, r3, r4 = (c.read_response() for _ in range(4))
        assert r1.json()["path"] == "/echo/1"  # type: ignore[union-attr]
        j = r2.json()  # type: ignore[union-attr]
        assert j["body_len"] == 5 and j["trailers"] == [["x-t", "1"]]
        assert r3.body == b"ok"  # type: ignore[union-attr]
        assert r4.json()["path"] == "/echo/3"  # type: ignore[union-attr]


def test_pipelined_connection_close_stops_the_pipeline(g) -> None:
    with Conn(g.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
               b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 200  # type: ignore[union-attr]
        assert c.read_response().header("connection") == "close"  # type: ignore[union-attr]
        assert c.closed_after()


def test_half_close_after_last_request_still_answers(g) -> None:
    with Conn(g.port) as c:
        c.send(b"GET /slow?s=0.2 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_response().body == b"slow done"  # type: ignore[union-attr]
        assert c.read_response().body == b"ok"  # type: ignore[union-attr]
        assert c.closed_after()


# -- chunked bodies ---------------------------------------------------------------------------------

def test_chunked_request_body_with_trailers(g) -> None:
    data = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Check: yes\r\nX-Other: 2\r\n\r\n")
    with Conn(g.port) as c:
        c.send(data)
        r = c.read_response()
        j = r.json()  # type: ignore[union-attr]
        assert j["body_len"] == 11 and j["body_sha"] == hashlib.sha256(b"hello world").hexdigest()
        assert j["trailers"] == [["x-check", "yes"], ["x-other", "2"]]
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")  # the next request has none of them
        j = c.read_response().json()  # type: ignore[union-attr]
        assert j["body_len"] == 0 and j["trailers"] == []
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().body == b"ok"  # type: ignore[union-attr]


def test_chunked_request_body_sent_slowly(g) -> None:
    with Conn(g.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"4\r\nab", b"cd\r", b"\n3\r\nxyz\r\n", b"0\r\n", b"\r\n"):
            time.sleep(0.05)
            c.send(piece)
        j = c.read_response().json()  # type: ignore[union-attr]
        assert j["body_len"] == 7 and j["body_sha"] == hashlib.sha256(b"abcdxyz").hexdigest()


def test_chunked_request_body_from_httpx(g) -> None:
    pieces = [os.urandom(1000) for _ in range(50)]

    def gen():  # type: ignore[no-untyped-def]
        yield from pieces

    r = httpx.post(g.url("/echo"), content=gen())
    assert r.status_code == 200
    j = r.json()
    assert j["body_len"] == 50_000 and j["body_sha"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert ["transfer-encoding", "chunked"] in j["headers"]


def test_chunked_response_with_trailer(g) -> None:
    r, closed = request(g.port, b"GET /stream?n=3 HTTP/1.1\r\nHost: x\r\n\r\n", close_wait=0.3)
    assert r is not None and r.status == 200
    assert r.header("transfer-encoding") == "chunked" and r.header("content-length") is None
    assert r.body == b"piece 0\npiece 1\npiece 2\n"
    assert r.trailers == [("x-pieces", "3")]
    assert not closed


def test_chunked_response_streams_with_httpx(g) -> None:
    seen = []
    started = time.monotonic()
    with httpx.stream("GET", g.url("/stream?n=3&delay=0.5")) as r:
        for chunk in r.iter_raw():
            seen.append((time.monotonic() - started, chunk))
    assert b"".join(c for _, c in seen) == b"piece 0\npiece 1\npiece 2\n"
    assert seen[0][0] < 0.9, "the first piece must arrive before the handler finishes"


def test_curl_gets_chunked_response(g) -> None:
    out = subprocess.run(["curl", "-sS", "--raw", g.url("/stream?n=2")], capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"8\r\npiece 0\n\r\n8\r\npiece 1\n\r\n0\r\nx-pieces: 2\r\n\r\n"


# -- files (sendfile) ----------------------------------------------------------------------------------

def test_sendfile_keeps_order_on_a_pipelined_connection(g) -> None:
    with Conn(g.port, timeout=10) as c:
        c.send(b"GET /file?f=small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /file?f=big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
               b"HEAD /file?f=big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /file?f=small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r is not None and r.body == b"small file\n"
        r = c.read_response()
        assert r is not None and r.header("content-length") == str(len(BIG))
        assert hashlib.sha256(r.body).digest() == hashlib.sha256(BIG).digest()
        r = c.read_response(head=True)
        assert r is not None and r.header("content-length") == str(len(BIG))
        r = c.read_response()
        assert r is not None and r.body == b"small file\n"


def test_sendfile_to_a_slow_reader_and_to_http10(g) -> None:
    with Conn(g.port, timeout=10) as c:
        c.send(b"GET /file?f=big.bin HTTP/1.0\r\n\r\n")
        time.sleep(0.5)  # the socket buffers fill up: sendfile has to wait for writability
        r = c.read_response()
        assert r is not None and r.body == BIG
        assert c.closed_after()
    out = subprocess.run(["curl", "-sS", "--http1.0", g.url("/file?f=big.bin")], capture_output=True, timeout=10)
    assert out.returncode == 0 and out.stdout == BIG


def test_client_leaving_during_sendfile_does_not_hurt(g) -> None:
    for _ in range(3):
        c = Conn(g.port)
        c.send(b"GET /file?f=big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        c.sock.recv(1000)
        c.close()
    assert fetch(g.port, b"GET /file?f=small.txt HTTP/1.1\r\nHost: x\r\n\r\n").body == b"small file\n"
    assert "Traceback" not in g.log()


# -- 100-continue -----------------------------------------------------------------------------------

def test_expect_100_continue_raw(g) -> None:
    with Conn(g.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        c.sock.settimeout(3)
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += c.sock.recv(100)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.send(b"data")
        r = c.read_response()
        assert r.status == 200 and r.json()["body_len"] == 4  # type: ignore[union-attr]
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().body == b"ok"  # type: ignore[union-attr]


def test_expect_100_continue_curl(g, tmp_path) -> None:
    payload = tmp_path / "p.bin"
    payload.write_bytes(os.urandom(5000))
    started = time.monotonic()
    out = subprocess.run(["curl", "-sS", "-v", "--expect100-timeout", "10", "-H", "Expect: 100-continue",
                          "--data-binary", f"@{payload}", g.url("/echo")], capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 5, "curl waited for a 100 Continue that never came"
    assert b"HTTP/1.1 100 Continue" in out.stderr
    j = json.loads(out.stdout)
    assert j["body_sha"] == hashlib.sha256(payload.read_bytes()).hexdigest()


def test_expect_100_continue_rejected_for_size(g) -> None:
    with Conn(g.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response()
        assert r is not None and r.status == 417 and r.interim == []
        assert c.closed_after()


def test_expect_100_continue_not_sent_when_handler_ignores_body(g) -> None:
    """A fixed-text rule never reads: no 100, the final answer, and a close (the client may
    or may not send the body now, so the connection cannot be reused)."""
    with Conn(g.port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response()
        assert r is not None and r.status == 200 and r.interim == [] and r.body == b"ok"
        assert r.header("connection") == "close"
        assert c.closed_after()


# -- HEAD, OPTIONS, absolute-form -------------------------------------------------------------------

def test_head_has_length_but_no_body(g) -> None:
    with Conn(g.port) as c:
        c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response(head=True)
        assert r is not None and r.status == 200 and r.header("content-length") == "2"
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().body == b"ok", "a HEAD response must not carry body bytes"  # type: ignore[union-attr]


def test_head_of_streamed_response_sends_no_chunks(g) -> None:
    with Conn(g.port) as c:
        c.send(b"HEAD /stream?n=2 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response(head=True)
        assert r is not None and r.status == 200
        r2 = c.read_response()
        assert r2 is not None and r2.status == 200 and r2.body == b"ok"


def test_head_with_httpx_and_curl(g) -> None:
    r = httpx.head(g.url("/"))
    assert r.status_code == 200 and r.headers["content-length"] == "2" and r.content == b""
    out = subprocess.run(["curl", "-sS", "-I", g.url("/")], capture_output=True, timeout=10)
    assert out.returncode == 0 and b"content-length: 2" in out.stdout


def test_options_asterisk(g) -> None:
    r = fetch(g.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r is not None and r.status == 200
    j = r.json()
    assert j["is_asterisk"] is True and j["path"] == "/" and j["target"] == "*"


def test_asterisk_only_for_options(g) -> None:
    r, closed = request(g.port, b"GET * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r is not None and r.status == 400 and closed


def test_absolute_form_selects_app_by_uri_authority(g) -> None:
    r = fetch(g.port, b"GET http://b.test/echo/x?q=1 HTTP/1.1\r\nHost: other.test\r\n\r\n")
    assert r is not None and r.status == 200
    j = r.json()
    assert j["app"] == "b" and j["hostname"] == "b.test" and j["path"] == "/echo/x" and j["query_string"] == "?q=1"
    assert j["authority"] == "b.test" and j["scheme"] == "http"
    r = fetch(g.port, b"GET http://b.test HTTP/1.1\r\nHost: b.test\r\n\r\n")
    assert r is not None and r.body == b"app b"
    r = fetch(g.port, b"GET / HTTP/1.1\r\nHost: b.test:8080\r\n\r\n")
    assert r is not None and r.body == b"app b"


def test_httpx_basic_exchange(g) -> None:
    with httpx.Client() as client:
        r = client.post(g.url("/echo/json?a=1"), json={"k": "v"})
        assert r.status_code == 200
        j = r.json()
        assert j["method"] == "POST" and j["uri"] == "/echo/json?a=1" and j["version"] == "1.1"
        assert j["body_sha"] == hashlib.sha256(b'{"k":"v"}').hexdigest() or j["body_len"] > 0
        r = client.get(g.url("/"))
        assert r.text == "ok" and r.headers["server"] == "gorox" and "date" in r.headers


# -- graceful shutdown and reload -------------------------------------------------------------------

def test_sigterm_finishes_inflight_request_then_exits_0(gorox) -> None:
    g = gorox(CONFIG, files=exts_files(), extra_args=("-single",))  # the single-process runner
    c = Conn(g.port, timeout=10)
    c.send(b"GET /slow?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    idle = Conn(g.port)
    time.sleep(0.1)
    g.proc.send_signal(signal.SIGTERM)
    assert idle.closed_after(), "an idle keep-alive connection is closed at shutdown"
    time.sleep(0.2)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", g.port), timeout=1).close()
    r = c.read_response()
    assert r is not None and r.status == 200 and r.body == b"slow done"
    assert r.header("connection") == "close"
    assert c.closed_after()
    assert g.proc.wait(10) == 0
    c.close()
    idle.close()


RELOAD_V1 = """
stage {{
    app "a" {{ .hostnames = ("*") rule {{ .returnCode = 200 .returnText = "version 1" }} }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
"""


def test_sighup_reloads_config_and_rejects_a_broken_one(gorox) -> None:
    g = gorox(RELOAD_V1, extra_args=("-single",))  # the single-process runner
    assert httpx.get(g.url("/")).text == "version 1"
    keep = Conn(g.port)
    keep.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert keep.read_response().body == b"version 1"  # type: ignore[union-attr]
    text = g.config.read_text()
    g.config.write_text(text.replace("version 1", "version 2"))
    g.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: httpx.get(g.url("/")).text == "version 2")
    assert keep.closed_after(), "the old stage's idle connections are closed as it retires"
    keep.close()
    g.config.write_text(text.replace("version 1", "version 3").replace(".returnCode = 200", ".returnCode = 42"))
    g.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "reload rejected" in g.log())
    for _ in range(5):
        assert httpx.get(g.url("/")).text == "version 2"
    assert g.proc.poll() is None
    assert g.stop() == 0
