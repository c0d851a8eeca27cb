"""A FastAPI app (tests/apps/fastapi_app.py) served by gorox's ``asgi`` handlet, driven by
httpx and curl."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

APPS = Path(__file__).resolve().parent.parent / "apps"

CONF = """
stage {{
    app "site" {{
        .hostnames = ("*")
        .webRoot = "{base}/www"
        rule $path ^= "/static/" {{ static {{ }} }}
        rule {{ asgi {{ .app = "fastapi_app:app" .appDir = "@APPS@" }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("site") }}
}}
""".replace("@APPS@", str(APPS))


@pytest.fixture(scope="module")
def g(gorox_module):
    return gorox_module(CONF, files={"www/static/app.css": "body { color: red }\n"})


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-S", *args], capture_output=True, timeout=15)


def test_path_and_query_parameters(g) -> None:
    r = httpx.get(g.url("/items/42"), params={"q": "hello world", "limit": "3"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"item_id": 42, "q": "hello world", "limit": 3}
    bad = httpx.get(g.url("/items/not-a-number"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "item_id"]
    assert httpx.get(g.url("/nowhere")).status_code == 404
    out = curl(g.url("/items/7?q=curl"))
    assert json.loads(out.stdout) == {"item_id": 7, "q": "curl", "limit": 10}


def test_json_body(g) -> None:
    r = httpx.post(g.url("/items"), json={"name": "pen", "price": 1.5, "tags": ["office"]})
    assert r.status_code == 200
    assert r.json() == {"created": {"name": "pen", "price": 1.5, "tags": ["office"]}, "total": 3.0}
    out = curl("-H", "content-type: application/json", "-d", '{"name": "cup", "price": 2}', g.url("/items"))
    assert json.loads(out.stdout)["total"] == 4.0
    assert httpx.post(g.url("/items"), json={"name": "no price"}).status_code == 422


def test_form_upload(g, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    r = httpx.post(g.url("/upload"), files={"file": ("data.bin", data, "application/octet-stream")},
                   data={"note": "from httpx"})
    assert r.status_code == 200
    assert r.json() == {"filename": "data.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "note": "from httpx", "content_type": "application/octet-stream"}
    path = tmp_path / "upload.txt"
    path.write_bytes(b"curl upload\n" * 1000)
    out = curl("-F", f"file=@{path};type=text/plain", "-F", "note=from curl", g.url("/upload"))
    body = json.loads(out.stdout)
    assert body["size"] == 12000 and body["note"] == "from curl" and body["filename"] == "upload.txt"


def test_streaming_response(g) -> None:
    with httpx.stream("GET", g.url("/stream"), params={"n": 4}) as r:
        assert r.headers["transfer-encoding"] == "chunked"
        lines = list(r.iter_lines())
    assert lines == [f"line {i}" for i in range(4)]
    assert curl("-N", g.url("/stream?n=3")).stdout == b"line 0\nline 1\nline 2\n"


def test_background_task_runs_after_the_response(g, tmp_path: Path) -> None:
    marker = tmp_path / "bg.txt"
    t0 = time.monotonic()
    out = curl("-X", "POST", g.url(f"/background?path={marker}"))  # curl closes right after the response
    assert json.loads(out.stdout) == {"scheduled": str(marker)}
    assert time.monotonic() - t0 < 1.0
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "background done"


def test_lifespan_state(g) -> None:
    body = httpx.get(g.url("/state")).json()
    assert body["greeting"] == "hello from lifespan" and isinstance(body["pid"], int)


def test_sync_endpoint_in_thread_pool(g) -> None:
    with httpx.Client() as c:
        for _ in range(5):
            assert c.get(g.url("/sync")).json() == {"thread": True}


def test_static_beside_the_app_and_keepalive(g) -> None:
    with httpx.Client() as c:
        assert c.get(g.url("/static/app.css")).text == "body { color: red }\n"
        assert c.get(g.url("/plain")).text == "plain text"
        head = c.head(g.url("/plain"))
        assert head.headers["content-length"] == "10" and head.content == b""
        for i in range(20):
            assert c.get(g.url(f"/items/{i}")).json()["item_id"] == i
