"""A transport that records what a protocol does to it, for connection tests without sockets."""

from __future__ import annotations

from typing import Any


class RecordingTransport:
    """``out``: every byte written, in order (assign ``b""`` to start afresh); ``events``: what
    happened, in order: ("write", bytes), ("close",), ("abort",), ("eof",), ("protocol", p)."""

    def __init__(self) -> None:
        self.out = b""
        self.events: list[tuple[Any, ...]] = []
        self.closed = False

    def clear(self) -> None:
        self.out = b""
        self.events.clear()

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out += data
        self.events.append(("write", data))

    def writelines(self, parts: list[bytes]) -> None:
        self.write(b"".join(parts))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.events.append(("close",))
        self.closed = True

    def abort(self) -> None:
        self.events.append(("abort",))
        self.closed = True

    def write_eof(self) -> None:
        self.events.append(("eof",))

    def can_write_eof(self) -> bool:
        return True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: Any) -> None:
        self.events.append(("protocol", protocol))


def recorded_conn(stage: Any, server: str = "main") -> "tuple[Any, RecordingTransport]":
    """A real HTTP/1 connection of ``stage``'s server, whose client transport is a recorder."""
    from hemi.web.http1.conn import Http1Conn

    srv = stage.get("server", server)
    conn = Http1Conn(srv, srv.gates[0])
    transport = RecordingTransport()
    conn.connection_made(transport)
    return conn, transport
