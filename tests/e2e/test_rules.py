"""Apps and rules end to end: app selection by hostname, every rule variable with every
operator, file tests, pattern lists, rule order and fall-through, fixed replies, the access
log and the app's 404 page."""

from __future__ import annotations

import re
import time

import pytest

from .h1util import Conn, exts_files, fetch, wait_until

pytestmark = pytest.mark.timeout(60)

# -- every variable with every operator -----------------------------------------------------------
#
# For each variable two requests, A and B, give two different values; for each operator a
# pattern is derived so that the rule holds for A and not for B. Each (variable, operator) pair
# gets its own app, chosen by a hostname suffix, whose first rule answers "hit" and whose
# fallback answers "miss".

OPS = ("==", "^=", "$=", "*=", "~=", "!=", "!^", "!$", "!*", "!~")


class Req:
    """What a request sends: method, target, host (before the app suffix), port, content type.
    ``https`` sends it to the second server, which forces the https scheme."""

    def __init__(self, method: str = "GET", target: str = "/", host: str = "h", port: str = "",
                 ctype: str = "", https: bool = False) -> None:
        self.method, self.target, self.host, self.port, self.ctype, self.https = method, target, host, port, ctype, https

    def raw(self, suffix: str) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {self.host}.{suffix}{self.port}"]
        if self.ctype:
            lines.append(f"Content-Type: {self.ctype}")
        if self.method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


# variable -> (value for A, request A, value for B, request B); values as gorox sees them.
VARIABLES: dict[str, tuple[str, Req, str, Req]] = {
    "method": ("PUT", Req(method="PUT"), "GET", Req()),
    "scheme": ("http", Req(), "https", Req(https=True)),
    "authority": ("one.{s}:9090", Req(host="one", port=":9090"), "two.{s}", Req(host="two")),
    "hostname": ("one.{s}", Req(host="one"), "two.{s}", Req(host="two")),
    "colonPort": (":9090", Req(port=":9090"), ":80", Req()),
    "path": ("/alpha/x.html", Req(target="/alpha/./x.html"), "/beta/y.txt", Req(target="/beta/y.txt")),
    "uri": ("/alpha?q=1", Req(target="/alpha?q=1"), "/beta?r=2", Req(target="/beta?r=2")),
    "encodedPath": ("/al%20pha", Req(target="/al%20pha?z"), "/beta", Req(target="/beta")),
    "queryString": ("?q=1", Req(target="/x?q=1"), "?r=2", Req(target="/x?r=2")),
    "contentType": ("application/json", Req(method="POST", ctype="application/json; charset=utf-8"),
                    "text/plain", Req(method="POST", ctype="text/plain")),
}


def _prefix(a: str, b: str) -> str:
    return next(a[:i] for i in range(1, len(a) + 1) if not b.startswith(a[:i]))


def _suffix(a: str, b: str) -> str:
    return next(a[-i:] for i in range(1, len(a) + 1) if not b.endswith(a[-i:]))


def _contained(a: str, b: str) -> str:
    if a in b:
        raise StopIteration
    return a


def pattern_for(op: str, a: str, b: str) -> str:
    """A pattern that makes ``value(A) op pattern`` true and ``value(B) op pattern`` false
    (StopIteration when there is none, e.g. ``*=`` with "http" inside "https")."""
    return {"==": lambda: a, "^=": lambda: _prefix(a, b), "$=": lambda: _suffix(a, b), "*=": lambda: _contained(a, b),
            "~=": lambda: "^" + re.escape(a) + "$", "!=": lambda: b, "!^": lambda: _prefix(b, a),
            "!$": lambda: _suffix(b, a), "!*": lambda: _contained(b, a), "!~": lambda: "^" + re.escape(b) + "$"}[op]()


def plan(i: int) -> tuple[str, Req, Req]:
    """Case i: its pattern, the request it must hold for, and the one it must not hold for."""
    var, op = CASES[i]
    a, req_a, b, req_b = VARIABLES[var]
    a, b = a.format(s=f"c{i}"), b.format(s=f"c{i}")
    try:
        return pattern_for(op, a, b), req_a, req_b
    except StopIteration:  # one value contains the other: test the operator the other way round
        return pattern_for(op, b, a), req_b, req_a


def _quote(text: str) -> str:
    """Config strings have no escapes: a pattern is written as it is."""
    assert '"' not in text
    return '"' + text + '"'


CASES = [(var, op) for var in VARIABLES for op in OPS]


def _matrix_config() -> str:
    apps = []
    names = []
    for i in range(len(CASES)):
        var, op = CASES[i]
        suffix = f"c{i}"
        pat = plan(i)[0]
        names.append(f'"{suffix}"')
        apps.append(f'''
    app "{suffix}" {{{{
        .hostnames = ("*.{suffix}")
        rule ${var} {op} {_quote(pat).replace("{", "{{").replace("}", "}}")} {{{{ .returnCode = 200 .returnText = "hit" }}}}
        rule {{{{ .returnCode = 200 .returnText = "miss" }}}}
    }}}}''')
    bind = ", ".join(names)
    return ("stage {{" + "".join(apps) + f'''
    httpxServer "plain" {{{{ .address = "127.0.0.1:{{port}}" .forApps = ({bind}) }}}}
    httpxServer "forced" {{{{ .address = "127.0.0.1:{{port1}}" .forApps = ({bind}) .forceScheme = "https" }}}}
}}}}
''')


