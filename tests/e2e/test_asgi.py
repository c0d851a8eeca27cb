"""The ``asgi`` handlet end to end: a real gorox serving the raw ASGI apps of
tests/apps/asgi_app.py to real clients (httpx, curl, raw sockets)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

APPS = Path(__file__).resolve().parent.parent / "apps"

MAIN_CONF = """
stage {{
    app "a" {{
        .hostnames = ("*")
        rule $path ^= "/mnt/" {{ asgi {{ .app = "asgi_app:app" .appDir = "@APPS@" .rootPath = "/mnt" }} }}
        rule {{ asgi {{ .app = "asgi_app:app" .appDir = "@APPS@" }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") .maxContentSize = 2M }}
}}
""".replace("@APPS@", str(APPS))

ONE_APP_CONF = """
stage {{
    app "a" {{
        .hostnames = ("*")
        rule {{ asgi {{ .app = "@APP@" .appDir = "@DIR@" @EXTRA@ }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
"""


def one_app(app: str, extra: str = "", app_dir: str = str(APPS)) -> str:
    return ONE_APP_CONF.replace("@APP@", app).replace("@DIR@", app_dir).replace("@EXTRA@", extra)


@pytest.fixture(scope="module")
def g(gorox_module):
    return gorox_module(MAIN_CONF, files={"www/big.bin": os.urandom(1 << 20)})


def raw_request(port: int, data: bytes, *, read_until_close: bool = True, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while read_until_close:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_every_scope_key(g) -> None:
    r = httpx.get(g.url("/mnt/scope/caf%C3%A9%20x?a=1&b=%20"),
                  headers=[("X-Test", "Value"), ("X-Dup", "one"), ("X-Dup", "two")])
    assert r.status_code == 200
    scope = r.json()["scope"]
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/mnt/scope/café x"          # decoded, and includes root_path
    assert scope["raw_path"] == "/mnt/scope/caf%C3%A9%20x"
    assert scope["query_string"] == "a=1&b=%20"           # bytes in the scope, without "?"
    assert scope["root_path"] == "/mnt"
    headers = scope["headers"]
    assert ["x-test", "Value"] in headers                  # names lower-cased, values as sent
    assert [h for h in headers if h[0] == "x-dup"] == [["x-dup", "one"], ["x-dup", "two"]]
    assert ["host", f"127.0.0.1:{g.port}"] in headers
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert scope["server"] == ["127.0.0.1", g.port]
    assert set(scope["extensions"]) == {"http.response.trailers", "http.response.pathsend"}
    assert r.json()["state_keys"] == ["counter", "started"]


def test_scope_types_are_bytes_and_str(g) -> None:
    """JSON cannot show bytes from str: ask the app itself."""
    r = httpx.get(g.url("/scope"), params={"q": "é"})
    scope = r.json()["scope"]
    assert scope["root_path"] == "" and scope["path"] == "/scope"
    assert scope["query_string"] == "q=%C3%A9"


def test_streamed_request_body(g) -> None:
    pieces = [os.urandom(64 << 10) for _ in range(16)]

    def upload():
        for p in pieces:
            yield p
            time.sleep(0.002)

    r = httpx.post(g.url("/echo"), content=upload())  # chunked: no length known
    body = r.json()
    assert r.status_code == 200
    assert body["size"] == 1 << 20
    assert body["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert body["messages"] > 1 and body["more_body"][-1] is False and all(body["more_body"][:-1])
    small = httpx.post(g.url("/echo"), content=b"x" * 100).json()  # sized and small: one message
    assert small == {"messages": 1, "size": 100, "more_body": [False],
                     "sha256": hashlib.sha256(b"x" * 100).hexdigest()}
    empty = httpx.get(g.url("/echo")).json()
    assert empty["messages"] == 1 and empty["size"] == 0


def test_body_over_the_server_limit_is_413(g) -> None:
    def upload():
        for _ in range(48):
            yield b"x" * 65536  # 3 MiB, chunked: the limit is found while the app reads

    r = httpx.post(g.url("/echo"), content=upload())
    assert r.status_code == 413
    assert httpx.get(g.url("/scope")).status_code == 200


def test_streamed_response(g) -> None:
    with httpx.stream("GET", g.url("/stream?n=5&size=1000")) as r:
        assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
        assert r.read() == b"".join(bytes([48 + i]) * 1000 for i in range(5))
    r = httpx.get(g.url("/stream?n=4&size=100&length=1"))
    assert r.headers["content-length"] == "400" and "transfer-encoding" not in r.headers
    assert r.content == b"".join(bytes([48 + i]) * 100 for i in range(4))
    r = httpx.head(g.url("/stream?n=4&size=100&length=1"))
    assert r.headers["content-length"] == "400" and r.content == b""


def test_curl_keepalive_and_http10(g) -> None:
    out = subprocess.run(["curl", "-s", "--http1.0", g.url("/stream?n=3&size=5"), g.url("/scope")],
                         capture_output=True, timeout=10)
    assert out.returncode == 0
    assert out.stdout.startswith(b"0000011111222")
    assert json.loads(out.stdout[15:])["scope"]["http_version"] == "1.0"


def test_trailers(g) -> None:
    raw = raw_request(g.port, b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.endswith(b"0\r\nx-checksum: abc123\r\n\r\n")
    assert b"hello " in body and b"trailers" in body
    # A client that did not ask for trailers gets the body without them.
    raw = raw_request(g.port, b"GET /trailers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"x-checksum: abc123" not in raw.partition(b"\r\n\r\n")[2]
    assert httpx.get(g.url("/trailers")).content == b"hello trailers"


def test_pathsend_one_mib(g) -> None:
    path = g.base / "www" / "big.bin"
    r = httpx.get(g.url("/pathsend"), params={"path": str(path)})
    assert r.status_code == 200
    assert r.headers["content-length"] == str(1 << 20)
    assert r.content == path.read_bytes()
    out = subprocess.run(["curl", "-s", "-o", "-", g.url(f"/pathsend?path={path}")], capture_output=True, timeout=10)
    assert out.stdout == path.read_bytes()


def test_exception_before_start_is_500_with_traceback_logged(g) -> None:
    r = httpx.get(g.url("/raise-before"))
    assert r.status_code == 500
    log = wait_for(lambda: "broken before the response" in g.log() and g.log())
    assert "hemi.web.asgi" in log and "Traceback" in log and "ValueError: broken before the response" in log
    assert httpx.get(g.url("/no-response")).status_code == 500
    assert httpx.get(g.url("/bad-header")).status_code == 500  # a header that would split the response
    assert httpx.get(g.url("/scope")).status_code == 200      # the worker is fine


def test_exception_after_start_closes_connection(g) -> None:
    raw = raw_request(g.port, b"GET /raise-after HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive: only a close ends it
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"partial" in body
    assert not body.endswith(b"0\r\n\r\n")  # never a clean end of a broken body
    with pytest.raises(httpx.HTTPError):
        httpx.get(g.url("/raise-after"))
    assert wait_for(lambda: "broken mid-response" in g.log())
    assert httpx.get(g.url("/scope")).status_code == 200


def test_lifespan_state_is_shared(g) -> None:
    with httpx.Client() as c:
        first = c.get(g.url("/state")).json()
        second = c.get(g.url("/state")).json()
    assert first["started"] == "yes" and second["requests"] == first["requests"] + 1
    assert first["factory"] is False


def test_work_after_the_response_does_not_hold_the_connection(g, tmp_path: Path) -> None:
    marker = tmp_path / "after.txt"
    with httpx.Client() as c:
        t0 = time.monotonic()
        assert c.get(g.url("/after-response"), params={"path": str(marker)}).text == "done"
        assert c.get(g.url("/scope")).status_code == 200  # same connection, answered at once
        assert time.monotonic() - t0 < 0.25
        assert not marker.exists()
    assert wait_for(marker.exists, 3.0)


def _debug(g) -> dict:
    return httpx.get(g.url("/debug")).json()


def _events(g) -> list[str]:
    return httpx.get(g.url("/events")).json()


def _leave_mid_body(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /slow-body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 10000)
        time.sleep(0.1)


def _leave_mid_stream(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        got = 0
        while got < 300000:
            got += len(s.recv(65536))


def _leave_long_poll(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)


def test_disconnects_leave_no_task_or_file_behind(g) -> None:
    for leave in (_leave_mid_body, _leave_mid_stream, _leave_long_poll):  # warm up (host tasks, lazy imports)
        leave(g.port)
    wait_for(lambda: len(_events(g)) >= 5)
    time.sleep(0.2)
    before = _debug(g)
    count = len(_events(g))
    for _ in range(3):
        for leave in (_leave_mid_body, _leave_mid_stream, _leave_long_poll):
            leave(g.port)
    events = wait_for(lambda: (lambda ev: len(ev) >= count + 15 and ev)(_events(g)))
    assert events, _events(g)
    new = events[count:]
    assert new.count("body:disconnect") == 3
    assert new.count("poll:disconnect") == 3
    assert new.count("stream:send raised ClientDisconnected") == 3
    assert new.count("stream:receive http.disconnect") == 3
    after = wait_for(lambda: (lambda d: d == before and d)(_debug(g)), 3.0) or _debug(g)
    assert after == before


def test_lifespan_startup_failure_stops_gorox(gorox) -> None:
    g = gorox(one_app("asgi_app:failing_startup"), wait=False)
    assert g.proc.wait(20) != 0
    out = g.log()
    assert "database unreachable at db.example:5432" in out
    assert "Traceback" not in out


def test_lifespan_on_requires_support(gorox) -> None:
    g = gorox(one_app("asgi_app:no_lifespan", '.lifespan = "on"'), wait=False)
    assert g.proc.wait(20) != 0
    out = g.log()
    assert "only http, not lifespan" in out and "Traceback" not in out


def test_lifespan_auto_tolerates_apps_without_it(gorox) -> None:
    g = gorox(one_app("asgi_app:no_lifespan"))
    assert httpx.get(g.url("/")).json() == {"state": []}


def test_lifespan_off(gorox) -> None:
    g = gorox(one_app("asgi_app:app", '.lifespan = "off"'))
    assert httpx.get(g.url("/scope")).json()["state_keys"] == []


def test_lifespan_shutdown_runs_on_stop(gorox, tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "shutdown.txt"
    monkeypatch.setenv("ASGI_SHUTDOWN_MARKER", str(marker))
    g = gorox(one_app("asgi_app:app"))
    assert httpx.get(g.url("/scope")).status_code == 200
    assert g.stop() == 0
    assert marker.read_text() == "shutdown"


def test_factory_form_and_relative_app_dir(gorox) -> None:
    g = gorox(one_app("asgi_app:create_app()", app_dir="src"), files={"src/asgi_app.py": (APPS / "asgi_app.py").read_text()})
    assert httpx.get(g.url("/state")).json()["factory"] is True


def test_app_that_cannot_be_loaded_stops_gorox(gorox) -> None:
    g = gorox(one_app("asgi_app:nothing_here"), wait=False)
    assert g.proc.wait(20) != 0
    out = g.log()
    assert 'asgi_app has no attribute "nothing_here"' in out and "Traceback" not in out


if shutil.which("curl") is None:  # pragma: no cover - the CI image has curl
    pytestmark = pytest.mark.skip("curl is required")
