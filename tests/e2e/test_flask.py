"""A real Flask application (tests/apps/flask_app.py) on gorox's ``wsgi`` handlet, next to a
``static`` rule, driven by httpx and curl: JSON in and out, query and path parameters, a form
with a file upload, and a streamed response built with ``stream_with_context``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import ROOT

pytest.importorskip("flask")
pytestmark = pytest.mark.timeout(60)

APPS = ROOT / "tests" / "apps"

CONFIG = """
stage {{
    app "a" {{
        .hostnames = ("*")
        .webRoot = "{base}/www"
        rule $path ^= "/static/" {{ static {{ }} }}
        rule $path ^= "/api/" {{
            wsgi {{ .app = "flask_app:app" .appDir = "%(apps)s" .rootPath = "/api" .threads = 4 }}
        }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
""" % {"apps": APPS}

CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def g(gorox_module):  # type: ignore[no-untyped-def]
    return gorox_module(CONFIG, files={"www/static/site.css": "body { color: red }"})


@pytest.fixture
def client(g):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=g.url(""), timeout=10) as c:
        yield c


def test_hello_and_static_side_by_side(client: httpx.Client) -> None:
    r = client.get("/api/hello")
    assert r.status_code == 200 and r.text == "Hello, World!"
    assert r.headers["content-type"] == "text/html; charset=utf-8" and r.headers["content-length"] == "13"
    assert client.get("/static/site.css").text == "body { color: red }"


def test_path_and_query_parameters(client: httpx.Client) -> None:
    r = client.get("/api/items/42", params=[("q", "a b"), ("tag", "x"), ("tag", "y")])
    assert r.status_code == 200
    assert r.json() == {"id": 42, "q": "a b", "tags": ["x", "y"], "script_root": "/api", "path": "/items/42",
                        "url": str(r.request.url)}


def test_json_in_and_out(client: httpx.Client) -> None:
    payload = {"name": "gorox", "n": [1, 2, 3], "nested": {"ok": True}, "text": "héllo"}
    r = client.post("/api/json", json=payload)
    assert r.status_code == 201 and r.headers["content-type"] == "application/json"
    assert r.json() == {"received": payload, "type": "application/json"}


def test_form_with_file(client: httpx.Client) -> None:
    data = os.urandom(300_000)
    r = client.post("/api/form", data={"a": "1", "b": ["x", "y"]},
                    files={"file": ("report.bin", data, "application/octet-stream")})
    assert r.status_code == 200
    assert r.json() == {"fields": {"a": ["1"], "b": ["x", "y"]},
                        "file": {"name": "report.bin", "type": "application/octet-stream",
                                 "sha256": hashlib.sha256(data).hexdigest()}}


def test_urlencoded_form(client: httpx.Client) -> None:
    r = client.post("/api/form", data={"greeting": "hi there", "n": "7"})
    assert r.json() == {"fields": {"greeting": ["hi there"], "n": ["7"]}, "file": None}


def test_streamed_response_with_context(g) -> None:  # type: ignore[no-untyped-def]
    arrivals: list[float] = []
    pieces: list[bytes] = []
    with httpx.stream("GET", g.url("/api/stream"), params={"n": "4", "delay": "0.25", "who": "flask"},
                      timeout=10) as r:
        assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked"
        for piece in r.iter_raw():
            arrivals.append(time.monotonic())
            pieces.append(piece)
    assert b"".join(pieces) == b"flask 0\nflask 1\nflask 2\nflask 3\n"
    assert len(pieces) >= 3 and arrivals[-1] - arrivals[0] > 0.5  # streamed, not buffered


def test_flask_404_handler(client: httpx.Client) -> None:
    r = client.get("/api/nope")
    assert r.status_code == 404 and r.json() == {"error": "not found", "path": "/nope"}


def test_head_request(client: httpx.Client) -> None:
    r = client.head("/api/hello")
    assert r.status_code == 200 and r.headers["content-length"] == "13" and r.content == b""


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl(g, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def curl(*args: str) -> str:
        return subprocess.run([CURL, "-sS", "--fail-with-body", *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout

    assert curl(g.url("/api/hello")) == "Hello, World!"
    assert json.loads(curl("-H", "Content-Type: application/json", "-d", '{"k": [1, 2]}', g.url("/api/json"))) == \
        {"received": {"k": [1, 2]}, "type": "application/json"}
    upload = tmp_path / "up.txt"
    upload.write_bytes(b"uploaded by curl\n" * 1000)
    got = json.loads(curl("-F", "who=curl", "-F", f"file=@{upload};type=text/plain", g.url("/api/form")))
    assert got == {"fields": {"who": ["curl"]},
                   "file": {"name": "up.txt", "type": "text/plain",
                            "sha256": hashlib.sha256(upload.read_bytes()).hexdigest()}}
    # A chunked upload (curl sends one when told to).
    got = json.loads(curl("-H", "Transfer-Encoding: chunked", "-F", "who=chunked", g.url("/api/form")))
    assert got["fields"] == {"who": ["chunked"]}
    assert curl("-N", g.url("/api/stream?n=3&who=curl")) == "curl 0\ncurl 1\ncurl 2\n"
    assert json.loads(curl("-G", "--data-urlencode", "q=from curl", g.url("/api/items/7")))["q"] == "from curl"
