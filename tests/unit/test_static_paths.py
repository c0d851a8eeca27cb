"""Unit tests of the path logic of the ``static`` handlet (containment, redirects, listings)
and of its configuration. The serving itself is tested end to end in tests/e2e/test_static.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hemi.contrib  # noqa: F401  (registers the signs)
from hemi.config.errors import ConfigError
from hemi.core.stage import Dirs, Stage
from hemi.web.autoindex import Listed, render_listing, scan_directory
from hemi.web.static import Static, _needs_care, has_dot_dot, is_inside, redirect_location


# -- helpers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("real, root, inside", [
    ("/srv/www", "/srv/www", True),
    ("/srv/www/a.txt", "/srv/www", True),
    ("/srv/www/sub/a.txt", "/srv/www", True),
    ("/srv/www2/a.txt", "/srv/www", False),   # a sibling sharing the prefix is outside
    ("/srv/wwwa", "/srv/www", False),
    ("/srv", "/srv/www", False),
    ("/etc/passwd", "/srv/www", False),
    ("/etc/passwd", "", True),                # the web root is the file-system root
])
def test_is_inside(real: str, root: str, inside: bool) -> None:
    assert is_inside(real, root) is inside


@pytest.mark.parametrize("path, found", [
    ("/a/../b", True), ("/..", True), ("/../", True), ("/a/..", True),
    ("/a..b", False), ("/...", False), ("/a/.../b", False), ("/..a", False), ("/a/b..", False), ("/", False),
])
def test_has_dot_dot(path: str, found: bool) -> None:
    assert has_dot_dot(path) is found


@pytest.mark.parametrize("path, query, location", [
    ("/docs", "", "/docs/"),
    ("/docs", "?a=1&b=2", "/docs/?a=1&b=2"),
    ("/a b", "", "/a%20b/"),
    ("/100%", "", "/100%25/"),
    ("/caf\u00e9", "", "/caf%C3%A9/"),
    ("/a?b#c", "", "/a%3Fb%23c/"),   # decoded '?' and '#' are path data, not delimiters
    ("/a\r\nb", "", "/a%0D%0Ab/"),   # never a header injection
])
def test_redirect_location(path: str, query: str, location: str) -> None:
    assert redirect_location(path, query) == location


def test_redirect_location_is_never_protocol_relative() -> None:
    # The server normalises "//evil.example" to "/evil.example"; even if a path with a double
    # slash reached us, the Location must stay a path on this site.
    assert not redirect_location("/evil.example", "").startswith("//")


def test_needs_care() -> None:
    assert not _needs_care([("host", "x"), ("accept", "*/*")])
    assert _needs_care([("host", "x"), ("if-none-match", '"a"')])
    assert _needs_care([("range", "bytes=0-1")])
    assert _needs_care([("if-range", '"a"')])


# -- listings ---------------------------------------------------------------------------------------
def test_scan_directory(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("bb")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "zdir").mkdir()
    (tmp_path / ".hidden").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    fd = os.open(os.path.join(os.fsencode(tmp_path), b"bad\xffname"), os.O_CREAT | os.O_WRONLY)
    os.close(fd)
    rows = scan_directory(str(tmp_path))
    names = [r.name for r in rows]
    assert names[0] == "zdir" and rows[0].is_dir and rows[0].size is None
    assert ".hidden" not in names
    assert names[1:] == sorted(names[1:])
    assert {"a.txt", "b.txt", "dangling", os.fsdecode(b"bad\xffname")} <= set(names)
    by_name = {r.name: r for r in rows}
    assert by_name["b.txt"].size == 2
    assert by_name["dangling"].size is None and by_name["dangling"].mtime is None
    # The page renders even with a name that is not UTF-8.
    page = render_listing("/d/", rows)
    assert 'href="./bad%FFname"' in page and "bad\ufffdname" in page
    page.encode("utf-8")


def test_render_listing_escapes() -> None:
    rows = [Listed('<script>"x"&\'.html', False, 5, 0.0), Listed("javascript:alert(1)", False, 1, 0.0),
            Listed("d", True, None, 0.0)]
    page = render_listing("/<i>/", rows)
    assert "<script>" not in page and "<i>" not in page
    assert "&lt;script&gt;&quot;x&quot;&amp;&#x27;.html" in page
    assert 'href="./%3Cscript%3E%22x%22%26%27.html"' in page
    assert 'href="./javascript%3Aalert%281%29"' in page  # cannot act as a URL scheme
    assert 'href="./d/"' in page and 'href="../"' in page
    assert "1970-01-01 00:00:00" in page
    assert 'href="../"' not in render_listing("/", rows)


# -- configuration ----------------------------------------------------------------------------------
def _stage(tmp_path: Path, body: str) -> Stage:
    return Stage.from_text('stage { app "a" { .hostnames = ("*") ' + body + ' } }', Dirs.under(str(tmp_path)))


def _static(stage: Stage) -> Static:
    app = stage.by_kind["app"]["a"]
    return app.rules[0].handlets[0]


def test_web_root_required(tmp_path: Path) -> None:
    stage = _stage(tmp_path, "rule { static { } }")
    with pytest.raises(ConfigError) as e:
        stage.configure()
    assert "has no .webRoot" in str(e.value)


@pytest.mark.parametrize("index", ["a/b", "..", ".", ""])
def test_bad_index_file(tmp_path: Path, index: str) -> None:
    stage = _stage(tmp_path, f'.webRoot = "{tmp_path}" rule {{ static {{ .indexFile = "{index}" }} }}')
    with pytest.raises(ConfigError) as e:
        stage.configure()
    assert ".indexFile" in str(e.value)


def test_web_root_inherited_relative_and_types(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    stage = _stage(tmp_path, '.webRoot = "www/" rule { static { .mimeTypes = [".foo": "x/foo", "css": "x/css"] '
                             '.maxAge = 90s } }')
    stage.configure()
    stage.prepare()
    s = _static(stage)
    assert s.root == os.path.realpath(tmp_path / "www")  # relative to the base directory
    assert s.mime_types["foo"] == "x/foo" and s.mime_types["css"] == "x/css"
    assert s.mime_types["html"].startswith("text/html")
    assert s.cache_headers == (("cache-control", "max-age=90"),)


def test_web_root_of_its_own_overrides_the_apps(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    stage = _stage(tmp_path, f'.webRoot = "/nonexistent" rule {{ static {{ .webRoot = "{tmp_path}/mine" }} }}')
    stage.configure()
    stage.prepare()
    assert _static(stage).root == os.path.realpath(tmp_path / "mine")


def test_index_file_that_is_a_directory_fails_prepare(tmp_path: Path) -> None:
    (tmp_path / "www" / "index.html").mkdir(parents=True)
    stage = _stage(tmp_path, f'.webRoot = "{tmp_path}/www" rule {{ static {{ }} }}')
    stage.configure()
    with pytest.raises(ConfigError) as e:
        stage.prepare()
    assert "not a regular file" in str(e.value)


def test_known_paths_and_symlinks(tmp_path: Path) -> None:
    www = tmp_path / "www"
    (www / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", www / "out")
    os.symlink(www / "sub", www / "in")
    stage = _stage(tmp_path, f'.webRoot = "{www}" rule {{ static {{ }} }}')
    stage.configure()
    stage.prepare()
    s = _static(stage)
    root = s.root
    assert s._known(root + "/sub/x.txt").inside
    assert s._known(root + "/in/x.txt").inside          # a link that stays inside
    assert not s._known(root + "/out").inside           # a link that leads outside
    assert not s._known(root + "/../secret").inside
    assert s._known(root + "/a.css").ctype == "text/css; charset=utf-8"
    assert s._known(root + "/a.css") is s._known(root + "/a.css")  # remembered


@pytest.mark.parametrize("target", ["/a/b?x=1", "/a//b/../c/", "/%E2%82%AC?q", "/", "/x?"])
def test_origin_form_is_split_and_decode_remembered(target: str) -> None:
    from hemi.web.paths import decode_path, origin_form, split_target

    encoded, query = split_target(target)
    assert origin_form(target) == (encoded, query, decode_path(encoded))
    assert origin_form(target) == (encoded, query, decode_path(encoded))  # the remembered one


@pytest.mark.parametrize("target", ["/a%zz", "/%00", "/%ff%fe"])
def test_a_bad_origin_form_is_refused_every_time(target: str) -> None:
    from hemi.web.errors import HTTPError
    from hemi.web.paths import origin_form

    for _ in range(2):
        with pytest.raises(HTTPError) as e:
            origin_form(target)
        assert e.value.status == 400
