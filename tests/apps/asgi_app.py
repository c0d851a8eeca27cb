"""Raw ASGI apps for tests/e2e/test_asgi.py, one route per behaviour under test.

``app`` serves the routes and supports lifespan (its state carries a startup stamp and a
counter shared by every request); ``create_app()`` is the factory form; the others exercise
lifespan failures. Events the tests cannot see on the wire (a disconnect the app noticed) are
recorded in ``EVENTS`` and read back through ``/events``.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import parse_qs

EVENTS: list[str] = []


def _plain(value: Any) -> Any:
    """The scope as JSON can carry it: bytes as latin-1 text, tuples as lists."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "state"}
    return value


async def _reply(send: Any, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Any, obj: Any) -> None:
    await _reply(send, 200, json.dumps(obj).encode(), b"application/json")


async def _lifespan(scope: dict, receive: Any, send: Any, fail: str = "") -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if fail:
                await send({"type": "lifespan.startup.failed", "message": fail})
                return
            scope["state"]["started"] = "yes"
            scope["state"]["counter"] = {"requests": 0}
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            marker = os.environ.get("ASGI_SHUTDOWN_MARKER")
            if marker:
                with open(marker, "w") as f:
                    f.write("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    assert scope["type"] == "http"
    path = scope["path"][len(scope["root_path"]):]
    route = ROUTES.get(path) or (scope_route if path.startswith("/scope") else None)
    if route is None:
        await _reply(send, 404, b"no such route")
        return
    await route(scope, receive, send)


def _query(scope: dict) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


async def scope_route(scope: dict, receive: Any, send: Any) -> None:
    await _json(send, {"scope": _plain(scope), "state_keys": sorted(scope.get("state", {}))})


async def echo_route(scope: dict, receive: Any, send: Any) -> None:
    """Read the body message by message; report how it arrived."""
    chunks, size, flags = 0, 0, []
    data = bytearray()
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        chunks += 1
        size += len(message["body"])
        data += message["body"]
        flags.append(message.get("more_body", False))
        if not message.get("more_body", False):
            break
    import hashlib
    await _json(send, {"messages": chunks, "size": size, "more_body": flags,
                       "sha256": hashlib.sha256(data).hexdigest()})


async def stream_route(scope: dict, receive: Any, send: Any) -> None:
    q = _query(scope)
    n, size = int(q.get("n", "5")), int(q.get("size", "10"))
    headers = [(b"content-type", b"application/octet-stream")]
    if q.get("length"):
        headers.append((b"content-length", str(n * size).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for i in range(n):
        await send({"type": "http.response.body", "body": bytes([48 + i % 10]) * size, "more_body": True})
        await asyncio.sleep(0.005)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def slow_body_route(scope: dict, receive: Any, send: Any) -> None:
    """Read the body slowly; a client that leaves mid-body shows as http.disconnect."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            EVENTS.append("body:disconnect")
            return
        if not message.get("more_body", False):
            break
    await _reply(send, 200, b"got it all")


async def forever_route(scope: dict, receive: Any, send: Any) -> None:
    """Stream until the client leaves; record how the app learned it."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    EVENTS.append("stream:started")
    try:
        while True:
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            await asyncio.sleep(0.001)
    except OSError as e:
        EVENTS.append(f"stream:send raised {type(e).__name__}")
        message = await receive()
        EVENTS.append(f"stream:receive {message['type']}")


async def wait_disconnect_route(scope: dict, receive: Any, send: Any) -> None:
    """Long-poll style: answer only when the client goes away (it never does in time)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            EVENTS.append("poll:disconnect")
            return


async def events_route(scope: dict, receive: Any, send: Any) -> None:
    await _json(send, EVENTS)


async def debug_route(scope: dict, receive: Any, send: Any) -> None:
    await _json(send, {"tasks": len(asyncio.all_tasks()), "fds": len(os.listdir("/proc/self/fd"))})


async def trailers_route(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum")]})
    await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
    await send({"type": "http.response.body", "body": b"trailers", "more_body": False})
    await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")], "more_trailers": False})


async def pathsend_route(scope: dict, receive: Any, send: Any) -> None:
    path = _query(scope)["path"]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(os.path.getsize(path)).encode())]})
    await send({"type": "http.response.pathsend", "path": path})


async def raise_before_route(scope: dict, receive: Any, send: Any) -> None:
    raise ValueError("broken before the response")


async def raise_after_route(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    await asyncio.sleep(0.01)
    raise ValueError("broken mid-response")


async def no_response_route(scope: dict, receive: Any, send: Any) -> None:
    return


async def state_route(scope: dict, receive: Any, send: Any) -> None:
    state = scope["state"]
    state["counter"]["requests"] += 1  # the shallow copy shares the objects: this is seen by all
    state["local"] = "per-request"     # ...while new keys stay in this request's copy
    await _json(send, {"started": state.get("started"), "requests": state["counter"]["requests"],
                       "factory": state.get("factory", False)})


async def bad_header_route(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-evil", b"a\r\nset-cookie: x=1")]})
    await send({"type": "http.response.body", "body": b"never"})


async def after_response_route(scope: dict, receive: Any, send: Any) -> None:
    """Work after the response (as a background task does): it must not hold the connection."""
    await _reply(send, 200, b"done")
    await asyncio.sleep(0.3)
    with open(_query(scope)["path"], "w") as f:
        f.write("written after the response")


ROUTES = {
    "/scope": scope_route, "/echo": echo_route, "/stream": stream_route, "/slow-body": slow_body_route,
    "/forever": forever_route, "/wait-disconnect": wait_disconnect_route, "/events": events_route,
    "/debug": debug_route, "/trailers": trailers_route, "/pathsend": pathsend_route,
    "/raise-before": raise_before_route, "/raise-after": raise_after_route, "/no-response": no_response_route,
    "/state": state_route, "/bad-header": bad_header_route, "/after-response": after_response_route,
}


def create_app(flag: str = "factory") -> Any:
    """The factory form, ``asgi_app:create_app()``: the same routes, marked in the state."""

    async def factory_app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            async def marked_send(message: dict) -> None:
                if message["type"] == "lifespan.startup.complete":
                    scope["state"][flag] = True
                await send(message)
            await _lifespan(scope, receive, marked_send)
            return
        await app(scope, receive, send)

    return factory_app


async def failing_startup(scope: dict, receive: Any, send: Any) -> None:
    """Refuses to start: gorox must stop with this message."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send, fail="database unreachable at db.example:5432")
        return
    await _reply(send, 200, b"should never serve")


async def no_lifespan(scope: dict, receive: Any, send: Any) -> None:
    """An app without lifespan support (as Django's): "auto" serves it, "on" refuses it."""
    if scope["type"] != "http":
        raise ValueError(f"only http, not {scope['type']}")
    await _json(send, {"state": sorted(scope.get("state", {}))})
