"""Request and Response: what a handlet sees, whatever HTTP version carries the exchange.

The connection implements :class:`Stream` (framing, flow control, sendfile); Request and
Response hold the semantics (headers, cookies, forms, conditional logic) and never touch a
socket. Header names are lower-case strings; values are strings (latin-1 on the wire).
"""

from __future__ import annotations

import json as _json
import os
import tempfile
from typing import TYPE_CHECKING, Any, AsyncIterator, Protocol

from .cookies import parse_cookie_header, render_set_cookie
from .errors import HTTPError, error_page
from .forms import parse_content_type, parse_qsl

if TYPE_CHECKING:
    from .app import App
    from .handlet import BodyFilter, Reviser
    from .server import WebServer

TEXT_HTML = "text/html; charset=utf-8"
TEXT_PLAIN = "text/plain; charset=utf-8"

# Headers a handler may not set: the connection generates them from the framing it chooses.
_FRAMING = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"))


class Stream(Protocol):
    """The connection side of one exchange (implemented per HTTP version)."""

    version: str

    def send_head(self, status: int, headers: list[tuple[str, str]], length: int | None, *, body: bytes = b"",
                  end: bool = False) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def end(self, trailers: list[tuple[str, str]]) -> None: ...

    async def sendfile(self, fd: int, offset: int, count: int) -> None: ...

    async def read_body(self) -> bytes | None: ...

    def trailers(self) -> list[tuple[str, str]]: ...


