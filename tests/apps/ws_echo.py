"""A raw ASGI app for the WebSocket tests and the Autobahn run (no framework in the way).

WebSocket paths (the last segment counts, so the app can be mounted under any prefix):
- ``/echo`` (and any other path): accept (choosing ``echo`` if offered), send every message back.
- ``/info``: accept with the first offered subprotocol and an ``x-hello: world`` header, send the
  scope's path, query, subprotocols and client header names as JSON, then echo.
- ``/deny``: refuse with ``websocket.http.response``: 403, ``x-why: policy``, body "denied here".
- ``/refuse``: ``websocket.close`` before accepting (the server answers 403).
- ``/bye``: accept, send "bye", close with 4001 "done".
- ``/boom``: accept, then raise (the server closes with 1011).
- ``/wait``: accept, then wait for messages forever without answering (disconnect tests).

HTTP: ``/debug`` answers the tasks and open file descriptors of the serving process as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind == "http":
        await http(scope, receive, send)
        return
    path = "/" + scope["path"].rsplit("/", 1)[-1]
    connect = await receive()
    assert connect["type"] == "websocket.connect", connect
    if path == "/deny":
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain"), (b"x-why", b"policy")]})
        await send({"type": "websocket.http.response.body", "body": b"denied ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"here"})
        return
    if path == "/refuse":
        await send({"type": "websocket.close"})
        return
    if path == "/info":
        offered = scope.get("subprotocols") or []
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None,
                    "headers": [(b"x-hello", b"world")]})
        await send({"type": "websocket.send", "text": json.dumps({
            "path": path, "query": scope["query_string"].decode(), "subprotocols": offered,
            "scheme": scope["scheme"], "headers": sorted({k.decode() for k, _ in scope["headers"]}),
            "extensions": sorted(scope.get("extensions") or {})})})
    elif path == "/bye":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "bye"})
        await send({"type": "websocket.close", "code": 4001, "reason": "done"})
        message = await receive()
        assert message["type"] == "websocket.disconnect", message
        return
    elif path == "/boom":
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom after accept")
    elif path == "/wait":
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    else:
        offered = scope.get("subprotocols", ())
        await send({"type": "websocket.accept", "subprotocol": "echo" if "echo" in offered else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def http(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["path"].endswith("/debug"):
        body = json.dumps({"tasks": len(asyncio.all_tasks()), "fds": len(os.listdir("/proc/self/fd"))}).encode()
        status = 200
    else:
        body, status = b"not found", 404
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
