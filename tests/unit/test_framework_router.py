"""The Python app framework's routing: names, paths, the route table, and inline sync handlers."""

from __future__ import annotations

import inspect

import pytest

import hemi.contrib  # noqa: F401  (registers app, rule, ...)
from hemi.core.stage import Dirs, Stage
from hemi.web.exchange import Request, Response
from hemi.web.framework import AppHandlet, Route, RouteTable, compile_path, name_route, route


def test_name_routes() -> None:
    assert name_route("GET_") == ("GET", "/")
    assert name_route("GET_abc") == ("GET", "/abc")
    assert name_route("POST_foo_bar") == ("POST", "/foo/bar")
    assert name_route("DELETE_item") == ("DELETE", "/item")
    for not_a_route in ("MAX_SIZE", "get_user", "GET", "FETCH_x", "_GET_x", "GET_a-b"):
        assert name_route(not_a_route) is None, not_a_route


def test_compile_path() -> None:
    assert compile_path("/a/b") == (None, {})
    rx, convs = compile_path("/users/{id:int}/files/{rest:path}")
    assert rx is not None
    m = rx.match("/users/12/files/a/b.txt")
    assert m is not None and m.groupdict() == {"id": "12", "rest": "a/b.txt"}
    assert convs["id"] is int
    assert rx.match("/users/x/files/a") is None
    assert rx.match("/users/12/files/") is None
    rx, _ = compile_path("/v1.0/{name}")
    assert rx.match("/v1.0/x") and not rx.match("/v1x0/x") and not rx.match("/v1.0/x/y")
    for bad in ("nope", "/a/{", "/a/{x:float}", "/{x}/{x}", "/a}/{x}", "/{x}}"):
        with pytest.raises(ValueError):
            compile_path(bad)


def _h(*a, **k):  # noqa: ANN002, ANN003, ANN202
    return None


def _h2(*a, **k):  # noqa: ANN002, ANN003, ANN202
    return None


def test_table_exact_patterns_405_and_head() -> None:
    t = RouteTable([Route("GET", "/a", _h, False), Route("POST", "/a", _h2, False),
                    Route("GET", "/u/{id:int}", _h, False), Route("DELETE", "/u/{name}", _h2, False),
                    Route("PUT", "/u/me", _h, False)])
    r, params, allow = t.match("GET", "/a")
    assert r is not None and r.handler is _h and params == {} and allow == ""
    r, params, _ = t.match("HEAD", "/a")
    assert r is not None and r.method == "GET"          # HEAD is served by GET
    assert t.match("PUT", "/a") == (None, {}, "GET, HEAD, POST")
    r, params, _ = t.match("GET", "/u/7")
    assert r is not None and params == {"id": 7}
    r, params, _ = t.match("DELETE", "/u/7")            # first pattern has no DELETE; the second does
    assert r is not None and r.handler is _h2 and params == {"name": "7"}
    r, params, _ = t.match("DELETE", "/u/me")           # exact path without DELETE, pattern with
    assert r is not None and r.handler is _h2 and params == {"name": "me"}
    assert t.match("POST", "/u/me") == (None, {}, "DELETE, PUT")
    assert t.match("POST", "/u/7") == (None, {}, "DELETE, GET, HEAD")
    assert t.match("GET", "/nothing") == (None, {}, "")
    assert "/a" in t and "/u/{id:int}" in t and "/b" not in t


def test_duplicate_route_is_an_error() -> None:
    with pytest.raises(TypeError, match="routed twice"):
        RouteTable([Route("GET", "/a", _h, False), Route("GET", "/a", _h2, False)])


def test_route_decorator_checks_at_import() -> None:
    with pytest.raises(ValueError):
        route("FETCH", "/a")
    with pytest.raises(ValueError):
        route("GET", "no-slash")
    with pytest.raises(ValueError):
        route((), "/a")


