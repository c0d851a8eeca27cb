"""A small framework for apps written in Python: a handlet whose methods are its routes.

Write a subclass of :class:`AppHandlet`, register it, and use it in a rule like any handlet::

    @handlet("myApp")
    class MyApp(AppHandlet):
        def GET_(self, req, resp):                 # GET /   (Gorox's method-name routing)
            resp.send_html("<h1>hi</h1>")

        def POST_users_new(self, req, resp):       # POST /users/new
            ...

        @route("GET", "/users/{id:int}")           # path parameters come as keyword arguments
        async def user(self, req, resp, id):
            resp.send_json({"id": id})

Routes are relative to ``.prefix`` (config property or class attribute, default ""), so
``myApp { .prefix = "/my" }`` serves ``GET_`` at ``/my/``. The route table is built once per
class: static paths are one dict lookup, only parameterised paths use regexes. A known path with
another method is answered 405 with ``allow``; an unknown path is not handled (the rule's next
handlet, then the app's next rules, get the request). HEAD is served by GET handlers.

Handlers are ``def h(self, req, resp, **params)`` or ``async def``. Plain ones run inline (no
coroutine, no task); coroutines are awaited by the server. A handler's return value may be the
response: ``None`` (it sent one, or an empty 200), ``str``/``bytes`` (sent as the body), a
``dict``/``list`` (sent as JSON) or ``False`` (not handled after all: later rules try).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, TypeVar

from .errors import HTTPError, error_page
from .exchange import TEXT_HTML
from .handlet import Handlet

if TYPE_CHECKING:
    from .exchange import Request, Response

__all__ = ["AppHandlet", "route", "HTTPError", "Route", "RouteTable", "name_route", "HTTP_METHODS"]

HTTP_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))

F = TypeVar("F", bound=Callable[..., Any])
_ROUTES_ATTR = "_hemi_routes"

# {name} or {name:converter}; a converter gives the regex and the Python type of the value.
_PARAM_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
_CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": (r"[^/]+", str),
    "int": (r"[0-9]+", int),
    "path": (r".+", str),
}
_NAME_RE = re.compile(r"([A-Z]+)_([A-Za-z0-9_]*)")


def route(methods: str | Iterable[str], path: str) -> Callable[[F], F]:
    """Route ``methods`` (one or several) on ``path`` to the decorated method; stackable.

    ``path`` is relative to the handlet's prefix and may hold ``{name}`` (one segment),
    ``{name:int}`` (digits, passed as int) and ``{name:path}`` (the rest, slashes included).
    Mistakes raise at import time, not at the first request.
    """
    ms = (methods,) if isinstance(methods, str) else tuple(methods)
    for m in ms:
        if m not in HTTP_METHODS:
            raise ValueError(f"route({m!r}, {path!r}): method must be one of {', '.join(sorted(HTTP_METHODS))}")
    if not ms:
        raise ValueError(f"route((), {path!r}): no method")
    compile_path(path)  # check it now

    def deco(fn: F) -> F:
        routes = fn.__dict__.setdefault(_ROUTES_ATTR, [])
        routes.extend((m, path) for m in ms)
        return fn

    return deco


def name_route(name: str) -> tuple[str, str] | None:
    """The route of a Gorox-style method name: ``GET_`` -> ("GET", "/"), ``POST_foo_bar`` ->
    ("POST", "/foo/bar"); None if ``name`` is not one (e.g. ``MAX_SIZE``, ``get_user``)."""
    m = _NAME_RE.fullmatch(name)
    if m is None or m.group(1) not in HTTP_METHODS:
        return None
    return m.group(1), "/" + m.group(2).replace("_", "/")


def compile_path(path: str) -> tuple[re.Pattern[str] | None, dict[str, Callable[[str], Any]]]:
    """(None, {}) for a static path; else an anchored regex with a named group per parameter
    and each parameter's conversion."""
    if not path.startswith("/"):
        raise ValueError(f"route path {path!r} must start with '/'")
    if "{" not in path and "}" not in path:
        return None, {}
    parts: list[str] = []
    convs: dict[str, Callable[[str], Any]] = {}
    pos = 0
    for m in _PARAM_RE.finditer(path):
        literal = path[pos:m.start()]
        if "{" in literal or "}" in literal:
            raise ValueError(f"route path {path!r}: malformed parameter near {literal!r}")
        name, conv = m.group(1), m.group(2) or "str"
        if conv not in _CONVERTERS:
            raise ValueError(f"route path {path!r}: unknown converter {conv!r} (use {', '.join(_CONVERTERS)})")
        if name in convs:
            raise ValueError(f"route path {path!r}: parameter {name!r} appears twice")
        rx, fn = _CONVERTERS[conv]
        parts.append(re.escape(literal))
        parts.append(f"(?P<{name}>{rx})")
        convs[name] = fn
        pos = m.end()
    tail = path[pos:]
    if "{" in tail or "}" in tail:
        raise ValueError(f"route path {path!r}: malformed parameter near {tail!r}")
    parts.append(re.escape(tail))
    return re.compile("".join(parts) + r"\Z"), convs


