"""The base of every server (echoServer, socksServer, and the web servers) and of every mesher:
gates on ``.address``, connection limits, and one timer for every connection's deadline.

:class:`Gated` holds what servers and meshers share (``.address``, ``.numGates``,
``.maxConnsPerGate``, ``.readTimeout``, ``.writeTimeout``, the gates, the sweeper, the drain at
shutdown); :class:`NetServer` is the server kind of it, ``hemi.net.mesher.Mesher`` the mesher kind.

A connection made by ``protocol_factory`` honours a small contract, the same one the web
server's connections keep: a ``deadline`` attribute (a ``loop.time()`` instant, 0 for none),
``on_timeout()`` called once it has passed, and ``drain(grace)`` to finish at shutdown. A
component whose connections time out otherwise overrides :meth:`Gated.sweep`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from ..core.component import Component
from .address import Address, parse_address
from .gate import Gate

log = logging.getLogger("hemi.net.server")


class Gated(Component):
    """Properties, gates and the sweeper shared by all servers and meshers."""

    default_read_timeout = 60.0
    #: What the gates listen on: "stream" (TCP, or a unix stream socket) or "datagram" (UDP).
    #: Two components of one transport on one address would share it through SO_REUSEPORT and
    #: each receive a part of the other's traffic, so the stage refuses that at configure time.
    socket_kind = "stream"

    def on_configure(self) -> None:
        address = self.configure_string("address", None, required=True)
        self.address: Address | None = None
        if address is not None:
            try:
                self.address = parse_address(address)
            except ValueError as e:
                self.error(f".address {e}", self.find("address")[0].loc)  # type: ignore[union-attr]
        self.num_gates = self.configure_int("numGates", 1, min=1, max=256)
        self.max_conns_per_gate = self.configure_int("maxConnsPerGate", 10000, min=1)
        self.read_timeout = self.configure_duration("readTimeout", self.default_read_timeout, min=0.001)
        self.write_timeout = self.configure_duration("writeTimeout", 60.0, min=0.001)
        self.gates: list = []  # of Gate (a UDP mesher has its own kind of gate)
        self.ssl_context: ssl.SSLContext | None = None  # set by servers that speak TLS
        self.connections_total = 0
        self._sweeper: asyncio.Task | None = None

    def protocol_factory(self, gate: Gate) -> asyncio.Protocol:
        raise NotImplementedError

    def sweep_period(self) -> float:
        """How often deadlines are checked: a quarter of the shortest timeout, at most 0.5 s,
        so a timeout fires late by at most that."""
        return min(0.5, max(0.02, min(self.read_timeout, self.write_timeout) / 4))

    def listening_note(self) -> str:
        """What the "listening on" log line adds after the address."""
        return " (TLS)" if self.ssl_context is not None else ""

    async def on_start(self) -> None:
        assert self.address is not None
        for i in range(self.num_gates):
            gate = Gate(self.address, self.protocol_factory, max_conns=self.max_conns_per_gate,
                        ssl=self.ssl_context, index=i)
            await gate.open()
            self.gates.append(gate)
        self.start_sweeper()
        log.info('%s "%s" listening on %s%s', self.sign, self.name, self.address, self.listening_note())

    def start_sweeper(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Time out connections a few times a second: one timer for the server instead of one
        per connection re-armed on every read."""
        loop = asyncio.get_running_loop()
        period = self.sweep_period()
        while True:
            await asyncio.sleep(period)
            self.sweep(loop.time())

    def sweep(self, now: float) -> None:
        """Time out the connections whose deadline has passed."""
        for gate in self.gates:
            for conn in list(gate.conns):
                deadline = conn.deadline
                if deadline and now >= deadline:
                    conn.on_timeout()

    async def on_shutdown(self) -> None:
        """Drain every gate's connections (the stage's grace period), then stop the sweeper."""
        grace = self.stage.idle_grace
        await asyncio.gather(*(gate.close(lambda c: c.drain(grace)) for gate in self.gates))
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.gates.clear()

    @property
    def bound_addresses(self) -> list[Address]:
        return [g.bound for g in self.gates]


class NetServer(Gated):
    """The base of servers (the ``server`` kind of :class:`Gated`)."""

    kind = "server"


def peer_of(transport: asyncio.BaseTransport) -> tuple[str, int]:
    """(ip, port) of the other end; ("unix", 0) on a unix socket."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple):
        return peer[0], peer[1]
    return "unix", 0


__all__ = ["Gated", "NetServer", "peer_of"]
