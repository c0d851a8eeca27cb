"""An example app written with hemi's Python framework: one handlet, ``exampleApp``.

Mount it in a rule (see ``app.conf`` beside this file)::

    rule $path ^= "/example" {
        exampleApp {
            .prefix = "/example"
            .greeting = "Hello"     // optional
        }
    }

Every route below is relative to ``.prefix``. Methods named ``GET_x`` are routed by their name
(``GET_`` is ``/``, ``POST_api_echo`` would be ``/api/echo``); ``@route`` routes any path,
with parameters. Plain methods run inline; ``async`` ones may await (the body, a sleep, a
thread).
"""

from __future__ import annotations

import asyncio
import hashlib
from html import escape
from typing import Any

from hemi.core.registry import handlet
from hemi.web.exchange import Request, Response
from hemi.web.framework import AppHandlet, route

MAX_STREAM_CHUNKS = 100


@handlet("exampleApp")
class ExampleApp(AppHandlet):
    """Shows routing, parameters, forms, uploads, cookies, JSON, streaming, trailers and redirects."""

    def on_configure(self) -> None:
        super().on_configure()
        self.greeting = self.configure_string("greeting", "Hello")

    # -- pages ---------------------------------------------------------------------------------------
    def GET_(self, req: Request, resp: Response) -> None:
        """The index page (sync: runs inline, no task)."""
        u = self.url
        resp.send_html(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Example app</title></head><body>
<h1>{escape(self.greeting)} from a Python app</h1>
<ul>
<li><a href="{u('/hello')}?name=you">{u('/hello')}</a>: text from a sync handler</li>
<li><a href="{u('/slow')}">{u('/slow')}</a>: text from an async handler</li>
<li><a href="{u('/api/users/42')}?fields=name,email">{u('/api/users/42')}</a>: JSON, path and query parameters</li>
<li><a href="{u('/files/docs/readme.txt')}">{u('/files/docs/readme.txt')}</a>: a path parameter with slashes</li>
<li><a href="{u('/counter')}">{u('/counter')}</a>: a cookie counter</li>
<li><a href="{u('/stream')}">{u('/stream')}</a>: a streamed (chunked) response</li>
<li><a href="{u('/trailers')}">{u('/trailers')}</a>: a response with a trailer (see it with <code>curl --raw</code>)</li>
<li><a href="{u('/old')}">{u('/old')}</a>: a redirect to this page</li>
</ul>
<h2>An urlencoded form</h2>
<form method="post" action="{u('/form')}">
<input name="name" value="Ada"> <input name="lang" value="Python"> <button>Send</button>
</form>
<h2>A file upload</h2>
<form method="post" action="{u('/upload')}" enctype="multipart/form-data">
<input name="title" value="my file"> <input type="file" name="file" multiple> <button>Upload</button>
</form>
<p>JSON in and out: <code>curl -d '{{"a": 1}}' -H 'content-type: application/json' http://{escape(req.authority)}{u('/api/echo')}</code></p>
</body></html>
""")

    def GET_hello(self, req: Request, resp: Response) -> str:
        """A sync handler may return the body instead of sending it."""
        return f"{self.greeting}, {req.query('name', 'world')}!\n"

    async def GET_slow(self, req: Request, resp: Response) -> str:
        """An async handler: awaiting does not hold up other requests."""
        await asyncio.sleep(0.01)
        return "done after a nap\n"

    def GET_old(self, req: Request, resp: Response) -> None:
        resp.redirect(self.url("/"), 302)

    # -- JSON ------------------------------------------------------------------------------------------
    @route("GET", "/api/users/{id:int}")
    def user(self, req: Request, resp: Response, id: int) -> dict[str, Any]:
        """Path parameters arrive as keyword arguments (``int`` converted), queries from ``req``."""
        fields = [f for f in (req.query("fields") or "").split(",") if f]
        return {"id": id, "fields": fields, "page": int(req.query("page", "1") or 1)}

    @route("GET", "/files/{path:path}")
    def file_info(self, req: Request, resp: Response, path: str) -> dict[str, Any]:
        return {"path": path, "segments": path.split("/")}

    @route(("GET", "POST"), "/api/echo")
    async def echo(self, req: Request, resp: Response) -> dict[str, Any]:
        """GET echoes the query; POST echoes a JSON body (bad JSON is a 400 from ``req.json()``)."""
        if req.method == "GET":
            return {"query": dict(req.queries)}
        return {"received": await req.json()}

    # -- forms -----------------------------------------------------------------------------------------
    async def POST_form(self, req: Request, resp: Response) -> dict[str, Any]:
        """An urlencoded (or multipart) form's fields, in order."""
        return {"fields": await req.form()}

    async def POST_upload(self, req: Request, resp: Response) -> dict[str, Any]:
        """Files arrive spooled to temp files (deleted after the request unless moved with
        ``upload.move_to(dir)``); hashing runs in a thread so a big file does not stall others."""
        fields = await req.form()
        files = []
        for up in await req.uploads():
            files.append({"field": up.name, "filename": up.filename, "type": up.content_type, "size": up.size,
                          "sha256": await asyncio.to_thread(_sha256_file, up.path)})
        return {"fields": fields, "files": files}

    # -- cookies, streaming, trailers ------------------------------------------------------------------
    def GET_counter(self, req: Request, resp: Response) -> dict[str, int]:
        """Reads the ``count`` cookie and sets it one higher."""
        try:
            count = int(req.cookie("count", "0") or 0) + 1
        except ValueError:
            count = 1
        resp.set_cookie("count", str(count), path=self.url("/"), max_age=3600, http_only=True, same_site="Lax")
        return {"count": count}

    async def GET_stream(self, req: Request, resp: Response) -> None:
        """Chunks go out as they are made (chunked encoding: no length known in advance)."""
        n = min(int(req.query("n", "5") or 5), MAX_STREAM_CHUNKS)
        delay = 0.05
        resp.content_type = "text/plain; charset=utf-8"
        for i in range(n):
            await resp.echo(f"chunk {i}\n")
            if i + 1 < n:
                await asyncio.sleep(delay)
        await resp.end()

    async def GET_trailers(self, req: Request, resp: Response) -> None:
        """A streamed body followed by a trailer that depends on it (its digest)."""
        digest = hashlib.sha256()
        for word in ("alpha\n", "beta\n", "gamma\n"):
            data = word.encode()
            digest.update(data)
            await resp.echo(data)
        resp.add_trailer("x-content-sha256", digest.hexdigest())
        await resp.end()


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