@dataclass(slots=True)
class Route:
    """One handler and where it is served."""

    method: str
    path: str
    handler: Callable[..., Any]
    is_async: bool


@dataclass(slots=True)
class _PathEntry:
    """The handlers of one path, by method (HEAD aliases GET), and its ``allow`` value."""

    by_method: dict[str, Route] = field(default_factory=dict)
    allow: str = ""
    regex: re.Pattern[str] | None = None
    convs: dict[str, Callable[[str], Any]] = field(default_factory=dict)


class RouteTable:
    """Routes of one handlet class: exact paths in a dict, parameterised ones in order."""

    __slots__ = ("exact", "patterns", "_by_path")

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.exact: dict[str, _PathEntry] = {}
        self.patterns: list[_PathEntry] = []
        self._by_path: dict[str, _PathEntry] = {}
        for r in routes:
            self.add(r)
        self.freeze()

    def add(self, r: Route) -> None:
        entry = self._by_path.get(r.path)
        if entry is None:
            regex, convs = compile_path(r.path)
            entry = self._by_path[r.path] = _PathEntry(regex=regex, convs=convs)
            if regex is None:
                self.exact[r.path] = entry
            else:
                self.patterns.append(entry)
        old = entry.by_method.get(r.method)
        if old is not None and old.handler is not r.handler:
            raise TypeError(f"{r.method} {r.path} is routed twice: to {old.handler.__qualname__} "
                            f"and {r.handler.__qualname__}")
        entry.by_method[r.method] = r

    def freeze(self) -> None:
        """Let GET handlers serve HEAD and compute each path's ``allow`` value."""
        for entry in self._by_path.values():
            get = entry.by_method.get("GET")
            if get is not None and "HEAD" not in entry.by_method:
                entry.by_method["HEAD"] = get
            entry.allow = ", ".join(sorted(entry.by_method))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, Any], str]:
        """(route, params, "") on a hit; (None, {}, allow) when the path is known but not the
        method; (None, {}, "") when nothing serves the path."""
        entry = self.exact.get(path)
        allowed: list[str] = []
        if entry is not None:
            r = entry.by_method.get(method)
            if r is not None:
                return r, {}, ""
            allowed.append(entry.allow)
        for entry in self.patterns:
            m = entry.regex.match(path)  # type: ignore[union-attr]
            if m is None:
                continue
            r = entry.by_method.get(method)
            if r is None:
                allowed.append(entry.allow)
                continue
            params = m.groupdict()
            for name, conv in entry.convs.items():
                if conv is not str:
                    params[name] = conv(params[name])
            return r, params, ""
        if len(allowed) > 1:  # several paths match: allow the union
            return None, {}, ", ".join(sorted({m for a in allowed for m in a.split(", ")}))
        return None, {}, allowed[0] if allowed else ""

    def __contains__(self, path: str) -> bool:
        return path in self._by_path

    def routes(self) -> list[Route]:
        """Every route, HEAD aliases excluded (for listings and tests)."""
        return [r for e in self._by_path.values() for m, r in e.by_method.items() if m == r.method]


