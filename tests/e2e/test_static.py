"""End-to-end tests of the ``static`` and ``favicon`` handlets, and of the built-in welcome
site: a real gorox process, driven by httpx, curl and raw sockets (for targets a client would
normalise)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import ROOT, gorox_cmd, wait_port
from .h1util import request

CONFIG = """
stage {{
    fcache {{ .cacheTimeout = 200ms }}
    app "a" {{
        .hostnames = ("*")
        .webRoot = "{base}/www"
        rule $path ^= "/listed/" {{ static {{ .autoIndex = true }} }}
        rule $path ^= "/types/" {{
            static {{
                .mimeTypes = ["foo": "application/x-foo", ".txt": "text/x-custom"]
                .defaultType = "application/x-unknown"
            }}
        }}
        rule $path ^= "/dev/" {{ static {{ .developerMode = true }} }}
        rule $path ^= "/aged/" {{ static {{ .maxAge = 1h }} }}
        rule $path == "/favicon.ico" {{ favicon {{ }} }}
        rule {{ static {{ }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
"""

SECRET = "TOPSECRET-do-not-leak"
BIG = os.urandom(1 << 20)  # well above fcache's .smallFileSize: served with sendfile
A_TXT = "hello, static world\n"
FILES: dict[str, str | bytes] = {
    "www/index.html": "<h1>home</h1>",
    "www/a.txt": A_TXT,
    "www/style.css": "body{}",
    "www/data.json": "{}",
    "www/noext": "plain",
    "www/big.bin": BIG,
    "www/small.txt": "v1",
    "www/sub/x.txt": "in sub",
    "www/listed/b.txt": "bbb",
    "www/listed/<b>&\"q'.txt": "tricky",
    "www/listed/sp ace.txt": "space",
    "www/listed/.hidden": "hidden",
    "www/listed/dir/inner.txt": "inner",
    "www/types/x.foo": "foo",
    "www/types/x.txt": "txt",
    "www/types/x.zzz": "zzz",
    "www/types/x.html": "<p>html</p>",
    "www/dev/d.txt": "dev",
    "www/aged/g.txt": "aged",
    "secret.txt": SECRET,
    "outside/secret.txt": SECRET,
}


@pytest.fixture
def site(gorox):  # type: ignore[no-untyped-def]
    g = gorox(CONFIG, files=FILES)
    www = g.base / "www"
    os.symlink(g.base / "secret.txt", www / "link.txt")
    os.symlink(g.base / "outside", www / "linkdir")
    os.symlink(www / "a.txt", www / "inner-link.txt")  # a symlink that stays inside the root
    with httpx.Client(base_url=g.url(""), timeout=10) as client:
        yield g, client


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-s", "--max-time", "10", *args], capture_output=True, timeout=20, check=True)


def curl_head(out: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of ``curl -i`` output."""
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


# -- basics -------------------------------------------------------------------------------------------
def test_files_index_redirect_403_404_405(site) -> None:  # type: ignore[no-untyped-def]
    g, c = site
    r = c.get("/a.txt")
    assert r.status_code == 200 and r.text == A_TXT
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["accept-ranges"] == "bytes"
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', r.headers["etag"])
    assert r.headers["last-modified"].endswith(" GMT")
    assert "cache-control" not in r.headers

    r = c.get("/")
    assert r.status_code == 200 and r.text == "<h1>home</h1>"
    assert r.headers["content-type"] == "text/html; charset=utf-8"

    r = c.get("/sub", params={"x": "1"})
    assert r.status_code == 301 and r.headers["location"] == "/sub/?x=1"
    assert r.content == b""
    assert c.get("/sub/").status_code == 403  # no index.html, autoIndex off
    assert c.get("/sub/x.txt").text == "in sub"

    r = c.get("/missing.txt")
    assert r.status_code == 404 and "404" in r.text
    assert c.get("/missing/").status_code == 404   # no such directory: 404, not 403
    assert c.get("/a.txt/").status_code == 404     # a file is not a directory

    r = c.post("/a.txt", content=b"x")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert c.request("DELETE", "/").status_code == 405

    # A symlink that stays inside the root is followed.
    assert c.get("/inner-link.txt").text == A_TXT


def test_head_with_curl(site) -> None:  # type: ignore[no-untyped-def]
    g, _ = site
    for path, size in (("/a.txt", len(A_TXT)), ("/big.bin", len(BIG))):
        out = curl("-I", g.url(path)).stdout
        status, headers, body = curl_head(out)
        assert status == 200 and int(headers["content-length"]) == size
        assert body == b""
    # Raw: a HEAD response carries no body bytes even on a kept-alive connection.
    resp, _ = request(g.port, b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n", head=True)
    assert resp is not None and resp.header("content-length") == str(len(BIG))


def test_autoindex_listing(site) -> None:  # type: ignore[no-untyped-def]
    g, c = site
    r = c.get("/listed/")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    page = r.text
    assert "&lt;b&gt;&amp;&quot;q&#x27;.txt" in page
    assert "<b>&" not in page
    assert 'href="./%3Cb%3E%26%22q%27.txt"' in page
    assert 'href="./sp%20ace.txt"' in page and 'href="./dir/"' in page
    assert ".hidden" not in page
    assert 'href="../"' in page
    assert page.index("dir/") < page.index("b.txt") < page.index("sp ace.txt")  # dirs first, sorted
    assert re.search(r">3</td>", page)  # b.txt's size
    # The tricky name links to itself.
    assert c.get("/listed/%3Cb%3E%26%22q%27.txt").text == "tricky"
    assert c.get("/listed").headers["location"] == "/listed/"
    assert c.get("/listed/dir/").status_code == 200


# -- validators and conditionals ---------------------------------------------------------------------
def test_conditionals(site) -> None:  # type: ignore[no-untyped-def]
    g, c = site
    r = c.get("/a.txt")
    etag, lm = r.headers["etag"], r.headers["last-modified"]

    r = c.get("/a.txt", headers={"if-none-match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert c.get("/a.txt", headers={"if-none-match": '"other", ' + etag}).status_code == 304
    assert c.get("/a.txt", headers={"if-none-match": '"other"'}).status_code == 200
    assert c.get("/a.txt", headers={"if-none-match": "*"}).status_code == 304
    assert c.head("/a.txt", headers={"if-none-match": etag}).status_code == 304

    assert c.get("/a.txt", headers={"if-modified-since": lm}).status_code == 304
    assert c.get("/a.txt", headers={"if-modified-since": "Thu, 01 Jan 1970 00:00:00 GMT"}).status_code == 200
    assert c.get("/a.txt", headers={"if-modified-since": "garbage"}).status_code == 200

    assert c.get("/a.txt", headers={"if-match": '"nope"'}).status_code == 412
    assert c.get("/a.txt", headers={"if-match": etag}).status_code == 200
    assert c.get("/a.txt", headers={"if-unmodified-since": "Thu, 01 Jan 1970 00:00:00 GMT"}).status_code == 412

    # Large files (sendfile path) answer conditionals the same way.
    etag_big = c.get("/big.bin").headers["etag"]
    r = c.get("/big.bin", headers={"if-none-match": etag_big})
    assert r.status_code == 304 and r.content == b""


def test_ranges(site) -> None:  # type: ignore[no-untyped-def]
    g, c = site
    body = A_TXT.encode()
    size = len(body)
    # Single range with curl, on a small (in-memory) and a large (sendfile) file.
    status, headers, got = curl_head(curl("-i", "-r", "0-4", g.url("/a.txt")).stdout)
    assert status == 206 and got == body[:5]
    assert headers["content-range"] == f"bytes 0-4/{size}" and headers["content-length"] == "5"
    status, headers, got = curl_head(curl("-i", "-r", "1000000-1000999", g.url("/big.bin")).stdout)
    assert status == 206 and got == BIG[1000000:1001000]
    assert headers["content-range"] == f"bytes 1000000-1000999/{len(BIG)}"
    status, headers, got = curl_head(curl("-i", "-r", "-10", g.url("/big.bin")).stdout)
    assert status == 206 and got == BIG[-10:]

    # Several ranges: multipart/byteranges.
    for path, data in (("/a.txt", body), ("/big.bin", BIG)):
        r = c.get(path, headers={"range": "bytes=0-1, 5-7"})
        assert r.status_code == 206
        ctype = r.headers["content-type"]
        assert ctype.startswith("multipart/byteranges; boundary=")
        boundary = ctype.split("boundary=", 1)[1].strip('"')
        parts = r.content.split(b"--" + boundary.encode())
        assert parts[-1] == b"--\r\n"
        bodies = [p.split(b"\r\n\r\n", 1)[1][:-2] for p in parts[1:-1]]
        assert bodies == [data[0:2], data[5:8]]
        assert f"Content-Range: bytes 5-7/{len(data)}".encode() in r.content

    # Unsatisfiable: 416 with the size.
    r = c.get("/a.txt", headers={"range": f"bytes={size + 10}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    # Invalid: ignored.
    for bad in ("bytes=5-2", "items=0-1", "bytes=abc", "bytes="):
        r = c.get("/a.txt", headers={"range": bad})
        assert r.status_code == 200 and r.content == body, bad
    # HEAD ignores Range.
    r = c.head("/a.txt", headers={"range": "bytes=0-1"})
    assert r.status_code == 200 and r.headers["content-length"] == str(size)

    # If-Range: a matching validator gives the range, anything else the whole file.
    first = c.get("/a.txt")
    etag, lm = first.headers["etag"], first.headers["last-modified"]
    r = c.get("/a.txt", headers={"range": "bytes=0-4", "if-range": etag})
    assert r.status_code == 206 and r.content == body[:5]
    r = c.get("/a.txt", headers={"range": "bytes=0-4", "if-range": lm})
    assert r.status_code == 206
    status, headers, got = curl_head(curl("-i", "-r", "0-4", "-H", 'If-Range: "stale-1"', g.url("/a.txt")).stdout)
    assert status == 200 and got == body
    r = c.get("/a.txt", headers={"range": "bytes=0-4", "if-range": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert r.status_code == 200 and r.content == body


def test_large_file_intact(site) -> None:  # type: ignore[no-untyped-def]
    g, c = site
    for _ in range(2):  # the second time from the cached descriptor
        r = c.get("/big.bin")
        assert r.status_code == 200 and r.content == BIG
        assert r.headers["content-type"] == "application/octet-stream"
    out = curl(g.url("/big.bin")).stdout
    assert out == BIG


def test_cache_sees_changes(site) -> None:  # type: ignore[no-untyped-def]
    g, c = site
    assert c.get("/small.txt").text == "v1"
    etag1 = c.get("/small.txt").headers["etag"]
    (g.base / "www" / "small.txt").write_text("version two")
    time.sleep(0.35)  # past .cacheTimeout = 200ms
    r = c.get("/small.txt")
    assert r.text == "version two" and r.headers["etag"] != etag1
    (g.base / "www" / "small.txt").unlink()
    time.sleep(0.35)
    assert c.get("/small.txt").status_code == 404


def test_mime_types_and_cache_headers(site) -> None:  # type: ignore[no-untyped-def]
    g, c = site
    expect = {
        "/style.css": "text/css; charset=utf-8",
        "/data.json": "application/json; charset=utf-8",
        "/noext": "application/octet-stream",
        "/types/x.foo": "application/x-foo",
        "/types/x.txt": "text/x-custom",       # override of a built-in type
        "/types/x.zzz": "application/x-unknown",  # .defaultType
        "/types/x.html": "text/html; charset=utf-8",  # built-ins still there
    }
    for path, ctype in expect.items():
        assert c.get(path).headers["content-type"] == ctype, path
    r = c.get("/dev/d.txt")
    assert r.headers["cache-control"] == "no-cache, no-store, must-revalidate"
    assert "etag" not in r.headers and "last-modified" not in r.headers
    r = c.get("/aged/g.txt")
    assert r.headers["cache-control"] == "max-age=3600" and "etag" in r.headers


# -- containment -------------------------------------------------------------------------------------
TRAVERSALS = [
    b"/../secret.txt",
    b"/%2e%2e/secret.txt",
    b"/%2E%2E/secret.txt",
    b"/%2e%2e%2fsecret.txt",
    b"/..%2fsecret.txt",
    b"/a/../../secret.txt",
    b"/sub/..%2f..%2fsecret.txt",
    b"/%2e%2e%2f%2e%2e%2fsecret.txt",
    b"/..\\secret.txt",
    b"/..%5csecret.txt",
    b"/%5c..%5csecret.txt",
    b"/.%2e/secret.txt",
    b"//secret.txt",
    b"/secret.txt%00.txt",
    b"/%00",
    b"/a.txt%00",
    b"/link.txt",
    b"/linkdir/secret.txt",
    b"/linkdir/",
    b"/linkdir",
    b"http://x/../secret.txt",
    b"http://x/%2e%2e/secret.txt",
]


def test_path_traversal_never_leaks(site) -> None:  # type: ignore[no-untyped-def]
    g, _ = site
    for target in TRAVERSALS:
        resp, _ = request(g.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert resp is not None, target
        assert resp.status in (400, 404), (target, resp.status)
        assert SECRET.encode() not in resp.body, target
    # A NUL that gets through decoding is refused, never passed to the file system.
    resp, _ = request(g.port, b"GET /a.txt%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert resp is not None and resp.status == 400


def test_symlinks_outside_allowed(gorox) -> None:  # type: ignore[no-untyped-def]
    g = gorox("""
stage {{
    app "a" {{
        .hostnames = ("*")
        .webRoot = "{base}/www"
        rule {{ static {{ .allowSymlinksOutside = true }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
""", files={"www/a.txt": "a", "secret.txt": SECRET})
    os.symlink(g.base / "secret.txt", g.base / "www" / "link.txt")
    r = httpx.get(g.url("/link.txt"))
    assert r.status_code == 200 and r.text == SECRET
    # ``..`` still never climbs out, symlinks allowed or not.
    resp, _ = request(g.port, b"GET /%2e%2e/secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert resp is not None and resp.status == 404 and SECRET.encode() not in resp.body


def test_static_webroot_of_its_own_and_config_errors(gorox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    g = gorox("""
stage {{
    app "a" {{
        .hostnames = ("*")
        rule $path ^= "/docs/" {{ static {{ .webRoot = "{base}/site" }} }}
        rule {{ .returnCode = 200 .returnText = "fallback" }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
""", files={"site/docs/index.html": "docs home"})
    r = httpx.get(g.url("/docs/"))
    assert r.status_code == 200 and r.text == "docs home"

    # No .webRoot anywhere: a config error, reported by `gorox check`.
    conf = tmp_path / "bad.conf"
    conf.write_text('stage { app "a" { .hostnames = ("*") rule { static { .indexFile = "a/b" } } } }')
    out = subprocess.run(gorox_cmd("check", "-config", str(conf), "-base", str(tmp_path)),
                         capture_output=True, text=True, timeout=30, env=_env())
    assert out.returncode == 1
    assert "has no .webRoot" in out.stderr and ".indexFile" in out.stderr


# -- favicon -----------------------------------------------------------------------------------------
def test_favicon(site) -> None:  # type: ignore[no-untyped-def]
    g, c = site
    r = c.get("/favicon.ico")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert r.headers["content-type"] == "image/png"
    assert r.headers["last-modified"] == "Fri, 13 Feb 2009 23:31:30 GMT"
    etag = r.headers["etag"]
    assert etag.startswith('"favi-')
    r = c.get("/favicon.ico", headers={"if-none-match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert c.get("/favicon.ico", headers={"if-modified-since": "Fri, 13 Feb 2009 23:31:30 GMT"}).status_code == 304
    assert c.get("/favicon.ico", headers={"if-match": '"x"'}).status_code == 412
    assert c.post("/favicon.ico").status_code == 405


# -- the built-in default config -----------------------------------------------------------------------
def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_builtin_default_config_serves_welcome_site(tmp_path: Path) -> None:
    if _port_busy(3080):
        pytest.skip("port 3080 is busy")
    assert not (tmp_path / "conf" / "gorox.conf").exists()
    out = open(tmp_path / "gorox.out", "wb")
    proc = subprocess.Popen(gorox_cmd("-base", str(tmp_path)), cwd=str(tmp_path), env=_env(),
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_port(3080, proc=proc)
        except Exception as e:
            log = (tmp_path / "gorox.out").read_text(errors="replace")
            if proc.poll() is not None and "in use" in log:
                pytest.skip("port 3080 was taken meanwhile")
            pytest.fail(f"{e}\n{log}")
        time.sleep(0.05)
        if proc.poll() is not None:  # something else answers on 3080, not our process
            pytest.skip("port 3080 was taken meanwhile")
        with httpx.Client(base_url="http://127.0.0.1:3080", timeout=10) as c:
            r = c.get("/")
            assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
            assert "gorox is running" in r.text and 'href="/hello"' in r.text
            css = re.search(r'href="(/static/[^"]+\.css)"', r.text)
            assert css is not None
            r = c.get(css.group(1))
            assert r.status_code == 200 and r.headers["content-type"] == "text/css; charset=utf-8"
            r = c.get("/hello")
            assert r.status_code == 200 and r.text == "hello, world!"
            r = c.get("/favicon.ico")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.close()
