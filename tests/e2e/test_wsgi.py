"""The ``wsgi`` handlet end to end: a real gorox running tests/apps/wsgi_raw.py, a raw PEP 3333
application whose routes report what the app saw, driven with raw sockets and httpx.

One gorox serves the whole module: the app under ``/mnt`` (``.rootPath``), a second ``wsgi``
handlet of the same app with two threads under ``/bound``, a third with one thread and no queue
under ``/queue``, and the app at the root."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ..conftest import ROOT
from .h1util import Conn, fetch, wait_until

pytestmark = pytest.mark.timeout(60)

APPS = ROOT / "tests" / "apps"

CONFIG = """
stage {{
    app "a" {{
        .hostnames = ("*")
        rule $path ^= "/mnt/" {{ wsgi {{ .app = "wsgi_raw:app" .appDir = "%(apps)s" .rootPath = "/mnt" }} }}
        rule $path ^= "/bound/" {{
            wsgi {{ .app = "wsgi_raw:app" .appDir = "%(apps)s" .rootPath = "/bound" .threads = 2 }}
        }}
        rule $path ^= "/queue/" {{
            wsgi {{ .app = "wsgi_raw:app" .appDir = "%(apps)s" .rootPath = "/queue" .threads = 1 .maxQueue = 0 }}
        }}
        rule {{ wsgi {{ .app = "wsgi_raw:app" .appDir = "%(apps)s" }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
    httpxServer "small" {{ .address = "127.0.0.1:{port1}" .forApps = ("a") .maxContentSize = 100000 }}
}}
""" % {"apps": APPS}


@pytest.fixture(scope="module")
def g(gorox_module):  # type: ignore[no-untyped-def]
    return gorox_module(CONFIG, ports=2)


@pytest.fixture
def client(g):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=g.url(""), timeout=10) as c:
        yield c


def error_log(g) -> str:  # type: ignore[no-untyped-def]
    path = g.base / "data" / "log" / "error.log"
    return path.read_text(errors="replace") if path.exists() else ""


# -- environ -------------------------------------------------------------------------------------------------
def test_environ_has_every_pep3333_key(g) -> None:  # type: ignore[no-untyped-def]
    body = b"hello"
    with Conn(g.port) as c:
        local_port = c.sock.getsockname()[1]
        c.send(b"POST /mnt/env/a%20b%C3%A9?x=1&y=%20 HTTP/1.1\r\nHost: example.test:8080\r\n"
               b"Content-Type: text/plain\r\nContent-Length: 5\r\n"
               b"X-Multi: a\r\nX-Multi: b\r\nCookie: a=1\r\nCookie: b=2\r\nX_Sneaky: 1\r\n"
               b"Connection: keep-alive, X-Hop\r\nX-Hop: gone\r\nProxy: http://evil\r\n\r\n" + body)
        r = c.read_response()
    assert r is not None and r.status == 200
    env = r.json()
    types, seen_body = env.pop("_types"), env.pop("_body")
    assert seen_body == "hello"
    assert all(t == "str" for t in types.values()), types  # native strings, as PEP 3333 wants
    expected = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/mnt",
        "PATH_INFO": "/env/a b\u00c3\u00a9",   # the UTF-8 bytes of "é", one char per byte
        "QUERY_STRING": "x=1&y=%20",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "5",
        "SERVER_NAME": "example.test",
        "SERVER_PORT": str(g.port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "gorox",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": str(local_port),
        "HTTP_HOST": "example.test:8080",
        "HTTP_X_MULTI": "a, b",
        "HTTP_COOKIE": "a=1; b=2",
        "wsgi.version": [1, 0],
        "wsgi.url_scheme": "http",
        "wsgi.input_terminated": True,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,  # -single: one process
        "wsgi.run_once": False,
    }
    objects = {"wsgi.input", "wsgi.errors", "wsgi.file_wrapper"}
    assert set(env) == set(expected) | objects, set(env) ^ (set(expected) | objects)
    for key, value in expected.items():
        assert env[key] == value, key
    assert {"read", "readline", "readlines", "__iter__"} <= set(env["wsgi.input"]["abilities"])
    assert {"write", "writelines", "flush"} <= set(env["wsgi.errors"]["abilities"])
    assert "__call__" in env["wsgi.file_wrapper"]["abilities"]
    # wsgi.errors goes to the error log.
    assert wait_until(lambda: "environ-route wrote this to wsgi.errors" in error_log(g))


def test_environ_without_root_path_and_body(client: httpx.Client) -> None:
    env = client.get("/env/x", params={"q": "1"}).json()
    assert env["SCRIPT_NAME"] == "" and env["PATH_INFO"] == "/env/x" and env["QUERY_STRING"] == "q=1"
    assert "CONTENT_LENGTH" not in env and env["_body"] == ""
    assert env["REQUEST_METHOD"] == "GET"


# -- wsgi.input ------------------------------------------------------------------------------------------------
def test_chunked_upload_is_streamed_in_pieces(client: httpx.Client) -> None:
    data = os.urandom(10 << 20)

    def pieces():  # irregular chunk sizes, so reads span chunk boundaries
        pos, size = 0, 1000
        while pos < len(data):
            yield data[pos:pos + size]
            pos += size
            size = size * 3 % 300_007 + 17
    r = client.post("/upload", params={"piece": "65536"}, content=pieces())
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert got["length"] == len(data)
    assert got["biggest"] == 65536 and got["pieces"] == len(data) // 65536


def test_sized_upload(client: httpx.Client) -> None:
    data = os.urandom(3 << 20)
    got = client.post("/upload", params={"piece": "100000"}, content=data).json()
    assert got["sha256"] == hashlib.sha256(data).hexdigest() and got["length"] == len(data)


def test_input_is_read_on_demand_not_up_front(g) -> None:  # type: ignore[no-untyped-def]
    """The app answers from the first 10 bytes while the rest of the body is not even sent."""
    with Conn(g.port, timeout=5) as c:
        c.send(b"POST /peek?n=10 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"a\r\n0123456789\r\n")
        r = c.read_response()
    assert r is not None and r.status == 200 and r.json() == {"peeked": "0123456789"}


def test_body_over_the_limit_is_refused_while_the_app_reads(g) -> None:  # type: ignore[no-untyped-def]
    """A chunked body larger than the server's .maxContentSize: the app's read fails, the client
    gets 413 (not the app's 500), and the app's thread is free again."""
    with Conn(g.ports[1]) as c:
        c.send(b"POST /upload?piece=1000 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(30):
                c.send(b"1000\r\n" + b"z" * 0x1000 + b"\r\n")
        except OSError:
            pass  # the server may stop reading once it refused
        r = c.read_response()
    assert r is not None and r.status == 413
    assert httpx.get(g.url("/write", port=g.ports[1])).status_code == 200


def test_readline_readlines_and_iteration(g) -> None:  # type: ignore[no-untyped-def]
    body = b"line one\nabcdefgh\nthird\nfourth\nlast-no-newline"
    with Conn(g.port) as c:  # sent in small chunks: lines span chunk boundaries
        c.send(b"POST /lines HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(body), 4):
            piece = body[i:i + 4]
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        c.send(b"0\r\n\r\n")
        r = c.read_response()
    assert r is not None and r.status == 200
    assert r.json() == {"first": "line one\n", "limited": "abc", "rest": "defgh\n", "two": ["third\n"],
                        "remaining": ["fourth\n", "last-no-newline"], "eof": True}


# -- responses -------------------------------------------------------------------------------------------------
def test_write_callable(client: httpx.Client) -> None:
    r = client.get("/write", params={"n": "3"})
    assert r.status_code == 200
    assert r.text == "written 0\nwritten 1\nwritten 2\nreturned\n"


def test_generator_response_is_streamed(g, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mark = tmp_path / "stream.mark"
    arrivals: list[tuple[float, bytes]] = []
    with httpx.Client(timeout=10) as c:
        with c.stream("GET", g.url("/stream"), params={"n": "4", "delay": "0.3", "mark": str(mark)}) as r:
            assert r.headers["transfer-encoding"] == "chunked"
            for piece in r.iter_raw():
                arrivals.append((time.monotonic(), piece))
    assert b"".join(p for _, p in arrivals) == b"chunk 0\nchunk 1\nchunk 2\nchunk 3\n"
    assert len(arrivals) >= 3, arrivals
    assert arrivals[-1][0] - arrivals[0][0] > 0.6  # the first chunk came long before the last
    assert wait_until(lambda: mark.exists() and mark.read_text() == "closed 4\n")


def test_close_is_called(client: httpx.Client, tmp_path: Path) -> None:
    mark = tmp_path / "close.mark"
    r = client.get("/closing", params={"mark": str(mark)})
    assert r.status_code == 200 and r.text == "hello" and r.headers["content-length"] == "5"
    assert wait_until(lambda: mark.exists() and mark.read_text() == "closed 1\n")


def test_file_wrapper_sends_the_file(client: httpx.Client, tmp_path: Path) -> None:
    data = os.urandom(1 << 20)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    mark = tmp_path / "file.mark"
    r = client.get("/file", params={"path": str(path), "mark": str(mark)})
    assert r.status_code == 200 and r.content == data and r.headers["content-length"] == str(len(data))
    # Sent with sendfile from the file's descriptor: the app's file object is never read, and closed.
    assert wait_until(lambda: mark.exists() and mark.read_text() == "closed\n")
    # From the file's position, and no more than the app's Content-Length.
    r = client.get("/file", params={"path": str(path), "offset": "1000", "length": "5000"})
    assert r.content == data[1000:6000]
    # Without a file descriptor, the wrapper is iterated.
    r = client.get("/filelike")
    assert r.content == b"from memory " * 1000


def test_exc_info_replaces_headers_before_the_head_is_sent(client: httpx.Client) -> None:
    r = client.get("/excinfo")
    assert r.status_code == 503 and r.text == "replaced"
    assert r.headers["x-second"] == "yes" and "x-first" not in r.headers


def test_exc_info_after_the_head_reraises_and_aborts(g, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mark = tmp_path / "late.mark"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(g.url(f"/excinfo-late?mark={mark}"), timeout=5)
    assert wait_until(lambda: mark.exists() and mark.read_text() == "re-raised\n")


def test_start_response_twice_without_exc_info_is_an_error(client: httpx.Client) -> None:
    assert client.get("/twice").text == "RuntimeError"


def test_exception_gives_500_and_traceback_in_error_log(g, client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/boom")
    assert r.status_code == 500
    assert wait_until(lambda: "boom-marker: the app failed" in error_log(g))
    log = error_log(g)
    assert "Traceback (most recent call last)" in log and "wsgi_raw.py" in log
    assert client.get("/write").status_code == 200  # the worker is fine


def test_exception_after_the_head_aborts_the_connection(g, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mark = tmp_path / "iter.mark"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(g.url(f"/boom-iter?mark={mark}"), timeout=5)
    assert wait_until(lambda: mark.exists() and mark.read_text() == "closed 1\n")
    assert wait_until(lambda: "boom-iter-marker" in error_log(g))


def test_short_body_against_content_length_aborts(g) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(g.url("/short"), timeout=5)


def test_head_keeps_the_apps_content_length(g) -> None:  # type: ignore[no-untyped-def]
    r = fetch(g.port, b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n", head=True)
    assert r.status == 200 and r.header("content-length") == "1234" and r.body == b""


# -- threads ---------------------------------------------------------------------------------------------------
def test_thread_pool_bounds_concurrency(g) -> None:  # type: ignore[no-untyped-def]
    httpx.get(g.url("/bound/max?reset=1"))
    started = time.monotonic()
    with ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda _: httpx.get(g.url("/bound/slow?delay=0.3"), timeout=10), range(6)))
    elapsed = time.monotonic() - started
    assert all(r.status_code == 200 for r in results)
    assert httpx.get(g.url("/bound/max")).json()["max"] == 2
    assert elapsed >= 0.85  # three waves of two
    assert len({r.json()["thread"] for r in results}) <= 2


def test_max_queue_refuses_with_503(g) -> None:  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(1) as ex:
        slow = ex.submit(httpx.get, g.url("/queue/slow?delay=0.5"), timeout=10)
        time.sleep(0.2)
        r = httpx.get(g.url("/queue/slow?delay=0"), timeout=5)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert slow.result().status_code == 200
    assert httpx.get(g.url("/queue/slow?delay=0"), timeout=5).status_code == 200


# -- clients that go away -------------------------------------------------------------------------------------
def test_client_disconnect_mid_stream_closes_the_iterable(g, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mark = tmp_path / "endless.mark"
    sock = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    sock.sendall(f"GET /endless?mark={mark} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = 0
    while got < 1 << 20:
        got += len(sock.recv(65536))
    sock.close()
    assert wait_until(lambda: mark.exists() and mark.read_text().startswith("closed "))
    time.sleep(0.3)
    assert mark.read_text().count("closed") == 1  # closed once, and the generator stopped
    assert httpx.get(g.url("/write")).status_code == 200


def test_client_disconnect_mid_body_frees_the_thread(g) -> None:  # type: ignore[no-untyped-def]
    """Both threads of /bound read bodies whose clients vanish: their reads fail, the threads
    come back, and the next request is served at once."""
    socks = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        s.sendall(b"POST /bound/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 5000)
        socks.append(s)
    time.sleep(0.3)
    for s in socks:
        s.close()
    started = time.monotonic()
    r = httpx.get(g.url("/bound/slow?delay=0"), timeout=5)
    assert r.status_code == 200 and time.monotonic() - started < 2


def test_slow_reader_holds_the_app_back(g, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Back-pressure: while the client reads nothing, the app's thread waits for each write."""
    mark = tmp_path / "slow.mark"
    sock = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(f"GET /endless?mark={mark}&delay=0.001 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.recv(100)
    time.sleep(1.5)  # unhindered, the app would make ~1000 chunks of 64 KiB by now
    sock.close()
    assert wait_until(lambda: mark.exists())
    produced = int(mark.read_text().split()[1])
    assert produced < 300, produced


def test_many_concurrent_requests(g) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with httpx.Client(base_url=g.url(""), timeout=10) as c:
                for i in range(20):
                    r = c.post("/upload", params={"piece": "7"}, content=b"abc" * i)
                    assert r.json()["length"] == 3 * i
                    assert c.get("/write", params={"n": "2"}).text == "written 0\nwritten 1\nreturned\n"
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_an_app_that_cannot_be_imported_stops_the_start(gorox) -> None:  # type: ignore[no-untyped-def]
    bad = gorox("""
stage {{
    app "a" {{ .hostnames = ("*") rule {{ wsgi {{ .app = "no_such_module:app" .appDir = "%s" }} }} }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
""" % APPS, wait=False)
    assert bad.proc.wait(20) == 1
    assert "cannot load the app" in bad.log() and "no module named no_such_module" in bad.log()