def _collect_routes(cls: type) -> RouteTable:
    """The routes of a class and its bases; a subclass's method replaces a base's of that name."""
    functions: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if inspect.isfunction(value):
                functions[name] = value
            elif name in functions:  # overridden by a non-function: no longer a route
                del functions[name]
    routes: list[Route] = []
    for name, fn in functions.items():
        declared = fn.__dict__.get(_ROUTES_ATTR)
        if declared is None:
            by_name = name_route(name)
            if by_name is None:
                continue
            declared = [by_name]
        is_async = inspect.iscoroutinefunction(fn)
        routes.extend(Route(m, p, fn, is_async) for m, p in declared)
    return RouteTable(routes)


def _check_prefix(prefix: str) -> str | None:
    if prefix and (not prefix.startswith("/") or "?" in prefix or "#" in prefix):
        return "must be empty or a path starting with '/'"
    return None


class AppHandlet(Handlet):
    """The base of an app written in Python: its methods are its routes (see the module doc).

    Subclasses that override ``on_configure`` call ``super().on_configure()`` first.
    """

    prefix: str = ""
    routes: RouteTable = RouteTable()
    _plen = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.routes = _collect_routes(cls)

    def on_configure(self) -> None:
        self.prefix = self.configure_string("prefix", type(self).prefix, check=_check_prefix).rstrip("/")
        self._plen = len(self.prefix)

    def setting(self, name: str, default: str | None = None) -> str | None:
        """A value of the app's ``.settings`` dict."""
        return self.app.setting(name, default)

    def url(self, path: str = "/") -> str:
        """The URL path of a route path under this handlet's prefix (for links and redirects)."""
        return self.prefix + path

    # -- serving ---------------------------------------------------------------------------------------
    def handle(self, req: "Request", resp: "Response") -> bool | Awaitable[bool]:
        path = req.path
        if self._plen:
            if not path.startswith(self.prefix):
                return False
            path = path[self._plen:]
            if not path:
                return self._add_slash(req, resp)
            if path[0] != "/":  # "/examples" is not under "/example"
                return False
        r, params, allow = self.routes.match(req.method, path)
        if r is None:
            if not allow:
                return False
            resp.status = 405
            resp.set_header("allow", allow)
            resp.send(error_page(405), TEXT_HTML)
            return True
        if r.is_async:
            return self._finish_async(r.handler(self, req, resp, **params), resp)
        return _finish(r.handler(self, req, resp, **params), resp)

    async def _finish_async(self, pending: Awaitable[Any], resp: "Response") -> bool:
        return _finish(await pending, resp)

    def _add_slash(self, req: "Request", resp: "Response") -> bool:
        """``/prefix`` without its slash: send GETs to ``/prefix/`` when that is a route."""
        if req.method not in ("GET", "HEAD") or "/" not in self.routes:
            return False
        resp.redirect(req.encoded_path + "/" + req.query_string, 301)
        return True


def _finish(result: Any, resp: "Response") -> bool:
    """Turn a handler's return value into the handlet's answer (see the module doc)."""
    if result is None or result is True:
        return True
    if result is False:
        return resp.sent
    if resp.sent:
        raise RuntimeError(f"handler returned a {type(result).__name__} after sending a response")
    if isinstance(result, (str, bytes)):
        resp.send(result)
    elif isinstance(result, (dict, list)):
        resp.send_json(result)
    else:
        raise TypeError(f"handler returned a {type(result).__name__}; expected None, str, bytes, dict, list or bool")
    return True
