"""Rules: an app's ordered list of "if the request looks like this, do that".

Conditions are compiled once, at prepare time, into a single function per rule, so matching a
request costs one call and no parsing.
"""

from __future__ import annotations

import inspect
import os
import re
import stat
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..config.tree import Condition
from ..core.component import Component
from ..core.registry import register
from .deferred import SETTLED_LATER
from .errors import HTTPError
from .handlet import Handlet, Reviser, Socklet
from .websocket.handshake import is_websocket_upgrade

if TYPE_CHECKING:
    from .app import App
    from .exchange import Request, Response

Matcher = Callable[["Request"], bool]

GETTERS: dict[str, Callable[["Request"], str]] = {
    "method": lambda r: r.method,
    "scheme": lambda r: r.scheme,
    "authority": lambda r: r.authority,
    "hostname": lambda r: r.hostname,
    "colonPort": lambda r: r.colon_port,
    "path": lambda r: r.path,
    "uri": lambda r: r.uri,
    "encodedPath": lambda r: r.encoded_path,
    "queryString": lambda r: r.query_string,
    "contentType": lambda r: r.content_type,
}


# The commonest tests on a plain attribute, as one closure each (no getter call per request).
_DIRECT: dict[tuple[str, str], Callable[[Any], Callable[["Request"], bool]]] = {
    ("path", "=="): lambda p: lambda r: r.path == p,
    ("path", "^="): lambda p: lambda r: r.path.startswith(p),
    ("method", "=="): lambda p: lambda r: r.method == p,
    ("hostname", "=="): lambda p: lambda r: r.hostname == p,
}


def compile_compare(getter: Callable[[Any], str], op: str, patterns: list[str]) -> Callable[[Any], bool]:
    """A predicate for ``$var OP patterns`` (positive operators: any pattern; negative: none).
    Shared by rules and cases."""
    negate = op.startswith("!")
    base = {"==": "==", "!=": "==", "^=": "^=", "!^": "^=", "$=": "$=", "!$": "$=",
            "*=": "*=", "!*": "*=", "~=": "~=", "!~": "~="}[op]
    if base == "==":
        if len(patterns) == 1:
            p = patterns[0]
            fn = (lambda r: getter(r) != p) if negate else (lambda r: getter(r) == p)
            return fn
        ps = frozenset(patterns)
        return (lambda r: getter(r) not in ps) if negate else (lambda r: getter(r) in ps)
    if base == "^=":
        pt = tuple(patterns)
        return (lambda r: not getter(r).startswith(pt)) if negate else (lambda r: getter(r).startswith(pt))
    if base == "$=":
        pt = tuple(patterns)
        return (lambda r: not getter(r).endswith(pt)) if negate else (lambda r: getter(r).endswith(pt))
    if base == "*=":
        pt = tuple(patterns)
        if negate:
            return lambda r: not any(p in getter(r) for p in pt)
        return lambda r: any(p in getter(r) for p in pt)
    rx = re.compile("|".join(f"(?:{p})" for p in patterns))
    search = rx.search
    return (lambda r: search(getter(r)) is None) if negate else (lambda r: search(getter(r)) is not None)


def _stat(req: "Request", web_root: str) -> os.stat_result | None:
    cache = req.fs_cache
    if cache is None:
        cache = req.fs_cache = {}
    key = "stat:" + web_root
    if key not in cache:
        try:
            cache[key] = os.stat(web_root + req.path)
        except (OSError, ValueError):
            cache[key] = None
    return cache[key]


def compile_fs_test(op: str, web_root: str) -> Matcher:
    """``$path -f`` and friends: tests on web root + path (stat once per request)."""

    def is_dir(st: os.stat_result | None) -> bool:
        return st is not None and stat.S_ISDIR(st.st_mode)

    tests: dict[str, Callable[[os.stat_result | None, bool], bool]] = {
        "-f": lambda st, root: st is not None and not is_dir(st),
        "-d": lambda st, root: not root and is_dir(st),
        "-e": lambda st, root: not root and st is not None,
        "-D": lambda st, root: is_dir(st),
        "-E": lambda st, root: st is not None,
        "!f": lambda st, root: st is None or is_dir(st),
        "!d": lambda st, root: not root and not is_dir(st),
        "!e": lambda st, root: not root and st is None,
    }
    test = tests[op]
    return lambda r: test(_stat(r, web_root), r.path == "/")


