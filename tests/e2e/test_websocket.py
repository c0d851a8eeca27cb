"""WebSocket end to end: a real gorox process driven by the ``websockets`` client and by raw
sockets (for what a well-behaved client never sends).

Covered: echoSocklet (text, binary, fragmentation, ping/pong, close codes, bad UTF-8 -> 1007,
too big -> 1009, idle timeout -> 1001, no pong -> 1011, permessage-deflate, subprotocols,
frames sent before the 101), the refusals of a bad handshake, a Python socklet (the chat room
of apps/chat, three clients), sock1Proxy in front of a real ``websockets`` server, the ASGI
``websocket`` scope (raw app: accept with subprotocol and headers, text and bytes, close
codes, denial with ``websocket.http.response``), a FastAPI WebSocket route, clients that
vanish mid-message leaving no task or file descriptor behind, and close 1001 on shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import struct
import time
from typing import Any, Callable

import httpx
import pytest

from ..conftest import ROOT

websockets = pytest.importorskip("websockets")
pytest.importorskip("wsproto")
from websockets.asyncio.server import serve as ws_serve  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

pytestmark = pytest.mark.timeout(60)

APPS = ROOT / "tests" / "apps"

CONFIG = """
stage {{
    http1Backend "up" {{ .nodes = ( ["address": "127.0.0.1:{port1}"] ) .readTimeout = 2s }}
    app "a" {{
        .hostnames = ("*")
        rule $path == "/echo" {{ echoSocklet {{ .maxMessageSize = 64K .subprotocols = ("superchat", "chat") }} }}
        rule $path == "/plain" {{ echoSocklet {{ .compression = false }} }}
        rule $path == "/idle" {{ echoSocklet {{ .idleTimeout = 1s .pingInterval = 0s }} }}
        rule $path == "/ping" {{ echoSocklet {{ .pingInterval = 300ms .idleTimeout = 0s }} }}
        rule $path == "/hello" {{ helloSocklet {{ }} }}
        rule $path == "/chat" {{ chatRoom {{ .maxMessageSize = 4K }} }}
        rule $path == "/async" {{ testAsyncSocklet {{ }} }}
        rule $path ^= "/proxy/" {{ sock1Proxy {{ .toBackend = "up" .maxMessageSize = 256K }} }}
        rule $path ^= "/asgi/" {{ asgi {{ .app = "ws_echo:app" .appDir = "{apps}" .maxMessageSize = 64K }} }}
        rule $path ^= "/fastapi/" {{ asgi {{ .app = "fastapi_ws:app" .appDir = "{apps}" }} }}
        rule {{ .returnCode = 200 .returnText = "not a websocket" }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
""".replace("{apps}", str(APPS))

# The chat room lives in the repository's apps/; gorox imports ``apps`` from its base directory.
# The shim adds a socklet with coroutine callbacks (the task-per-connection path).
APPS_SHIM = f'''
import asyncio
__path__.append({str(ROOT / "apps")!r})
from . import chat  # noqa: E402,F401
from hemi.core.registry import socklet  # noqa: E402
from hemi.web.errors import HTTPError  # noqa: E402
from hemi.web.socklet import AppSocklet  # noqa: E402

CLOSES = []


@socklet("testAsyncSocklet")
class TestAsyncSocklet(AppSocklet):
    async def on_connect(self, req):
        if req.query("token") != "good":
            raise HTTPError(403, "bad token")

    async def on_open(self, ws):
        await asyncio.sleep(0.01)
        await ws.send("welcome")

    async def on_message(self, ws, data):
        if data == "closes?":
            await ws.send(repr(CLOSES))
        elif data == "slow":
            await asyncio.sleep(30)       # the client leaves meanwhile: this is cancelled
        else:
            await ws.send(data.upper() if isinstance(data, str) else data[::-1])

    async def on_close(self, ws, code, reason):
        await asyncio.sleep(0)
        CLOSES.append(code)
'''


@pytest.fixture(scope="module")
def g(gorox_module):  # type: ignore[no-untyped-def]
    return gorox_module(CONFIG, ports=2, files={"apps/__init__.py": APPS_SHIM})


def ws_url(g: Any, path: str) -> str:
    return f"ws://127.0.0.1:{g.port}{path}"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


# -- raw frames: what the websockets client will not send ---------------------------------------------
def raw_handshake(port: int, path: str, extra: bytes = b"", headers: str = "") -> tuple[socket.socket, bytes]:
    """Open a socket, send an upgrade request (plus ``extra`` bytes right after it) and return the
    socket with the bytes read past the 101 head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
                 f"sec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n{headers}\r\n".encode() + extra)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock, rest


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """The next (unmasked, server) frame: (opcode, payload); (-1, b"") at EOF."""
    def need(n: int) -> bool:
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            buf.extend(chunk)
        return True
    if not need(2):
        return -1, b""
    opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
    pos = 2
    if n == 126:
        need(4)
        n, pos = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        need(10)
        n, pos = struct.unpack("!Q", buf[2:10])[0], 10
    need(pos + n)
    payload = bytes(buf[pos:pos + n])
    del buf[:pos + n]
    return opcode, payload


def close_code(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


# -- echoSocklet ---------------------------------------------------------------------------------------
def test_echo_text_binary_and_fragments(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with websockets.connect(ws_url(g, "/echo")) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff" * 1000)
            assert await ws.recv() == b"\x00\xff" * 1000
            await ws.send(["frag", "men", "ted"])          # three frames, one message
            assert await ws.recv() == "fragmented"
            await ws.send([b"a" * 10000, b"b" * 10000])
            assert await ws.recv() == b"a" * 10000 + b"b" * 10000
            await ws.send("")
            assert await ws.recv() == ""
            pong = await ws.ping(b"are you there")        # resolves when the matching pong arrives
            await asyncio.wait_for(pong, 5)
        assert ws.close_code == 1000
    run(main())


def test_close_code_is_echoed_and_hello_closes(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        ws = await websockets.connect(ws_url(g, "/echo"))
        await ws.close(4000, "client says bye")
        rcvd = ws.protocol.close_rcvd
        assert rcvd is not None and (rcvd.code, rcvd.reason) == (4000, "client says bye")
        async with websockets.connect(ws_url(g, "/hello")) as ws:
            assert await ws.recv() == "hello, websocket!"
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1000
    run(main())


def test_bad_utf8_and_bad_frames(g) -> None:  # type: ignore[no-untyped-def]
    for payload, code in ((frame(0x1, b"ok \xff\xfe bad"), 1007),       # not UTF-8
                          (frame(0x2, b"x", fin=False) + frame(0x1, b"y"), 1002),  # new message mid-message
                          (frame(0x9, b"x" * 126), 1002),               # a ping longer than 125
                          (bytes([0x82, 0x01, 0x41]), 1002)):           # an unmasked client frame
        sock, rest = raw_handshake(g.port, "/echo", payload)
        buf = bytearray(rest)
        opcode, data = read_frame(sock, buf)
        assert opcode == 0x8 and close_code(data) == code, (payload[:8], opcode, data)
        sock.sendall(frame(0x8, struct.pack("!H", code)))
        assert read_frame(sock, buf)[0] == -1  # and the server closes the TCP connection
        sock.close()


def test_frames_sent_before_the_101_are_served(g) -> None:  # type: ignore[no-untyped-def]
    sock, rest = raw_handshake(g.port, "/plain", frame(0x1, b"early") + frame(0x2, b"bird"))
    buf = bytearray(rest)
    assert read_frame(sock, buf) == (0x1, b"early")
    assert read_frame(sock, buf) == (0x2, b"bird")
    sock.close()


def test_frames_split_into_single_bytes(g) -> None:  # type: ignore[no-untyped-def]
    sock, rest = raw_handshake(g.port, "/plain")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = frame(0x1, "ünïcode".encode()) + frame(0x2, b"b" * 300) + frame(0x9, b"p") + frame(0x1, b"last")
    for i in range(len(data)):
        sock.sendall(data[i:i + 1])
        if i % 7 == 0:
            time.sleep(0.001)
    buf = bytearray(rest)
    assert read_frame(sock, buf) == (0x1, "ünïcode".encode())
    assert read_frame(sock, buf) == (0x2, b"b" * 300)
    assert read_frame(sock, buf) == (0xA, b"p")          # the pong, in order
    assert read_frame(sock, buf) == (0x1, b"last")
    sock.close()


def test_too_big_message_closes_1009(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with websockets.connect(ws_url(g, "/echo"), max_size=None) as ws:
            await ws.send("x" * (64 << 10))                 # exactly the limit: fine
            assert len(await ws.recv()) == 64 << 10
            await ws.send(["y" * (32 << 10), "y" * (32 << 10) + "y"])   # fragments add up past it
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        # A compressed message that inflates past the limit (a tiny "zip bomb") fails the same way.
        async with websockets.connect(ws_url(g, "/echo")) as ws:
            assert "permessage-deflate" in (ws.response.headers.get("sec-websocket-extensions") or "")
            await ws.send("z" * (1 << 20))                  # ~1 KiB on the wire
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    run(main())


def test_idle_timeout_closes_1001(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> float:
        async with websockets.connect(ws_url(g, "/idle")) as ws:
            await ws.send("still here")
            assert await ws.recv() == "still here"
            started = time.monotonic()
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
            assert info.value.rcvd.reason == "idle timeout"
            return time.monotonic() - started
    assert 0.8 < run(main()) < 3.0


def test_server_pings_and_closes_1011_without_pong(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        # The websockets client answers pings: the connection stays up past several intervals.
        async with websockets.connect(ws_url(g, "/ping"), ping_interval=None) as ws:
            await asyncio.sleep(1.2)
            await ws.send("alive")
            assert await ws.recv() == "alive"
    run(main())
    sock, rest = raw_handshake(g.port, "/ping")     # a client that never answers
    buf = bytearray(rest)
    opcode, payload = read_frame(sock, buf)
    assert opcode == 0x9                             # ping
    opcode, payload = read_frame(sock, buf)
    assert opcode == 0x8 and close_code(payload) == 1011, payload
    sock.close()


def test_permessage_deflate_negotiation(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        text = json.dumps([{"id": i, "name": "compressible"} for i in range(2000)])
        async with websockets.connect(ws_url(g, "/echo"), max_size=None) as ws:
            ext = ws.response.headers.get("sec-websocket-extensions") or ""
            assert ext.startswith("permessage-deflate")
            await ws.send(text[:60000])
            assert await ws.recv() == text[:60000]
        async with websockets.connect(ws_url(g, "/plain")) as ws:   # .compression = false
            assert ws.response.headers.get("sec-websocket-extensions") is None
            await ws.send("plain")
            assert await ws.recv() == "plain"
        async with websockets.connect(ws_url(g, "/echo"), compression=None) as ws:  # not offered
            assert ws.response.headers.get("sec-websocket-extensions") is None
    run(main())


def test_subprotocol_selection(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        # The server's preference order wins among what the client offers.
        async with websockets.connect(ws_url(g, "/echo"), subprotocols=["chat", "superchat"]) as ws:
            assert ws.subprotocol == "superchat"
        async with websockets.connect(ws_url(g, "/echo"), subprotocols=["chat", "other"]) as ws:
            assert ws.subprotocol == "chat"
        async with websockets.connect(ws_url(g, "/echo")) as ws:
            assert ws.subprotocol is None and "sec-websocket-protocol" not in ws.response.headers
    run(main())


def test_handshake_refusals(g) -> None:  # type: ignore[no-untyped-def]
    base = f"http://127.0.0.1:{g.port}"
    up = {"upgrade": "websocket", "connection": "upgrade", "sec-websocket-version": "13",
          "sec-websocket-key": base64.b64encode(b"0123456789abcdef").decode()}
    with httpx.Client(base_url=base) as c:
        r = c.get("/echo")                                  # a plain GET to a socklet rule
        assert r.status_code == 426 and r.headers["upgrade"] == "websocket"
        r = c.get("/echo", headers={**up, "sec-websocket-version": "8"})
        assert r.status_code == 426 and r.headers["sec-websocket-version"] == "13"
        r = c.get("/echo", headers={**up, "sec-websocket-key": "short"})
        assert r.status_code == 400
        r = c.post("/echo", headers=up, content=b"")
        assert r.status_code in (405, 411) and (r.status_code != 405 or r.headers["allow"] == "GET")
        r = c.get("/elsewhere", headers=up)                 # an upgrade to a normal rule: served as HTTP
        assert r.status_code == 200 and r.text == "not a websocket"


# -- a socklet written in Python: the chat room ----------------------------------------------------------
def test_chat_room_broadcasts_between_three_clients(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async def recv_json(ws: Any) -> dict:
            return json.loads(await ws.recv())

        url = ws_url(g, "/chat?room=test")
        ada = await websockets.connect(url + "&name=ada")
        assert (await recv_json(ada))["members"] == []
        bob = await websockets.connect(url + "&name=bob")
        welcome = await recv_json(bob)
        assert welcome["type"] == "welcome" and welcome["members"] == ["ada"]
        assert await recv_json(ada) == {"type": "join", "name": "bob"}
        cy = await websockets.connect(url + "&name=cy")
        assert (await recv_json(cy))["members"] == ["ada", "bob"]
        assert await recv_json(ada) == {"type": "join", "name": "cy"}
        assert await recv_json(bob) == {"type": "join", "name": "cy"}

        await ada.send(json.dumps({"text": "hello room"}))
        for ws in (ada, bob, cy):
            assert await recv_json(ws) == {"type": "message", "name": "ada", "text": "hello room"}
        await cy.send("plain text works too")
        for ws in (ada, bob, cy):
            assert await recv_json(ws) == {"type": "message", "name": "cy", "text": "plain text works too"}

        await bob.close()
        for ws in (ada, cy):
            assert await recv_json(ws) == {"type": "leave", "name": "bob"}
        # A newcomer sees the history; a binary message is refused with 1003.
        dee = await websockets.connect(url + "&name=dee")
        assert [m["text"] for m in (await recv_json(dee))["history"]] == ["hello room", "plain text works too"]
        await dee.send(b"\x00")
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await dee.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1003
        await ada.close()
        await cy.close()
    run(main())


def test_async_socklet_callbacks(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        with pytest.raises(InvalidStatus) as refused:            # on_connect raised HTTPError(403)
            await websockets.connect(ws_url(g, "/async?token=bad"))
        assert refused.value.response.status_code == 403
        async with websockets.connect(ws_url(g, "/async?token=good")) as ws:
            assert await ws.recv() == "welcome"
            await ws.send("shout")
            assert await ws.recv() == "SHOUT"
            await ws.send(b"abc")
            assert await ws.recv() == b"cba"
            await ws.close(4005, "done here")
        sock, rest = raw_handshake(g.port, "/async?token=good")   # leaves while a handler awaits
        sock.sendall(frame(0x1, b"slow"))
        time.sleep(0.1)
        sock.close()
        async with websockets.connect(ws_url(g, "/async?token=good")) as ws:
            assert await ws.recv() == "welcome"
            for _ in range(50):
                await ws.send("closes?")
                closes = await ws.recv()
                if "1006" in closes:
                    break
                await asyncio.sleep(0.05)
            assert closes == "[4005, 1006]", closes
    run(main())


def test_the_chat_example_serves(gorox) -> None:  # type: ignore[no-untyped-def]
    """conf/examples/websocket_chat.conf as shipped (on a free port): the page and the room."""
    text = (ROOT / "conf" / "examples" / "websocket_chat.conf").read_text()
    assert '.address = "127.0.0.1:8080"' in text
    text = text.replace("{", "{{").replace("}", "}}").replace("127.0.0.1:8080", "127.0.0.1:{port}")
    page = (ROOT / "apps" / "chat" / "www" / "index.html").read_text()
    srv = gorox(text, files={"apps/__init__.py": APPS_SHIM, "apps/chat/www/index.html": page})
    r = httpx.get(srv.url("/"))
    assert r.status_code == 200 and "gorox chat" in r.text
    assert httpx.get(srv.url("/chat")).status_code == 426

    async def main() -> None:
        async with websockets.connect(ws_url(srv, "/chat?name=ada")) as ada, \
                websockets.connect(ws_url(srv, "/chat?name=bob")) as bob:
            assert json.loads(await ada.recv())["type"] == "welcome"
            assert json.loads(await bob.recv())["members"] == ["ada"]
            assert json.loads(await ada.recv()) == {"type": "join", "name": "bob"}
            await bob.send(json.dumps({"text": "hi ada"}))
            assert json.loads(await ada.recv()) == {"type": "message", "name": "bob", "text": "hi ada"}
    run(main())


# -- sock1Proxy in front of a real websockets server -------------------------------------------------------
async def upstream_handler(ws: Any) -> None:
    path = ws.request.path
    if path.startswith("/proxy/info"):
        await ws.send(json.dumps({"path": path, "subprotocol": ws.subprotocol,
                                  "via": ws.request.headers.get("via"),
                                  "xff": ws.request.headers.get("x-forwarded-for"),
                                  "cookie": ws.request.headers.get("cookie")}))
    if path.startswith("/proxy/bye"):
        await ws.send("bye")
        await ws.close(4002, "upstream says bye")
        return
    async for message in ws:
        await ws.send(message)


def upstream_gate(connection: Any, request: Any) -> Any:
    if request.path.startswith("/proxy/deny"):
        return connection.respond(403, "upstream says no\n")
    return None


def test_sock1_proxy_relays_to_a_websockets_server(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with ws_serve(upstream_handler, "127.0.0.1", g.ports[1], subprotocols=["v2", "v1"],
                            process_request=upstream_gate, select_subprotocol=None):
            async with websockets.connect(ws_url(g, "/proxy/info?x=1"), subprotocols=["v1", "v2"],
                                          additional_headers={"cookie": "session=abc"}, max_size=None) as ws:
                info = json.loads(await ws.recv())
                assert info["path"] == "/proxy/info?x=1" and info["cookie"] == "session=abc"
                assert info["via"] == "1.1 gorox" and info["xff"] == "127.0.0.1"
                assert ws.subprotocol == info["subprotocol"] and ws.subprotocol in ("v1", "v2")
                assert ws.response.headers.get("via") == "1.1 gorox"
                await ws.send("through the proxy")
                assert await ws.recv() == "through the proxy"
                await ws.send(os.urandom(100000))             # relayed as one message both ways
                assert len(await ws.recv()) == 100000
                await ws.send(["frag", "ments"])
                assert await ws.recv() == "fragments"
            assert ws.close_code == 1000
            async with websockets.connect(ws_url(g, "/proxy/bye"), subprotocols=["v1"]) as ws:
                assert await ws.recv() == "bye"
                with pytest.raises(ConnectionClosed) as info_:
                    await ws.recv()
                assert info_.value.rcvd is not None
                assert (info_.value.rcvd.code, info_.value.rcvd.reason) == (4002, "upstream says bye")
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(ws_url(g, "/proxy/deny"), subprotocols=["v1"])
            assert refused.value.response.status_code == 403
            assert refused.value.response.body == b"upstream says no\n"
        # No upstream at all: 502.
        with pytest.raises(InvalidStatus) as gone:
            await websockets.connect(ws_url(g, "/proxy/echo"))
        assert gone.value.response.status_code == 502
    run(main())


# -- ASGI --------------------------------------------------------------------------------------------------
def test_asgi_websocket_scope(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with websockets.connect(ws_url(g, "/asgi/info?q=1"), subprotocols=["chat.v2", "chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v2" and ws.response.headers["x-hello"] == "world"
            info = json.loads(await ws.recv())
            assert info["query"] == "q=1" and info["subprotocols"] == ["chat.v2", "chat.v1"]
            assert info["scheme"] == "ws" and "sec-websocket-key" in info["headers"]
            assert info["extensions"] == ["websocket.http.response"]
            await ws.send("text")
            assert await ws.recv() == "text"
            await ws.send(b"\x00bytes")
            assert await ws.recv() == b"\x00bytes"
            await ws.send(["fr", "ag"])
            assert await ws.recv() == "frag"
        async with websockets.connect(ws_url(g, "/asgi/bye")) as ws:
            assert await ws.recv() == "bye"
            with pytest.raises(ConnectionClosed) as info_:
                await ws.recv()
            assert info_.value.rcvd is not None and (info_.value.rcvd.code, info_.value.rcvd.reason) == (4001, "done")
        async with websockets.connect(ws_url(g, "/asgi/boom")) as ws:
            with pytest.raises(ConnectionClosed) as info_:
                await ws.recv()
            assert info_.value.rcvd is not None and info_.value.rcvd.code == 1011
        async with websockets.connect(ws_url(g, "/asgi/echo"), max_size=None) as ws:
            await ws.send("x" * ((64 << 10) + 1))              # the handlet's .maxMessageSize
            with pytest.raises(ConnectionClosed) as info_:
                await ws.recv()
            assert info_.value.rcvd is not None and info_.value.rcvd.code == 1009
    run(main())


def test_asgi_denial_and_refusal(g) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        with pytest.raises(InvalidStatus) as denied:
            await websockets.connect(ws_url(g, "/asgi/deny"))
        response = denied.value.response
        assert response.status_code == 403 and response.body == b"denied here"
        assert response.headers["x-why"] == "policy" and response.headers["content-type"] == "text/plain"
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(ws_url(g, "/asgi/refuse"))
        assert refused.value.response.status_code == 403
    run(main())


def test_fastapi_websocket_route(g) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("fastapi")

    async def main() -> None:
        async with websockets.connect(ws_url(g, "/fastapi/ws/lobby?name=ada"), subprotocols=["json"]) as ws:
            assert ws.subprotocol == "json"
            assert json.loads(await ws.recv()) == {"room": "lobby", "name": "ada"}
            await ws.send(json.dumps({"n": 1}))
            assert json.loads(await ws.recv()) == {"echo": {"n": 1}, "room": "lobby"}
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(ws_url(g, "/fastapi/ws/forbidden"))
        assert refused.value.response.status_code == 403
    run(main())


# -- clients that vanish -------------------------------------------------------------------------------------
def debug_counts(g: Any) -> dict:
    return httpx.get(f"http://127.0.0.1:{g.port}/asgi/debug", timeout=5).json()


def settle(g: Any, expect: Callable[[dict], bool], timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        counts = debug_counts(g)
        if expect(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def test_vanishing_clients_leave_no_task_or_fd(g) -> None:  # type: ignore[no-untyped-def]
    async def vanish_round() -> None:
        async with ws_serve(upstream_handler, "127.0.0.1", g.ports[1]):
            socks = []
            for path in ("/echo", "/chat?name=x", "/async?token=good", "/asgi/wait", "/asgi/echo", "/fastapi/ws/r",
                         "/proxy/echo"):
                for mid_message in (False, True):
                    # (blocking sockets, in a thread: the upstream server runs on this loop)
                    sock, _ = await asyncio.to_thread(raw_handshake, g.port, path)
                    sock.sendall(frame(0x1, b'{"text": "hi"}'))
                    if mid_message:  # the first frame of a message whose end never comes
                        sock.sendall(frame(0x1, b"half a mess", fin=False)[:-3])
                    socks.append(sock)
            await asyncio.sleep(0.3)
            opened = await asyncio.to_thread(debug_counts, g)
            for sock in socks:  # gone without a close frame; half of them with a reset
                if socks.index(sock) % 2:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            assert opened["fds"] >= 14
    run(vanish_round())                      # warm-up: pools and caches the process keeps
    before = settle(g, lambda c: True)
    run(vanish_round())
    after = settle(g, lambda c: c["tasks"] <= before["tasks"] and c["fds"] <= before["fds"])
    assert after["tasks"] <= before["tasks"], (before, after)
    assert after["fds"] <= before["fds"], (before, after)


def test_websocket_over_tls(gorox) -> None:  # type: ignore[no-untyped-def]
    trustme = pytest.importorskip("trustme")
    import ssl
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    srv = gorox("""
stage {{
    app "a" {{ .hostnames = ("*") rule {{ echoSocklet {{ }} }} }}
    httpxServer "main" {{
        .address = "127.0.0.1:{port}" .forApps = ("a")
        .tlsMode = true .tlsCertificate = "{base}/server.pem" .tlsPrivateKey = "{base}/server.key"
    }}
}}
""", files={"server.pem": b"".join(p.bytes() for p in leaf.cert_chain_pems),
            "server.key": leaf.private_key_pem.bytes()})
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def main() -> None:
        async with websockets.connect(f"wss://127.0.0.1:{srv.port}/", ssl=context, max_size=None) as ws:
            await ws.send("over TLS")
            assert await ws.recv() == "over TLS"
            await ws.send(b"\x01" * 300000)                  # large: streamed through wsproto
            assert await ws.recv() == b"\x01" * 300000
        assert ws.close_code == 1000
    run(main())
    # A protocol error over TLS (no half-close there): close 1002, then the server closes.
    async def bad() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=context)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
                     b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
                     + bytes([0x82, 0x01, 0x41]))              # an unmasked frame
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        rest = await asyncio.wait_for(reader.read(), 5)       # the close frame, then EOF
        assert rest[:1] == b"\x88" and close_code(rest[2:]) == 1002
        writer.close()
    run(bad())


def test_shutdown_says_going_away(gorox) -> None:  # type: ignore[no-untyped-def]
    srv = gorox("""
stage {{
    app "a" {{ .hostnames = ("*") rule {{ echoSocklet {{ }} }} }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
""")

    async def main() -> None:
        async with websockets.connect(ws_url(srv, "/")) as ws:
            await ws.send("up")
            assert await ws.recv() == "up"
            srv.proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    run(main())
    assert srv.proc.wait(10) == 0
