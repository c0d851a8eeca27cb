"""The Python app framework end to end: the example app (apps/example) and a test app, served
by a real gorox process; clients are httpx, curl and raw sockets.

The base directory gets an ``apps`` package that serves the repository's ``apps/example``
(gorox imports ``apps`` from its base directory) and adds ``testApp``, which fails on purpose
and keeps uploads, to test what the example does not show.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .h1util import Conn

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
stage {{
    app "a" {{
        .hostnames = ("*")
        .maxUploadContentSize = 8M
        <@ROOT@/apps/example/app.conf>
        rule $path ^= "/test/" {{ testApp {{ .prefix = "/test" }} }}
        rule $path == "/example/later" {{ .returnCode = 200 .returnText = "a later rule" }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
""".replace("@ROOT@", str(ROOT))

APPS_SHIM = f'''
"""Serve the repository's apps/example from this base directory, plus a test-only app."""
import asyncio, os
__path__.append({str(ROOT / "apps")!r})
from . import example  # noqa: E402,F401
from hemi.core.registry import handlet  # noqa: E402
from hemi.web.framework import AppHandlet  # noqa: E402


@handlet("testApp")
class TestApp(AppHandlet):
    def GET_boom(self, req, resp):
        raise RuntimeError("boom in a sync handler")

    async def GET_aboom(self, req, resp):
        await asyncio.sleep(0)
        raise RuntimeError("boom in an async handler")

    def GET_ok(self, req, resp):
        return "ok"

    async def POST_keep(self, req, resp):
        keep = os.path.join(self.stage.dirs.base, "kept")
        os.makedirs(keep, exist_ok=True)
        return {{"kept": [up.move_to(keep) for up in await req.uploads()]}}
'''

BIG = 5 << 20


@pytest.fixture
def g(gorox):  # type: ignore[no-untyped-def]
    return gorox(CONFIG, files={"apps/__init__.py": APPS_SHIM})


@pytest.fixture
def client(g):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=g.url(""), timeout=10) as c:
        yield c


def _temp_dir(g) -> Path:  # type: ignore[no-untyped-def]
    return g.base / "data/tmp/web/apps/a"


# -- routing ---------------------------------------------------------------------------------------

