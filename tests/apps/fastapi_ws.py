"""A FastAPI app with a WebSocket route, for the WebSocket tests (served under ``/fastapi``).

``/fastapi/ws/{room}?name=``: path and query parameters, a subprotocol when offered; greets
with JSON, then answers each JSON message with ``{"echo": ..., "room": ...}``. The room
"forbidden" is closed before accepting (the server answers 403).
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()


@app.get("/fastapi/health")
async def health() -> dict:
    return {"ok": True}


@app.websocket("/fastapi/ws/{room}")
async def room_socket(websocket: WebSocket, room: str, name: str = "anon") -> None:
    if room == "forbidden":
        await websocket.close(code=1008)
        return
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="json" if "json" in offered else None)
    await websocket.send_json({"room": room, "name": name})
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"echo": data, "room": room})
    except WebSocketDisconnect:
        pass
