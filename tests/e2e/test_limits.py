"""Bodies (memory, spooled to a temp file, too large) and the server's limits and timeouts:
each limit answers its status and closes the connection."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest

from .h1util import Conn, exts_files, fetch, request, wait_until

pytestmark = pytest.mark.timeout(60)

CONFIG = """
stage {{
    app "a" {{
        .hostnames = ("*")
        .maxMemoryContentSize = 4K
        .webRoot = "{base}/www"
        rule $path ^= "/echo" {{ testEcho {{ }} }}
        rule $path == "/file" {{ testFile {{ }} }}
        rule $path == "/big" {{ testBig {{ }} }}
        rule {{ .returnCode = 200 .returnText = "ok" }}
    }}
    httpxServer "main" {{
        .address = "127.0.0.1:{port}"
        .forApps = ("a")
        .maxContentSize = 64K
        .readTimeout = 1s
        .recvTimeout = 2s
        .writeTimeout = 1s
        .maxConnsPerGate = 3
    }}
}}
"""


HUGE = 32 << 20  # more than the kernel's socket buffers hold


@pytest.fixture
def g(gorox):  # type: ignore[no-untyped-def]
    return gorox(CONFIG, files={**exts_files(), "www/huge.bin": b"h" * HUGE})


def post(path: str, body: bytes) -> bytes:
    return b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (path.encode(), len(body), body)


def chunked(path: str, pieces: list[bytes]) -> bytes:
    out = [b"POST %b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" % path.encode()]
    out += [b"%x\r\n%b\r\n" % (len(p), p) for p in pieces]
    return b"".join(out) + b"0\r\n\r\n"


# -- bodies -------------------------------------------------------------------------------------------

def test_small_body_stays_in_memory(g) -> None:
    body = os.urandom(3000)
    j = fetch(g.port, post("/echo?save=1", body)).json()
    assert j["body_sha"] == hashlib.sha256(body).hexdigest() and j["spooled"] is None


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_big_body_is_spooled_and_the_temp_file_removed(g, framing: str) -> None:
    body = os.urandom(50_000)
    raw = post("/echo?save=1", body) if framing == "length" else chunked(
        "/echo?save=1", [body[i:i + 7000] for i in range(0, len(body), 7000)])
    with Conn(g.port) as c:
        c.send(raw)
        j = c.read_response().json()  # type: ignore[union-attr]
        assert j["body_len"] == 50_000 and j["body_sha"] == hashlib.sha256(body).hexdigest()
        assert j["spooled"] and j["spooled_existed"]
        spool = Path(j["spooled"])
        assert spool.is_relative_to(g.base / "data" / "tmp"), spool
        # The answer is written before the exchange ends, so give the server a moment.
        assert wait_until(lambda: not spool.exists(), timeout=2), "the spooled body outlived its exchange"
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().body == b"ok"  # type: ignore[union-attr]


def test_memory_read_beyond_app_limit_is_413(g) -> None:
    r, closed = request(g.port, post("/echo", os.urandom(5000)))
    assert r is not None and r.status == 413 and closed


def test_content_length_over_max_content_size_is_413_before_reading(g) -> None:
    """Only the head is sent: the answer comes without waiting for the body."""
    with Conn(g.port) as c:
        c.send(b"POST /echo?save=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n")
        r = c.read_response()
        assert r is not None and r.status == 413 and r.header("connection") == "close"
        assert c.closed_after()


def test_413_reaches_a_client_that_keeps_sending(g) -> None:
    """The server lingers after the 413: a client still writing its body reads the answer
    instead of a connection reset."""
    with Conn(g.port) as c:
        c.send(b"POST /echo?save=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n")
        try:
            c.send(os.urandom(70000))
        except OSError:
            pass
        r = c.read_response()
        assert r is not None and r.status == 413


def test_chunked_body_crossing_max_content_size_is_413_and_close(g) -> None:
    with Conn(g.port) as c:
        c.send(b"POST /echo?save=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            c.send(b"%x\r\n%b\r\n" % (10_000, b"x" * 10_000))
        r = None
        for _ in range(10):  # keep sending until the limit bites
            try:
                c.send(b"%x\r\n%b\r\n" % (10_000, b"x" * 10_000))
            except OSError:
                break
            c.sock.settimeout(0.2)
            try:
                c.buf += c.sock.recv(65536)
            except socket.timeout:
                continue
            break
        c.sock.settimeout(5)
        r = c.read_response()
        assert r is not None and r.status == 413
        assert c.closed_after()


# -- head limits --------------------------------------------------------------------------------------

def test_header_block_too_big_is_431(g) -> None:
    big = "".join(f"X-H{i}: {'v' * 200}\r\n" for i in range(90))
    r, closed = request(g.port, f"GET / HTTP/1.1\r\nHost: x\r\n{big}\r\n".encode())
    assert r is not None and r.status == 431 and closed


def test_too_many_headers_is_431(g) -> None:
    many = "".join(f"X-H{i}: v\r\n" for i in range(150))
    r, closed = request(g.port, f"GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
    assert r is not None and r.status == 431 and closed


def test_uri_too_long_is_414(g) -> None:
    r, closed = request(g.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r is not None and r.status == 414 and closed
    r, closed = request(g.port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r is not None and r.status == 414 and closed


def test_bad_version_is_505(g) -> None:
    r, closed = request(g.port, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    assert r is not None and r.status == 505 and closed


# -- timeouts -----------------------------------------------------------------------------------------

def test_idle_keep_alive_connection_closed_after_read_timeout(g) -> None:
    with Conn(g.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 200  # type: ignore[union-attr]
        started = time.monotonic()
        assert c.closed_after(5)
        assert 0.9 < time.monotonic() - started < 1.6
    with Conn(g.port) as c:  # a connection that never sends anything
        started = time.monotonic()
        assert c.closed_after(5)
        assert time.monotonic() - started < 1.6


def test_slowloris_head_gets_408_within_read_timeout(g) -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with Conn(g.port) as c:
        started = time.monotonic()
        c.sock.settimeout(0.3)
        for byte in data:
            try:
                c.sock.send(bytes([byte]))
                c.buf += c.sock.recv(65536)
                break
            except socket.timeout:
                continue
            except OSError:
                break
        elapsed = time.monotonic() - started
        c.sock.settimeout(5)
        r = c.read_response()
        assert r is not None and r.status == 408
        assert 0.9 < elapsed < 1.6, f"408 came after {elapsed:.1f}s with readTimeout = 1s"
        assert c.closed_after()


def test_slow_body_gets_408_within_recv_timeout(g) -> None:
    """Each byte comes well within readTimeout, but the whole body takes longer than recvTimeout."""
    with Conn(g.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        started = time.monotonic()
        c.sock.settimeout(0.3)
        for _ in range(100):
            try:
                c.sock.send(b"z")
                c.buf += c.sock.recv(65536)
                break
            except socket.timeout:
                continue
            except OSError:
                break
        elapsed = time.monotonic() - started
        c.sock.settimeout(5)
        r = c.read_response()
        assert r is not None and r.status == 408
        assert 1.5 < elapsed < 3.0, elapsed
        assert c.closed_after()


def test_stalled_unread_body_does_not_hold_the_connection(g) -> None:
    """A fixed-text answer does not read the body; a client that then stalls is cut off."""
    with Conn(g.port) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        assert c.read_response().body == b"ok"  # type: ignore[union-attr]
        started = time.monotonic()
        try:
            closed = c.closed_after(5)
        except ConnectionResetError:
            closed = True
        assert closed and time.monotonic() - started < 2.0


def test_client_that_stops_reading_a_file_is_cut_after_write_timeout(g) -> None:
    with Conn(g.port) as c:
        c.send(b"GET /file?f=huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(3)  # read nothing: the sendfile wait exceeds writeTimeout (1s)
        got = 0
        try:
            while data := c.sock.recv(1 << 20):
                got += len(data)
        except ConnectionResetError:
            pass
        assert 0 < got < HUGE, "the server should have given up on a client that reads nothing"
    assert "Traceback" not in g.log()


def test_last_reply_not_read_does_not_hold_the_connection(g) -> None:
    """A big reply with ``Connection: close`` the client never reads: the close waits for the
    buffered bytes only writeTimeout long, then the slot is freed (maxConnsPerGate = 3)."""
    stuck = [Conn(g.port) for _ in range(3)]
    try:
        for c in stuck:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.send(b"GET /big?mb=16 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

        def slot_free() -> bool:
            try:
                r, _ = request(g.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=1)
                return r is not None and r.status == 200
            except OSError:
                return False
        time.sleep(0.3)
        assert not slot_free(), "the three stuck connections should fill the gate"
        assert wait_until(slot_free, timeout=4), "stuck connections must be cut after writeTimeout"
    finally:
        for c in stuck:
            c.close()


# -- connections --------------------------------------------------------------------------------------

def test_max_conns_per_gate(g) -> None:
    conns = [Conn(g.port) for _ in range(3)]
    try:
        for c in conns:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.read_response().status == 200  # type: ignore[union-attr]
        extra = Conn(g.port)
        try:
            extra.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert extra.closed_after(1)
        except ConnectionResetError:
            pass
        finally:
            extra.close()
        conns.pop().close()

        def fourth_ok() -> bool:
            try:
                r, _ = request(g.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=1)
                return r is not None and r.status == 200
            except OSError:
                return False
        assert wait_until(fourth_ok, timeout=3), "a freed slot must be usable again"
    finally:
        for c in conns:
            c.close()
