"""Real upstream servers for the proxy tests (small HTTP/1.1 servers on free ports, run by an
asyncio loop in a background thread, whose behaviour the request path chooses), and the gorox
configs in front of them.

    /who                 200, body = the node's name (and ``x-node`` header)
    /echo                200 JSON: method, target, headers, body length and sha256
    /big?n=BYTES         200 with n bytes (a repeated pattern), Content-Length
    /chunked?n=&parts=   200 chunked, ``parts`` chunks, a trailer ``x-sum`` (sha256)
    /close-body          200 without length: the body ends when we close
    /slow?parts=&delay=  200 chunked, one chunk per ``delay`` seconds
    /sleep?s=            waits ``s`` seconds, then 200
    /cut?len=            Content-Length ``len`` (1000), 10 bytes, then the connection is closed
    /reset               closes the connection without answering
    /garbage             answers with a line that is not HTTP
    /hold                never answers; records when the proxy closes the connection
    /status?code=        that status, empty body
    /head-len            HEAD/GET with Content-Length 1234 (GET sends the bytes)
    /close               200 "bye" with Connection: close
    /http10              an HTTP/1.0 response (then closes)
    Upgrade: websocket   101, then echoes every byte it receives

Each node counts requests, connections accepted and connections closed by the peer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from hemi.web.http1.codec import NEED_DATA, Body, EndOfMessage, RequestHead, RequestParser


def pattern(n: int) -> bytes:
    base = bytes(range(256)) * 64
    return (base * (n // len(base) + 1))[:n]


class Node:
    """One upstream server (a port), controlled from the test thread."""

    def __init__(self, farm: "Farm", name: str, port: int = 0, host: str = "127.0.0.1") -> None:
        self.farm = farm
        self.name = name
        self.host = host
        self.port = port
        self.requests = 0
        self.accepted = 0
        self.peer_closed = 0
        self.hold_closed = threading.Event()
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.paths: list[str] = []
        self.last_headers: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- control (test thread) ---------------------------------------------------------------------------
    def start(self) -> "Node":
        self.farm.call(self._start())
        return self

    def kill(self) -> None:
        """Stop listening and reset every connection, as a crashed process would."""
        self.farm.call(self._kill())

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _kill(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()

    # -- serving -------------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.add(writer)
        parser = RequestParser(max_head_size=65536)
        try:
            while True:
                head = await self._next(reader, parser)
                if head is None:
                    self.peer_closed += 1
                    return
                assert isinstance(head, RequestHead)
                self.requests += 1
                self.paths.append(head.target)
                self.last_headers = head.headers
                body = b""
                h = hashlib.sha256()
                size = 0
                if head.upgrade:
                    await self._websocket(reader, writer, parser)
                    return
                while True:
                    ev = await self._next(reader, parser)
                    if ev is None:
                        return
                    if type(ev) is Body:
                        h.update(ev.data)
                        size += len(ev.data)
                        if size <= 1 << 16:
                            body += ev.data
                    elif type(ev) is EndOfMessage:
                        trailers = ev.trailers
                        break
                parser.start_next()
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    keep = await self._answer(head, size, h.hexdigest(), trailers, reader, writer)
                finally:
                    self.in_flight -= 1
                if not keep:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self.writers.discard(writer)
            writer.transport.abort() if writer.transport.get_write_buffer_size() else writer.close()

    async def _next(self, reader: asyncio.StreamReader, parser: RequestParser):  # type: ignore[no-untyped-def]
        while True:
            ev = parser.next_event()
            if ev is NEED_DATA:
                data = await reader.read(65536)
                parser.feed(data)
                continue
            if ev is None or not isinstance(ev, (RequestHead, Body, EndOfMessage)):
                return None
            return ev

    async def _answer(self, head: RequestHead, size: int, digest: str, trailers: list, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        url = urlsplit(head.target)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        w = writer.write
        name = self.name
        if path == "/who":
            body = name.encode()
            w(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-node: %s\r\ncontent-length: %d\r\n\r\n%s"
              % (body, len(body), body))
        elif path == "/echo":
            body = json.dumps({"node": name, "method": head.method, "target": head.target, "headers": head.headers,
                               "size": size, "sha256": digest, "trailers": trailers}).encode()
            w(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-remove-me: yes\r\nx-keep: 1\r\n"
              b"connection: keep-alive, x-hop\r\nx-hop: secret\r\nkeep-alive: timeout=5\r\n"
              b"content-length: %d\r\n\r\n%s" % (len(body), body))
        elif path == "/big":
            data = pattern(int(q.get("n", "1000")))
            w(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n" % len(data))
            w(data)
        elif path == "/chunked":
            n, parts = int(q.get("n", "1000")), int(q.get("parts", "4"))
            data = pattern(n)
            w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n")
            step = max(1, -(-n // parts))
            for i in range(0, n, step):
                piece = data[i:i + step]
                w(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            w(b"0\r\nx-sum: %s\r\n\r\n" % hashlib.sha256(data).hexdigest().encode())
        elif path == "/close-body":
            w(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
            await writer.drain()
            return False
        elif path == "/slow":
            parts, delay = int(q.get("parts", "3")), float(q.get("delay", "0.1"))
            w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(parts):
                await writer.drain()
                await asyncio.sleep(delay)
                w(b"6\r\npart%02d\r\n" % i)
            w(b"0\r\n\r\n")
        elif path == "/sleep":
            await asyncio.sleep(float(q.get("s", "1")))
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nslept")
        elif path == "/cut":
            w(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n0123456789" % int(q.get("len", "1000")))
            await writer.drain()
            return False
        elif path == "/reset":
            writer.transport.abort()
            return False
        elif path == "/garbage":
            w(b"SPDY/9 what is this\r\n\r\n")
            await writer.drain()
            return False
        elif path == "/hold":
            data = await reader.read(1)
            if not data:
                self.hold_closed.set()
            return False
        elif path == "/status":
            code = int(q.get("code", "204"))
            w(b"HTTP/1.1 %d X\r\nx-status: %d\r\n%s\r\n" % (code, code, b"" if code in (204, 304) else
                                                            b"content-length: 0\r\n"))
        elif path == "/head-len":
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
            if head.method != "HEAD":
                w(pattern(1234))
        elif path == "/close":
            w(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye")
            await writer.drain()
            return False
        elif path == "/http10":
            w(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            return False
        else:
            w(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        return True

    async def _websocket(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         parser: RequestParser) -> None:
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                     b"x-node: %s\r\n\r\n" % self.name.encode())
        rest = parser.take_buffer()
        if rest:
            writer.write(rest)
        while True:
            data = await reader.read(65536)
            if not data:
                return
            writer.write(data)
            await writer.drain()


class Farm:
    """A background event loop hosting upstream nodes; ``close()`` stops everything."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nodes: list[Node] = []

    def call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def node(self, name: str, port: int = 0, host: str = "127.0.0.1") -> Node:
        n = Node(self, name, port, host).start()
        self.nodes.append(n)
        return n

    def close(self) -> None:
        for n in self.nodes:
            try:
                n.kill()
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


