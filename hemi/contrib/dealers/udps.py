"""UDP dealers: ``udpsProxy`` (a session to a ``udpsBackend`` node) and ``dnsDealer`` (DNS
queries forwarded to upstream resolvers, the next one tried when one does not answer).

Both give each client session its own upstream socket(s), *connected* to the upstream (the
kernel then drops datagrams from anyone else), created when the session starts and closed with
it. Datagrams from the client that arrive while the socket is being opened wait in a short
queue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from ...core.registry import dealer
from ...net import dns
from ...net.address import Address, parse_address
from ...net.mesher import Dealer, MeshConn
from ...net.backend import bind_backend
from ...net.udps import UdpsBackend, UdpSession

log = logging.getLogger("hemi.net.udps")

_QUEUE_LIMIT = 64  # datagrams held per session while its upstream socket opens
_tasks: set[asyncio.Task] = set()


class _Upstream(asyncio.DatagramProtocol):
    """A connected datagram socket whose replies go to ``on_reply``."""

    def __init__(self, on_reply: Callable[[bytes], None]) -> None:
        self.on_reply = on_reply
        self.transport: Any = None
        self.refused = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_reply(data)

    def error_received(self, exc: Exception) -> None:
        self.refused += 1  # ICMP port unreachable and the like: UDP has no answer to give


async def open_upstream(stage: Any, address: Address, on_reply: Callable[[bytes], None]) -> _Upstream:
    """A datagram socket connected to ``address`` (a name is resolved by the stage's resolv)."""
    loop = asyncio.get_running_loop()
    found = await stage.resolv.resolve(address.host, address.port)
    if not found:
        raise OSError(f"cannot resolve {address.host}")
    family, ip = found[0]
    _, proto = await loop.create_datagram_endpoint(lambda: _Upstream(on_reply), remote_addr=(ip, address.port),
                                                   family=family)
    return proto  # type: ignore[return-value]


class _Session:
    """What a dealer keeps per client session: the queue, the upstream socket(s), the task."""

    __slots__ = ("conn", "queue", "upstreams", "task", "closed")

    def __init__(self, conn: MeshConn) -> None:
        self.conn = conn
        self.queue: list[bytes] = []
        self.upstreams: dict[int, _Upstream] = {}
        self.task: asyncio.Task | None = None
        self.closed = False

    def close(self) -> None:
        self.closed = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        for up in self.upstreams.values():
            if up.transport is not None:
                up.transport.close()
        self.upstreams.clear()


def _on_close(conn: MeshConn, fn: Callable[[], None]) -> bool:
    if not isinstance(conn, UdpSession):
        conn.close("error: a UDP dealer in a mesher that is not udpsMesher")
        return False
    conn.on_close(fn)
    return True


@dealer("udpsProxy")
class UdpsProxy(Dealer):
    """Relay each session's datagrams to a node of ``.toBackend`` (a udpsBackend) and the
    node's replies back to the client."""

    def on_configure(self) -> None:
        self.backend_name = self.configure_string("toBackend", None, required=True)
        self.backend: UdpsBackend | None = None

    def on_bind(self) -> None:
        if not self.backend_name:
            return
        self.backend = bind_backend(self, self.backend_name, "a udpsBackend", lambda c: isinstance(c, UdpsBackend),
                                    self.block.prop_locs.get("toBackend"))

    def deal(self, conn: MeshConn) -> bool:
        assert self.backend is not None
        node = self.backend.pick(conn.src_host)
        if node is None:
            conn.close(f"error: backend {self.backend.name} has no node available")
            return True
        s = _Session(conn)
        node.in_use += 1

        def closed() -> None:
            node.in_use -= 1
            s.close()

        if not _on_close(conn, closed):
            node.in_use -= 1
            return True
        conn.log_fields.append(f"node={node.name}")

        def from_client(data: bytes) -> None:
            up = s.upstreams.get(0)
            if up is not None and up.transport is not None:
                up.transport.sendto(data)
            elif len(s.queue) < _QUEUE_LIMIT:
                s.queue.append(data)

        conn.attach(from_client)
        s.task = asyncio.get_running_loop().create_task(self._open(s, node))
        return True

    async def _open(self, s: _Session, node: Any) -> None:
        try:
            up = await open_upstream(self.stage, node.address, s.conn.send)
        except OSError as e:
            self.backend.report(node, False)  # type: ignore[union-attr]
            s.conn.close(f"error: cannot open a socket to {node.name}: {e}")
            return
        if s.closed:
            up.transport.close()
            return
        s.upstreams[0] = up
        queue, s.queue = s.queue, []
        for data in queue:
            up.transport.sendto(data)


@dealer("dnsDealer")
class DnsDealer(Dealer):
    """Forward DNS queries to ``.upstreams`` ("host:port", tried in order): a query not answered
    within ``.timeout`` goes to the next upstream; when none answers the client gets SERVFAIL.
    Datagrams that are not DNS queries are dropped (and counted in the access log)."""

    def on_configure(self) -> None:
        self.upstreams: list[Address] = []
        names = self.configure_string_list("upstreams", required=True, non_empty=True)
        for text in names:
            try:
                addr = parse_address(text)
            except ValueError as e:
                self.error(f".upstreams has {e}", self.block.prop_locs.get("upstreams"))
                continue
            if addr.path is not None or not addr.host or not addr.port:
                self.error(f'.upstreams has "{text}", expected host:port', self.block.prop_locs.get("upstreams"))
                continue
            self.upstreams.append(addr)
        self.timeout = self.configure_duration("timeout", 2.0, min=0.001)
        self.queries = 0
        self.failed = 0
        self.dropped = 0

    def deal(self, conn: MeshConn) -> bool:
        s = _DnsSession(self, conn)
        if not _on_close(conn, s.close):
            return True
        conn.attach(s.query)
        return True


class _DnsSession(_Session):
    """The queries of one client in flight: ID -> (the query, the upstream index, its timer)."""

    __slots__ = ("dealer", "pending", "dropped")

    def __init__(self, dealer: DnsDealer, conn: MeshConn) -> None:
        super().__init__(conn)
        self.dealer = dealer
        self.pending: dict[int, tuple[bytes, int, asyncio.TimerHandle | None]] = {}
        self.dropped = 0

    def close(self) -> None:
        for _, _, timer in self.pending.values():
            if timer is not None:
                timer.cancel()
        self.pending.clear()
        if self.dropped:
            self.conn.log_fields.append(f"dropped={self.dropped}")
        super().close()

    def query(self, data: bytes) -> None:
        try:
            h = dns.check_query(data)
        except dns.DnsError as e:
            self.dropped += 1
            self.dealer.dropped += 1
            log.debug("dnsDealer %s: dropped a datagram from %s: %s", self.dealer.name, self.conn.src_host, e)
            return
        self.dealer.queries += 1
        old = self.pending.pop(h.id, None)
        if old is not None and old[2] is not None:
            old[2].cancel()  # the client asked again with the same ID: start over
        self._send(h.id, data, 0)

    def _send(self, mid: int, data: bytes, index: int) -> None:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.dealer.timeout, self._timed_out, mid)
        self.pending[mid] = (data, index, timer)
        up = self.upstreams.get(index)
        if up is not None and up.transport is not None:
            up.transport.sendto(data)
            return
        task = loop.create_task(self._open_and_send(index, data))
        _tasks.add(task)  # held until done (the loop keeps only weak references)
        task.add_done_callback(_tasks.discard)

    async def _open_and_send(self, index: int, data: bytes) -> None:
        up = self.upstreams.get(index)
        if up is None:
            try:
                up = await open_upstream(self.dealer.stage, self.dealer.upstreams[index], self._reply)
            except OSError:
                return  # the timer moves the query on
            if self.closed:
                up.transport.close()
                return
            old = self.upstreams.get(index)
            if old is not None:  # opened twice concurrently: keep one
                up.transport.close()
                up = old
            self.upstreams[index] = up
        up.transport.sendto(data)

    def _reply(self, data: bytes) -> None:
        try:
            h = dns.parse_header(data)
        except dns.DnsError:
            return
        entry = self.pending.get(h.id)
        if entry is None or not h.qr:
            return  # late (a slower upstream after a faster one) or not a response
        del self.pending[h.id]
        if entry[2] is not None:
            entry[2].cancel()
        self.conn.send(data)

    def _timed_out(self, mid: int) -> None:
        entry = self.pending.get(mid)
        if entry is None or self.closed:
            return
        data, index, _ = entry
        if index + 1 < len(self.dealer.upstreams):
            self._send(mid, data, index + 1)
            return
        del self.pending[mid]
        self.dealer.failed += 1
        log.info("dnsDealer %s: no upstream answered query %d from %s:%s", self.dealer.name, mid,
                 self.conn.src_host, self.conn.src_port)
        self.conn.send(dns.servfail(data))