@register("rule", "rule")
class Rule(Component):
    """``rule ["name"] [$var OP patterns] { ... }`` inside an app."""

    def on_configure(self) -> None:
        self.log_access = self.configure_bool("logAccess", True)
        self.return_code = self.configure_int("returnCode", 0, check=lambda v: None if v == 0 or 100 <= v <= 999
                                              else "must be 0 (off) or a status 100..999")
        self.return_text = self.configure_string("returnText", "").encode("utf-8")
        self.return_type = self.configure_string("returnType", "text/html; charset=utf-8")
        self._handlet_names = self.configure_string_list("handlets")
        self._reviser_names = self.configure_string_list("revisers")
        self._socklet_names = self.configure_string_list("socklets")
        self.handlets: list[Handlet] = [c for c in self.children if isinstance(c, Handlet)]
        self.revisers: list[Reviser] = [c for c in self.children if isinstance(c, Reviser)]
        self.socklets: list[Socklet] = [c for c in self.children if isinstance(c, Socklet)]
        self.matcher: Matcher | None = None
        self.direct: Callable[["Request", "Response"], Any] | None = None  # see on_prepare

    def on_bind(self) -> None:
        app: App = self.parent  # type: ignore[assignment]
        for names, own, kind in ((self._handlet_names, self.handlets, "handlet"),
                                 (self._reviser_names, self.revisers, "reviser"),
                                 (self._socklet_names, self.socklets, "socklet")):
            if names and own:
                self.error(f".{kind}s names app-level {kind}s and the rule also holds its own; use one way")
                continue
            for name in names:
                comp = app.component(kind, name)
                if comp is None:
                    self.error(f'.{kind}s names "{name}", but app "{app.name}" has no {kind} of that name',
                               self.block.prop_locs.get(kind + "s"))
                else:
                    own.append(comp)  # type: ignore[arg-type]
        if self.handlets and self.socklets:
            self.error("holds both handlets and socklets; a rule answers either requests or WebSockets")
        self.revisers.sort(key=lambda r: r.rank)
        cond = self.block.cond
        if cond is not None and not cond.patterns and not app.web_root:
            self.error(f"tests ${cond.variable} {cond.op} against the file system, but app \"{app.name}\" has no .webRoot",
                       cond.loc)

    def on_prepare(self) -> None:
        self.matcher = self.compile(self.block.cond)
        # A rule that only hands the request to one handlet (no fixed answer, no revisers, no
        # socklets) is run by App.dispatch calling that handlet directly: execute() would only
        # add its checks around the one call.
        lone = not self.return_code and not self.revisers and not self.socklets and len(self.handlets) == 1
        self.direct = self.handlets[0].handle if lone else None

    def compile(self, cond: Condition | None) -> Matcher | None:
        if cond is None:
            return None
        if not cond.patterns:
            app: App = self.parent  # type: ignore[assignment]
            return compile_fs_test(cond.op, app.web_root)
        direct = _DIRECT.get((cond.variable, cond.op))
        if direct is not None and cond.op == "^=":
            return direct(tuple(cond.patterns))
        if direct is not None and len(cond.patterns) == 1:
            return direct(cond.patterns[0])
        return compile_compare(GETTERS[cond.variable], cond.op, cond.patterns)

    def execute(self, req: "Request", resp: "Response") -> bool | Awaitable[bool]:
        """Run this rule; True when it answered, False to fall through to later rules."""
        req.rule = self
        if self.return_code:
            resp.status = self.return_code
            resp.content_type = self.return_type
            if self.revisers:
                resp.revisers = self.revisers
            resp.send(self.return_text)
            return True
        if self.socklets:
            return self._serve_socket(req, resp)
        if self.revisers:
            resp.revisers = self.revisers
            for reviser in self.revisers:
                reviser.revise_request(req)
        handlets = self.handlets
        for i, handlet in enumerate(handlets):
            result = handlet.handle(req, resp)
            if result is True:
                return True
            if result is False:
                continue
            if result is None:
                if resp.sent:
                    return True
                continue
            if inspect.isawaitable(result):
                if i == len(handlets) - 1 and isinstance(result, SETTLED_LATER):
                    # The last handlet's future, untouched: the connection waits on it without a
                    # task, and reads its result as _continue would (see App.fall_through).
                    return result
                return self._continue(result, [h.handle for h in handlets[i + 1:]], req, resp)
        return False

    def settle_later(self, pending: Awaitable[Any], req: "Request", resp: "Response") -> Awaitable[bool]:
        """The awaitable a lone handlet returned, read as execute() reads it (True once
        answered, also when it gave None after sending)."""
        return self._continue(pending, [], req, resp)

    def _serve_socket(self, req: "Request", resp: "Response") -> bool | Awaitable[bool]:
        """A rule of socklets answers WebSocket upgrades, each socklet in turn until one takes
        the connection; any other request learns that this resource speaks WebSocket only."""
        if not is_websocket_upgrade(req):
            raise HTTPError(426, "this resource speaks WebSocket only",
                            headers=[("upgrade", "websocket"), ("connection", "upgrade")])
        socklets = self.socklets
        for i, socklet in enumerate(socklets):
            result = socklet.serve(req, resp)
            if result is True:
                return True
            if inspect.isawaitable(result):
                return self._continue(result, [s.serve for s in socklets[i + 1:]], req, resp)
        return False

    @staticmethod
    async def _continue(pending: Awaitable[Any], rest: list[Callable[["Request", "Response"], Any]],
                        req: "Request", resp: "Response") -> bool:
        """The slow path: a handler (or socklet) awaits; the ones after it run here."""
        result = await pending
        if result is True or (result is None and resp.sent):
            return True
        for handle in rest:
            result = handle(req, resp)
            if inspect.isawaitable(result):
                result = await result
            if result is True or (result is None and resp.sent):
                return True
        return False
