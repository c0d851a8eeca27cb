"""Handlets used by the end-to-end tests, loaded INTO the gorox process under test.

This file is not imported by pytest: a test copies its text into the base directory as
``exts/__init__.py`` (see ``h1util.exts_files``), and gorox imports ``exts`` at start-up the way
it imports any user component package. That is the supported way to add components, so the
tests exercise it too.

Signs:
- ``testEcho``: reads the whole body (``?save=1``: with ``req.save()``, which may spool to a
  temp file) and answers JSON describing the request: method, target, path, headers, body
  length and sha256, trailers, the app's name, and where a spooled body lived.
- ``testStream``: a chunked response of ``?n=`` pieces, ``?delay=`` seconds apart, with a trailer.
- ``testSlow``: sleeps ``?s=`` seconds (default 1), then answers "slow done".
- ``testFile``: sends ``<webRoot>/<?f=>`` with ``resp.send_file`` (sendfile on plain TCP).
- ``testBig``: answers ``?mb=`` MiB at once, inline (the sync path), so the reply sits in the
  transport's buffer.
- ``testPass``: adds ``x-passed: <its name>`` to the response and declines (returns False), so
  the rule falls through to later handlets and rules.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

from hemi.core.registry import handlet
from hemi.web.handlet import Handlet


@handlet("testEcho")
class TestEcho(Handlet):
    async def handle(self, req, resp) -> bool:  # type: ignore[no-untyped-def]
        spooled = None
        if req.query("save"):
            content = await req.save()
            if content.path is not None:
                spooled = content.path
                with open(content.path, "rb") as f:
                    body = f.read()
            else:
                body = content.data or b""
        else:
            body = await req.read()
        resp.send_json({
            "app": req.app.name if req.app is not None else None,
            "method": req.method,
            "target": req.target,
            "version": req.version,
            "scheme": req.scheme,
            "authority": req.authority,
            "hostname": req.hostname,
            "colon_port": req.colon_port,
            "path": req.path,
            "uri": req.uri,
            "query_string": req.query_string,
            "is_asterisk": req.is_asterisk,
            "headers": [list(h) for h in req.headers],
            "body_len": len(body),
            "body_sha": hashlib.sha256(body).hexdigest(),
            "trailers": [list(t) for t in req.trailers],
            "spooled": spooled,
            "spooled_existed": spooled is not None and os.path.exists(spooled),
        })
        return True


@handlet("testStream")
class TestStream(Handlet):
    async def handle(self, req, resp) -> bool:  # type: ignore[no-untyped-def]
        n = int(req.query("n", "3"))
        delay = float(req.query("delay", "0"))
        resp.add_header("content-type", "text/plain")
        for i in range(n):
            await resp.echo(f"piece {i}\n")
            if delay:
                await asyncio.sleep(delay)
        resp.add_trailer("x-pieces", str(n))
        await resp.end()
        return True


@handlet("testSlow")
class TestSlow(Handlet):
    async def handle(self, req, resp) -> bool:  # type: ignore[no-untyped-def]
        await asyncio.sleep(float(req.query("s", "1")))
        resp.send("slow done")
        return True


@handlet("testPass")
class TestPass(Handlet):
    def handle(self, req, resp) -> bool:  # type: ignore[no-untyped-def]
        resp.add_header("x-passed", self.name)
        return False


@handlet("testFile")
class TestFile(Handlet):
    async def handle(self, req, resp) -> bool:  # type: ignore[no-untyped-def]
        await resp.send_file(os.path.join(self.app.web_root, req.query("f", "")))
        return True


@handlet("testBig")
class TestBig(Handlet):
    def handle(self, req, resp) -> bool:  # type: ignore[no-untyped-def]
        resp.send(b"b" * (int(req.query("mb", "1")) << 20), "application/octet-stream")
        return True
