"""A chat room, written as a socklet: ``chatRoom``. See ``conf/examples/websocket_chat.conf``.

Clients connect to the rule's path with ``?name=`` (and optionally ``?room=``, default
"lobby") and exchange JSON text messages:

- the server sends ``{"type": "welcome", "name", "room", "members": [...], "history": [...]}``
  to a newcomer, and ``{"type": "join" | "leave", "name"}`` to the others;
- a client sends ``{"text": "..."}`` (or plain text); everyone in the room, the sender
  included, gets ``{"type": "message", "name", "text"}``.

The callbacks are plain methods, so they run inline as frames arrive: no task per member.
A member that does not read what the room sends (more than ``.maxBacklog`` bytes queued) is
closed with 1013 rather than buffered without bound.
"""

from __future__ import annotations

import itertools
import json
from collections import deque

from hemi.core.registry import socklet
from hemi.web.socklet import AppSocklet, WebSocket

UNSUPPORTED_DATA, TRY_AGAIN_LATER = 1003, 1013


@socklet("chatRoom")
class ChatRoom(AppSocklet):
    """Rooms of members who see each other's messages."""

    def on_configure(self) -> None:
        super().on_configure()
        self.history_size = self.configure_int("history", 20, min=0, max=10000)
        self.max_backlog = self.configure_size("maxBacklog", 1 << 20, min=1024)
        self.rooms: dict[str, dict[WebSocket, str]] = {}
        self.histories: dict[str, deque[dict]] = {}
        self._guests = itertools.count(1)

    def on_open(self, ws: WebSocket) -> None:
        req = ws.request
        room = (req.query("room") or "lobby")[:64]
        name = (req.query("name") or f"guest-{next(self._guests)}")[:32]
        members = self.rooms.setdefault(room, {})
        history = self.histories.setdefault(room, deque(maxlen=self.history_size))
        ws.state.update(room=room, name=name)
        ws.send(json.dumps({"type": "welcome", "name": name, "room": room,
                            "members": sorted(members.values()), "history": list(history)}))
        self._broadcast(room, {"type": "join", "name": name})
        members[ws] = name

    def on_message(self, ws: WebSocket, data: str | bytes) -> None:
        if isinstance(data, bytes):
            ws.close(UNSUPPORTED_DATA, "text messages only")
            return
        try:
            parsed = json.loads(data)
            text = parsed["text"] if isinstance(parsed, dict) else str(parsed)
        except (ValueError, KeyError):
            text = data
        message = {"type": "message", "name": ws.state["name"], "text": str(text)}
        room = ws.state["room"]
        if self.history_size:
            self.histories[room].append(message)
        self._broadcast(room, message)

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        room = ws.state.get("room")
        members = self.rooms.get(room) if room is not None else None
        if members is None or members.pop(ws, None) is None:
            return
        if not members:
            del self.rooms[room]
            self.histories.pop(room, None)
        else:
            self._broadcast(room, {"type": "leave", "name": ws.state["name"]})

    def _broadcast(self, room: str, message: dict) -> None:
        text = json.dumps(message)
        for member in list(self.rooms.get(room, ())):
            if not member.open:
                continue
            if member.session.transport.get_write_buffer_size() > self.max_backlog:
                member.close(TRY_AGAIN_LATER, "not reading")
                continue
            member.send(text)