class Request:
    """One request. Cheap to build: everything beyond the request line is parsed lazily."""

    # Hot attributes, set for every request, live in slots. Cold ones (bodies, forms, caches)
    # are class-level defaults: reading one costs nothing, and only a request that sets one
    # gets an instance dict. Building a request is then a dozen stores instead of forty.
    __slots__ = ("method", "target", "version", "scheme", "headers", "authority", "hostname", "colon_port",
                 "encoded_path", "path", "query_string", "peer", "stream", "server", "app", "content_length",
                 "chunked", "keep_alive", "start_time", "rule", "__dict__")

    expect_continue = False
    upgrade: str | None = None
    is_asterisk = False
    is_absolute = False
    fs_cache: dict[str, Any] | None = None
    _query: list[tuple[str, str]] | None = None
    _cookies: list[tuple[str, str]] | None = None
    _hmap: dict[str, str] | None = None
    _body: bytes | None = None
    _body_read = False
    _form: list[tuple[str, str]] | None = None
    _uploads: list[Any] | None = None
    _received = 0
    _json: Any = None
    spool_path: str | None = None

    def __init__(self, method: str, target: str, version: str, scheme: str, headers: list[tuple[str, str]],
                 authority: str, encoded_path: str, path: str, query_string: str, peer: tuple[str, int],
                 stream: Stream, hostname: str | None = None, colon_port: str = "", server: "WebServer | None" = None,
                 content_length: int | None = None, chunked: bool = False, keep_alive: bool = True,
                 start_time: float = 0.0) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.scheme = scheme
        self.headers = headers
        self.authority = authority
        if hostname is None:
            hostname, colon_port = split_authority(authority)
        self.hostname = hostname
        self.colon_port = colon_port or (":443" if scheme == "https" else ":80")
        self.encoded_path = encoded_path
        self.path = path
        self.query_string = query_string
        self.peer = peer
        self.stream = stream
        self.server = server
        self.app: App | None = None
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.start_time = start_time
        self.rule: Any = None

    @property
    def state(self) -> dict[str, Any]:
        """Per-request scratch space for handlets (and the ASGI scope's ``state``), made on first use."""
        d = self.__dict__
        st = d.get("state")
        if st is None:
            st = d["state"] = {}
        return st

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} HTTP/{self.version}>"

    # -- target ------------------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        """The raw path and query, as Gorox's $uri."""
        return self.encoded_path + self.query_string

    @property
    def client_ip(self) -> str:
        return self.peer[0]

    @property
    def is_https(self) -> bool:
        return self.scheme == "https"

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased ("" if none)."""
        value = self.header("content-type")
        if not value:
            return ""
        return value.split(";", 1)[0].strip().lower()

    # -- queries ------------------------------------------------------------------------------------
    @property
    def queries(self) -> list[tuple[str, str]]:
        if self._query is None:
            self._query = parse_qsl(self.query_string[1:]) if self.query_string else []
        return self._query

    def query(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.queries:
            if k == name:
                return v
        return default

    def query_list(self, name: str) -> list[str]:
        return [v for k, v in self.queries if k == name]

    # -- headers ------------------------------------------------------------------------------------
    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header (name in lower case)."""
        if self._hmap is None:
            hmap: dict[str, str] = {}
            for k, v in self.headers:
                if k not in hmap:
                    hmap[k] = v
            self._hmap = hmap
        return self._hmap.get(name, default)

    def header_list(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def has_header(self, name: str) -> bool:
        return self.header(name) is not None

    def add_header(self, name: str, value: str) -> None:
        """For components that rewrite requests before a handler (headReviser, proxies)."""
        self.headers.append((name.lower(), value))
        self._hmap = None

    def del_header(self, name: str) -> None:
        name = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self._hmap = None

    @property
    def user_agent(self) -> str:
        return self.header("user-agent", "") or ""

    # -- cookies ------------------------------------------------------------------------------------
    @property
    def cookies(self) -> list[tuple[str, str]]:
        if self._cookies is None:
            out: list[tuple[str, str]] = []
            for k, v in self.headers:
                if k == "cookie":
                    out.extend(parse_cookie_header(v))
            self._cookies = out
        return self._cookies

    def cookie(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.cookies:
            if k == name:
                return v
        return default

    # -- body ---------------------------------------------------------------------------------------
    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    async def stream_body(self) -> AsyncIterator[bytes]:
        """The body as it arrives. Enforces the app's or server's size limit (413)."""
        if self._body_read:
            if self._body:
                yield self._body
            return
        limit = self._max_content()
        while True:
            chunk = await self.stream.read_body()
            if chunk is None:
                self._body_read = True
                return
            self._received += len(chunk)
            if self._received > limit:
                raise HTTPError(413, "request content too large", close=True)
            yield chunk

    async def read(self) -> bytes:
        """The whole body in memory; larger than the app's ``.maxMemoryContentSize`` is 413
        (use :meth:`save` or :meth:`stream_body` for big bodies)."""
        if self._body is not None:
            return self._body
        memory = self._max_memory()
        if self.content_length is not None and self.content_length > memory:
            raise HTTPError(413, "request content too large for memory", close=True)
        parts: list[bytes] = []
        size = 0
        async for chunk in self.stream_body():
            size += len(chunk)
            if size > memory:
                raise HTTPError(413, "request content too large for memory", close=True)
            parts.append(chunk)
        self._body = b"".join(parts)
        self._body_read = True
        return self._body

    async def save(self) -> "BodyContent":
        """The whole body, in memory up to ``.maxMemoryContentSize`` and spooled to a temp file
        beyond it. The temp file is deleted when the exchange ends."""
        if self._body is not None:
            return BodyContent(self._body, None, len(self._body))
        if self.spool_path is not None:
            return BodyContent(None, self.spool_path, os.path.getsize(self.spool_path))
        memory = self._max_memory()
        parts: list[bytes] = []
        size = 0
        spool = None
        try:
            async for chunk in self.stream_body():
                size += len(chunk)
                if spool is None and size > memory:
                    spool = tempfile.NamedTemporaryFile(prefix="body-", dir=self._temp_dir(), delete=False)
                    self.spool_path = spool.name
                    spool.write(b"".join(parts))
                    parts = []
                if spool is not None:
                    spool.write(chunk)
                else:
                    parts.append(chunk)
        finally:
            if spool is not None:
                spool.close()
        if spool is None:
            self._body = b"".join(parts)
            return BodyContent(self._body, None, size)
        return BodyContent(None, self.spool_path, size)

    async def text(self, encoding: str = "utf-8") -> str:
        return (await self.read()).decode(encoding, errors="replace")

    async def json(self) -> Any:
        try:
            return _json.loads(await self.read())
        except ValueError:
            raise HTTPError(400, "bad JSON") from None

    async def form(self) -> list[tuple[str, str]]:
        """Fields of an urlencoded or multipart form (uploads: :meth:`uploads`)."""
        if self._form is None:
            from .formdata import read_form
            self._form, self._uploads = await read_form(self)
        return self._form

    async def form_value(self, name: str, default: str | None = None) -> str | None:
        for k, v in await self.form():
            if k == name:
                return v
        return default

    async def uploads(self) -> list[Any]:
        await self.form()
        return self._uploads or []

    @property
    def trailers(self) -> list[tuple[str, str]]:
        return self.stream.trailers()

    def _max_memory(self) -> int:
        return self.app.max_memory_content_size if self.app is not None else 16 << 20

    def _max_content(self) -> int:
        return self.server.max_content_size if self.server is not None else 1 << 40

    def _temp_dir(self) -> str:
        d = self.app.temp_dir if self.app is not None else tempfile.gettempdir()
        os.makedirs(d, exist_ok=True)
        return d

    def cleanup(self) -> None:
        """Remove spooled bodies and unmoved uploads (called by the connection at the end)."""
        if self.spool_path is not None:
            try:
                os.unlink(self.spool_path)
            except OSError:
                pass
            self.spool_path = None
        for up in self._uploads or ():
            up.cleanup()


class BodyContent:
    """A request body that is either in memory (``data``) or in a temp file (``path``)."""

    __slots__ = ("data", "path", "size")

    def __init__(self, data: bytes | None, path: str | None, size: int) -> None:
        self.data = data
        self.path = path
        self.size = size

    def open(self):  # type: ignore[no-untyped-def]
        import io
        return io.BytesIO(self.data) if self.data is not None else open(self.path, "rb")  # type: ignore[arg-type]


def split_authority(authority: str) -> tuple[str, str]:
    """("example.com", ":8080") from "example.com:8080"; IPv6 literals keep their brackets."""
    if not authority:
        return "", ""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return authority.lower(), ""
        rest = authority[end + 1:]
        return authority[:end + 1].lower(), rest if rest.startswith(":") and len(rest) > 1 else ""
    host, sep, port = authority.rpartition(":")
    if not sep:
        return authority.lower(), ""
    if not port:
        return host.lower(), ""
    return host.lower(), ":" + port


class Response:
    """The answer being built. ``send*`` finish it in one go (sized); ``echo`` streams it.

    Revisers of the matching rule see the head before it is written and may filter the body.
    """

    # As for Request: hot attributes in slots, cold ones as class defaults (an instance dict
    # appears only for a response that sets one).
    __slots__ = ("request", "status", "headers", "stream", "sent", "finished", "content_type", "bytes_sent",
                 "head_only", "revisers", "__dict__")

    close = False                 # close the connection afterwards
    _trailers: "list[tuple[str, str]] | tuple[()]" = ()
    _filters: "list[BodyFilter] | tuple[()]" = ()
    _streaming = False
    _length: int | None = None
    # Field lines already rendered (each "name: value\r\n", Content-Type among them), sent
    # after ``headers``: a proxy relays its upstream's fields without parsing them into tuples
    # and back. Only on a stream with ``raw_heads``, and never with revisers.
    raw_head = b""

    def __init__(self, request: Request, stream: Stream) -> None:
        self.request = request
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.stream = stream
        self.sent = False        # the head is on its way
        self.finished = False    # the whole response is on its way
        self.revisers: "list[Reviser] | tuple[()]" = ()
        self.content_type: str | None = None
        self.bytes_sent = 0
        self.head_only = request.method == "HEAD"

    def __repr__(self) -> str:
        return f"<Response {self.status} sent={self.sent} finished={self.finished}>"

    # -- head -----------------------------------------------------------------------------------------
    def set_status(self, status: int) -> None:
        if not 100 <= status <= 999:
            raise ValueError(f"status {status} out of range")
        self.status = status

    def add_header(self, name: str, value: str) -> None:
        """Add a header. Framing headers are the connection's business and are refused."""
        name = name.lower()
        if name in _FRAMING:
            raise ValueError(f"header {name!r} is set by the server")
        if any(c in value for c in "\r\n\x00") or any(c in name for c in "\r\n\x00: "):
            raise ValueError("header name or value contains a forbidden character")
        if name == "content-type":
            self.content_type = value
            return
        self.headers.append((name, value))

    def set_header(self, name: str, value: str) -> None:
        self.del_header(name)
        self.add_header(name, value)

    def del_header(self, name: str) -> None:
        name = name.lower()
        if name == "content-type":
            self.content_type = None
        self.headers = [(k, v) for k, v in self.headers if k != name]

    def header(self, name: str) -> str | None:
        name = name.lower()
        if name == "content-type":
            return self.content_type
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def set_cookie(self, name: str, value: str, **attrs: Any) -> None:
        self.headers.append(("set-cookie", render_set_cookie(name, value, **attrs)))

    def add_trailer(self, name: str, value: str) -> None:
        if any(c in value for c in "\r\n\x00") or any(c in name for c in "\r\n\x00: "):
            raise ValueError("trailer name or value contains a forbidden character")
        self._trailers = [*self._trailers, (name.lower(), value)]

    def redirect(self, location: str, status: int = 302) -> None:
        self.status = status
        self.headers.append(("location", location))
        self.send(b"")

    # -- revisers -------------------------------------------------------------------------------------
    @property
    def body_length(self) -> int | None:
        """The body's length when the sender knows it before the head goes out (``send``,
        ``send_fd``, ``set_length``), else None. Revisers read it (gzip skips short bodies)."""
        return self._length

    def _revise(self) -> None:
        """Let the rule's revisers see the head (rank order) and install body filters."""
        filters = list(self._filters)
        for reviser in self.revisers:
            f = reviser.revise(self.request, self)
            if f is not None:
                filters.append(f)
        self._filters = filters

    def _head_headers(self) -> list[tuple[str, str]]:
        if self.content_type is not None:
            return [("content-type", self.content_type), *self.headers]
        return self.headers

    def _send_head(self, status: int, length: int | None, *, end: bool) -> None:
        """The head, without a body: ``raw_head`` goes only to a stream that takes it."""
        raw = self.raw_head
        if raw:
            self.stream.send_head(status, self._head_headers(), length, end=end, raw=raw)  # type: ignore[call-arg]
        else:
            self.stream.send_head(status, self._head_headers(), length, end=end)

    # -- sized sends ----------------------------------------------------------------------------------
    def send(self, body: bytes | str = b"", content_type: str | None = None) -> None:
        """Send the whole response now. ``str`` bodies are UTF-8 and default to text/plain."""
        if self.sent:
            raise RuntimeError("response already sent")
        if isinstance(body, str):
            body = body.encode("utf-8")
            if content_type is None and self.content_type is None:
                content_type = TEXT_PLAIN
        if content_type is not None:
            self.content_type = content_type
        if self.revisers:
            self._length = len(body)
            self._revise()
            for f in self._filters:
                body = f.feed(body) + f.end()
        status = self.status
        self.sent = self.finished = True
        if status in (204, 304) or status < 200:
            self._send_head(status, None, end=True)
            return
        raw = self.raw_head
        self.bytes_sent = length = len(body)
        if raw:  # the content type is among the raw fields (and seldom set besides: a proxy's response)
            self.stream.send_head(status, self.headers if self.content_type is None else self._head_headers(),
                                  length, body=b"" if self.head_only else body, end=True,
                                  raw=raw)  # type: ignore[call-arg]
            return
        if self.content_type is None and body:
            self.content_type = "application/octet-stream"
        self.stream.send_head(status, self._head_headers(), length, body=b"" if self.head_only else body, end=True)

    def send_text(self, text: str, content_type: str = TEXT_PLAIN) -> None:
        self.send(text.encode("utf-8"), content_type)

    def send_html(self, html: str) -> None:
        self.send(html.encode("utf-8"), TEXT_HTML)

    def send_json(self, obj: Any, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        self.send(_json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), "application/json")

    def send_error(self, status: int, detail: str = "") -> None:
        self.status = status
        self.send(error_page(status, detail), TEXT_HTML)

    async def send_file(self, path: str, content_type: str | None = None) -> None:
        """Send a file with sendfile (or through the revisers' filters when they change it)."""
        from .mime import guess_type
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(fd).st_size
            self.content_type = content_type or self.content_type or guess_type(path)
            await self.send_fd(fd, 0, size)
        finally:
            os.close(fd)

    async def send_fd(self, fd: int, offset: int, count: int) -> None:
        """Send ``count`` bytes of an open file as the body (the head is written here too)."""
        if self.sent:
            raise RuntimeError("response already sent")
        if self.revisers:
            self._length = count
            self._revise()
        if self._filters:
            # A filter (e.g. gzip) changes the bytes: stream them through it.
            await self.echo(b"")
            pos, end = offset, offset + count
            while pos < end and not self.head_only:  # HEAD: nothing of the file is sent
                chunk = os.pread(fd, min(256 << 10, end - pos), pos)
                if not chunk:
                    break
                pos += len(chunk)
                await self.echo(chunk)
            await self.end()
            return
        self.sent = True
        self.bytes_sent = count
        self._send_head(self.status, count, end=self.head_only or count == 0)
        if not self.head_only and count:
            await self.stream.sendfile(fd, offset, count)
            await self.stream.end([])
        self.finished = True

    # -- streaming ------------------------------------------------------------------------------------
    def set_length(self, length: int) -> None:
        """Declare the body length before streaming, to send Content-Length instead of chunks."""
        self._length = length

    async def echo(self, data: bytes | str) -> None:
        """Stream a piece of the body; the first call sends the head. Waits while the client is slow."""
        if isinstance(data, str):
            data = data.encode("utf-8")
            if self.content_type is None and not self.sent:
                self.content_type = TEXT_PLAIN
        if not self.sent:
            if self.revisers and not self._filters:
                self._revise()
            self.sent = True
            self._streaming = True
            length = self._length if not self._filters else None
            if self.content_type is None and not self.raw_head:
                self.content_type = "application/octet-stream"
            self._send_head(self.status, length, end=False)
        elif not self._streaming:
            raise RuntimeError("response already sent")
        for f in self._filters:
            data = f.feed(data)
        if data and not self.head_only:
            self.bytes_sent += len(data)
            await self.stream.write(data)

    async def end(self) -> None:
        """Finish a streamed response (last chunk and trailers)."""
        if self.finished:
            return
        if not self.sent:
            self.send(b"")
            return
        tail = b""
        for f in self._filters:  # flush each filter, feeding what it flushes to the next
            tail = (f.feed(tail) if tail else b"") + f.end()
        if tail and not self.head_only:
            self.bytes_sent += len(tail)
            await self.stream.write(tail)
        self.finished = True
        await self.stream.end(self._trailers)
