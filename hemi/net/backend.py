"""Backends: named groups of upstream nodes, their pooled outbound connections, and health.

A proxy asks its backend for a connection (``acquire``), speaks its protocol over it, and gives
it back (``release``): to the node's idle pool when the exchange left it clean, closed
otherwise. The backend owns everything between: the balancer's choice among available nodes,
dialing (TCP, TLS or a unix socket, within ``.dialTimeout``), reusing idle connections the
upstream has not closed, and health — passive (a node that fails ``.maxFails`` times within
``.failTimeout`` is out for ``.failTimeout``) and, with ``.healthCheck``, active (every
``.healthInterval`` each node is probed; a failing node is out until a probe succeeds).

Protocols differ only in the probe (``check_node``), so ``tcpsBackend`` (a successful connect)
and ``http1Backend`` (a GET) are small subclasses.

Connections are asyncio Protocols, not streams: a read that finds data costs a list pop, and
timeouts use one lazily re-armed timer per connection instead of a timer per read. A proxy on
its hot path skips reads altogether: it calls ``listen`` with a :class:`Receiver` whose callbacks
get the upstream's bytes straight from ``data_received`` (no future, no task switch per read).

A node may cap its connections in use (``"maxConns"``, or ``.maxConnsPerNode``): an application
server such as php-fpm gives each open connection a worker, so dialing past its worker count
would park requests, unaccepted, in its listen queue. Requests past the cap wait, in order, in
a bounded queue (``.maxQueuedPerNode``, at most ``.queueTimeout``) and take over the slot of the
connection released before them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from typing import Any, Callable, Protocol

from ..config import tree
from ..core.component import Component
from .address import Address, parse_address
from .batch import Holder, batch_for
from .balancer import BALANCERS, Balancer, make_balancer

log = logging.getLogger("hemi.net.backend")

HIGH_WATER = 256 << 10   # pause reading an upstream when this much is received and unread
LOW_WATER = 64 << 10


class BackendError(Exception):
    """Something went wrong talking to an upstream. ``node`` is the node involved, if any."""

    def __init__(self, message: str, node: "Node | None" = None) -> None:
        super().__init__(message)
        self.node = node


class ConnectError(BackendError):
    """No connection: every candidate refused or failed to dial, or no node is available.
    Proxies answer 502 (and may retry an idempotent request on another node)."""


class BackendTimeout(BackendError):
    """A dial, read or write did not complete in time. Proxies answer 504."""


class SlotCall:
    """A place in a node's queue served by a call instead of by waking a task: a proxy's
    callback-driven exchange waits this way. It answers the part of the Future interface the
    queue uses; ``on_slot()`` runs inside ``free_slot`` (the slot is the caller's from then
    on, counted in ``in_use``), ``on_error(exc)`` when the wait times out. ``cancel`` before
    either takes it out of the running."""

    __slots__ = ("on_slot", "on_error", "state")

    PENDING, DONE, CANCELLED = range(3)

    def __init__(self, on_slot: Callable[[], None], on_error: Callable[[BaseException], None]) -> None:
        self.on_slot = on_slot
        self.on_error = on_error
        self.state = SlotCall.PENDING

    def done(self) -> bool:
        return self.state != SlotCall.PENDING

    def cancelled(self) -> bool:
        return self.state == SlotCall.CANCELLED

    def exception(self) -> BaseException | None:
        return None

    def cancel(self) -> bool:
        if self.state != SlotCall.PENDING:
            return False
        self.state = SlotCall.CANCELLED
        return True

    def set_result(self, _: None) -> None:
        self.state = SlotCall.DONE
        try:
            self.on_slot()
        except Exception:  # never into the caller: it is releasing another exchange's connection
            log.exception("a request waiting for a connection failed as it got one")

    def set_exception(self, exc: BaseException) -> None:
        self.state = SlotCall.DONE
        try:
            self.on_error(exc)
        except Exception:
            log.exception("a request waiting for a connection failed as its wait ended")


class Node:
    """One upstream address of a backend, with its idle pool and health counters.

    ``down_until`` is a ``time.monotonic()`` instant; 0 means in service, ``inf`` means out
    until the active health check sees it answer again.
    """

    __slots__ = ("backend", "address", "weight", "keep_conns", "down_until", "fails", "fail_start", "in_use",
                 "name", "idle", "index", "dials", "picks", "max_conns", "max_queued", "waiters", "queued")

    def __init__(self, backend: "Backend | None", address: Address, *, weight: int = 1, keep_conns: int = 10,
                 index: int = 0, max_conns: int = 0, max_queued: int = 1000) -> None:
        self.backend = backend
        self.address = address
        self.weight = weight
        self.keep_conns = keep_conns
        self.max_conns = max_conns      # connections in use at once (being dialed included); 0: no cap
        self.max_queued = max_queued    # requests waiting for one of them, at most
        self.waiters: deque[tuple[float, asyncio.Future | SlotCall]] = deque()   # (deadline, waiter), oldest first
        self.queued = 0                 # statistics: requests that had to wait
        self.down_until = 0.0
        self.fails = 0
        self.fail_start = 0.0
        self.in_use = 0
        self.name = str(address)
        self.idle: list[BackendConn] = []   # LIFO: the warmest connection first, the rest expire
        self.index = index
        self.dials = 0     # statistics, for tests and the admin UI
        self.picks = 0

    def __repr__(self) -> str:
        state = "up" if self.available else "down"
        return f"<Node {self.name} w={self.weight} {state} in_use={self.in_use} idle={len(self.idle)}>"

    @property
    def available(self) -> bool:
        down = self.down_until
        return not down or time.monotonic() >= down

    @property
    def full(self) -> bool:
        """At its connection cap: a new request waits for a slot."""
        return 0 < self.max_conns <= self.in_use

    @property
    def must_wait(self) -> bool:
        """A newcomer gets no slot now: the node is at its cap, or others wait before it."""
        return bool(self.max_conns) and (self.in_use >= self.max_conns or bool(self.waiters))

    def take_slot(self) -> bool:
        """Count one more connection in use if the cap allows it now and nobody waits before us."""
        if self.must_wait:
            return False
        self.in_use += 1
        return True

    def queue(self, waiter: "asyncio.Future[None] | SlotCall", timeout: float) -> None:
        """Put ``waiter`` in the queue for a slot (the caller's ``take_slot`` failed): a free
        slot resolves it (``set_result``), a full queue is a ConnectError now, and the
        backend's sweeper fails it with BackendTimeout after ``timeout``."""
        waiters = self.waiters
        if len(waiters) >= self.max_queued:
            raise ConnectError(f"{self.name}: {len(waiters)} requests already wait for a connection", self)
        self.queued += 1
        # No timer per wait: the backend's sweeper expires waiters past their deadline.
        waiters.append((self._loop().time() + timeout, waiter))

    def _loop(self) -> asyncio.AbstractEventLoop:
        # The started backend's loop: asyncio.get_running_loop() costs a getpid() per call (3.11).
        loop = self.backend.loop if self.backend is not None else None
        return loop if loop is not None else asyncio.get_running_loop()

    async def wait_slot(self, timeout: float) -> None:
        """Queue for a slot (the caller's ``take_slot`` failed); on return it is ours (counted
        in ``in_use``). ConnectError when the queue is full, BackendTimeout after ``timeout``."""
        waiter = self._loop().create_future()
        self.queue(waiter, timeout)
        try:
            await waiter          # free_slot hands its slot over by resolving this
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.free_slot()  # handed over just as we were cancelled: pass it on
            elif not waiter.done():
                waiter.cancel()   # skipped by free_slot, dropped by the sweeper
            raise

    def expire_waiters(self, now: float) -> None:
        """Fail the requests that waited for a slot past their deadline (the backend's sweeper
        calls this; deadlines grow along the queue, so only its head is looked at)."""
        waiters = self.waiters
        while waiters and (waiters[0][0] <= now or waiters[0][1].done()):
            _, waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_exception(BackendTimeout(f"{self.name}: no connection became free within queueTimeout",
                                                    self))

    def free_slot(self) -> None:
        """A connection is no longer in use: its slot goes to the first waiter, if any."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()[1]
            if not waiter.done():
                waiter.set_result(None)   # in_use stays: the slot changes hands
                return
        self.in_use -= 1

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()

    def take_idle(self, alive_timeout: float) -> "BackendConn | None":
        """The warmest idle connection still fresh and open; stale ones are closed."""
        idle = self.idle
        if not idle:
            return None
        limit = time.monotonic() - alive_timeout
        while idle:
            conn = idle.pop()
            if conn.last_used >= limit and conn.reusable_when_idle():  # conn.fresh(limit), inlined
                return conn
            conn.close()
        return None

    def keep(self, conn: "BackendConn", alive_timeout: float) -> bool:
        """Pool ``conn`` if it is clean and there is room; False: the caller closes it."""
        if len(self.idle) < self.keep_conns and alive_timeout > 0 and conn.reusable_when_idle():
            conn.last_used = time.monotonic()
            self.idle.append(conn)
            return True
        return False

    def sweep(self, alive_timeout: float) -> None:
        """Close idle connections unused for ``alive_timeout`` or closed by the peer."""
        if self.idle:
            limit = time.monotonic() - alive_timeout
            keep = []
            for conn in self.idle:
                if conn.fresh(limit):
                    keep.append(conn)
                else:
                    conn.close()
            self.idle = keep


class Receiver(Protocol):
    """Who gets a listening connection's input as it arrives (see :meth:`BackendConn.listen`).

    ``data`` gets each piece received; ``timed_out`` is called when nothing arrived for the
    backend's ``readTimeout``; both are called with the receiver still set: it calls
    ``unlisten`` when it is done (bytes arriving later are then buffered for ``read``).
    ``closed`` is called (the receiver already unset) when the upstream closed or the
    connection broke: ``exc`` says which, None for a clean EOF.
    """

    def data(self, data: bytes) -> None: ...

    def closed(self, exc: BaseException | None) -> None: ...

    def timed_out(self) -> None: ...


class BackendConn(Holder, asyncio.Protocol):
    """One outbound connection to a node.

    ``read`` returns b"" once the upstream has closed (cleanly or not: ``lost_error`` says
    which); ``write`` buffers and never blocks, ``drain`` waits while the upstream is slow.
    Reading stops (TCP back-pressure) while more than HIGH_WATER bytes are received but unread.
    Or, instead of reads, ``listen(receiver)``: input goes to the receiver's callbacks as it
    arrives, until it calls ``unlisten``.
    """

    __slots__ = ("node", "created", "requests", "last_used", "transport", "lost_error", "parser", "receiver",
                 "_chunks", "_buffered", "_eof", "_lost", "_read_waiter", "_drain_waiter", "_read_deadline",
                 "_drain_deadline", "_timer", "_timer_at", "_write_paused", "_read_paused", "loop", "_read_timeout",
                 "_write_timeout", "held", "held_bytes", "batch")

    def __init__(self, node: Node, read_timeout: float = 30.0, write_timeout: float = 30.0,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.node = node
        self.created = time.monotonic()
        self.last_used = self.created
        self.requests = 0
        self.transport: Any = None
        self.lost_error: BaseException | None = None
        self.parser: Any = None  # the protocol's per-connection parser, kept while the connection is pooled
        self.receiver: Receiver | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._lost = False
        self._read_waiter: asyncio.Future | None = None
        self._drain_waiter: asyncio.Future | None = None
        self._read_deadline = 0.0
        self._drain_deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._write_paused = False
        self._read_paused = False
        # Given when known: asyncio.get_running_loop() costs a getpid() per call on Python 3.11.
        self.loop = loop or asyncio.get_running_loop()
        # What write() holds until the end of the loop iteration (see hemi.net.batch).
        self.held: list[bytes] | None = None
        self.held_bytes = 0
        self.batch = batch_for(self.loop)
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout

    def __repr__(self) -> str:
        return f"<BackendConn to {self.node.name} requests={self.requests}{' closed' if self.closed else ''}>"

    # -- asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        receiver = self.receiver
        if receiver is not None:
            receiver.data(data)
            if self.receiver is receiver:  # still waiting for more: readTimeout from now
                self._read_deadline = self.loop.time() + self._read_timeout
            return
        self._chunks.append(data)
        self._buffered += len(data)
        waiter = self._read_waiter
        if waiter is not None:
            self._read_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._buffered > HIGH_WATER and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            receiver.closed(None)
        self._wake_reader()
        return False  # close our side too: upstreams that half-close are done with us

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.held = None
        self._eof = True
        self.lost_error = exc
        self._cancel_timer()
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            receiver.closed(exc)
        self._wake_reader()
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_exception(BackendError(f"connection to {self.node.name} lost", self.node))
                waiter.exception()  # retrieved: the drainer re-raises it

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None:
            self._read_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- timeouts: one timer, re-armed only when it fires early ----------------------------------------
    def _arm(self, deadline: float) -> None:
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        now = self.loop.time()
        nxt = 0.0
        receiver = self.receiver
        if receiver is not None:
            if now >= self._read_deadline:
                receiver.timed_out()
            else:
                nxt = self._read_deadline
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            if now >= self._read_deadline:
                self._read_waiter = None
                waiter.set_exception(BackendTimeout(f"no data from {self.node.name} within readTimeout", self.node))
                waiter.exception()
            else:
                nxt = self._read_deadline
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            if now >= self._drain_deadline:
                self._drain_waiter = None
                waiter.set_exception(BackendTimeout(f"{self.node.name} did not read within writeTimeout", self.node))
                waiter.exception()
            elif not nxt or self._drain_deadline < nxt:
                nxt = self._drain_deadline
        if nxt:
            self._arm(nxt)

    # -- the API proxies use ----------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._lost or self.transport is None or self.transport.is_closing()

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet."""
        return self._buffered

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` (whatever has arrived, at least one byte); b"" at EOF.
        Raises BackendTimeout when nothing arrives within ``readTimeout``."""
        chunks = self._chunks
        if not chunks:
            if self._eof:
                return b""
            loop = self.loop
            waiter = self._read_waiter = loop.create_future()
            self._read_deadline = deadline = loop.time() + self._read_timeout
            self._arm(deadline)
            try:
                await waiter
            finally:
                self._read_waiter = None
            if not chunks:
                return b""
        data = chunks[0]
        if len(data) <= max_bytes:
            chunks.popleft()
        else:
            chunks[0] = data[max_bytes:]
            data = data[:max_bytes]
        self._buffered -= len(data)
        if self._read_paused and self._buffered < LOW_WATER and not self._lost:
            self._read_paused = False
            self.transport.resume_reading()
        return data

    def listen(self, receiver: Receiver) -> None:
        """Hand input to ``receiver`` as it arrives (what is buffered already goes first), with
        the backend's ``readTimeout`` between pieces. Not together with ``read``."""
        self.receiver = receiver
        self._read_deadline = deadline = self.loop.time() + self._read_timeout
        if self._timer is None or deadline < self._timer_at:  # else it fires early and re-arms itself
            self._arm(deadline)
        if self._chunks or self._eof:  # rare: input arrived before (a pooled connection is clean)
            chunks = self._chunks
            while chunks and self.receiver is receiver:
                data = chunks.popleft()
                self._buffered -= len(data)
                receiver.data(data)
            if self._read_paused and not self._lost:
                self._read_paused = False
                self.transport.resume_reading()
            if self._eof and self.receiver is receiver:
                self.receiver = None
                receiver.closed(self.lost_error)

    def unlisten(self) -> None:
        """Stop handing input over: what arrives from now on is buffered for ``read``."""
        self.receiver = None

    def unread(self, data: bytes) -> None:
        """Push bytes back in front of the buffer (e.g. read past the end of a response)."""
        if data:
            self._chunks.appendleft(data)
            self._buffered += len(data)

    def write(self, data: bytes) -> None:
        """Send ``data`` at the end of this loop iteration (with whatever else is written to
        the connection by then, in order); ``drain``, ``close`` and the rest send it first."""
        if self._lost:
            raise BackendError(f"connection to {self.node.name} is closed", self.node)
        self.hold(data)

    def writelines(self, parts: list[bytes]) -> None:
        if self._lost:
            raise BackendError(f"connection to {self.node.name} is closed", self.node)
        self.flush()
        self.transport.writelines(parts)

    def write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        self.flush()
        return self.transport.get_write_buffer_size()

    def write_eof(self) -> None:
        """Half-close (for layer-4 relays); TLS cannot, so it is a no-op there."""
        self.flush()
        if not self._lost and self.transport.can_write_eof():
            self.transport.write_eof()

    async def drain(self) -> None:
        """Wait while the upstream does not keep up; BackendTimeout after ``writeTimeout``."""
        if self._lost:
            raise BackendError(f"connection to {self.node.name} is closed", self.node)
        self.flush()
        if not self._write_paused:
            return
        loop = self.loop
        waiter = self._drain_waiter = loop.create_future()
        self._drain_deadline = deadline = loop.time() + self._write_timeout
        self._arm(deadline)
        try:
            await waiter
        finally:
            self._drain_waiter = None

    def close(self) -> None:
        self._cancel_timer()
        self.flush()
        if self.transport is not None and not self._lost:
            self.transport.close()

    def abort(self) -> None:
        self._cancel_timer()
        self.held = None
        if self.transport is not None and not self._lost:
            self.transport.abort()

    # -- pool bookkeeping ---------------------------------------------------------------------------
    def reusable_when_idle(self) -> bool:
        """Clean for another exchange: open, nothing unread, nobody listening."""
        return not (self._lost or self._eof or self._chunks or self.receiver is not None
                    or self.transport is None or self.transport.is_closing())

    def fresh(self, idle_since: float) -> bool:
        """Pooled and still good: idle since ``idle_since`` at most, and clean."""
        return self.last_used >= idle_since and self.reusable_when_idle()


def bind_backend(comp: Component, name: str, expected: str, accepts: Callable[[Component], bool],
                 loc: Any = None, *, noun: str = "") -> "Any":
    """The backend a proxy's ``.toBackend`` names, resolved once every component is configured:
    a config error at ``loc`` (and None) when the stage has no backend of that name or it is not
    one ``accepts``; ``expected`` says what would be (\"an http1Backend\")."""
    found = comp.stage.get("backend", name)
    if found is None:
        comp.error(f'.toBackend names {noun}"{name}", but the stage has no backend of that name', loc)
    elif not accepts(found):
        comp.error(f".toBackend names {found.describe()}, expected {expected}", loc)
    else:
        return found
    return None


class Backend(Component):
    """The base of every backend sign: nodes, balancer, pool, timeouts, TLS, health."""

    kind = "backend"
    conn_class: type[BackendConn] = BackendConn
    default_port = 0

    # -- configuration --------------------------------------------------------------------------------
    def on_configure(self) -> None:
        self.nodes: list[Node] = self._configure_nodes()
        self.balancer_name = self.configure_string("balancer", "roundRobin", choices=tuple(BALANCERS))
        self.balancer: Balancer = make_balancer(self.balancer_name)
        self.dial_timeout = self.configure_duration("dialTimeout", 10.0, min=0.001)
        self.read_timeout = self.configure_duration("readTimeout", 30.0, min=0.001)
        self.write_timeout = self.configure_duration("writeTimeout", 30.0, min=0.001)
        self.alive_timeout = self.configure_duration("aliveTimeout", 5.0, min=0.0)
        self.max_streams_per_conn = self.configure_int("maxStreamsPerConn", 1000, min=0)  # 0: no limit
        self.max_fails = self.configure_int("maxFails", 1, min=0)
        self.fail_timeout = self.configure_duration("failTimeout", 10.0, min=0.0)
        self.tls_mode = self.configure_bool("tlsMode", False)
        self.tls_verify = self.configure_bool("tlsVerify", False)
        self.tls_server_name = self.configure_string("tlsServerName", "")
        self.tls_ca_file = self.configure_string("tlsCAFile", "")
        self.health_check = self.configure_bool("healthCheck", False)
        self.health_interval = self.configure_duration("healthInterval", 2.0, min=0.01)
        self.max_queued_per_node = self.configure_int("maxQueuedPerNode", 1000, min=0)
        self.queue_timeout = self.configure_duration("queueTimeout", 30.0, min=0.001)
        for node in self.nodes:
            node.max_queued = self.max_queued_per_node
        self.ssl_context: ssl.SSLContext | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # set by on_start
        self._tasks: list[asyncio.Task] = []
        self._shut = False

    def _configure_nodes(self) -> list[Node]:
        max_conns = self.configure_int("maxConnsPerNode", 0, min=0)
        value = self.configure_value("nodes")
        if value is None:
            self.error("missing required property .nodes (a list of nodes: ( [\"address\": \"host:port\"], ... ))")
            return []
        if value.kind != tree.LIST:
            self.error(f".nodes is {value.describe()}, expected a list of dicts", value.loc)
            return []
        if not value.data:
            self.error(".nodes is empty, expected at least one node", value.loc)
        nodes: list[Node] = []
        seen: set[str] = set()
        for i, item in enumerate(value.data):
            if item.kind != tree.DICT:
                self.error(f".nodes[{i}] is {item.describe()}, expected a dict [\"address\": ...]", item.loc)
                continue
            props = item.data
            unknown = set(props) - {"address", "weight", "keepConns", "maxConns"}
            if unknown:
                self.error(f".nodes[{i}] has unknown key(s) {', '.join(sorted(unknown))}; "
                           f"expected address, weight, keepConns, maxConns", item.loc)
            addr_v = props.get("address")
            if addr_v is None or addr_v.kind != tree.STRING:
                self.error(f'.nodes[{i}] needs "address": "host:port" (or a unix socket path)', item.loc)
                continue
            try:
                address = parse_address(addr_v.data)
            except ValueError as e:
                self.error(f".nodes[{i}] address {e}", addr_v.loc)
                continue
            if address.path is None and (not address.host or address.port == 0):
                self.error(f'.nodes[{i}] address "{addr_v.data}" needs a host and a port', addr_v.loc)
                continue
            weight = self._node_int(props, "weight", 1, 1, i, item)
            keep = self._node_int(props, "keepConns", 10, 0, i, item)
            cap = self._node_int(props, "maxConns", max_conns, 0, i, item)
            node = Node(self, address, weight=weight, keep_conns=keep, index=i, max_conns=cap)
            if node.name in seen:
                self.error(f'.nodes[{i}] repeats address "{node.name}"', addr_v.loc)
                continue
            seen.add(node.name)
            nodes.append(node)
        return nodes

    def _node_int(self, props: dict, key: str, default: int, minimum: int, i: int, item: tree.Value) -> int:
        v = props.get(key)
        if v is None:
            return default
        if v.kind not in (tree.INT, tree.SIZE) or v.data < minimum:
            self.error(f'.nodes[{i}] "{key}" must be an integer ≥ {minimum}', v.loc)
            return default
        return v.data

    def on_prepare(self) -> None:
        if self.tls_mode:
            ctx = ssl.create_default_context(cafile=self.tls_ca_file or None)
            if not self.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self.ssl_context = ctx

    async def on_start(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._sweep_idle()))
        if self.health_check:
            self._tasks.append(loop.create_task(self._check_loop()))

    async def on_shutdown(self) -> None:
        self._shut = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        for node in self.nodes:
            node.close_idle()

    # -- acquire / release ------------------------------------------------------------------------------
    def cap_nodes_at_keep_conns(self) -> None:
        """For gateways that keep connections (fcgi's ``.keepConn``): a node without a
        ``maxConns`` of its own gets its ``keepConns`` as the cap (0 keeps it uncapped). A kept
        connection pins a worker of the application server (php-fpm), so more connections in
        use than it keeps would wait unaccepted in its listen queue."""
        for node in self.nodes:
            if not node.max_conns:
                node.max_conns = node.keep_conns

    def candidates(self, exclude: frozenset[Node] | set[Node] = frozenset()) -> list[Node]:
        """The nodes in service and not in ``exclude`` (the list must not be changed)."""
        nodes = self.nodes
        for n in nodes:
            if n.down_until:
                break
        else:
            if not exclude:
                return nodes  # the usual case: every node up, nothing tried yet
        now = time.monotonic()
        return [n for n in nodes if (not n.down_until or now >= n.down_until) and n not in exclude]

    def pick(self, client_ip: str = "", exclude: frozenset[Node] | set[Node] = frozenset()) -> Node:
        """The balancer's choice among the nodes in service, preferring those below their
        connection cap. ConnectError when none is left."""
        nodes = self.nodes
        if len(nodes) == 1 and not exclude:  # the common lone node: no list, no balancer
            node = nodes[0]
            if node.down_until and not node.available:
                raise ConnectError(f"backend {self.name}: no node available")
            node.picks += 1
            return node
        nodes = self.candidates(exclude)
        if len(nodes) > 1:
            for n in nodes:
                if n.max_conns:  # capped nodes: a full one only when all are full
                    free = [n for n in nodes if not n.full]
                    if free:
                        nodes = free
                    break
        node = self.balancer.pick(nodes, client_ip)
        if node is None:
            raise ConnectError(f"backend {self.name}: no node available")
        node.picks += 1
        return node

    def take(self, node: Node) -> BackendConn | None:
        """An idle connection to ``node`` now, with its slot, or None: then ``acquire(node=...)``
        (which may wait for a slot, or dial). The hot path of every proxy: no coroutine."""
        if not node.idle or (node.max_conns and node.must_wait):  # (the property only for a capped node)
            return None
        conn = node.take_idle(self.alive_timeout)
        if conn is None:
            return None
        node.in_use += 1  # the slot, as take_slot would count it: nothing waits, the cap allows it
        conn.requests += 1
        return conn

    async def acquire(self, *, client_ip: str = "", exclude: frozenset[Node] = frozenset(),
                      node: Node | None = None) -> BackendConn:
        """A connection to a node chosen by the balancer (or to ``node``, when the caller
        picked it): an idle pooled one if the node has one the upstream did not close, else a
        new dial. A full node is waited for (see the module docstring). A failed dial counts
        against the node and the next candidate is tried (each node once); ConnectError (or
        BackendTimeout when the last failure was one) when none is left."""
        tried: set[Node] | frozenset[Node] = exclude
        last: BackendError | None = None
        while True:
            if node is None:
                try:
                    node = self.pick(client_ip, tried)
                except ConnectError:
                    if last is None:
                        raise
                    # Every candidate failed: a timeout is a 504, anything else a 502.
                    cls = BackendTimeout if isinstance(last, BackendTimeout) else ConnectError
                    raise cls(f"backend {self.name}: {last}", last.node) from None
            if not node.take_slot():
                await node.wait_slot(self.queue_timeout)
            conn = node.take_idle(self.alive_timeout)
            if conn is None:
                try:
                    conn = await self.dial(node)
                except BackendError as e:
                    node.free_slot()
                    self.report(node, False)
                    last = e
                    tried = set(tried)
                    tried.add(node)
                    node = None
                    continue
                except BaseException:
                    node.free_slot()
                    raise
            conn.requests += 1
            return conn

    def release(self, conn: BackendConn, *, reusable: bool) -> None:
        """Give a connection back: pooled when ``reusable`` and clean, else closed. Its slot
        goes to the first request waiting for the node, which then finds it idle."""
        node = conn.node
        limit = self.max_streams_per_conn
        if not (reusable and not self._shut and (not node.down_until or node.available)
                and (not limit or conn.requests < limit) and node.keep(conn, self.alive_timeout)):
            conn.close()
        if node.waiters:
            node.free_slot()  # the slot goes to the first waiter
        else:
            node.in_use -= 1

    def report(self, node: Node, ok: bool) -> None:
        """Passive health: ``maxFails`` failures within ``failTimeout`` take a node out for
        ``failTimeout`` (``.maxFails = 0`` turns this off). A success clears the count. As in
        nginx, a backend's only node is never taken out passively: there is nowhere else to go,
        and a blip (an upstream restarting) must not turn into ``failTimeout`` of 502s."""
        if ok:
            node.fails = 0
            return
        if self.max_fails <= 0 or len(self.nodes) < 2:
            return
        now = time.monotonic()
        if now - node.fail_start > self.fail_timeout:
            node.fails = 0
            node.fail_start = now
        node.fails += 1
        if node.fails >= self.max_fails:
            node.fails = 0
            if node.down_until != float("inf"):
                node.down_until = now + self.fail_timeout
            node.close_idle()
            log.warning("backend %s: node %s is out for %gs after failing", self.name, node.name, self.fail_timeout)

    # -- dialing ----------------------------------------------------------------------------------------
    async def dial(self, node: Node) -> BackendConn:
        """A new connection to ``node`` (not counted as in use: ``acquire`` does that).
        Raises ConnectError or BackendTimeout."""
        node.dials += 1
        conn_class, read_timeout, write_timeout, loop = self.conn_class, self.read_timeout, self.write_timeout, self.loop
        return await open_connection(node, lambda: conn_class(node, read_timeout, write_timeout, loop),
                                     dial_timeout=self.dial_timeout, ssl_context=self.ssl_context,
                                     server_hostname=self.tls_server_name or None, resolv=self.stage.resolv,
                                     loop=loop)

    # -- maintenance --------------------------------------------------------------------------------------
    async def _sweep_idle(self) -> None:
        """Close idle connections unused for ``aliveTimeout``, and ones the upstream closed;
        fail the requests that waited for a connection longer than ``queueTimeout``."""
        interval = max(0.05, min(1.0, self.alive_timeout / 2 if self.alive_timeout else 1.0,
                                 self.queue_timeout / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for node in self.nodes:
                node.sweep(self.alive_timeout)
                if node.waiters:
                    node.expire_waiters(now)

    async def _check_loop(self) -> None:
        while True:
            await asyncio.gather(*(self._check_one(n) for n in self.nodes))
            await asyncio.sleep(self.health_interval)

    async def _check_one(self, node: Node) -> None:
        try:
            ok = await asyncio.wait_for(self.check_node(node), self.dial_timeout + self.read_timeout)
        except (asyncio.TimeoutError, BackendError, OSError, ssl.SSLError):
            ok = False
        except Exception:  # a broken probe must not stop the loop
            log.exception("backend %s: health check of %s failed", self.name, node.name)
            ok = False
        if ok:
            if node.down_until:
                log.warning("backend %s: node %s is back", self.name, node.name)
            node.down_until = 0.0
            node.fails = 0
        elif node.down_until != float("inf"):
            log.warning("backend %s: node %s failed its health check; out until it passes one", self.name, node.name)
            node.down_until = float("inf")
            node.close_idle()

    async def check_node(self, node: Node) -> bool:
        """The active probe; subclasses speak their protocol. Here: a successful connect."""
        conn = await self.dial(node)
        conn.close()
        return True


async def open_connection(node: Node, factory: Callable[[], BackendConn], *, dial_timeout: float,
                          ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None,
                          resolv: Any = None, loop: asyncio.AbstractEventLoop | None = None) -> BackendConn:
    """Dial ``node`` (TCP, TLS, or a unix socket) within ``dial_timeout``; host names go through
    the stage's ``resolv`` fixture. Shared by backends and the forward proxy's per-host pools.
    Raises ConnectError or BackendTimeout."""
    loop = loop or asyncio.get_running_loop()
    addr = node.address
    sni = None
    if ssl_context is not None:
        sni = server_hostname or addr.host or None
    try:
        if addr.path is not None and ssl_context is None:
            # A unix socket connects at once or fails at once (EAGAIN when the listen queue is
            # full): nothing to time, and no timer to pay for on every dial.
            path = "\0" + addr.path[1:] if addr.path.startswith("@") else addr.path
            _transport, conn = await loop.create_unix_connection(factory, path)
            return conn
        # asyncio.timeout, not wait_for: no task per dial, just a timer on this one.
        async with asyncio.timeout(dial_timeout):
            if addr.path is not None:
                path = "\0" + addr.path[1:] if addr.path.startswith("@") else addr.path
                _transport, conn = await loop.create_unix_connection(factory, path, ssl=ssl_context,
                                                                     server_hostname=sni)
            else:
                host = await _resolve(addr.host, addr.port, resolv)
                _transport, conn = await loop.create_connection(factory, host, addr.port, ssl=ssl_context,
                                                                server_hostname=sni)
    except TimeoutError:
        raise BackendTimeout(f"dialing {node.name} timed out after {dial_timeout:g}s", node) from None
    except ssl.SSLError as e:
        raise ConnectError(f"TLS to {node.name} failed: {e}", node) from None
    except OSError as e:
        raise ConnectError(f"cannot connect to {node.name}: {e.strerror or e}", node) from None
    return conn


async def _resolve(host: str, port: int, resolv: Any) -> str:
    if resolv is None or host[:1].isdigit() or ":" in host:
        return host
    try:
        found = await resolv.resolve(host, port)
    except OSError as e:
        raise ConnectError(f"cannot resolve {host}: {e}") from None
    if not found:
        raise ConnectError(f"cannot resolve {host}")
    return found[0][1]


__all__ = ["Backend", "BackendConn", "BackendError", "BackendTimeout", "ConnectError", "Node", "Receiver",
           "open_connection"]