def test_routes_by_method_name_and_decorator(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/example/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Hello from a Python app" in r.text and 'action="/example/upload"' in r.text
    r = client.get("/example/hello", params={"name": "Ada"})
    assert r.status_code == 200 and r.text == "Hello, Ada!\n"           # sync, returns a str
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    r = client.get("/example/slow")
    assert r.status_code == 200 and r.text == "done after a nap\n"     # async
    r = client.get("/example/api/users/42", params={"fields": "name,email", "page": "3"})
    assert r.json() == {"id": 42, "fields": ["name", "email"], "page": 3}
    assert r.headers["content-type"] == "application/json"
    r = client.get("/example/files/docs/a%20b/readme.txt")
    assert r.json() == {"path": "docs/a b/readme.txt", "segments": ["docs", "a b", "readme.txt"]}


def test_head_405_fall_through_and_prefix(client) -> None:  # type: ignore[no-untyped-def]
    r = client.head("/example/hello")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "14"
    r = client.delete("/example/api/echo")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    r = client.post("/example/hello")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    r = client.get("/example/api/users/abc")                             # {id:int} does not match
    assert r.status_code == 404
    r = client.get("/example/later")                                     # no route: the next rule answers
    assert r.status_code == 200 and r.text == "a later rule"
    r = client.get("/example/nowhere")
    assert r.status_code == 404
    r = client.get("/examples")                                          # not under the prefix
    assert r.status_code == 404
    r = client.get("/example", params={"x": "1"})
    assert r.status_code == 301 and r.headers["location"] == "/example/?x=1"
    r = client.get("/example/old")
    assert r.status_code == 302 and r.headers["location"] == "/example/"
    assert client.get("/example/old", follow_redirects=True).text.startswith("<!doctype html>")


# -- forms and uploads -----------------------------------------------------------------------------

def test_urlencoded_form(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/example/form", data={"name": "Ada Lovelace", "lang": "Python & C", "note": "é"})
    assert r.status_code == 200
    assert r.json() == {"fields": [["name", "Ada Lovelace"], ["lang", "Python & C"], ["note", "é"]]}
    r = client.post("/example/form", content=b"a=1&a=2&b", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.json() == {"fields": [["a", "1"], ["a", "2"], ["b", ""]]}
    r = client.post("/example/form", content=b"not a form", headers={"content-type": "text/plain"})
    assert r.json() == {"fields": []}


def test_multipart_upload_is_spooled_and_removed(g, client) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(BIG)
    small = b"second file\n"
    r = client.post("/example/upload", data={"title": "my files"},
                    files=[("file", ("big.bin", data, "application/octet-stream")),
                           ("file", ("small.txt", small, "text/plain"))])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fields"] == [["title", "my files"]]
    assert body["files"] == [
        {"field": "file", "filename": "big.bin", "type": "application/octet-stream", "size": BIG,
         "sha256": hashlib.sha256(data).hexdigest()},
        {"field": "file", "filename": "small.txt", "type": "text/plain", "size": len(small),
         "sha256": hashlib.sha256(small).hexdigest()},
    ]
    assert _temp_dir(g).is_dir() and list(_temp_dir(g).iterdir()) == []   # deleted after the request
    # The same with curl (its own multipart encoder, and Expect: 100-continue).
    f = g.base / "up.bin"
    f.write_bytes(data)
    out = subprocess.run(["curl", "-s", "-F", "title=via curl", "-F", f"file=@{f}", g.url("/example/upload")],
                         capture_output=True, timeout=20, check=True).stdout
    assert hashlib.sha256(data).hexdigest().encode() in out and b'"size":5242880' in out
    assert list(_temp_dir(g).iterdir()) == []


def test_moved_upload_is_kept(g, client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/test/keep", files={"f": ("../../evil.txt", b"keep me", "text/plain")})
    assert r.status_code == 200
    kept = r.json()["kept"]
    assert kept == [str(g.base / "kept" / "evil.txt")]                   # the basename only
    assert Path(kept[0]).read_bytes() == b"keep me"
    assert list(_temp_dir(g).iterdir()) == []


def test_upload_limits_and_malformed_forms(g) -> None:  # type: ignore[no-untyped-def]
    big = g.base / "too-big.bin"
    big.write_bytes(b"x" * (9 << 20))                                     # over .maxUploadContentSize = 8M
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-F", f"file=@{big}",
                          g.url("/example/upload")], capture_output=True, timeout=20).stdout
    assert out == b"413"
    # A sized body over the limit is refused before it is read.
    with Conn(g.port) as c:
        c.send(b"POST /example/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 9437184\r\n"
               b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n")
        r = c.read_response()
        assert r is not None and r.status == 413 and c.closed_after()
    # A chunked one is counted as it arrives: past the limit the answer is 413 and a close.
    with Conn(g.port) as c:
        c.send(b"POST /example/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n")
        part = b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n'
        c.send(b"%x\r\n%s\r\n" % (len(part), part))
        piece = b"y" * (1 << 20)
        for _ in range(8):                                                # 8M and the part head: just over
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        r = c.read_response()
        assert r is not None and r.status == 413 and c.closed_after()
    assert list(_temp_dir(g).iterdir()) == []                             # the partial file is gone
    # Malformed multipart bodies are 400: no closing delimiter, no boundary.
    body = b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nabc'
    for ctype in (b"multipart/form-data; boundary=xyz", b"multipart/form-data"):
        with Conn(g.port) as c:
            c.send(b"POST /example/upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Type: %s\r\n\r\n%s"
                   % (len(body), ctype, body))
            r = c.read_response()
            assert r is not None and r.status == 400
    assert list(_temp_dir(g).iterdir()) == []
    # The server is fine afterwards.
    assert httpx.get(g.url("/example/hello")).status_code == 200


# -- cookies, JSON ---------------------------------------------------------------------------------

def test_cookies_round_trip(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/example/counter")
    assert r.json() == {"count": 1}
    assert r.headers["set-cookie"] == "count=1; Path=/example/; Max-Age=3600; HttpOnly; SameSite=Lax"
    assert client.get("/example/counter").json() == {"count": 2}
    assert client.get("/example/counter").json() == {"count": 3}
    r = httpx.get(str(client.base_url) + "/example/counter", cookies={"count": "junk"})
    assert r.json() == {"count": 1}


def test_json_in_and_out(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/example/api/echo", json={"a": [1, 2, {"b": None}], "ü": "ok"})
    assert r.status_code == 200 and r.json() == {"received": {"a": [1, 2, {"b": None}], "ü": "ok"}}
    r = client.post("/example/api/echo", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = client.get("/example/api/echo", params={"q": "x y", "n": "1"})
    assert r.json() == {"query": {"q": "x y", "n": "1"}}


# -- streaming and trailers ------------------------------------------------------------------------

def test_streaming_arrives_in_pieces(g) -> None:  # type: ignore[no-untyped-def]
    arrivals: list[tuple[float, bytes]] = []
    with httpx.stream("GET", g.url("/example/stream"), params={"n": "5"}, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
        for piece in r.iter_raw():
            arrivals.append((time.monotonic(), piece))
    assert b"".join(p for _, p in arrivals) == b"".join(b"chunk %d\n" % i for i in range(5))
    assert len(arrivals) >= 3                                           # not one buffered blob
    assert arrivals[-1][0] - arrivals[0][0] > 0.1                       # 4 pauses of 50 ms between chunks


def test_trailers(g) -> None:  # type: ignore[no-untyped-def]
    digest = hashlib.sha256(b"alpha\nbeta\ngamma\n").hexdigest()
    with Conn(g.port) as c:
        c.send(b"GET /example/trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        r = c.read_response()
        assert r is not None and r.status == 200 and r.body == b"alpha\nbeta\ngamma\n"
        assert r.header("transfer-encoding") == "chunked"
        assert r.trailers == [("x-content-sha256", digest)]
    out = subprocess.run(["curl", "-s", "--raw", g.url("/example/trailers")], capture_output=True, timeout=10,
                         check=True).stdout
    assert out.endswith(b"0\r\nx-content-sha256: " + digest.encode() + b"\r\n\r\n")


# -- failures --------------------------------------------------------------------------------------

def test_exception_is_500_logged_and_the_connection_survives(g) -> None:  # type: ignore[no-untyped-def]
    with Conn(g.port) as c:
        for path in (b"/test/boom", b"/test/aboom"):
            c.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
            r = c.read_response()
            assert r is not None and r.status == 500
            c.send(b"GET /test/ok HTTP/1.1\r\nHost: x\r\n\r\n")          # same connection
            r = c.read_response()
            assert r is not None and r.status == 200 and r.body == b"ok"
    log = (g.base / "data/log/error.log").read_text()
    assert "Traceback (most recent call last)" in log
    assert "RuntimeError: boom in a sync handler" in log and "RuntimeError: boom in an async handler" in log
    assert g.proc.poll() is None