@pytest.fixture(scope="module")
def matrix(gorox_module):  # type: ignore[no-untyped-def]
    return gorox_module(_matrix_config(), ports=2)


@pytest.mark.parametrize("var,op", [pytest.param(v, o, id=f"{v}{o}") for v, o in CASES])
def test_variable_operator(matrix, var: str, op: str) -> None:
    i = CASES.index((var, op))
    _, req_hit, req_miss = plan(i)
    for req, expected in ((req_hit, b"hit"), (req_miss, b"miss")):
        r = fetch(matrix.ports[1] if req.https else matrix.port, req.raw(f"c{i}"))
        assert r.status == 200 and r.body == expected, (req.raw(f"c{i}"), r.body)


# -- file tests -----------------------------------------------------------------------------------

FS_PATHS = {"file": "/file.txt", "dir": "/dir", "dir/": "/dir/", "missing": "/missing", "root": "/"}
# op -> the paths for which it holds (all others: it does not)
FS_EXPECT = {
    "-f": {"file"},
    "-d": {"dir", "dir/"},
    "-e": {"file", "dir", "dir/"},
    "-D": {"dir", "dir/", "root"},
    "-E": {"file", "dir", "dir/", "root"},
    "!f": {"dir", "dir/", "missing", "root"},
    "!d": {"file", "missing"},
    "!e": {"missing"},
}


@pytest.fixture(scope="module")
def fs(gorox_module):  # type: ignore[no-untyped-def]
    apps = "".join(f'''
    app "f{i}" {{{{
        .hostnames = ("f{i}")
        .webRoot = "{{base}}/www"
        rule $path {op} {{{{ .returnCode = 200 .returnText = "hit" }}}}
        rule {{{{ .returnCode = 200 .returnText = "miss" }}}}
    }}}}''' for i, op in enumerate(FS_EXPECT))
    names = ", ".join(f'"f{i}"' for i in range(len(FS_EXPECT)))
    config = "stage {{" + apps + f'''
    httpxServer "main" {{{{ .address = "127.0.0.1:{{port}}" .forApps = ({names}) }}}}
}}}}'''
    return gorox_module(config, files={"www/file.txt": "x", "www/dir/inner.txt": "y"})


@pytest.mark.parametrize("op", list(FS_EXPECT))
def test_file_tests(fs, op: str) -> None:
    i = list(FS_EXPECT).index(op)
    with Conn(fs.port) as c:
        for name, path in FS_PATHS.items():
            c.send(f"GET {path} HTTP/1.1\r\nHost: f{i}\r\n\r\n".encode())
            r = c.read_response()
            expected = b"hit" if name in FS_EXPECT[op] else b"miss"
            assert r is not None and r.body == expected, f"$path {op} on {name} ({path})"


# -- app selection, lists, order, replies, logs ---------------------------------------------------

APPS = """
stage {{
    app "exact" {{
        .hostnames = ("exact.example.com", "other.example.org")
        rule {{ .returnCode = 200 .returnText = "exact" }}
    }}
    app "suffix" {{
        .hostnames = ("*.example.com")
        rule {{ .returnCode = 200 .returnText = "suffix" }}
    }}
    app "prefix" {{
        .hostnames = ("www.example.*")
        rule {{ .returnCode = 200 .returnText = "prefix" }}
    }}
    app "default" {{
        .hostnames = ("*")
        .file404 = "{base}/404.html"
        rule $path ^= ("/list/one/", "/list/two/") {{ .returnCode = 200 .returnText = "in list" }}
        rule $method == ("PUT", "DELETE") {{ .returnCode = 200 .returnText = "method in list" }}
        rule $path !^ ("/list/", "/a", "/fall", "/decline", "/code", "/quiet", "/nothing", "/x") {{
            .returnCode = 200 .returnText = "in no list"
        }}
        rule $path ^= "/a" {{ .returnCode = 200 .returnText = "first" }}
        rule $path ^= "/a/b" {{ .returnCode = 200 .returnText = "never: shadowed" }}
        rule $path == "/fall" {{ testPass "p1" {{ }} testPass "p2" {{ }} }}
        rule $path ^= "/fall" {{ .returnCode = 201 .returnText = "fell through" }}
        rule $path == "/decline" {{ testPass "p3" {{ }} }}
        rule $path == "/code/403" {{ .returnCode = 403 .returnText = "forbidden here" }}
        rule $path == "/code/empty" {{ .returnCode = 202 }}
        rule $path == "/code/204" {{ .returnCode = 204 }}
        rule $path == "/code/text" {{ .returnCode = 200 .returnText = "plain" .returnType = "text/plain" }}
        rule $path ^= "/quiet" {{ .logAccess = false .returnCode = 200 .returnText = "quiet" }}
    }}
    app "strict" {{
        .hostnames = ("strict.test")
        rule {{ .returnCode = 200 .returnText = "strict" }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("exact", "suffix", "prefix", "default") }}
    httpxServer "nodefault" {{ .address = "127.0.0.1:{port1}" .forApps = ("strict") }}
}}
"""


