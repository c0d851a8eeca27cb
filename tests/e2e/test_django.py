"""A Django project (tests/apps/djangosite) served by gorox's ``asgi`` handlet: the admin login
page, CSRF-protected POSTs, a file upload. The sqlite database lives in the test's temporary
directory; ``django.setup()`` happens in ``get_asgi_application()``, in the gorox worker."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("django")

APPS = Path(__file__).resolve().parent.parent / "apps"

CONF = """
stage {{
    app "site" {{
        .hostnames = ("*")
        rule {{ asgi {{ .app = "djangosite.asgi:application" .appDir = "@APPS@" }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("site") }}
}}
""".replace("@APPS@", str(APPS))


@pytest.fixture(scope="module")
def g(gorox_module, tmp_path_factory):
    db = tmp_path_factory.mktemp("django") / "db.sqlite3"
    env = dict(os.environ, DJANGO_DB=str(db), PYTHONPATH=str(APPS))
    subprocess.run([sys.executable, "-m", "djangosite.setup_db", "admin", "s3cret-pass"], env=env, check=True,
                   timeout=60, cwd=str(APPS))
    saved = os.environ.get("DJANGO_DB")
    os.environ["DJANGO_DB"] = str(db)  # the gorox process inherits it
    try:
        return gorox_module(CONF)
    finally:
        if saved is None:
            os.environ.pop("DJANGO_DB", None)
        else:
            os.environ["DJANGO_DB"] = saved


def _token(html: str) -> str:
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert m, "no CSRF token in the form"
    return m.group(1)


def test_plain_view_with_curl(g) -> None:
    out = subprocess.run(["curl", "-s", "-i", g.url("/hello/")], capture_output=True, timeout=15)
    assert out.stdout.startswith(b"HTTP/1.1 200 OK")
    assert out.stdout.endswith(b"\r\n\r\nhello from django")


def test_admin_login_page_sets_the_csrf_cookie(g) -> None:
    r = httpx.get(g.url("/admin/login/"))
    assert r.status_code == 200
    assert "csrftoken" in r.cookies
    assert "Django administration" in r.text and "csrfmiddlewaretoken" in r.text
    assert httpx.get(g.url("/admin/")).status_code == 302  # not logged in: sent to the login page


def test_admin_login_post_with_csrf_succeeds_without_fails(g) -> None:
    with httpx.Client() as c:
        page = c.get(g.url("/admin/login/"))
        token = _token(page.text)
        r = c.post(g.url("/admin/login/?next=/admin/"),
                   data={"csrfmiddlewaretoken": token, "username": "admin", "password": "s3cret-pass",
                         "next": "/admin/"})
        assert r.status_code == 302 and r.headers["location"] == "/admin/"
        home = c.get(g.url("/admin/"))  # the session cookie logs us in
        assert home.status_code == 200 and "Site administration" in home.text
    with httpx.Client() as c:  # no cookie, no token: refused
        r = c.post(g.url("/admin/login/"), data={"username": "admin", "password": "s3cret-pass"})
        assert r.status_code == 403
    with httpx.Client() as c:  # a cookie but a forged token: refused
        c.get(g.url("/admin/login/"))
        r = c.post(g.url("/greet/"), data={"csrfmiddlewaretoken": "x" * 64, "name": "mallory"})
        assert r.status_code == 403


def test_csrf_protected_form_post(g) -> None:
    with httpx.Client() as c:
        token = _token(c.get(g.url("/admin/login/")).text)
        r = c.post(g.url("/greet/"), data={"csrfmiddlewaretoken": token, "name": "gorox"})
        assert r.status_code == 200 and r.text == "hello gorox"
        r = c.post(g.url("/greet/"), data={"csrfmiddlewaretoken": c.cookies["csrftoken"], "name": "cookie"})
        assert r.text == "hello cookie"  # the cookie's own value is a valid token too
        r = c.post(g.url("/greet/"), data={"name": "tokenless"})
        assert r.status_code == 403


def test_file_upload(g) -> None:
    data = os.urandom(1 << 20)  # beyond FILE_UPLOAD_MAX_MEMORY_SIZE: Django spools it to a file
    with httpx.Client() as c:
        c.get(g.url("/admin/login/"))
        r = c.post(g.url("/upload/"), data={"csrfmiddlewaretoken": c.cookies["csrftoken"], "title": "random"},
                   files={"file": ("random.bin", data, "application/octet-stream")})
    assert r.status_code == 200
    assert r.json() == {"name": "random.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "title": "random"}