# -- gorox configs in front of them ---------------------------------------------------------------

ONE_WORKER = ("-workers", "1")  # balancer state and pools are per worker: count on one


@pytest.fixture
def farm() -> Iterator[Farm]:
    """Upstream nodes for one test: ``farm.node("a")`` starts one."""
    f = Farm()
    yield f
    f.close()


def nodes_list(*nodes: tuple) -> str:  # type: ignore[type-arg]
    """``.nodes`` for the config (braces doubled for the gorox fixture's str.format)."""
    items = []
    for node in nodes:
        addr, weight = node[0], node[1] if len(node) > 1 else 1
        items.append(f'["address": "{addr}", "weight": {weight}]')
    return "(" + ", ".join(items) + ")"


def proxy_config(nodes: str, *, backend: str = "", proxy: str = "") -> str:
    """A gorox config: ``http1Backend "up"`` with ``nodes`` (and ``backend`` properties), and an
    app whose last rule proxies everything to it (with ``proxy`` properties)."""
    return f"""
stage {{{{
    http1Backend "up" {{{{
        .nodes = {nodes}
        {backend}
    }}}}
    app "a" {{{{
        .hostnames = ("*")
        .webRoot = "{{base}}/www"
        rule $path ^= "/local/" {{{{ .returnCode = 200 .returnText = "local" }}}}
        rule {{{{ http1Proxy {{{{ .toBackend = "up" {proxy} }}}} }}}}
    }}}}
    httpxServer "main" {{{{ .address = "127.0.0.1:{{port}}" .forApps = ("a") }}}}
}}}}
"""


def start(gorox, farm_nodes, **kw):  # type: ignore[no-untyped-def]
    """Start gorox (one worker) in front of ``[(node, weight), ...]``."""
    nodes = nodes_list(*[(n.address, w) for n, w in farm_nodes])
    return gorox(proxy_config(nodes, **kw), extra_args=ONE_WORKER)


# -- external upstream servers (php-fpm, uWSGI) run by a test in their own process group ---------------
def wait_listening(proc: subprocess.Popen, addresses: Iterable[str], deadline: float, output: Path,
                   what: str) -> None:
    """Wait until every address (``host:port`` or a unix socket path) accepts a connection; fail
    with the server's ``output`` if ``proc`` exits first, or when ``deadline`` passes."""
    for address in addresses:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited:\n" + output.read_text(errors="replace"))
            try:
                if address.startswith("/"):
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(address)
                else:
                    host, port = address.rsplit(":", 1)
                    socket.create_connection((host, int(port)), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def stop_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session``); SIGKILL it
    after ``timeout`` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