class _Shop(AppHandlet):
    LIMIT_MAX = 3  # an upper-case constant is not a route

    def GET_(self, req, resp):  # noqa: ANN001, ANN201
        return "index"

    def GET_items(self, req, resp):  # noqa: ANN001, ANN201
        return "items"

    @route(("GET", "POST"), "/items/{id:int}")
    async def item(self, req, resp, id):  # noqa: ANN001, ANN201, A002
        return {"id": id}

    @route("GET", "/a-b")
    @route("GET", "/ab")
    def dashed(self, req, resp):  # noqa: ANN001, ANN201
        return "dashed"

    def helper(self) -> None:  # not a route
        pass


class _Shop2(_Shop):
    def GET_items(self, req, resp):  # noqa: ANN001, ANN201  (overrides the base's handler)
        return "items2"

    def POST_items_new(self, req, resp):  # noqa: ANN001, ANN201
        return "new"


def test_class_routes_and_inheritance() -> None:
    paths = sorted((r.method, r.path) for r in _Shop.routes.routes())
    assert paths == [("GET", "/"), ("GET", "/a-b"), ("GET", "/ab"), ("GET", "/items"), ("GET", "/items/{id:int}"),
                     ("POST", "/items/{id:int}")]
    r, _, _ = _Shop2.routes.match("GET", "/items")
    assert r is not None and r.handler is _Shop2.GET_items
    assert _Shop2.routes.match("POST", "/items/new")[0] is not None
    assert _Shop.routes.match("POST", "/items/new")[0] is None
    assert AppHandlet.routes.routes() == []


class _Stream:
    """The connection side of an exchange, recording what the response wrote."""

    version = "1.1"

    def __init__(self) -> None:
        self.heads: list[tuple[int, list[tuple[str, str]], bytes]] = []

    def send_head(self, status, headers, length, *, body=b"", end=False):  # noqa: ANN001, ANN201
        self.heads.append((status, headers, body))


def _exchange(method: str, path: str) -> tuple[Request, Response, _Stream]:
    stream = _Stream()
    req = Request(method, path, "1.1", "http", [("host", "x")], "x", path, path, "", ("127.0.0.1", 1), stream)  # type: ignore[arg-type]
    return req, Response(req, stream), stream  # type: ignore[arg-type]


def _handlet(prefix: str = "") -> _Shop:
    from hemi.core.registry import registry
    registry.add("_testShop", "handlet", _Shop)
    try:
        conf = 'stage { app "a" { .hostnames = ("*") rule { _testShop { .prefix = "%s" } } } }' % prefix
        stage = Stage.from_text(conf, Dirs.under("/nonexistent"))
        stage.configure()
    finally:
        registry.remove("_testShop")
    app = stage.get("app", "a")
    return app.rules[0].handlets[0]  # type: ignore[union-attr,return-value]


def test_sync_handlers_run_inline_async_ones_return_a_coroutine() -> None:
    h = _handlet("/shop/")
    assert h.prefix == "/shop"
    req, resp, stream = _exchange("GET", "/shop/items")
    assert h.handle(req, resp) is True                  # no coroutine was made
    assert stream.heads[0][0] == 200 and stream.heads[0][2] == b"items"

    req, resp, stream = _exchange("GET", "/shop/items/5")
    pending = h.handle(req, resp)
    assert inspect.iscoroutine(pending)
    with pytest.raises(StopIteration) as done:
        pending.send(None)                              # type: ignore[union-attr]
    assert done.value.value is True
    assert stream.heads[0][2] == b'{"id":5}'

    req, resp, stream = _exchange("DELETE", "/shop/items/5")
    assert h.handle(req, resp) is True
    status, headers, _ = stream.heads[0]
    assert status == 405 and ("allow", "GET, HEAD, POST") in headers

    for outside in ("/shop/nothing", "/shopping/items", "/other"):
        req, resp, stream = _exchange("GET", outside)
        assert h.handle(req, resp) is False and not stream.heads

    req, resp, stream = _exchange("GET", "/shop")       # the prefix itself: to the slash
    assert h.handle(req, resp) is True
    status, headers, _ = stream.heads[0]
    assert status == 301 and ("location", "/shop/") in headers
