"""The webui: an admin page and ``/metrics``, served by hemi itself in the leader.

``start_webui`` builds a small stage (one app, one rule, the ``procmanWebui`` handlet below, an
``httpxServer`` on the ``-webui`` address) and starts it in the leader's event loop, so the page
runs on the same engine it supervises.

Access needs the admin token, like cmdui: a login form takes it and sets an HttpOnly,
SameSite=Strict cookie holding a value *derived* from the token (the token itself never
travels back); scripts may send ``Authorization: Bearer <token>`` instead (Prometheus can).
The buttons post forms with a derived anti-CSRF key. Pages:

- ``GET /``: leader, workers, servers, recent warnings; the status part refreshes itself
  every 2 s from ``GET /status``. Buttons: reload config, reopen logs, quit.
- ``POST /action/{reconf|reopen|quit}``, ``POST /login``, ``POST /logout``
- ``GET /api/info`` (JSON, as ``gorox info -json``), ``GET /metrics`` (Prometheus text).
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

from ..core.registry import handlet
from ..core.stage import Stage
from ..web.framework import AppHandlet, route
from . import commands as C
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .metrics import render as render_metrics
from .token import derive, token_matches

if TYPE_CHECKING:
    from ..web.exchange import Request, Response
    from .leader import Leader

COOKIE = "gorox_admin"
ACTIONS = {"reconf": "Reload config", "reopen": "Reopen logs", "quit": "Quit"}

STAGE_TEXT = """
stage {
    app "webui" {
        .hostnames = ("*")
        rule { procmanWebui { } }
    }
    httpxServer "webui" { .address = "%s" .forApps = ("webui") }
}
"""


async def start_webui(leader: "Leader", address: str) -> Stage:
    """Build and start the webui stage (ConfigError for a bad address, OSError if taken)."""
    if '"' in address or "\\" in address:
        raise OSError(f"bad address {address!r}")
    stage = Stage.from_text(STAGE_TEXT % address, leader.opts.dirs, file="<webui>")
    stage.leader = leader  # type: ignore[attr-defined]  # how the handlet reaches the leader
    await stage.launch()
    return stage


@handlet("procmanWebui")
class ProcmanWebui(AppHandlet):
    """The admin page. Only meaningful in a leader's webui stage (``stage.leader``)."""

    def on_prepare(self) -> None:
        self.flash: tuple[bool, str] | None = None

    @property
    def leader(self) -> "Leader":
        return self.stage.leader  # type: ignore[attr-defined,no-any-return]

    # -- access ---------------------------------------------------------------------------------------
    def _authorized(self, req: "Request") -> bool:
        token = self.leader.token
        cookie = req.cookie(COOKIE)
        if cookie is not None and token_matches(cookie, derive(token, "webui-session")):
            return True
        auth = req.header("authorization") or ""
        return auth[:7].lower() == "bearer " and token_matches(auth[7:].strip(), token)

    def _login_page(self, resp: "Response", error: str = "") -> None:
        resp.status = 401 if error else 200
        resp.set_header("cache-control", "no-store")
        message = f'<p class="flash bad">{html.escape(error)}</p>' if error else ""
        resp.send_html(_page("gorox admin: sign in", f"""
<main class="login">
  <h1>gorox admin</h1>{message}
  <form method="post" action="/login">
    <label>Admin token <input type="password" name="token" id="token" autocomplete="current-password" autofocus></label>
    <button type="submit" id="login">Sign in</button>
  </form>
  <p class="hint">The token is in <code>{html.escape(self.leader.opts.dirs.vars)}/{self.leader.opts.program}.token</code>.</p>
</main>"""))

    # -- pages ----------------------------------------------------------------------------------------
    def GET_(self, req: "Request", resp: "Response") -> None:
        if not self._authorized(req):
            return self._login_page(resp)
        flash, self.flash = self.flash, None
        snap = self.leader.snapshot()
        lead = snap["leader"]
        csrf = derive(self.leader.token, "webui-csrf")
        buttons = "".join(
            f'<form method="post" action="/action/{name}"{_confirm(name)}>'
            f'<input type="hidden" name="csrf" value="{csrf}"><button type="submit" id="{name}">{label}</button></form>'
            for name, label in ACTIONS.items())
        flash_html = (f'<pre class="flash {"ok" if flash[0] else "bad"}" id="flash">{html.escape(flash[1])}</pre>'
                      if flash else "")
        resp.set_header("cache-control", "no-store")
        resp.send_html(_page(f"gorox admin: {lead['pid']}", f"""
<header>
  <h1>gorox</h1>
  <div class="actions">{buttons}
    <form method="post" action="/logout"><input type="hidden" name="csrf" value="{csrf}"><button type="submit">Sign out</button></form>
  </div>
</header>
{flash_html}
<section id="status">{_status(snap)}</section>
<script>
setInterval(async () => {{
  try {{
    const r = await fetch("/status", {{credentials: "same-origin", cache: "no-store"}});
    if (r.ok) document.getElementById("status").innerHTML = await r.text();
  }} catch (e) {{}}
}}, 2000);
</script>"""))

    def GET_status(self, req: "Request", resp: "Response") -> None:
        if not self._authorized(req):
            resp.send_error(401, "sign in first")
            return
        resp.set_header("cache-control", "no-store")
        resp.send_html(_status(self.leader.snapshot()))

    async def GET_api_info(self, req: "Request", resp: "Response") -> None:
        if not self._authorized(req):
            resp.send_json({"error": "unauthorized"}, 401)
            return
        await self.leader.poll()
        resp.send_json(self.leader.snapshot())

    def GET_metrics(self, req: "Request", resp: "Response") -> None:
        if not self._authorized(req):
            resp.set_header("www-authenticate", 'Bearer realm="gorox"')
            resp.status = 401
            resp.send("unauthorized: send Authorization: Bearer <token>\n")
            return
        resp.send(render_metrics(self.leader.snapshot()), METRICS_TYPE)

    async def POST_login(self, req: "Request", resp: "Response") -> None:
        token = await req.form_value("token") or ""
        if not token_matches(token.strip(), self.leader.token):
            return self._login_page(resp, "Wrong token.")
        resp.set_cookie(COOKIE, derive(self.leader.token, "webui-session"), path="/", http_only=True, same_site="Strict")
        resp.redirect("/", 303)

    async def POST_logout(self, req: "Request", resp: "Response") -> None:
        resp.set_cookie(COOKIE, "", path="/", max_age=0, http_only=True, same_site="Strict")
        resp.redirect("/", 303)

    @route("POST", "/action/{name}")
    async def action(self, req: "Request", resp: "Response", name: str) -> None:
        if not self._authorized(req):
            resp.send_error(401, "sign in first")
            return
        if name not in ACTIONS:
            resp.send_error(404, f"no action {name}")
            return
        if not token_matches(await req.form_value("csrf") or "", derive(self.leader.token, "webui-csrf")):
            resp.send_error(403, "stale form: reload the page")
            return
        flag, args = await self.leader.command(name)
        text = args.get("error", "failed") if flag != C.OK else next(iter(args.values()), "done")
        self.flash = (flag == C.OK, f"{ACTIONS[name]}: {text}")
        if name == "quit" and flag == C.OK:
            resp.send_html(_page("gorox: quitting", '<p class="flash ok" id="flash">The leader is quitting.</p>'))
            return
        resp.redirect("/", 303)


