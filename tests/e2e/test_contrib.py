"""End-to-end tests of the contrib checkers, rewriter and revisers, against a real gorox
process, with raw HTTP/1.1 on sockets so that every header and body byte is seen as sent."""

from __future__ import annotations

import gzip
import socket
import time
from typing import Callable

import pytest

from .h1util import Conn, Resp, exts_files

pytestmark = pytest.mark.timeout(60)

# A handlet for these tests, appended to the shared test handlets (installed as ``exts``):
# a body of ``?n=`` bytes (default 1000) of type ``?type=`` (default text/html), sent at once or
# streamed (``?stream=1``), with a few response headers for the revisers to work on.
CONTRIB_EXTS = '''

@handlet("contribBody")
class ContribBody(Handlet):
    async def handle(self, req, resp):
        n = int(req.query("n", "1000"))
        body = (b"0123456789abcdef" * (n // 16 + 1))[:n]
        resp.add_header("content-type", req.query("type", "text/html"))
        resp.add_header("x-keep", "1")
        resp.add_header("x-drop", "2")
        resp.add_header("vary", "origin")
        resp.add_header("etag", '"abc"')
        if req.query("enc"):
            resp.add_header("content-encoding", req.query("enc"))
        if req.query("stream"):
            for i in range(0, n, 100):
                await resp.echo(body[i:i + 100])
            await resp.end()
        else:
            resp.send(body)
        return True
'''


def files(**more: str | bytes) -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {"exts/__init__.py": exts_files()["exts/__init__.py"] + CONTRIB_EXTS}
    out.update(more)
    return out


def app(body: str, *, servers: str = "") -> str:
    """A config with one app "a" (all hostnames) holding ``body``, served on {port}."""
    return ('stage {{\n app "a" {{\n .hostnames = ("*")\n .webRoot = "{base}/www"\n' + body +
            '\n }}\n httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}\n' + servers + '}}\n')


OK_RULE = 'rule {{ .returnCode = 200 .returnText = "ok" }}'


