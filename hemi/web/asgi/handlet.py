"""The ``asgi`` handlet: serve a Python ASGI application (FastAPI, Starlette, Django, Quart...)
from a rule, beside the static files and proxies of the same config::

    rule $path ^= "/api/" {
        asgi {
            .app = "myproject.main:app"      # or the factory form "myproject.main:create_app()"
            .appDir = "src"                  # put first on sys.path, relative to the base dir
            .rootPath = ""                   # the mount point, scope["root_path"]
            .lifespan = "auto"               # "auto" | "on" | "off"
        }
    }

The app is imported when the stage is prepared (in each worker, never in the leader) and its
lifespan startup runs when the stage starts, before any server accepts; a startup that fails
stops the start with the app's message. Modules are imported once per process: a reload
(``reconf``) reuses them and runs a fresh lifespan; new code needs new workers (``rework``).

This module owns what every ASGI scope type shares, so each scope type lives in a module of
its own (``http.py``). A module for another scope type (``websocket``) plugs in like this:

- register ``UPGRADES["websocket"] = serve`` at import (and be imported by ``__init__.py``):
  ``handle`` calls ``serve(handlet, req, resp)`` for requests that ask for that upgrade and
  returns what it returns (True, or an awaitable for the connection's task);
- build the scope with ``handlet.connection_scope(req, "websocket", scheme)`` (it carries
  the lifespan ``state`` copy, ``root_path``, headers, client, server...) and add the keys
  of that type;
- run the app with ``handlet.runner.start(handlet.asgi_app(scope, receive, send), done)``
  (runner.py): the first step runs at once, the rest in a pooled host task, never cancelled
  by the connection; ``done(error)`` is called when the app ends;
- log app failures on the ``hemi.web.asgi`` logger with ``exc_info`` (one line and the
  traceback), and treat ``http.py``'s :class:`ClientDisconnected` as quiet.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ...config.errors import ConfigError
from ...core.registry import handlet
from ..appload import AppLoadError, load_app
from ..handlet import Handlet
from .headers import request_headers
from .http import HttpExchange
from ..websocket.session import configure_limits
from .lifespan import Lifespan, LifespanFailed
from .runner import AppRunner

if TYPE_CHECKING:
    from ..exchange import Request, Response

ASGI_VERSION = "3.0"
SPEC_VERSION = "2.4"   # the HTTP & WebSocket spec: 2.4 = send() raises OSError once the client is gone

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]
UpgradeHandler = Callable[["AsgiHandlet", "Request", "Response"], "bool | Awaitable[bool]"]

# Upgrade token (lower case) -> the function serving that scope type, e.g. "websocket".
UPGRADES: dict[str, UpgradeHandler] = {}

_WILDCARD_HOSTS = ("", "0.0.0.0", "::")
_NO_OPTIONS: dict = {}   # the extensions we offer take no options (shared: nobody writes there)
# scope["asgi"], shared by every scope (servers describe themselves there; apps only read it).
_ASGI = {"version": ASGI_VERSION, "spec_version": SPEC_VERSION}


def _check_root_path(value: str) -> str | None:
    if value and (not value.startswith("/") or value.endswith("/")):
        return f'is "{value}", expected "" or a path such as "/api" (a leading "/", no trailing "/")'
    return None


def as_asgi3(app: Any) -> ASGIApp:
    """The app as an ASGI 3 callable; ASGI 2 apps (``app(scope)`` returning ``instance(receive,
    send)``, e.g. a class) get a small adapter, as uvicorn gives them."""
    if not callable(app):
        raise AppLoadError(f"{app!r} is not callable, so it is not an ASGI app")
    if inspect.isclass(app):
        return _asgi2(app)
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(getattr(app, "__call__", None)):
        return app
    try:
        params = [p for p in inspect.signature(app).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return app
    return _asgi2(app) if len(params) == 1 else app


def _asgi2(app: Any) -> ASGIApp:
    async def asgi3(scope: dict, receive: Any, send: Any) -> None:
        await app(scope)(receive, send)
    return asgi3


@handlet("asgi")
class AsgiHandlet(Handlet):
    """Runs an ASGI 3 app (or an ASGI 2 one, adapted) for the requests of its rule."""

    def on_configure(self) -> None:
        self.app_spec = self.configure_string("app", None, required=True)
        self.app_dir = self.configure_string("appDir", "")
        self.root_path = self.configure_string("rootPath", "", check=_check_root_path)
        self.lifespan_mode = self.configure_choice("lifespan", "auto", ("auto", "on", "off"))
        self.ws_limits = configure_limits(self)   # the websocket scope's (ws.py)
        self.asgi_app: ASGIApp | None = None  # (self.app is the owning App)
        self.state: dict[str, Any] = {}      # the lifespan's namespace; every scope gets a copy
        self.lifespan: Lifespan | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: AppRunner | None = None  # runs every app call of this handlet (runner.py)
        self._servers: dict[Any, Any] = {}   # gate -> scope["server"] (False: ask the socket)

    def on_check(self) -> None:
        self.on_prepare()  # importing the app is all preparing does

    def on_prepare(self) -> None:
        try:
            self.asgi_app = as_asgi3(load_app(self.app_spec, self.app_dir or None, base=self.stage.dirs.base))
        except AppLoadError as e:
            value = self.find("app")[0]
            raise ConfigError(f"cannot load the app: {e.message} (in {self.describe()})",
                              value.loc if value is not None else self.block.loc) from None

    async def on_start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.runner = AppRunner(self.loop, self.name)
        assert self.asgi_app is not None
        self.lifespan = Lifespan(self.asgi_app, self.lifespan_mode, self.name)
        try:
            await self.lifespan.startup()
        except LifespanFailed as e:
            await self.lifespan.shutdown()
            raise ConfigError(f"the app failed to start: {e.message} (in {self.describe()}, "
                              f"lifespan startup)", self.block.loc) from None
        self.state = self.lifespan.state

    async def on_shutdown(self) -> None:
        # Servers shut down first (stage order): no request is in flight by now, but work an
        # app does after its responses (background tasks) may be. Then the lifespan ends.
        if self.runner is not None:
            await self.runner.drain()
        if self.lifespan is not None:
            await self.lifespan.shutdown()
            self.lifespan = None
        if self.runner is not None:
            await self.runner.close()

    # -- serving ---------------------------------------------------------------------------------------
    def handle(self, req: "Request", resp: "Response") -> "bool | Awaitable[bool]":
        if req.upgrade is not None:
            serve = UPGRADES.get(req.upgrade.lower())
            if serve is not None:
                return serve(self, req, resp)
        scope = self.connection_scope(req, "http", req.scheme)
        scope["method"] = req.method
        scope["extensions"] = {"http.response.trailers": _NO_OPTIONS, "http.response.pathsend": _NO_OPTIONS}
        return HttpExchange(self, req, resp).start(scope)

    def connection_scope(self, req: "Request", kind: str, scheme: str) -> dict:
        """The keys ``http`` and ``websocket`` scopes share, built from the request. The
        request target is ASCII (the codec checked it), so ``str.encode()`` is latin-1 here."""
        qs = req.query_string
        return {
            "type": kind,
            "asgi": _ASGI,
            "http_version": req.version,
            "scheme": scheme,
            "path": req.path,
            "raw_path": req.encoded_path.encode(),
            "query_string": qs[1:].encode() if qs else b"",
            "root_path": self.root_path,
            "headers": request_headers(req.headers),
            "client": req.peer,
            "server": self._servers.get(getattr(req.stream, "gate", None)) or self._server_of(req),
            "state": self.state.copy(),
        }

    def _server_of(self, req: "Request") -> tuple[str, int | None] | None:
        """The listening address: the gate's, or the socket's own when the gate listens on
        every interface (the address the client reached is what an app can use)."""
        stream = req.stream
        gate = getattr(stream, "gate", None)
        server = self._servers.get(gate)
        if server is None:
            bound = getattr(gate, "bound", None)
            if bound is None:
                server = False
            elif bound.path is not None:
                server = (bound.path, None)
            elif bound.host in _WILDCARD_HOSTS:
                server = False
            else:
                server = (bound.host, bound.port)
            self._servers[gate] = server
        if server is False:
            transport = getattr(stream, "transport", None)
            name = transport.get_extra_info("sockname") if transport is not None else None
            return (name[0], name[1]) if isinstance(name, tuple) else None
        return server
