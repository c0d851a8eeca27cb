"""``echoServer``: every byte a client sends comes back, until the client is done.

The connection reads only while the client reads what is echoed: when our write buffer is
above its high-water mark (``pause_writing``) reading stops until it drains, so a client that
sends without reading costs bounded memory. An idle client is closed after ``.readTimeout``;
one that stops reading our echo, after ``.writeTimeout``. The client's EOF closes the
connection once the echo is flushed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...core.registry import server
from ...net.gate import Gate
from ...net.server import NetServer


@server("echoServer")
class EchoServer(NetServer):
    """Echoes bytes back (handy to test clients, load balancers and proxies)."""

    def on_configure(self) -> None:
        super().on_configure()
        self.bytes_echoed = 0

    def protocol_factory(self, gate: Gate) -> asyncio.Protocol:
        return EchoConn(self, gate)


class EchoConn(asyncio.Protocol):
    __slots__ = ("server", "gate", "transport", "loop", "deadline", "echoed", "idle")

    def __init__(self, server: EchoServer, gate: Gate) -> None:
        self.server = server
        self.gate = gate
        self.transport: Any = None
        self.loop = asyncio.get_running_loop()
        self.deadline = 0.0
        self.echoed = 0
        self.idle = server.read_timeout  # shortened to the grace period at shutdown

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if not self.gate.on_open(self):
            transport.abort()
            return
        self.server.connections_total += 1
        self.deadline = self.loop.time() + self.idle

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)
        self.echoed += len(data)
        self.deadline = self.loop.time() + self.idle

    def eof_received(self) -> bool:
        return False  # the transport closes once the echo is written

    def pause_writing(self) -> None:
        self.transport.pause_reading()
        self.deadline = self.loop.time() + self.server.write_timeout

    def resume_writing(self) -> None:
        self.transport.resume_reading()
        self.deadline = self.loop.time() + self.idle

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline = 0.0
        self.server.bytes_echoed += self.echoed
        self.gate.on_close(self)

    def on_timeout(self) -> None:
        self.deadline = 0.0
        self.transport.abort()

    def drain(self, idle_grace: float = 0.0) -> None:
        """Shutdown: an echo has no request boundary to wait for; close once idle ``idle_grace``."""
        if idle_grace > 0:
            self.idle = min(self.idle, idle_grace)
            self.deadline = min(self.deadline or float("inf"), self.loop.time() + idle_grace)
        else:
            self.transport.close()
