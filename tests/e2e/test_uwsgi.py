"""uwsgiProxy end to end: a real gorox in front of a real uWSGI (python3 plugin, started by the
test on TCP and on a unix socket) running a small WSGI app written by the test."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from ..conftest import free_port
from .upstreams import stop_group, wait_listening

UWSGI = shutil.which("uwsgi")
PLUGIN_PATH = "/usr/lib/uwsgi/plugins/python3_plugin.so"

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(UWSGI is None or not os.path.exists(PLUGIN_PATH),
                                 reason="uwsgi with its python3 plugin is not installed")]

APP = r'''
import hashlib
import json
import time


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/env":
        start_response("200 OK", [("Content-Type", "application/json")])
        env = {k: v for k, v in environ.items() if isinstance(v, str)}
        env["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
        return [json.dumps(env).encode()]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"sha256": hashlib.sha256(body).hexdigest(), "length": len(body),
                            "content_length": environ.get("CONTENT_LENGTH"),
                            "content_type": environ.get("CONTENT_TYPE")}).encode()]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def pieces():
            for i in range(5):
                yield str(i).encode() * 100000
                time.sleep(0.02)
        return pieces()
    if path == "/teapot":
        start_response("418 I'm a teapot", [("Content-Type", "text/plain"), ("X-A", "b"),
                                            ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        return [b"short and stout"]
    if path == "/big":
        data = b"0123456789abcdef" * 65536
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(data)))])
        return [data]
    if path == "/big-unsized":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"0123456789abcdef" * 4096 for _ in range(16)]
    if path == "/redirect":
        start_response("302 Found", [("Location", "/elsewhere"), ("Content-Length", "0")])
        return [b""]
    if path == "/sleep":
        time.sleep(2)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"late"]
    if path == "/raise":
        raise RuntimeError("the app failed on purpose 5c1e")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such path"]
'''


class Uwsgi:
    """A uWSGI master with one worker, in its own process group."""

    def __init__(self, tmp: Path, sockets: list[str]) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "app.py").write_text(APP)
        args = [UWSGI or "uwsgi", "--plugin", PLUGIN_PATH, "--wsgi-file", str(tmp / "app.py"), "--master",
                "--processes", "1", "--die-on-term", "--logto", str(tmp / "uwsgi.log")]
        for s in sockets:
            args += ["--socket", s]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.log = tmp / "uwsgi.log"
        deadline = time.monotonic() + 15
        while "spawned uWSGI worker" not in (self.log.read_text(errors="replace") if self.log.exists() else ""):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uwsgi did not start:\n" + self.log.read_text(errors="replace"))
            time.sleep(0.05)
        wait_listening(self.proc, sockets, deadline, self.log, "uwsgi")

    def stop(self) -> None:
        stop_group(self.proc, 10)


@pytest.fixture(scope="module")
def uwsgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("uwsgi")
    tcp = f"127.0.0.1:{free_port()}"
    server = Uwsgi(tmp, [tcp, f"{tmp}/uwsgi.sock"])
    yield {"tcp": tcp, "sock": f"{tmp}/uwsgi.sock", "log": str(server.log)}
    server.stop()


CONFIG = """
stage {{
    tcpsBackend "app" {{ .nodes = ( [ "address": "@TCP@" ] ) }}
    tcpsBackend "appUnix" {{ .nodes = ( [ "address": "@SOCK@" ] ) }}
    tcpsBackend "appSlow" {{ .nodes = ( [ "address": "@TCP@" ] ) .readTimeout = 1s }}
    app "py" {{
        .hostnames = ("*")
        rule {{ uwsgiProxy {{ .toBackend = "app" }} }}
    }}
    app "unix" {{
        .hostnames = ("unix.test")
        rule {{ uwsgiProxy {{ .toBackend = "appUnix" }} }}
    }}
    app "buffered" {{
        .hostnames = ("buf.test")
        .maxMemoryContentSize = 64K
        rule {{ uwsgiProxy {{ .toBackend = "app" .bufferClientContent = true .bufferServerContent = true }} }}
    }}
    app "slow" {{
        .hostnames = ("slow.test")
        rule {{ uwsgiProxy {{ .toBackend = "appSlow" }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("py", "unix", "buffered", "slow") }}
}}
"""


@pytest.fixture(scope="module")
def g(gorox_module, uwsgi):  # type: ignore[no-untyped-def]
    return gorox_module(CONFIG.replace("@TCP@", uwsgi["tcp"]).replace("@SOCK@", uwsgi["sock"]))


@pytest.fixture
def client(g) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=g.url(""), timeout=10) as c:
        yield c


HOSTS = ["127.0.0.1", "unix.test", "buf.test"]


@pytest.mark.parametrize("host", HOSTS)
def test_get_with_a_query_and_the_wsgi_environ(g, client: httpx.Client, host: str) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/env?a=1&b=%2F", headers={"host": host, "x-custom": "yes", "x_under": "no",
                                               "proxy": "http://evil.example"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    env = r.json()
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/env" and env["SCRIPT_NAME"] == ""
    assert env["QUERY_STRING"] == "a=1&b=%2F"
    assert env["REQUEST_URI"] == "/env?a=1&b=%2F"
    assert env["SERVER_NAME"] == host and env["SERVER_PORT"] == str(g.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_X_CUSTOM"] == "yes"
    assert "HTTP_X_UNDER" not in env and "HTTP_PROXY" not in env
    assert env["wsgi.url_scheme"] == "http" and "HTTPS" not in env


@pytest.mark.parametrize("host", HOSTS)
def test_post_body_echo(client: httpx.Client, host: str) -> None:
    data = os.urandom(2 << 20)
    r = client.post("/echo", content=data, headers={"host": host, "content-type": "application/x-thing"})
    assert r.json() == {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data),
                        "content_length": str(len(data)), "content_type": "application/x-thing"}


def test_chunked_post_body_gets_a_content_length(client: httpx.Client) -> None:
    pieces = [os.urandom(50_000) for _ in range(4)]
    r = client.post("/echo", content=iter(pieces))
    whole = b"".join(pieces)
    assert r.json()["sha256"] == hashlib.sha256(whole).hexdigest()
    assert r.json()["content_length"] == str(len(whole))


def test_streaming_generator_response(client: httpx.Client) -> None:
    with client.stream("GET", "/stream") as r:
        assert r.headers.get("transfer-encoding") == "chunked"
        body = b"".join(r.iter_raw())
    assert body == b"".join(str(i).encode() * 100000 for i in range(5))


def test_custom_status_and_headers(client: httpx.Client) -> None:
    r = client.get("/teapot")
    assert r.status_code == 418
    assert r.headers["x-a"] == "b" and r.text == "short and stout"
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_one_mebibyte_response(client: httpx.Client, host: str, path: str) -> None:
    r = client.get(path, headers={"host": host})
    assert r.status_code == 200
    assert r.content == b"0123456789abcdef" * 65536
    if path == "/big" or host == "buf.test":
        assert r.headers["content-length"] == str(1 << 20)


def test_redirect_and_head(client: httpx.Client) -> None:
    r = client.get("/redirect")
    assert r.status_code == 302 and r.headers["location"] == "/elsewhere"
    r = client.head("/big")
    assert r.status_code == 200 and r.headers["content-length"] == str(1 << 20) and r.content == b""


def test_an_app_that_raises_is_a_502(uwsgi, client: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    """uWSGI logs the traceback (and "HTTP/1.1 500" in its request log) but sends nothing back:
    it closes the connection. A response that never came is a 502, as nginx answers it."""
    r = client.get("/raise")
    assert r.status_code == 502
    assert "5c1e" not in r.text
    assert "the app failed on purpose 5c1e" in Path(uwsgi["log"]).read_text(errors="replace")


def test_read_timeout_is_a_504(client: httpx.Client) -> None:
    started = time.monotonic()
    assert client.get("/sleep", headers={"host": "slow.test"}).status_code == 504
    assert time.monotonic() - started < 1.9


def test_still_fine_after_failures(client: httpx.Client) -> None:
    time.sleep(1.2)  # the worker finishes the slow request
    assert client.get("/teapot").status_code == 418


def test_stopped_uwsgi_is_a_502(gorox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tcp = f"127.0.0.1:{free_port()}"
    server = Uwsgi(tmp_path / "u", [tcp])
    try:
        g = gorox(CONFIG.replace("@TCP@", tcp).replace("@SOCK@", str(tmp_path / "none.sock")))
        with httpx.Client(timeout=10) as c:
            assert c.get(g.url("/teapot")).status_code == 418
            server.stop()
            assert c.get(g.url("/teapot")).status_code == 502
    finally:
        server.stop()