def _confirm(name: str) -> str:
    return ' onsubmit="return confirm(\'Quit gorox? In-flight requests finish first.\')"' if name == "quit" else ""


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _status(snap: dict[str, Any]) -> str:
    e = html.escape
    lead = snap["leader"]
    last = lead.get("last_reconf") or {}
    last_html = (f' · last reconf {"ok" if last.get("ok") else "FAILED"} {_ago(time.time() - last["time"])} ago'
                 if last else "")
    rows = "".join(
        f'<tr class="worker {e(w["state"])}"><td>{w["slot"]}</td><td class="pid">{w["pid"] or "-"}</td>'
        f'<td>{e(w["state"])}</td><td>{_ago(w["uptime"])}</td><td>{"" if w["stage"] is None else w["stage"]}</td>'
        f'<td>{w["conns_open"]}</td><td>{w["requests_total"]}</td><td>{w["rate"]:.1f}</td>'
        f'<td>{w["rss"] / (1 << 20):.1f}</td><td>{w["restarts"]}</td></tr>'
        for w in snap["workers"])
    servers = "".join(
        f'<tr><td>{e(s["name"])}</td><td>{e(s["sign"])}</td><td>{e(s["address"])}</td><td>{s["conns_open"]}</td>'
        f'<td>{s["connections_total"]}</td><td>{s["requests_total"]}</td><td>{s["rate"]:.1f}</td></tr>'
        for s in snap["servers"]) or '<tr><td colspan="7">no figures yet</td></tr>'
    errors = "".join(
        f'<li><time>{time.strftime("%H:%M:%S", time.localtime(x["time"]))}</time> '
        f'<b>{e(x["level"])}</b> {e("worker " + str(x["worker"]) if "worker" in x else "leader")}: '
        f'{e(x["message"])}</li>'
        for x in reversed(snap["errors"][-20:])) or "<li>none</li>"
    return f"""
<p class="lead" id="leader">leader <b>{lead["pid"]}</b> · up {_ago(lead["uptime"])} · stage <b id="stage">{lead["stage"]}</b>
 · config <code>{e(lead["config"])}</code> · gorox {e(lead["version"])}{last_html}</p>
<h2>Workers</h2>
<table id="workers"><thead><tr><th>slot</th><th>pid</th><th>state</th><th>up</th><th>stage</th><th>conns</th>
<th>requests</th><th>req/s</th><th>RSS MiB</th><th>restarts</th></tr></thead><tbody>{rows}</tbody></table>
<h2>Servers</h2>
<table id="servers"><thead><tr><th>name</th><th>kind</th><th>address</th><th>conns</th><th>connections</th>
<th>requests</th><th>req/s</th></tr></thead><tbody>{servers}</tbody></table>
<h2>Recent warnings and errors</h2>
<ul id="errors">{errors}</ul>"""


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
header {{ display: flex; align-items: center; gap: 2em; }}
h1 {{ margin: 0; }} h2 {{ font-size: 1.1em; margin-top: 1.5em; }}
.actions {{ display: flex; gap: .5em; }} .actions form {{ margin: 0; }}
button {{ padding: .4em .9em; cursor: pointer; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ccc; padding: .25em .6em; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
tr.draining td {{ color: #888; }} tr.dead td, tr.restarting td {{ color: #b00; }}
.flash {{ padding: .5em 1em; border-radius: 4px; white-space: pre-wrap; }}
.ok {{ background: #e6f4e6; }} .bad {{ background: #fbe4e4; }}
#errors {{ font-family: ui-monospace, monospace; font-size: 12px; }}
.login {{ max-width: 28em; margin: 4em auto; }} .login input {{ width: 100%; margin: .5em 0; }}
</style></head><body>{body}</body></html>"""
