"""The callback-driven path of the FastCGI gateway (``gateway._Exchange``): requests that wait
in a node's queue for a kept connection, a pooled connection the application closed, and the
queue's timeout — against a FastCGI application written here, which can be told to be slow or
to close a kept connection, and which counts the requests it really got."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import httpx
import pytest

from hemi.web.fcgi.codec import STDOUT, encode_record, end_request

_HEADER = struct.Struct(">BBHHBx")
_PARAMS, _STDIN = 4, 5


class FakeFpm:
    """A FastCGI responder on a unix socket. Each request is answered (after ``delay``
    seconds) with ``ok <n>``; a connection that has served ``per_conn`` requests is closed
    when its next request arrives, unanswered, as php-fpm does when a child is recycled."""

    def __init__(self, path: Path, *, delay: float = 0.0, per_conn: int = 0,
                 head: bytes = b"Content-type: text/plain\r\n\r\n") -> None:
        self.path = str(path)
        self.head = head
        self.delay = delay
        self.per_conn = per_conn
        self.answered = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(self.path)
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        served = 0
        buf = b""
        with conn:
            while True:
                while not self._request_end(buf):  # up to the empty STDIN record
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                buf = b""
                if self.per_conn and served >= self.per_conn:
                    return  # recycled: the request is never answered
                time.sleep(self.delay)
                with self.lock:
                    self.answered += 1
                    n = self.answered
                body = self.head + f"ok {n}".encode()
                try:
                    conn.sendall(encode_record(STDOUT, 1, body) + end_request(1))
                except OSError:
                    return
                served += 1

    @staticmethod
    def _request_end(buf: bytes) -> bool:
        pos = 0
        while len(buf) - pos >= 8:
            _, rtype, _, clen, pad = _HEADER.unpack_from(buf, pos)
            if rtype == _STDIN and clen == 0:
                return True
            pos += 8 + clen + pad
        return False

    def close(self) -> None:
        self.sock.close()


CONFIG = """
stage {{
    tcpsBackend "fpm" {{
        .nodes = ( [ "address": "@SOCK@", "keepConns": 1 ] )
        .queueTimeout = @QUEUE@
    }}
    app "php" {{
        .hostnames = ("*")
        .webRoot = "{base}/www"
        rule {{ fcgiProxy {{ .toBackend = "fpm" .keepConn = true }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("php") }}
}}
"""


def start(gorox, fpm: FakeFpm, queue: str = "30s"):  # type: ignore[no-untyped-def]
    return gorox(CONFIG.replace("@SOCK@", fpm.path).replace("@QUEUE@", queue))


def test_a_pooled_connection_the_application_closed_is_retried(gorox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each kept connection serves one request, then the application drops it when the next
    one comes: every request is still answered, each on a new connection."""
    fpm = FakeFpm(tmp_path / "fpm.sock", per_conn=1)
    try:
        g = start(gorox, fpm)
        with httpx.Client(timeout=10) as c:
            bodies = [c.get(g.url(f"/a.php?i={i}")).text for i in range(4)]
        assert bodies == ["ok 1", "ok 2", "ok 3", "ok 4"]
        assert fpm.connections >= 4
    finally:
        fpm.close()


def test_requests_wait_in_the_queue_and_each_is_answered_once(gorox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One kept connection, eight clients at once: they queue for it, and each request reaches
    the application exactly once, all over that one connection."""
    fpm = FakeFpm(tmp_path / "fpm.sock", delay=0.02)
    try:
        g = start(gorox, fpm)
        results: list[str] = []

        def fetch(i: int) -> None:
            with httpx.Client(timeout=10) as c:
                results.append(c.get(g.url(f"/a.php?i={i}")).text)

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == sorted(f"ok {n}" for n in range(1, 9))
        assert fpm.answered == 8
        assert fpm.connections == 1
    finally:
        fpm.close()


def test_the_queue_timeout_is_a_504(gorox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A request that waits longer than the backend's .queueTimeout for a connection gets a 504;
    the request holding the connection is answered as usual."""
    fpm = FakeFpm(tmp_path / "fpm.sock", delay=1.5)
    try:
        g = start(gorox, fpm, queue="300ms")
        first: list[httpx.Response] = []
        holder = threading.Thread(target=lambda: first.append(httpx.get(g.url("/a.php"), timeout=10)))
        holder.start()
        time.sleep(0.3)
        started = time.monotonic()
        r = httpx.get(g.url("/b.php"), timeout=10)
        assert r.status_code == 504
        assert time.monotonic() - started < 1.2
        holder.join()
        assert first[0].status_code == 200 and first[0].text == "ok 1"
    finally:
        fpm.close()


def test_a_client_that_leaves_the_queue_loses_its_place(gorox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A client that goes away while its request waits for the connection: the request never
    reaches the application, and the connection goes to the next request."""
    fpm = FakeFpm(tmp_path / "fpm.sock", delay=0.8)
    try:
        g = start(gorox, fpm)
        first: list[httpx.Response] = []
        holder = threading.Thread(target=lambda: first.append(httpx.get(g.url("/a.php"), timeout=10)))
        holder.start()
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", g.port)) as s:  # queued behind the first
            s.sendall(b"GET /gone.php HTTP/1.1\r\nhost: x\r\n\r\n")
            time.sleep(0.2)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a RST
        holder.join()
        assert first[0].text == "ok 1"
        r = httpx.get(g.url("/c.php"), timeout=10)
        assert r.text == "ok 2"
        assert fpm.answered == 2
        assert fpm.connections == 1
    finally:
        fpm.close()


@pytest.mark.parametrize("head", [b"Content-type: text/plain\r\nContent-Length: 99\r\n\r\n",
                                  b"Content-type: text/plain\r\nContent-Length: x\r\n\r\n"])
def test_a_whole_response_that_cannot_be_relayed_is_a_502(gorox, tmp_path: Path, head: bytes) -> None:  # type: ignore[no-untyped-def]
    """A body shorter than its Content-Length, or a Content-Length that is not a number: 502,
    and the server goes on answering."""
    fpm = FakeFpm(tmp_path / "fpm.sock", head=head)
    try:
        g = start(gorox, fpm)
        with httpx.Client(timeout=10) as c:
            assert c.get(g.url("/a.php")).status_code == 502
            fpm.head = b"Content-type: text/plain\r\n\r\n"
            assert c.get(g.url("/a.php")).status_code == 200
    finally:
        fpm.close()
