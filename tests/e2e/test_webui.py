"""The webui in a real browser: Debian's headless Chromium, driven over the DevTools protocol.

The browser is started with ``--remote-debugging-pipe``: it reads commands from fd 3 and writes
replies and events to fd 4, each a JSON text ended by a NUL byte. That needs no driver and no
Python package beyond the standard library (the CDP client is the small class below)."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from ..conftest import free_port
from .procman_util import Leader, start_leader, wait_for

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-pipe"]

CONFIG = """
stage {{
    app "a" {{ .hostnames = ("*") rule {{ .returnCode = 200 .returnText = "version 1" }} }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
"""


class Browser:
    """A headless Chromium and one page of it, over the DevTools protocol."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="gorox-chromium-")
        to_browser_r, self._out = os.pipe()
        self._in, from_browser_w = os.pipe()

        def fds() -> None:  # in the child: fd 3 = commands in, fd 4 = replies out
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     preexec_fn=fds, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        try:
            targets = self.send("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            self.session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
            self.send("Page.enable", session=True)
            self.send("Runtime.enable", session=True)
        except BaseException:
            self.close()
            raise

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed the pipe")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False,
             timeout: float = 20.0) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == method:
                    return self.events.pop(i)
            msg = self._read(max(deadline - time.monotonic(), 0.01))
            if "method" in msg:
                self.events.append(msg)

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                           session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session=True)
        self.wait_event("Page.loadEventFired")

    def click_and_wait(self, selector: str) -> None:
        """Click something that submits a form, and wait until the next page has loaded."""
        self.events.clear()
        self.js(f"document.querySelector({json.dumps(selector)}).click()")
        self.wait_event("Page.loadEventFired")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        try:  # the browser and whatever helper processes it left
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        os.close(self._in)
        os.close(self._out)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def leader(tmp_path: Path) -> Iterator[tuple[Leader, int]]:
    started: list[Leader] = []
    port = free_port()
    try:
        yield start_leader(tmp_path / "g", CONFIG, started=started, extra=("-webui", f"127.0.0.1:{port}")), port
    finally:
        for lead in started:
            lead.kill()


def test_webui_login_workers_and_reload_button(leader: tuple[Leader, int], browser: Browser) -> None:
    lead, port = leader
    token = (lead.base / "data" / "var" / "gorox.token").read_text().strip()
    browser.goto(f"http://127.0.0.1:{port}/")
    assert browser.js("document.querySelector('#token') !== null"), "the page asks for the token first"
    assert browser.js("document.querySelector('#workers') === null")

    browser.js("document.querySelector('#token').value = 'wrong'")
    browser.click_and_wait("#login")
    assert "Wrong token" in browser.js("document.body.innerText")

    browser.js(f"document.querySelector('#token').value = {json.dumps(token)}")
    browser.click_and_wait("#login")
    shown = browser.js("[...document.querySelectorAll('#workers tbody tr td.pid')].map(td => Number(td.textContent))")
    assert sorted(shown) == sorted(lead.worker_pids())
    assert browser.js("document.cookie") == "", "the session cookie is HttpOnly"
    assert browser.js("document.querySelector('#stage').textContent") == "0"

    lead.config.write_text(lead.config.read_text().replace("version 1", "version 2"))
    browser.click_and_wait("#reconf")
    assert browser.js("document.querySelector('#flash').textContent") == "Reload config: stage 1 serving in 2 workers"
    assert browser.js("document.querySelector('#stage').textContent") == "1"
    assert lead.info()["leader"]["stage"] == 1
    assert httpx.get(lead.url("/")).text == "version 2"

    # the status part refreshes itself: requests made now show up without a reload
    with httpx.Client() as client:
        for _ in range(30):
            client.get(lead.url("/"))
    count = "[...document.querySelectorAll('#workers tbody tr')].reduce((n, tr) => n + Number(tr.children[6].textContent), 0)"
    assert wait_for(lambda: browser.js(count) >= 30, 10)


def test_webui_metrics_and_access_control(leader: tuple[Leader, int]) -> None:
    lead, port = leader
    token = (lead.base / "data" / "var" / "gorox.token").read_text().strip()
    base = f"http://127.0.0.1:{port}"
    with httpx.Client() as client:
        for _ in range(5):
            client.get(lead.url("/"))
    r = httpx.get(f"{base}/metrics")
    assert r.status_code == 401 and "bearer" in r.headers["www-authenticate"].lower()
    r = httpx.get(f"{base}/metrics", headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401
    auth = {"authorization": f"Bearer {token}"}
    assert wait_for(lambda: 'gorox_server_requests_total{server="main"' in httpx.get(f"{base}/metrics", headers=auth).text)
    r = httpx.get(f"{base}/metrics", headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = [line for line in r.text.splitlines() if line and not line.startswith("#")]
    assert 'gorox_workers{state="serving"} 2' in lines
    for line in lines:
        name_labels, value = line.rsplit(" ", 1)
        float(value)
    assert httpx.get(f"{base}/api/info").status_code == 401
    assert httpx.get(f"{base}/api/info", headers=auth).json()["leader"]["pid"] == lead.leader_pid()
    # actions need the session and the form key
    assert httpx.post(f"{base}/action/quit", data={"csrf": "x"}).status_code == 401
    with httpx.Client(base_url=base) as c:
        assert c.post("/login", data={"token": token}).status_code == 303
        assert c.post("/action/quit", data={"csrf": "forged"}).status_code == 403
        assert c.post("/action/reopen", data={"csrf": "forged"}).status_code == 403
    assert lead.cmd("ping").returncode == 0