@pytest.fixture(scope="module")
def apps(gorox_module):  # type: ignore[no-untyped-def]
    return gorox_module(APPS, ports=2, files={"404.html": "<p>custom not found</p>", **exts_files()})


def get(port: int, path: str = "/", host: str = "x", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rules-test\r\n\r\n".encode()


@pytest.mark.parametrize("host,app", [
    ("exact.example.com", "exact"),
    ("EXACT.Example.COM", "exact"),
    ("other.example.org", "exact"),
    ("exact.example.com:8080", "exact"),
    ("foo.example.com", "suffix"),
    ("a.b.example.com", "suffix"),
    ("www.example.com", "suffix"),   # exact, then suffix, then prefix
    ("www.example.org", "prefix"),
    ("www.example.net:81", "prefix"),
    ("example.com", "default"),
    ("127.0.0.1", "default"),
])
def test_app_selection_by_hostname(apps, host: str, app: str) -> None:
    r = fetch(apps.port, get(apps.port, "/x", host))
    if app == "default":
        assert r.status == 404 and b"custom not found" in r.body
    else:
        assert r.status == 200 and r.body == app.encode()


def test_no_app_is_404(apps) -> None:
    r = fetch(apps.ports[1], get(apps.ports[1], "/", "unknown.test"))
    assert r.status == 404
    assert fetch(apps.ports[1], get(apps.ports[1], "/", "strict.test")).body == b"strict"


def test_pattern_lists(apps) -> None:
    assert fetch(apps.port, get(apps.port, "/list/one/x")).body == b"in list"
    assert fetch(apps.port, get(apps.port, "/list/two/")).body == b"in list"
    assert fetch(apps.port, get(apps.port, "/list/three/", method="DELETE")).body == b"method in list"
    assert fetch(apps.port, get(apps.port, "/elsewhere")).body == b"in no list"
    assert fetch(apps.port, get(apps.port, "/list/three/")).status == 404


def test_rule_order_and_fall_through(apps) -> None:
    assert fetch(apps.port, get(apps.port, "/a/b/c")).body == b"first"
    r = fetch(apps.port, get(apps.port, "/fall"))
    assert r.status == 201 and r.body == b"fell through"
    assert [v for k, v in r.headers if k == "x-passed"] == ["p1", "p2"]
    r = fetch(apps.port, get(apps.port, "/decline"))
    assert r.status == 404 and b"custom not found" in r.body


def test_return_code_and_text(apps) -> None:
    r = fetch(apps.port, get(apps.port, "/code/403"))
    assert r.status == 403 and r.body == b"forbidden here"
    assert r.header("content-type") == "text/html; charset=utf-8"
    r = fetch(apps.port, get(apps.port, "/code/empty"))
    assert r.status == 202 and r.body == b"" and r.header("content-length") == "0"
    with Conn(apps.port) as c:
        c.send(get(apps.port, "/code/204") + get(apps.port, "/code/text"))
        r = c.read_response()
        assert r is not None and r.status == 204 and r.header("content-length") is None
        r = c.read_response()
        assert r is not None and r.body == b"plain" and r.header("content-type") == "text/plain"


def test_file404(apps) -> None:
    r = fetch(apps.port, get(apps.port, "/nothing/here"))
    assert r.status == 404 and r.body == b"<p>custom not found</p>"
    assert r.header("content-type") == "text/html; charset=utf-8"


ACCESS_LINE = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET (?P<target>\S+) HTTP/1\.1" '
    r'(?P<status>\d{3}) (?P<bytes>\d+) "-" "rules-test" \d+\.\d{6}$')


def test_access_log(apps) -> None:
    mark = f"/code/403?mark={time.monotonic_ns()}"
    quiet = f"/quiet?mark={time.monotonic_ns()}"
    fetch(apps.port, get(apps.port, mark))
    fetch(apps.port, get(apps.port, quiet))
    log = apps.base / "data" / "log" / "default.access.log"
    assert wait_until(lambda: log.exists() and mark in log.read_text(), timeout=5)
    lines = [ln for ln in log.read_text().splitlines() if mark in ln]
    assert len(lines) == 1
    m = ACCESS_LINE.match(lines[0])
    assert m is not None, lines[0]
    assert m["target"] == mark and m["status"] == "403" and m["bytes"] == str(len(b"forbidden here"))
    fetch(apps.port, get(apps.port, mark + "&again"))
    assert wait_until(lambda: mark + "&again" in log.read_text(), timeout=5)
    assert quiet not in log.read_text(), ".logAccess = false must keep the request out of the log"