def fetch(port: int, path: str = "/", *, method: str = "GET", host: str = "x", headers: dict[str, str] | None = None,
          source: str | None = None) -> Resp:
    """One request on a fresh connection (from ``source`` if given)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0) if source else None)
    with Conn(port, sock=sock) as c:
        c.send(request_bytes(path, method=method, host=host, headers=headers))
        r = c.read_response(head=method == "HEAD")
        assert r is not None
        return r


def request_bytes(path: str, *, method: str = "GET", host: str = "x", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- hostnameChecker, httpsChecker ----------------------------------------------------------------------
def test_hostname_checker(gorox: Callable) -> None:
    g = gorox(app('''
        rule $path ^= "/perm/" {{ hostnameChecker {{ .hostname = "WWW.example.com" .permanent = true }} }}
        rule {{ hostnameChecker {{ .hostname = "www.example.com" }} }}
        ''' + OK_RULE))
    r = fetch(g.port, "/p/a%20b?q=1&r=2", host=f"example.com:{g.port}")
    assert (r.status, r.header("location")) == (302, f"http://www.example.com:{g.port}/p/a%20b?q=1&r=2")
    assert r.header("content-length") == "0"
    r = fetch(g.port, "/p", host="example.com")  # the default port is not written
    assert r.header("location") == "http://www.example.com/p"
    r = fetch(g.port, "/perm/x", host="Example.com:81")
    assert (r.status, r.header("location")) == (301, "http://www.example.com:81/perm/x")
    r = fetch(g.port, "/p", host=f"www.example.com:{g.port}")
    assert (r.status, r.body) == (200, b"ok")


def test_https_checker(gorox: Callable) -> None:
    g = gorox(app('''
        rule $path ^= "/a/" {{ httpsChecker {{ .authority = "secure.example.com:8443" .permanent = true }} }}
        rule {{ httpsChecker {{ }} }}
        ''' + OK_RULE, servers='httpxServer "tls" {{ .address = "127.0.0.1:{port1}" .forApps = ("a") '
                               '.forceScheme = "https" }}\n'), ports=2)
    r = fetch(g.port, "/x?y=1", host=f"shop.example.com:{g.port}")
    assert (r.status, r.header("location")) == (302, "https://shop.example.com/x?y=1")
    r = fetch(g.port, "/a/b", host="shop.example.com")
    assert (r.status, r.header("location")) == (301, "https://secure.example.com:8443/a/b")
    r = fetch(g.ports[1], "/x", host="shop.example.com")  # already https: passes
    assert (r.status, r.body) == (200, b"ok")


# -- accessChecker ----------------------------------------------------------------------------------------
def test_access_checker(gorox: Callable) -> None:
    g = gorox(app('''
        rule $path == "/deny-net" {{ accessChecker {{ .deny = ("127.0.0.0/8") }} }}
        rule $path == "/allow-ip" {{ accessChecker {{ .allow = ("127.0.0.1", "::1") .deny = ("127.0.0.0/8") }} }}
        rule $path == "/deny-ip" {{ accessChecker {{ .allow = ("127.0.0.0/8") .deny = ("127.0.0.1") }} }}
        rule $path == "/v6-only" {{ accessChecker {{ .allow = ("::/0") }} }}
        rule $path == "/default" {{ accessChecker {{ }} }}
        ''' + OK_RULE))
    expect = {"/deny-net": 403, "/allow-ip": 200, "/deny-ip": 403, "/v6-only": 403, "/default": 200}
    for path, status in expect.items():
        assert fetch(g.port, path).status == status, path
    # Another loopback address: the /32 entries no longer match, the /8 ones decide.
    assert fetch(g.port, "/allow-ip", source="127.0.0.2").status == 403
    assert fetch(g.port, "/deny-ip", source="127.0.0.2").status == 200


def test_access_checker_config_error(gorox: Callable) -> None:
    g = gorox(app('rule {{ accessChecker {{ .allow = ("10.0.0.0/8", "x.y") .deny = ("10.0.0.0/8") }} }}'), wait=False)
    assert g.proc.wait(20) != 0
    log = g.log()
    assert '"x.y"' in log and "in one list only" in log and "gorox.conf:5" in log


# -- refererChecker -----------------------------------------------------------------------------------------
def test_referer_checker(gorox: Callable) -> None:
    g = gorox(app('''
        rule $path ^= "/open/" {{ refererChecker {{ .serverNames = ("example.com") .none = true .blocked = true }} }}
        rule $path !^ "/open/" {{ refererChecker {{ .serverNames = ("example.com", "*.example.org", "cdn.*/img/", "~^partner\\.") }} }}
        ''' + OK_RULE))
    cases = [
        ("/x", None, 403),
        ("/x", "https://example.com/page", 200),
        ("/x", "http://EXAMPLE.com:8080/", 200),
        ("/x", "http://www.example.org/", 200),
        ("/x", "http://example.org/", 403),
        ("/x", "http://cdn.example.net/img/a.png", 200),
        ("/x", "http://cdn.example.net/css/a.css", 403),
        ("/x", "http://partner.site/", 200),
        ("/x", "http://evil.com/?example.com", 403),
        ("/x", "blocked-by-firewall", 403),
        ("/open/x", None, 200),
        ("/open/x", "blocked-by-firewall", 200),
        ("/open/x", "http://evil.com/", 403),
    ]
    for path, referer, status in cases:
        r = fetch(g.port, path, headers={"Referer": referer} if referer is not None else None)
        assert r.status == status, (path, referer)
        if status == 403:
            assert int(r.header("content-length") or "0") == len(r.body)  # an answer, never a hang


# -- limitChecker ---------------------------------------------------------------------------------------------
def test_limit_checker(gorox: Callable) -> None:
    g = gorox(app('rule {{ limitChecker {{ .rate = 1 .burst = 3 }} }}\n' + OK_RULE))
    with Conn(g.port) as c:
        statuses = []
        for _ in range(4):
            c.send(request_bytes("/"))
            r = c.read_response()
            assert r is not None
            statuses.append(r.status)
        assert statuses == [200, 200, 200, 429]
        assert r.header("retry-after") == "1"
        # Another client has its own bucket.
        assert fetch(g.port, "/", source="127.0.0.3").status == 200
        time.sleep(1.1)  # one token back after 1/rate = 1 s (and not two before 2 s)
        c.send(request_bytes("/"))
        r = c.read_response()
        assert r is not None and r.status == 200
        c.send(request_bytes("/"))
        r = c.read_response()
        assert r is not None and r.status == 429


# -- rewriter ------------------------------------------------------------------------------------------------------
def test_rewriter(gorox: Callable) -> None:
    g = gorox(app(r'''
        rule {{
            rewriter {{
                .rules = (
                    ("^/old/(.*)$", "/new/\1"),
                    ("^/new/moved$", "/new/final"),
                    ("^/up/(.*)$", "/new/a/../../../\1"),
                    ("^/q/(?P<word>[^/]+)$", "/new/search?w=\g<word>"),
                    ("^/go/(.*)$", "/there/\1", "redirect"),
                    ["regex": "^/perm$", "replacement": "https://example.com/p", "flag": "permanent"],
                )
            }}
        }}
        rule $path ^= "/new/" {{ testEcho {{ }} }}
        rule {{ .returnCode = 404 .returnText = "nothing" }}
        '''), files=files())
    j = fetch(g.port, "/old/a%20b?x=1").json()  # a later rule sees the new path
    assert (j["path"], j["uri"], j["query_string"], j["target"]) == ("/new/a b", "/new/a%20b?x=1", "?x=1",
                                                                   "/old/a%20b?x=1")
    assert fetch(g.port, "/old/moved").json()["path"] == "/new/final"  # later rewrite rules see it too
    assert fetch(g.port, "/up/x").status == 404  # "/new/a/../../../x" normalises to "/x": no climbing
    j = fetch(g.port, "/q/a&b?page=2").json()
    assert (j["path"], j["query_string"]) == ("/new/search", "?w=a%26b&page=2")
    r = fetch(g.port, "/go/a%20b?k=v")
    assert (r.status, r.header("location")) == (302, "/there/a%20b?k=v")
    r = fetch(g.port, "/perm?z=1")
    assert (r.status, r.header("location")) == (301, "https://example.com/p?z=1")
    assert fetch(g.port, "/elsewhere").body == b"nothing"


def test_rewriter_bad_regex_is_a_config_error(gorox: Callable) -> None:
    g = gorox(app('rule {{ rewriter {{ .rules = (("(", "/x")) }} }}'), wait=False)
    assert g.proc.wait(20) != 0
    assert "bad regex" in g.log()


# -- headReviser -----------------------------------------------------------------------------------------------------
def test_head_reviser(gorox: Callable) -> None:
    g = gorox(app('''
        headReviser "hr" {{
            .addRequest = ["x-added": "yes", "user-agent": "gorox-test"]
            .delRequest = ("user-agent", "x-secret")
            .addResponse = ["x-frame-options": "DENY"]
            .delResponse = ("x-drop")
        }}
        rule $path == "/echo" {{ .revisers = ("hr") testEcho {{ }} }}
        rule $path == "/body" {{ .revisers = ("hr") contribBody {{ }} }}
        rule {{ .revisers = ("hr") .returnCode = 200 .returnText = "fixed" }}
        '''), files=files())
    j = fetch(g.port, "/echo", headers={"User-Agent": "curl", "X-Secret": "s", "X-Other": "o"}).json()
    headers = [tuple(h) for h in j["headers"]]
    assert ("x-added", "yes") in headers and ("x-other", "o") in headers
    assert ("user-agent", "gorox-test") in headers and ("user-agent", "curl") not in headers
    assert not any(k == "x-secret" for k, _ in headers)
    r = fetch(g.port, "/body?n=10")
    assert r.header("x-frame-options") == "DENY" and r.header("x-keep") == "1" and r.header("x-drop") is None
    r = fetch(g.port, "/fixed")
    assert (r.body, r.header("x-frame-options")) == (b"fixed", "DENY")


# -- gzipReviser ------------------------------------------------------------------------------------------------------
GZIP = {"Accept-Encoding": "gzip, deflate"}


def assert_gzipped(r: Resp, expected: bytes) -> None:
    assert r.status == 200
    assert r.header("content-encoding") == "gzip"
    assert "accept-encoding" in (r.header("vary") or "")
    assert gzip.decompress(r.body) == expected
    assert len(r.body) < len(expected)


def body_of(n: int) -> bytes:
    return (b"0123456789abcdef" * (n // 16 + 1))[:n]


def test_gzip_reviser(gorox: Callable) -> None:
    g = gorox(app('''
        gzipReviser "gz" {{ }}
        rule $path == "/body" {{ .revisers = ("gz") contribBody {{ }} }}
        rule $path == "/text" {{ .revisers = ("gz") .returnCode = 200 .returnText = "''' + "x" * 300 + '''" }}
        rule $path == "/level" {{ gzipReviser {{ .compressLevel = 1 .minLength = 10 .onContentTypes = ("text/") }}
                                 contribBody {{ }} }}
        '''), files=files())
    # Sized body: compressed, Content-Length is the compressed length, validators adjusted.
    r = fetch(g.port, "/body?n=1000", headers=GZIP)
    assert_gzipped(r, body_of(1000))
    assert r.header("content-length") == str(len(r.body))
    assert r.header("vary") == "origin, accept-encoding"
    assert r.header("etag") == 'W/"abc"'
    # Streamed body: compressed and chunked.
    r = fetch(g.port, "/body?n=5000&stream=1", headers=GZIP)
    assert_gzipped(r, body_of(5000))
    assert r.header("transfer-encoding") == "chunked"
    # A returnText rule.
    assert_gzipped(fetch(g.port, "/text", headers=GZIP), b"x" * 300)
    # Left alone: short bodies, other types, refusing or silent clients, already encoded bodies.
    r = fetch(g.port, "/body?n=100", headers=GZIP)
    assert (r.header("content-encoding"), r.body, r.header("vary")) == (None, body_of(100), "origin")
    r = fetch(g.port, "/body?n=1000&type=image/png", headers=GZIP)
    assert (r.header("content-encoding"), r.body) == (None, body_of(1000))
    for refusing in ({"Accept-Encoding": "gzip;q=0, deflate"}, {"Accept-Encoding": "identity"}, {}):
        r = fetch(g.port, "/body?n=1000", headers=refusing)
        assert (r.header("content-encoding"), r.body, r.header("etag")) == (None, body_of(1000), '"abc"')
        assert r.header("vary") == "origin, accept-encoding"  # the answer depends on it all the same
    r = fetch(g.port, "/body?n=1000&enc=br", headers=GZIP)
    assert (r.header("content-encoding"), r.body) == ("br", body_of(1000))
    # A rule's own reviser with its own settings.
    assert_gzipped(fetch(g.port, "/level?n=50&type=text/plain", headers=GZIP), body_of(50))
    assert fetch(g.port, "/level?n=50&type=application/json", headers=GZIP).header("content-encoding") is None


def test_gzip_head_and_keep_alive(gorox: Callable) -> None:
    g = gorox(app('''
        rule {{ gzipReviser {{ }} contribBody {{ }} }}
        '''), files=files())
    with Conn(g.port) as c:
        for path in ("/?n=1000", "/?n=1000&stream=1"):
            c.send(request_bytes(path, method="HEAD", headers=GZIP))
            r = c.read_response(head=True)
            assert r is not None and r.status == 200 and r.header("content-encoding") == "gzip"
            c.send(request_bytes(path, headers=GZIP))  # the connection carries on cleanly
            r = c.read_response()
            assert r is not None
            assert_gzipped(r, body_of(1000))


def test_gzip_static_files(gorox: Callable) -> None:
    small = "body { color: red; }\n" * 100           # served from memory (fcache)
    large = "<div>large file</div>\n" * 20000        # ~440K: served with the file descriptor
    g = gorox(app('''
        rule {{ gzipReviser {{ }} static {{ }} }}
        '''), files={"www/small.css": small, "www/large.html": large, "www/img.png": b"\x89PNG" + b"\0" * 5000,
                     "www/tiny.txt": "tiny"})
    r = fetch(g.port, "/small.css", headers=GZIP)
    assert_gzipped(r, small.encode())
    assert r.header("etag").startswith('W/"') and r.header("accept-ranges") is None
    r = fetch(g.port, "/large.html", headers=GZIP)
    assert_gzipped(r, large.encode())
    assert r.header("etag").startswith('W/"')
    r = fetch(g.port, "/large.html")
    assert (r.header("content-encoding"), r.body) == (None, large.encode())
    assert fetch(g.port, "/img.png", headers=GZIP).header("content-encoding") is None
    assert fetch(g.port, "/tiny.txt", headers=GZIP).body == b"tiny"
    # A range is served from the identity bytes, uncompressed.
    r = fetch(g.port, "/large.html", headers={**GZIP, "Range": "bytes=0-9"})
    assert (r.status, r.header("content-encoding"), r.body) == (206, None, large.encode()[:10])
    # HEAD of a large file: gzip headers, no body, and the connection stays usable.
    with Conn(g.port) as c:
        c.send(request_bytes("/large.html", method="HEAD", headers=GZIP))
        r = c.read_response(head=True)
        assert r is not None and r.header("content-encoding") == "gzip" and r.header("content-length") is None
        c.send(request_bytes("/small.css", headers=GZIP))
        r = c.read_response()
        assert r is not None
        assert_gzipped(r, small.encode())
