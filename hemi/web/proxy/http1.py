"""``http1Backend`` and ``http1Proxy``: HTTP/1.1 to upstream servers, reverse or forward.

One exchange: build the upstream request head once (hop-by-hop fields removed, Via and
X-Forwarded-* added, the configured header edits applied), take a connection from the backend
(reverse) or from a small per-host pool (forward), send the head and stream the body, read the
response head with the sans-IO :class:`~hemi.web.http1.codec.ResponseParser`, and relay it:
in one ``send`` when the whole response is already here (the common small response), else
streamed (Content-Length passed through, or chunked), or buffered with
``.bufferServerContent``. The upstream connection goes back to the pool as soon as its
response is complete, before the client has read it.

Failures map as nginx maps them: no connection, a reset before any response byte or a
malformed response is 502, a timeout 504; an idempotent request whose try died before any
response byte is sent again (``.maxRetries`` times to other nodes; a *reused* pooled connection
that the upstream had closed does not count). After the response head is out, the only signal
left is to cut the client's connection. A client that goes away cancels the exchange, and the
upstream connection is closed, never pooled.

WebSocket (any ``Upgrade``) requests are passed on with their Upgrade and Connection fields;
on ``101`` the head is relayed and both connections become a byte tunnel.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from typing import TYPE_CHECKING, Any, Awaitable, Final

from ...core.registry import backend, handlet
from ...core.memo import Memo, remember
from ...net.address import Address
from ...net.backend import (Backend, bind_backend, BackendConn, BackendError, BackendTimeout, ConnectError, Node,
                            open_connection)
from ..errors import HTTPError
from ..handlet import Handlet
from ..http1.codec import (CLOSED, NEED_DATA, Body, EndOfMessage, ProtocolError, ResponseHead, ResponseParser,
                           encode_chunk, encode_last_chunk, render_response_head)
from .connect import open_tunnel
from ..deferred import Deferred
from .settle import CallbackExchange
from . import (HOP_BY_HOP, IDEMPOTENT, configure_buffering_and_storer, connection_options, copy_request_headers,
               forwarding_headers)

if TYPE_CHECKING:
    from ..exchange import BodyContent, Request, Response


_FILE_PIECE: Final = 256 << 10     # a buffered body is sent from its temp file in pieces this big
_MAX_STALE: Final = 4              # reused pooled connections found dead in one exchange, at most
_GATHER_LIMIT: Final = 64 << 10    # a sized response body up to this is read whole, then sent in one write
_MAX_RENDERED: Final = 2048        # longer rendered request fields (big cookies) are not kept
_SLOW_METHODS: Final = frozenset(("HEAD", "CONNECT"))  # never on the hot path
_UNKNOWN: Final = object()
# Request fields we generate ourselves (or merge: Via, X-Forwarded-For) instead of copying.
_REQUEST_DROP: Final = HOP_BY_HOP | {"host", "content-length", "expect", "via", "x-forwarded-for",
                                     "x-forwarded-proto", "x-forwarded-host"}
# Response fields our own connection writes (framing, Date, Server) or we merge (Via).
_RESPONSE_DROP: Final = HOP_BY_HOP | {"content-length", "server", "date", "via"}


def _render_line(key: tuple[str, str, str]) -> bytes:
    method, target, host = key
    return f"{method} {target} HTTP/1.1\r\nhost: {host}\r\n".encode("latin-1")


# (method, target, Host) -> the upstream request line and Host field, encoded: a site's hot
# URLs repeat, so each line is rendered once (long targets are rendered every time).
_upstream_line = Memo(_render_line, 4096, lambda key, _: len(key[1]) <= 256).__getitem__


@backend("http1Backend")
class Http1Backend(Backend):
    """A backend of HTTP/1.1 servers; the active health check is ``GET .healthPath`` answered
    with a 2xx or 3xx status."""

    def on_configure(self) -> None:
        super().on_configure()
        self.health_path = self.configure_string(
            "healthPath", "/", check=lambda v: None if v.startswith("/") else 'must start with "/"')

    async def check_node(self, node: Node) -> bool:
        conn = await self.dial(node)
        try:
            host = self.tls_server_name or (node.name if node.address.path is None else "localhost")
            conn.write(f"GET {self.health_path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: gorox-health-check\r\n"
                       f"connection: close\r\n\r\n".encode("latin-1"))
            head = await read_response_head(conn, ResponseParser("GET"))
            return head is not None and 200 <= head.status < 400
        except ProtocolError:
            return False
        finally:
            conn.close()


def response_parser(conn: BackendConn, method: str) -> ResponseParser:
    """The connection's response parser, ready for the response to ``method``: one per
    connection, reused while it is kept alive."""
    parser = conn.parser
    if parser is None:
        parser = conn.parser = ResponseParser(method, keep_raw=True)
    else:
        parser.start_next(method)
    return parser


async def read_response_head(conn: BackendConn, parser: ResponseParser) -> ResponseHead | None:
    """The final response head (interim 1xx other than 101 are skipped), or None when the
    upstream closed before sending any byte. Raises ProtocolError, BackendError."""
    while True:
        event = parser.next_event()
        if event is NEED_DATA:
            parser.feed(await conn.read())
            continue
        if event is CLOSED:
            return None
        assert type(event) is ResponseHead, event
        if event.status < 200 and event.status != 101:
            # 100 Continue: the client's Expect was answered by our own connection when its body
            # was first read; 103 Early Hints: dropped (HTTP/1 clients rarely use them).
            continue
        return event


class _HostPool:
    """The forward proxy's "backend" for one origin host:port: one node, its idle pool, no
    balancing and no health (a failure is the client's answer, not a reason to avoid the host)."""

    def __init__(self, proxy: "Http1Proxy", address: Address, tls: bool) -> None:
        self.proxy = proxy
        self.node = Node(None, address, keep_conns=proxy.forward_keep_conns)
        self.tls = tls

    async def acquire(self, *, client_ip: str = "", exclude: frozenset[Node] = frozenset(),
                      node: Node | None = None) -> BackendConn:
        node = self.node
        if node in exclude:
            raise ConnectError(f"{node.name}: no other node to try", node)
        p = self.proxy
        conn = node.take_idle(p.alive_timeout)
        if conn is None:
            conn = await open_connection(node, lambda: BackendConn(node, p.read_timeout, p.write_timeout),
                                         dial_timeout=p.dial_timeout, ssl_context=p.forward_ssl if self.tls else None,
                                         resolv=p.stage.resolv)
        conn.requests += 1
        node.in_use += 1
        return conn

    def release(self, conn: BackendConn, *, reusable: bool) -> None:
        self.node.in_use -= 1
        if not (reusable and self.node.keep(conn, self.proxy.alive_timeout)):
            conn.close()

    def report(self, node: Node, ok: bool) -> None:
        pass


@handlet("http1Proxy")
class Http1Proxy(Handlet):
    """Pass requests to an ``http1Backend`` (reverse) or to the host they name (forward)."""

    is_proxy = True

    # -- configuration ----------------------------------------------------------------------------------
    def on_configure(self) -> None:
        self.proxy_mode = self.configure_string("proxyMode", "reverse", choices=("reverse", "forward"))
        self.backend_name = self.configure_string("toBackend", "")
        configure_buffering_and_storer(self)
        self.via_name = self.configure_string("viaName", "gorox")
        self.hostname = self.configure_string("hostname", "")
        self.colon_port = self.configure_string(
            "colonPort", "", check=lambda v: None if not v or (v[0] == ":" and v[1:].isdigit())
            else 'must look like ":8080"')
        self.add_request_headers = self._header_dict("addRequestHeaders")
        self.del_request_headers = frozenset(h.lower() for h in self.configure_string_list("delRequestHeaders"))
        self.add_response_headers = self._header_dict("addResponseHeaders")
        self.del_response_headers = frozenset(h.lower() for h in self.configure_string_list("delResponseHeaders"))
        self.max_retries = self.configure_int("maxRetries", 1, min=0, max=16)
        # Forward mode has no backend: these say how it reaches origin servers.
        self.dial_timeout = self.configure_duration("dialTimeout", 10.0, min=0.001)
        self.read_timeout = self.configure_duration("readTimeout", 30.0, min=0.001)
        self.write_timeout = self.configure_duration("writeTimeout", 30.0, min=0.001)
        self.alive_timeout = self.configure_duration("aliveTimeout", 5.0, min=0.0)
        self.forward_keep_conns = self.configure_int("keepConns", 4, min=0)
        # CONNECT tunnels (forward mode only; see connect.py).
        self.allow_connect = self.configure_bool("allowConnect", False)
        self.connect_ports = frozenset(self.configure_list(
            "connectPorts", [443], check=lambda v: None if v and all(type(p) is int and 0 < p < 65536 for p in v)
            else "must be a non-empty list of port numbers"))
        if self.allow_connect and self.proxy_mode != "forward":
            self.error('.allowConnect needs .proxyMode = "forward"', self.block.prop_locs.get("allowConnect"))
        self.backend: Backend | None = None
        self.forward_ssl: ssl.SSLContext | None = None
        self._hosts: dict[tuple[str, int, bool], _HostPool] = {}
        self._via = f"1.1 {self.via_name}"
        self._request_drop = _REQUEST_DROP | self.del_request_headers
        self._response_drop = _RESPONSE_DROP | self.del_response_headers
        self._added_request = "".join(f"{k}: {v}\r\n" for k, v in self.add_request_headers)
        # Rendered upstream fields of body-less requests, by (headers, client, scheme, authority).
        self._rendered: dict[tuple, bytes] = {}
        # What every relayed head ends with, rendered once: our Via and .addResponseHeaders.
        self._response_tail = "".join(f"{k}: {v}\r\n" for k, v in [("via", self._via), *self.add_response_headers]
                                      ).encode("latin-1", "replace")
        # An upstream's field lines (as received) -> what _raw_fields keeps of them; bounded.
        self._kept_fields: dict[bytes, bytes | None] = {}
        self._tls_backend = False
        self.forward = self.proxy_mode == "forward"
        self._rewrites_host = bool(self.hostname or self.colon_port)  # else the request's own Host goes on

    def _header_dict(self, name: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key, value in self.configure_string_dict(name).items():
            if not key or any(c in key for c in "\r\n\0: ") or any(c in value for c in "\r\n\0"):
                self.error(f'.{name} has a bad header "{key}"', self.block.prop_locs.get(name))
                continue
            out.append((key.lower(), value))
        return out

    def on_bind(self) -> None:
        """Resolve ``.toBackend`` now that every component is configured: a missing or wrong
        kind of backend is a config error, not a crash on the first request."""
        loc = self.block.prop_locs.get("toBackend")
        if self.proxy_mode == "reverse" and not self.backend_name:
            self.error('needs .toBackend (the name of an http1Backend) in reverse mode')
            return
        if not self.backend_name:
            return
        comp = bind_backend(self, self.backend_name, "an http1Backend", lambda c: isinstance(c, Http1Backend), loc)
        if comp is not None:
            self.backend = comp
            self._tls_backend = comp.tls_mode

    def on_prepare(self) -> None:
        if self.proxy_mode == "forward":
            self.forward_ssl = ssl.create_default_context()

    async def on_shutdown(self) -> None:
        for pool in self._hosts.values():
            pool.node.close_idle()
        self._hosts.clear()

    # -- the exchange -------------------------------------------------------------------------------------
    def handle(self, req: "Request", resp: "Response") -> Awaitable[bool]:
        """The hot path: a body-less request to the backend over an idle pooled connection is
        written here and answered from the connection's callbacks (:class:`_Exchange`); this
        returns the answer (a :class:`~hemi.web.deferred.Deferred`) it settles. Anything else is the
        coroutine :meth:`_serve`."""
        backend = self.backend
        if (backend is None or req.upgrade is not None or req.chunked or req.content_length
                or req.method in _SLOW_METHODS or self.buffer_server_content or (req.is_absolute and self.forward)):
            return self._serve(req, resp)
        try:
            node = backend.pick(req.peer[0])
        except ConnectError as e:
            raise HTTPError(502, str(e)) from None
        conn = backend.take(node)
        if conn is None:  # no idle connection: dial (or wait for a slot) in the coroutine
            return self._serve(req, resp, node)
        # (The answer cancels itself when the client closes its side: eof_cancels in start.)
        # (Without a rewrite, _upstream_host returns the request's authority, absolute-form or not.)
        host = self._upstream_host(req) if self._rewrites_host else req.authority
        return _Exchange(self, backend, conn, req, resp).start(self._request_head(req, host or node.name, None))

    async def _serve(self, req: "Request", resp: "Response", first: Node | None = None, stale: int = 0) -> bool:
        """Every exchange the hot path does not take (bodies, upgrades, dials, forward mode,
        buffering, HEAD, CONNECT), and the retry of one whose pooled connection was found dead
        (``stale`` such connections so far). ``first``: the node the hot path picked."""
        abort_on_eof = getattr(req.stream, "abort_on_eof", None)
        if abort_on_eof is not None:
            abort_on_eof()  # a client that leaves cancels this task: the upstream connection is closed
        if req.method == "CONNECT":
            await open_tunnel(req, resp, allowed=self.allow_connect, ports=self.connect_ports,
                              dial_timeout=self.dial_timeout, idle_timeout=self.read_timeout, resolv=self.stage.resolv)
            return True
        upstream = self._upstream(req)
        if req.upgrade is not None:
            await self._tunnel(upstream, req, resp)
            return True
        body: BodyContent | None = None
        if req.has_body and self.buffer_client_content:
            body = await req.save()
        retryable = req.method in IDEMPOTENT and (body is not None or not req.has_body)
        host = self._upstream_host(req)
        head = self._request_head(req, host, body)
        exclude: frozenset[Node] = frozenset()
        retries = 0
        while True:
            try:
                conn = await upstream.acquire(client_ip=req.client_ip, exclude=exclude, node=first)
                first = None
            except BackendTimeout as e:
                raise HTTPError(504, str(e)) from None
            except BackendError as e:
                raise HTTPError(502, str(e)) from None
            if not host:  # an HTTP/1.0 client without Host: name the node
                head = self._request_head(req, conn.node.name, body)
            node = conn.node
            done = False
            try:
                parser = response_parser(conn, req.method)
                try:
                    if body is None and not req.has_body:  # the common case, without a coroutine more
                        conn.write(head)
                        rhead = await read_response_head(conn, parser)
                    else:
                        rhead = await self._send_and_read_head(conn, parser, head, req, body)
                except BackendTimeout as e:
                    upstream.report(node, False)
                    raise HTTPError(504, str(e)) from None
                except ProtocolError as e:
                    upstream.report(node, False)
                    raise HTTPError(502, f"bad response from {node.name}: {e.reason}") from None
                if rhead is None or rhead.status == 101:
                    # The upstream closed before any response byte (or switched protocols uninvited).
                    done = True
                    upstream.release(conn, reusable=False)
                    if rhead is None and retryable:
                        if conn.requests > 1 and stale < _MAX_STALE:
                            stale += 1
                            node.close_idle()  # its siblings from the same era are likely dead too
                            continue
                        if retries < self.max_retries:
                            retries += 1
                            upstream.report(node, False)
                            exclude = exclude | {node}
                            continue
                    if conn.requests == 1:
                        upstream.report(node, False)
                    raise HTTPError(502, f"{node.name} closed the connection without a response")
                if node.fails:
                    upstream.report(node, True)
                done = True  # from here the relay releases the connection itself
                return await self._relay(upstream, conn, parser, rhead, req, resp, [])
            except BaseException:
                if not done:
                    upstream.release(conn, reusable=False)
                raise

    def _upstream(self, req: "Request") -> Any:
        """The backend (reverse), or the pool of the host the request names (forward)."""
        if self.backend is not None and (self.proxy_mode == "reverse" or not req.is_absolute):
            return self.backend
        if self.proxy_mode != "forward":
            raise HTTPError(502, "no backend")
        hostname = req.hostname.strip("[]")
        if not hostname:
            raise HTTPError(400, "a forward proxy needs an absolute URI or a Host")
        tls = req.scheme == "https" and req.is_absolute
        port = int(req.colon_port[1:]) if req.colon_port[1:].isdigit() else (443 if tls else 80)
        key = (hostname, port, tls)
        pool = self._hosts.get(key)
        if pool is None:
            if len(self._hosts) >= 1024:  # bounded: forget the oldest host
                old = self._hosts.pop(next(iter(self._hosts)))
                old.node.close_idle()
            pool = self._hosts[key] = _HostPool(self, Address(hostname, port), tls)
        return pool

    def _upstream_host(self, req: "Request") -> str:
        if req.is_absolute:
            return req.authority
        if self.hostname or self.colon_port:
            port = self.colon_port or req.colon_port
            if port == (":443" if self._tls_backend else ":80"):
                port = ""
            return (self.hostname or req.hostname) + port
        return req.authority  # the Host field the codec checked (no per-request header map)

    def _request_head(self, req: "Request", host: str, body: "BodyContent | None") -> bytes:
        """The upstream request line and fields (one string, encoded once). A body-less
        request's fields, with the forwarding ones, depend only on its headers and where it came
        from: those of a client repeating its fields (every keep-alive client does) are looked
        up, not filtered and rendered again."""
        target = "*" if req.is_asterisk and req.method == "OPTIONS" else req.encoded_path + req.query_string
        line = _upstream_line((req.method, target, host))
        if body is None and req.content_length is None and not req.chunked and req.upgrade is None:
            key = (tuple(req.headers), req.peer[0], req.scheme, req.authority)
            fields = self._rendered.get(key)
            if fields is None:
                fields = self._fields(req, None)
                if len(fields) <= _MAX_RENDERED:
                    remember(self._rendered, key, fields, 256)
            return line + fields
        return line + self._fields(req, body)

    def _fields(self, req: "Request", body: "BodyContent | None") -> bytes:
        """Everything after the Host line: the request's end-to-end fields, its framing, the
        forwarding fields and ours, and the empty line."""
        drop = self._request_drop
        conn_opts = req.header("connection")
        if conn_opts is not None and conn_opts.lower() not in ("keep-alive", "close"):
            drop = drop | connection_options(conn_opts)
        lines: list[str] = []
        append = lines.append
        via, xff = copy_request_headers(req.headers, drop, append)
        if body is not None:
            append(f"content-length: {body.size}\r\n")
        elif req.chunked:
            append("transfer-encoding: chunked\r\n")
        elif req.content_length is not None:
            append(f"content-length: {req.content_length}\r\n")
        if req.upgrade is not None:
            append(f"connection: upgrade\r\nupgrade: {req.header('upgrade')}\r\n")
        append(forwarding_headers(req, via, xff, self._via))
        append(self._added_request)
        append("\r\n")
        return "".join(lines).encode("latin-1")

    async def _send_and_read_head(self, conn: BackendConn, parser: ResponseParser, head: bytes, req: "Request",
                                  body: "BodyContent | None") -> ResponseHead | None:
        try:
            await self._send_request(conn, head, req, body)
        except BackendTimeout:
            raise
        except BackendError:
            pass  # the upstream stopped taking the request: it may have answered already (413...)
        return await read_response_head(conn, parser)

    async def _send_request(self, conn: BackendConn, head: bytes, req: "Request", body: "BodyContent | None") -> None:
        if body is not None:
            if body.data is not None:
                conn.writelines([head, body.data])
                await conn.drain()
                return
            conn.write(head)
            with open(body.path, "rb") as f:  # type: ignore[arg-type]
                while piece := f.read(_FILE_PIECE):
                    conn.write(piece)
                    await conn.drain()
            return
        conn.write(head)
        if not req.has_body:
            return
        chunked = req.chunked
        async for chunk in req.stream_body():
            conn.write(encode_chunk(chunk) if chunked else chunk)
            await conn.drain()
        if chunked:
            conn.write(encode_last_chunk(req.trailers))
            await conn.drain()

    # -- the response -------------------------------------------------------------------------------------
    def _copy_head(self, rhead: ResponseHead, resp: "Response") -> None:
        """Status and end-to-end fields. Framing, Date and Server are our connection's to write.
        The parser let no CR, LF or NUL through, so fields go straight into the list (or, as
        the field lines received, into ``resp.raw_head``: see :meth:`_raw_fields`)."""
        resp.status = rhead.status
        if rhead.raw and not resp.revisers and getattr(resp.stream, "raw_heads", False):
            kept = self._kept_fields
            raw = kept.get(rhead.raw, _UNKNOWN)
            if raw is _UNKNOWN:  # a head not seen before (the codec hands out the same head again)
                raw = remember(kept, rhead.raw, self._raw_fields(rhead), 256)
            if raw is not None:
                resp.raw_head = raw
                return
        drop = self._response_drop
        out: list[tuple[str, str]] = []
        via = options = None
        for name, value in rhead.headers:
            if name in drop:
                if name == "via":
                    via = value if via is None else f"{via}, {value}"
                elif name == "connection" and value.lower() not in ("keep-alive", "close"):
                    options = connection_options(value)
                continue
            if name == "content-type":
                resp.content_type = value
                continue
            out.append((name, value))
        if options:
            out = [(k, v) for k, v in out if k not in options]
        out.append(("via", f"{via}, {self._via}" if via else self._via))
        out.extend(self.add_response_headers)
        resp.headers.extend(out)

    def _raw_fields(self, rhead: ResponseHead) -> bytes | None:
        """The upstream's end-to-end field lines as it sent them (validated by the parser),
        our Via and added fields after them: no tuples built, nothing rendered per field.
        None when a field needs the tuple path: a Via to merge, a Connection naming fields,
        or no Content-Type (which our side then supplies)."""
        drop = self._response_drop
        kept: list[bytes] = []
        append = kept.append
        typed = False
        for line, (name, value) in zip(rhead.raw.split(b"\r\n"), rhead.headers):
            if name in drop:
                if name == "via" or (name == "connection" and value.lower() not in ("keep-alive", "close")):
                    return None
                continue
            if name == "content-type":
                typed = True
            append(line)
        if not typed:
            return None
        append(self._response_tail)
        return b"\r\n".join(kept)

    async def _relay(self, upstream: Any, conn: BackendConn, parser: ResponseParser, rhead: ResponseHead,
                     req: "Request", resp: "Response", parts: list[bytes]) -> bool:
        """Send the response to the client (``parts``: body bytes already taken from the
        parser); release ``conn`` as soon as the upstream is done."""
        self._copy_head(rhead, resp)
        reusable = rhead.keep_alive and rhead.version == "1.1"
        released = False
        try:
            # Gather the body while it is small and sized (upstreams such as nginx send the head
            # and the body in separate segments), or all of it with .bufferServerContent: a
            # complete response goes out in one sized send, one write. Otherwise stream what
            # has arrived and the rest as it comes.
            buffering = self.buffer_server_content
            if buffering:
                limit = req.app.max_memory_content_size if req.app is not None else 16 << 20
                wait = True
            else:
                limit = _GATHER_LIMIT
                length = rhead.content_length
                wait = length is not None and length <= limit
            size = sum(map(len, parts))
            trailers: list[tuple[str, str]] = []
            while True:
                event = parser.next_event()
                if type(event) is Body:
                    parts.append(event.data)
                    size += len(event.data)
                    if size > limit:
                        break
                elif type(event) is EndOfMessage:
                    released = True
                    upstream.release(conn, reusable=reusable and not parser.buffered)
                    trailers = event.trailers
                    break
                elif wait:  # NEED_DATA
                    parser.feed(await conn.read())
                else:
                    break
            if released and not trailers and req.method != "HEAD":
                resp.send(parts[0] if len(parts) == 1 else b"".join(parts))
                return True
            if buffering and not released:
                released = True  # the spooler releases it
                await self._relay_spooled(upstream, conn, parser, reusable, parts, size, req, resp)
                return True
            # Stream the rest (a HEAD reply: just the head, with the upstream's length).
            if rhead.content_length is not None:
                resp.set_length(rhead.content_length)
            await resp.echo(b"".join(parts))
            while not released:
                event = parser.next_event()
                if event is NEED_DATA:
                    parser.feed(await conn.read())
                elif type(event) is Body:
                    await resp.echo(event.data)
                else:
                    released = True
                    upstream.release(conn, reusable=reusable and not parser.buffered)
                    trailers = event.trailers
            for name, value in trailers:
                resp.add_trailer(name, value)
            await resp.end()
            return True
        except BackendTimeout as e:
            upstream.report(conn.node, False)
            raise HTTPError(504, str(e)) from None
        except BackendError as e:
            raise HTTPError(502, str(e)) from None
        except ProtocolError as e:
            raise HTTPError(502, f"bad response body from {conn.node.name}: {e.reason}") from None
        finally:
            if not released:
                upstream.release(conn, reusable=False)

    @staticmethod
    async def _send_chunked(resp: "Response", parts: list[bytes], trailers: list[tuple[str, str]]) -> bool:
        """A complete response with trailers (the head is copied already)."""
        await resp.echo(b"".join(parts))
        for name, value in trailers:
            resp.add_trailer(name, value)
        await resp.end()
        return True

    async def _relay_spooled(self, upstream: Any, conn: BackendConn, parser: ResponseParser, reusable: bool,
                             parts: list[bytes], size: int, req: "Request", resp: "Response") -> None:
        """``.bufferServerContent`` beyond memory: the rest goes to a temp file, then sendfile.
        Releases ``conn`` (pooled when clean) once the upstream response is complete."""
        temp_dir = req.app.temp_dir if req.app is not None else tempfile.gettempdir()
        os.makedirs(temp_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=temp_dir) as f:
            f.write(b"".join(parts))
            try:
                while True:
                    event = parser.next_event()
                    if event is NEED_DATA:
                        parser.feed(await conn.read())
                    elif type(event) is Body:
                        f.write(event.data)
                        size += len(event.data)
                    else:
                        break
            except BaseException:
                upstream.release(conn, reusable=False)
                raise
            upstream.release(conn, reusable=reusable and not parser.buffered)
            f.flush()
            await resp.send_fd(f.fileno(), 0, size)

    # -- upgrades -------------------------------------------------------------------------------------------
    async def _tunnel(self, upstream: Any, req: "Request", resp: "Response") -> None:
        """An Upgrade request (WebSocket): pass it on; on 101 relay the head and then bytes
        both ways until either side closes; any other answer is relayed as a response."""
        take_over = getattr(req.stream, "take_over", None)
        if take_over is None:
            raise HTTPError(501, "upgrades are not supported on this connection")
        host = self._upstream_host(req)
        try:
            conn = await upstream.acquire(client_ip=req.client_ip)
        except BackendTimeout as e:
            raise HTTPError(504, str(e)) from None
        except BackendError as e:
            raise HTTPError(502, str(e)) from None
        relaying = False
        try:
            parser = response_parser(conn, req.method)
            head = self._request_head(req, host or conn.node.name, None)
            try:
                rhead = await self._send_and_read_head(conn, parser, head, req, None)
            except BackendTimeout as e:
                raise HTTPError(504, str(e)) from None
            except ProtocolError as e:
                raise HTTPError(502, f"bad response from {conn.node.name}: {e.reason}") from None
            if rhead is None:
                raise HTTPError(502, f"{conn.node.name} closed the connection without a response")
            if rhead.status != 101:
                relaying = True  # the relay releases the connection
                await self._relay(upstream, conn, parser, rhead, req, resp, [])
                return
            client = _TunnelClientSide(req.stream, conn)
            transport, early = take_over(client)
            client.connection_made(transport)
            fields = [(k, v) for k, v in rhead.headers if k not in _TUNNEL_DROP]
            fields += [("connection", "upgrade"), ("upgrade", rhead.upgrade or req.upgrade or ""), ("via", self._via)]
            transport.write(render_response_head(101, fields) + parser.take_buffer())
            if early:
                conn.write(early)
            await client.pump()
        finally:
            if not relaying:
                upstream.release(conn, reusable=False)


class _Exchange(CallbackExchange):
    """The hot path of one exchange, driven by the upstream connection's callbacks (it is the
    connection's :class:`~hemi.net.backend.Receiver`): bytes are parsed as they arrive, and a
    response that is complete in memory (sized, up to _GATHER_LIMIT) is relayed from
    ``data_received`` itself, the connection pooled first. No task, no future per read: the
    exchange is itself the :class:`~hemi.web.deferred.Deferred` ``handle`` returns, settled here.

    What the hot path does not finish goes on in a task running the coroutine code it shares
    with :meth:`Http1Proxy._serve`: a response to stream (large, chunked, or delimited by the
    close) continues in :meth:`Http1Proxy._relay` from where the parser is; a pooled connection
    found closed before any response byte retries in ``_serve``. A client that goes away
    cancels the exchange (and so that task), and the upstream connection is closed.
    """

    __slots__ = ("proxy", "upstream", "conn", "parser", "req", "resp", "rhead", "parts", "size", "gather")

    def __init__(self, proxy: Http1Proxy, upstream: Backend, conn: BackendConn, req: "Request",
                 resp: "Response") -> None:
        # A client that leaves (or closes its side) cancels it: the upstream connection is closed.
        CallbackExchange.__init__(self, conn.loop, eof_cancels=True)
        self.proxy = proxy
        self.upstream = upstream
        self.conn: BackendConn | None = conn
        self.req = req
        self.resp = resp
        self.rhead: ResponseHead | None = None
        # parts, size, gather: set with rhead by _advance (a response taken whole needs none)

    def start(self, head: bytes) -> Deferred:
        conn = self.conn
        assert conn is not None
        self.parser = response_parser(conn, self.req.method)
        try:
            conn.write(head)
        except BackendError:
            self.closed(None)  # the pooled connection is dead: retried as any stale one
            return self
        conn.listen(self)
        return self

    # -- Receiver ---------------------------------------------------------------------------------------
    def data(self, data: bytes) -> None:
        parser = self.parser
        if self.rhead is None:
            whole = parser.take_whole(data)
            if whole is not None:  # the commonest answer: a head seen before with all of its body
                self.rhead, body = whole
                node = self.conn.node  # type: ignore[union-attr]
                if node.fails:
                    self.upstream.report(node, True)
                try:
                    self._complete([], body)
                except BaseException as e:  # e.g. the client's connection broke while we answered
                    self._fail_with(e)
                return
        parser.feed(data)
        try:
            self._advance()
        except ProtocolError as e:  # a bad head counts against the node, as in _serve
            self._fail(502, f"bad response from {self._node_name()}: {e.reason}", report=self.rhead is None)
        except BaseException as e:  # e.g. the client's connection broke while we answered
            self._fail_with(e)

    def closed(self, exc: BaseException | None) -> None:
        if self.conn is None:
            return
        if self.rhead is None and not self.parser.buffered:
            # Closed before any response byte: a pooled connection the upstream had given up.
            conn = self.conn
            self.conn = None
            node = conn.node
            self.upstream.release(conn, reusable=False)
            if self.req.method in IDEMPOTENT:
                node.close_idle()  # its siblings from the same era are likely dead too
                self.spawn(self.proxy._serve(self.req, self.resp, None, 1))
            else:
                self.set_exception(HTTPError(502, f"{node.name} closed the connection without a response"))
            return
        self.data(b"")  # the parser learns of the close: a cut-short response is a 502

    def timed_out(self) -> None:
        conn = self.conn
        if conn is None:
            return
        self._fail(504, f"no data from {conn.node.name} within readTimeout", report=True)

    # -- progress -----------------------------------------------------------------------------------------
    def _advance(self) -> None:
        parser = self.parser
        rhead = self.rhead
        if rhead is None:
            while True:
                event = parser.next_event()
                if event is NEED_DATA:
                    return
                if event is CLOSED:
                    raise ProtocolError(502, "closed after an interim response")
                assert type(event) is ResponseHead, event
                if event.status >= 200:
                    break
                if event.status == 101:
                    raise ProtocolError(502, "switched protocols uninvited")
            rhead = self.rhead = event
            length = rhead.content_length
            self.gather = length is not None and length <= _GATHER_LIMIT
            self.parts = []
            self.size = 0
            node = self.conn.node  # type: ignore[union-attr]
            if node.fails:
                self.upstream.report(node, True)
        parts = self.parts
        while True:
            event = parser.next_event()
            kind = type(event)
            if kind is Body:
                parts.append(event.data)
                self.size += len(event.data)
            elif kind is EndOfMessage:
                self._complete(event.trailers)
                return
            else:  # NEED_DATA
                if self.gather:
                    return
                break
        # Stream the rest from a task: the relay takes the connection over from here.
        conn = self.conn
        assert conn is not None
        conn.unlisten()
        self.conn = None
        self.spawn(self.proxy._relay(self.upstream, conn, parser, rhead, self.req, self.resp, parts))

    def _complete(self, trailers: list[tuple[str, str]], body: bytes | None = None) -> None:
        """The response is all here (``body``, or the parts gathered): pool the connection
        first, then answer."""
        conn = self.conn
        assert conn is not None and self.rhead is not None
        conn.unlisten()
        self.conn = None
        rhead = self.rhead
        # (A body taken whole left nothing buffered: take_whole takes all of the data or none.)
        self.upstream.release(conn, reusable=rhead.keep_alive and rhead.version == "1.1" and (
            body is not None or not self.parser.buffered))
        resp = self.resp
        self.proxy._copy_head(rhead, resp)
        if body is None:
            parts = self.parts
            body = parts[0] if len(parts) == 1 else b"".join(parts)
        if trailers:  # only a chunked response carries them on: stream it
            self.spawn(self.proxy._send_chunked(resp, [body], trailers))
            return
        resp.send(body)
        self.set_result(True)

    # -- endings ----------------------------------------------------------------------------------------
    def _node_name(self) -> str:
        return self.conn.node.name if self.conn is not None else "the upstream"

    def _fail(self, status: int, reason: str, *, report: bool = False) -> None:
        if report and self.conn is not None:
            self.upstream.report(self.conn.node, False)
        self._fail_with(HTTPError(status, reason))

    def _fail_with(self, exc: BaseException) -> None:
        self.abandon()
        self.set_exception(exc)

    def abandon(self) -> None:
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.unlisten()
            self.upstream.release(conn, reusable=False)


# A 101's fields are copied except these (we write Connection and Upgrade ourselves).
_TUNNEL_DROP: Final = HOP_BY_HOP | {"via", "server", "content-length"}


class _TunnelClientSide(asyncio.Protocol):
    """The client's side of an upgraded connection: its bytes go straight to the upstream
    connection; ``pump`` carries the upstream's bytes back. Each direction stops reading while
    the other side does not keep up. Closing either side ends both."""

    def __init__(self, http_conn: Any, upstream: BackendConn) -> None:
        self.http_conn = http_conn
        self.upstream = upstream
        self.transport: Any = None
        self.write_paused = False
        self._drain: asyncio.Future | None = None
        self._waking: asyncio.Task | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        up = self.upstream
        try:
            up.write(data)
        except BackendError:
            self.transport.close()
            return
        if up.write_buffer_size() > _TUNNEL_HIGH_WATER and self._waking is None:
            self.transport.pause_reading()
            self._waking = asyncio.get_running_loop().create_task(self._resume_when_drained())

    async def _resume_when_drained(self) -> None:
        try:
            await self.upstream.drain()
        except BackendError:
            self.transport.close()
            return
        finally:
            self._waking = None
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.upstream.write_eof()  # half-close travels on; the upstream's EOF ends the tunnel
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waking is not None:
            self._waking.cancel()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        self.http_conn.connection_lost(exc)  # leaves the gate; cancels the pump's task

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    async def pump(self) -> None:
        """Upstream to client until the upstream closes (or is silent for its readTimeout)."""
        transport = self.transport
        up = self.upstream
        try:
            while not transport.is_closing():
                data = await up.read()
                if not data:
                    break
                transport.write(data)
                if self.write_paused:
                    self._drain = asyncio.get_running_loop().create_future()
                    await self._drain
                    self._drain = None
        except BackendTimeout:
            pass
        finally:
            if not transport.is_closing():
                transport.close()


_TUNNEL_HIGH_WATER: Final = 256 << 10
