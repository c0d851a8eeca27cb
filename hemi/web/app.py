"""Apps: virtual hosts. An app owns handlets, revisers, socklets and its ordered rules, and
answers the requests whose hostname it claims."""

from __future__ import annotations

import inspect
import logging
import os
import time
from typing import TYPE_CHECKING, Awaitable

from ..core.component import Component
from ..core.logs import AccessLog
from ..core.registry import register
from .deferred import SETTLED_LATER
from .errors import error_page
from .handlet import Handlet, Reviser, Socklet
from .rule import Rule

if TYPE_CHECKING:
    from .exchange import Request, Response

log = logging.getLogger("hemi.web.app")


def _check_hostname(h: str) -> str | None:
    if not h:
        return "holds an empty hostname"
    if h == "*":
        return None
    stars = h.count("*")
    if stars > 1 or (stars == 1 and not (h.startswith("*.") or h.endswith(".*"))):
        return f'has "{h}": a wildcard may only be a leading "*." or a trailing ".*"'
    return None


@register("app", "app")
class App(Component):
    def on_configure(self) -> None:
        self.hostnames = [h.lower() for h in self.configure_string_list(
            "hostnames", required=True, non_empty=True,
            check=lambda hs: next((m for m in map(_check_hostname, hs) if m), None))]
        self.web_root = self.configure_string("webRoot", "").rstrip("/")
        self.file404 = self.configure_file("file404")
        self.tls_certificate = self.configure_file("tlsCertificate")
        self.tls_private_key = self.configure_file("tlsPrivateKey")
        if bool(self.tls_certificate) != bool(self.tls_private_key):
            self.error(".tlsCertificate and .tlsPrivateKey go together; set both or neither")
        self.settings = self.configure_string_dict("settings")
        self.max_memory_content_size = self.configure_size("maxMemoryContentSize", 16 << 20, min=1, max=1 << 30)
        self.max_upload_content_size = self.configure_size("maxUploadContentSize", 128 << 20, min=1, max=1 << 40)
        self.temp_dir = self.configure_string("saveContentFilesDir",
                                              os.path.join(self.stage.dirs.temp, "web", "apps", self.name))
        value = self.configure_value("accessLog")
        self.access_log_path: str | None = os.path.join(self.stage.dirs.logs, f"{self.name}.access.log")
        if value is not None:
            if value.kind == "bool":
                self.access_log_path = self.access_log_path if value.data else None
            elif value.kind == "string" and value.data:
                self.access_log_path = value.data
            else:
                self.error(".accessLog is " + value.describe() + ", expected true, false or a file path", value.loc)
        self.handlets = {c.name: c for c in self.children if isinstance(c, Handlet)}
        self.revisers = {c.name: c for c in self.children if isinstance(c, Reviser)}
        self.socklets = {c.name: c for c in self.children if isinstance(c, Socklet)}
        self.rules: list[Rule] = [c for c in self.children if isinstance(c, Rule)]
        self.access_log: AccessLog | None = None
        self._stamp_second = -1   # the access log's time stamp, rendered once a second
        self._stamp = ""
        self.not_found_page = error_page(404)

    def component(self, kind: str, name: str) -> Component | None:
        return {"handlet": self.handlets, "reviser": self.revisers, "socklet": self.socklets}[kind].get(name)

    def setting(self, name: str, default: str | None = None) -> str | None:
        return self.settings.get(name, default)

    def on_prepare(self) -> None:
        if self.file404:
            with open(self.file404, "rb") as f:
                self.not_found_page = f.read()
        if self.access_log_path:
            self.access_log = AccessLog(self.access_log_path)
        if not self.rules:
            log.warning('app "%s" has no rules: every request gets 404', self.name)

    async def on_shutdown(self) -> None:
        if self.access_log is not None:
            self.access_log.close()

    # -- serving ---------------------------------------------------------------------------------------
    def dispatch(self, req: "Request", resp: "Response", start: int = 0) -> bool | Awaitable[bool]:
        """Walk the rules in order (from ``start``); the first that answers wins. Nothing
        answers: 404. An awaitable result is True once answered, except a ``Deferred`` or an
        ``asyncio.Future`` passed up from a rule's last handlet as is: whoever awaits it reads
        a result other than True (or None with the response sent) as "not answered" and calls
        :meth:`fall_through`."""
        rules = self.rules
        for i in range(start, len(rules)):
            rule = rules[i]
            m = rule.matcher
            if m is None or m(req):
                direct = rule.direct
                if direct is None:
                    result = rule.execute(req, resp)
                else:  # one handlet: what execute() would do around it, without the call
                    req.rule = rule
                    result = direct(req, resp)
                    if result is True or isinstance(result, SETTLED_LATER):
                        return result  # answered, or will say so itself (the common answers)
                    if result is None:
                        if resp.sent:
                            return True
                        continue
                    if result is not False:
                        result = rule.settle_later(result, req, resp) if inspect.isawaitable(result) else False
                if result is True:
                    return True
                if result is not False:
                    if isinstance(result, SETTLED_LATER):
                        return result
                    return self._continue(result, i, req, resp)
        self.send_not_found(resp)
        return True

    def fall_through(self, req: "Request", resp: "Response") -> bool | Awaitable[bool]:
        """A future passed up by ``dispatch`` did not answer: the rules after its rule try."""
        return self.dispatch(req, resp, self.rules.index(req.rule) + 1)  # type: ignore[arg-type]

    async def _continue(self, pending: Awaitable[bool], index: int, req: "Request", resp: "Response") -> bool:
        if await pending:
            return True
        for rule in self.rules[index + 1:]:
            m = rule.matcher
            if m is None or m(req):
                result = rule.execute(req, resp)
                if result is not True and result is not False:
                    result = await result
                if result:
                    return True
        self.send_not_found(resp)
        return True

    def send_not_found(self, resp: "Response") -> None:
        if resp.sent:
            return
        resp.status = 404
        resp.send(self.not_found_page, "text/html; charset=utf-8")

    def log_request(self, req: "Request", resp: "Response", now: float) -> None:
        """One line per request, nginx "combined" format plus the request time in seconds.

        On by default, so it is on the hot path: the time stamp is rendered once a second and
        the two headers it needs are found in one pass (no per-request header map)."""
        alog = self.access_log
        if alog is None or (req.rule is not None and not req.rule.log_access):
            return
        referer = agent = None
        for name, value in req.headers:
            if name == "user-agent":
                if agent is None:
                    agent = value
            elif name == "referer" and referer is None:
                referer = value
        second = int(now)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))
        target = req.target
        if '"' in target:
            target = target.replace('"', "%22")
        alog.write(f'{req.peer[0]} - - [{self._stamp}] "{req.method} {target} HTTP/{req.version}" {resp.status} '
                   f'{resp.bytes_sent} "{_q(referer) if referer else "-"}" "{_q(agent) if agent else "-"}" '
                   f'{now - req.start_time:.6f}\n')


def _q(text: str) -> str:
    if '"' not in text and "\\" not in text:
        return text
    return text.replace("\\", "\\\\").replace('"', '\\"')


def app_lookup_table(apps: list[App]) -> tuple[dict[str, App], list[tuple[str, App]], list[tuple[str, App]], App | None]:
    """Exact, suffix ("*.x.com" -> ".x.com") and prefix ("www.x.*" -> "www.x.") tables and the
    default ("*") app, in bind order."""
    exact: dict[str, App] = {}
    suffix: list[tuple[str, App]] = []
    prefix: list[tuple[str, App]] = []
    default: App | None = None
    for app in apps:
        for h in app.hostnames:
            if h == "*":
                default = app
            elif h.startswith("*."):
                suffix.append((h[1:], app))
            elif h.endswith(".*"):
                prefix.append((h[:-1], app))
            else:
                exact.setdefault(h, app)
    return exact, suffix, prefix, default


