"""``socksServer``: a SOCKS5 proxy (RFC 1928) with username/password (RFC 1929).

One connection: the handshake is read with the sans-IO :mod:`hemi.net.socks5` parser (within
``.readTimeout``), then

- CONNECT: the destination (an IPv4, IPv6 or domain-name address) is judged by ``.allow`` /
  ``.deny`` (:mod:`hemi.net.destinations`), resolved by the stage's ``resolv`` fixture, and
  dialled within ``.connectTimeout``; on success the two connections are spliced
  (:mod:`hemi.net.splice`: back-pressure, half-close, ``.readTimeout`` idle);
- UDP ASSOCIATE: a UDP socket is bound on the server's address (the one the client reached)
  and relays datagrams between the client and the destinations it names (each judged like a
  CONNECT) for as long as the TCP connection lives;
- BIND: refused (command not supported).

With ``.users`` set, clients must authenticate; a client offering only "no authentication" is
refused. Anything malformed closes the connection (with a SOCKS reply where the protocol has
one) and writes one line to the error log.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import socket
from typing import Any, Callable

from ...core.registry import server
from ...net import socks5 as s5
from ...net.destinations import Destinations, Patterns, is_ip
from ...net.gate import Gate
from ...net.server import NetServer, peer_of
from ...net.splice import Splice

log = logging.getLogger("hemi.net.socks")

_HANDSHAKE_LIMIT = 64 << 10  # bytes buffered before the tunnel is up (early data included)
_MAX_UDP_PEERS = 4096        # destinations one UDP association remembers (replies are accepted from them)


@server("socksServer")
class SocksServer(NetServer):
    """SOCKS5: no-auth or username/password; CONNECT and UDP ASSOCIATE."""

    def on_configure(self) -> None:
        super().on_configure()
        self.connect_timeout = self.configure_duration("connectTimeout", 10.0, min=0.001)
        self.users = {k.encode(): v.encode() for k, v in self.configure_string_dict("users").items()}
        self.allow_udp = self.configure_bool("allowUDP", True)
        lists: dict[str, list[str]] = {}
        for key in ("allow", "deny"):
            lists[key] = self.configure_string_list(key)
            try:
                Patterns(lists[key])
            except ValueError as e:
                self.error(f".{key} has a bad pattern: {e}", self.block.prop_locs.get(key))
                lists[key] = []
        self.destinations = Destinations(lists["allow"], lists["deny"])
        self.tunnels_total = 0
        addr = self.address
        if addr is not None and addr.path is None and not self.users and not lists["allow"] \
                and addr.host not in ("127.0.0.1", "::1", "localhost"):
            # Not an error (a private network may want exactly this), but never a surprise.
            log.warning('socksServer "%s" listens on %s with no .users and no .allow: anyone who reaches it '
                        'can use it as an open proxy', self.name, addr)

    def protocol_factory(self, gate: Gate) -> asyncio.Protocol:
        return SocksConn(self, gate)

    async def resolve(self, host: str, port: int) -> list[str]:
        """Addresses of ``host`` (IPv4 first is the resolver's order); OSError on failure."""
        if is_ip(host):
            return [host.strip("[]")]
        found = await self.stage.resolv.resolve(host, port)
        return [ip for _, ip in found]


# Connection states.
_HANDSHAKE, _CONNECTING, _TUNNEL, _UDP, _CLOSED = range(5)


def _reply_for(e: BaseException) -> int:
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return s5.REP_HOST_UNREACHABLE
    code = getattr(e, "errno", None)
    if code == errno.ECONNREFUSED:
        return s5.REP_CONNECTION_REFUSED
    if code == errno.ENETUNREACH:
        return s5.REP_NETWORK_UNREACHABLE
    if code in (errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return s5.REP_HOST_UNREACHABLE
    return s5.REP_GENERAL_FAILURE


class SocksConn(asyncio.Protocol):
    """One client: the handshake, then a splice (CONNECT) or a UDP relay (UDP ASSOCIATE)."""

    def __init__(self, server: SocksServer, gate: Gate) -> None:
        self.server = server
        self.gate = gate
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None
        self.parser = s5.ServerParser()
        self.state = _HANDSHAKE
        self.deadline = 0.0
        self.peer: tuple[str, int] = ("", 0)
        self.user = ""
        self.target = ""
        self.task: asyncio.Task | None = None
        self.splice: Splice | None = None
        self.relay: UdpRelay | None = None
        self.read_paused = False
        self.client_eof = False

    def __repr__(self) -> str:
        return f"<SocksConn {self.peer[0]}:{self.peer[1]} state={self.state} {self.target}>"

    # -- asyncio.Protocol -------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if not self.gate.on_open(self):
            self.state = _CLOSED
            transport.abort()
            return
        self.server.connections_total += 1
        self.peer = peer_of(transport)
        self.deadline = self.loop.time() + self.server.read_timeout

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == _HANDSHAKE or state == _CONNECTING:
            self.parser.feed(data)
            if self.parser.buffered > _HANDSHAKE_LIMIT and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()  # early data: wait for the upstream
            if state == _HANDSHAKE:
                self._advance()
        # In UDP state the TCP connection carries nothing; what arrives is dropped.

    def eof_received(self) -> bool:
        if self.state == _HANDSHAKE:
            if self.parser.buffered:
                self._fail("closed its side in the middle of the handshake")
            else:
                self._close()
        elif self.state == _UDP:
            self._close()  # the association ends with its control connection
        # CONNECTING: keep the half-closed client; its EOF is passed on once the tunnel is up.
        self.client_eof = True
        return self.state == _CONNECTING

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == _TUNNEL:
            return  # not ours any more (the splice took the transport); cannot happen
        self.state = _CLOSED
        self.deadline = 0.0
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        self.gate.on_close(self)

    # -- deadlines and shutdown -------------------------------------------------------------------------
    def on_timeout(self) -> None:
        self.deadline = 0.0
        if self.state == _UDP and self.relay is not None:
            idle_until = self.relay.last_active + self.server.read_timeout
            if self.loop.time() < idle_until:
                self.deadline = idle_until  # datagrams keep the association alive
                return
            self._log_info("UDP association idle for %gs, closed", self.server.read_timeout)
        elif self.state == _HANDSHAKE:
            self._log_info("handshake not done within %gs, closed", self.server.read_timeout)
        elif self.state == _CONNECTING:
            return  # the dial has its own timeout
        self._close(abort=True)

    def drain(self, idle_grace: float = 0.0) -> None:
        if self.splice is not None and not self.splice.closed:
            if idle_grace > 0:
                self.splice.set_idle_timeout(min(idle_grace, self.splice.idle_timeout or idle_grace))
            else:
                self.splice.close("shutdown")
            return
        if self.state == _UDP and idle_grace > 0:
            self.deadline = min(self.deadline or float("inf"), self.loop.time() + idle_grace)
            return
        self._close()

    def _close(self, abort: bool = False) -> None:
        if self.state == _CLOSED or self.transport is None:
            return
        if self.state == _TUNNEL:
            return
        self.state = _CLOSED
        self.deadline = 0.0
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    # -- the handshake ------------------------------------------------------------------------------------
    def _log_info(self, msg: str, *args: Any) -> None:
        log.info('socksServer "%s": %s:%d ' + msg, self.server.name, self.peer[0], self.peer[1], *args)

    def _fail(self, reason: str, rep: int | None = None) -> None:
        """A client mistake or a refusal: one log line, the reply if there is one, close."""
        self._log_info("%s%s", reason, f"; replied {s5.REPLY_TEXT.get(rep, rep)}" if rep is not None else "")
        if rep is not None and self.state != _CLOSED:
            self.transport.write(s5.reply(rep))
        self._close()

    def _advance(self) -> None:
        parser = self.parser
        server = self.server
        while self.state == _HANDSHAKE:
            try:
                ev = parser.next_event()
            except s5.Socks5Error as e:
                self._fail(f"sent garbage: {e.reason}", e.reply)
                return
            if ev is s5.NEED_DATA:
                return
            if type(ev) is s5.Greeting:
                if server.users:
                    method = s5.METHOD_USERPASS if s5.METHOD_USERPASS in ev.methods else s5.METHOD_NONE_ACCEPTABLE
                else:
                    method = s5.METHOD_NO_AUTH if s5.METHOD_NO_AUTH in ev.methods else s5.METHOD_NONE_ACCEPTABLE
                self.transport.write(s5.method_selection(method))
                if method == s5.METHOD_NONE_ACCEPTABLE:
                    self._fail("offered no acceptable authentication method "
                               f"({'username/password required' if server.users else 'only no-auth is served'})")
                    return
                if method == s5.METHOD_USERPASS:
                    parser.expect_auth()
            elif type(ev) is s5.UserPass:
                expected = server.users.get(ev.username.encode())
                ok = expected is not None and hmac.compare_digest(expected, ev.password.encode())
                self.transport.write(s5.auth_status(ok))
                if not ok:
                    self._fail(f'failed authentication as "{ev.username[:64]}"')
                    return
                self.user = ev.username
            else:
                assert type(ev) is s5.Request
                self._request(ev)

    def _request(self, req: s5.Request) -> None:
        host = f"[{req.host}]" if ":" in req.host else req.host
        self.target = f"{host}:{req.port}"
        if req.cmd == s5.CMD_CONNECT:
            self.state = _CONNECTING
            self.deadline = 0.0
            self.task = self.loop.create_task(self._connect(req))
        elif req.cmd == s5.CMD_UDP_ASSOCIATE and self.server.allow_udp:
            self.state = _CONNECTING
            self.deadline = 0.0
            self.task = self.loop.create_task(self._associate(req))
        else:
            self._fail(f"asked for command {req.cmd}, which is not served", s5.REP_COMMAND_NOT_SUPPORTED)

    # -- CONNECT ------------------------------------------------------------------------------------------
    async def _connect(self, req: s5.Request) -> None:
        server = self.server
        dest = server.destinations
        if dest.name_denied(req.host):
            self._fail(f"CONNECT {self.target} refused by .deny", s5.REP_NOT_ALLOWED)
            return
        deadline = self.loop.time() + server.connect_timeout
        try:
            ips = await asyncio.wait_for(server.resolve(req.host, req.port), server.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            self._fail(f"CONNECT {self.target}: cannot resolve: {e or 'timeout'}", s5.REP_HOST_UNREACHABLE)
            return
        usable = dest.usable(req.host, ips)
        if not usable:
            self._fail(f"CONNECT {self.target} refused by .allow/.deny", s5.REP_NOT_ALLOWED)
            return
        splice = Splice(idle_timeout=server.read_timeout, on_close=self._tunnel_closed)
        upstream: Any = None
        error: BaseException | None = None
        for ip in usable:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                error = asyncio.TimeoutError()
                break
            try:
                upstream, _ = await asyncio.wait_for(
                    self.loop.create_connection(lambda: splice.b, ip, req.port), remaining)
                break
            except (OSError, asyncio.TimeoutError) as e:
                error = e
        if upstream is None:
            assert error is not None
            rep = _reply_for(error)
            self._fail(f"CONNECT {self.target} failed: {error or 'timeout'}", rep)
            return
        if self.state == _CLOSED:  # the client went away while we dialled
            upstream.close()
            return
        sock = upstream.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        bound = upstream.get_extra_info("sockname") or ("0.0.0.0", 0)
        self.transport.write(s5.reply(s5.REP_SUCCEEDED, bound[0], bound[1]))
        early = self.parser.take_buffer()
        self.state = _TUNNEL
        self.splice = splice
        self.server.tunnels_total += 1
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        splice.attach(splice.a, self.transport)
        if self.client_eof:
            splice.a.eof = True
        splice.start(early)
        log.debug('socksServer "%s": %s:%d CONNECT %s up', server.name, self.peer[0], self.peer[1], self.target)

    def _tunnel_closed(self, splice: Splice) -> None:
        self.state = _CLOSED
        if splice.close_reason and splice.close_reason != "shutdown":
            self._log_info("CONNECT %s ended: %s (sent %d, received %d bytes)", self.target, splice.close_reason,
                           splice.a.bytes_in, splice.b.bytes_in)
        self.gate.on_close(self)

    # -- UDP ASSOCIATE ---------------------------------------------------------------------------------------
    async def _associate(self, req: s5.Request) -> None:
        local = self.transport.get_extra_info("sockname")
        if not isinstance(local, tuple):
            self._fail("asked for UDP ASSOCIATE on a unix socket", s5.REP_COMMAND_NOT_SUPPORTED)
            return
        client_port = req.port if req.port and not _unspecified(req.host) else 0
        relay = UdpRelay(self, self.peer[0], client_port)
        try:
            await relay.open(local[0])
        except OSError as e:
            relay.close()
            self._fail(f"UDP ASSOCIATE: cannot bind a UDP socket: {e}", s5.REP_GENERAL_FAILURE)
            return
        if self.state == _CLOSED:
            relay.close()
            return
        self.relay = relay
        self.state = _UDP
        bound = relay.bound
        self.transport.write(s5.reply(s5.REP_SUCCEEDED, bound[0], bound[1]))
        self.parser.take_buffer()
        self.deadline = self.loop.time() + self.server.read_timeout
        log.debug('socksServer "%s": %s:%d UDP ASSOCIATE on %s:%d', self.server.name, self.peer[0], self.peer[1],
                  bound[0], bound[1])


def _unspecified(host: str) -> bool:
    return host in ("0.0.0.0", "::")


class _Side(asyncio.DatagramProtocol):
    """One of a relay's two sockets: the client's or the targets'. Its datagrams go to
    ``deliver``; ICMP errors end nothing (a client that went away, a target's port unreachable:
    UDP has no answer to give, and the TCP connection decides when the association ends)."""

    def __init__(self, deliver: Callable[[bytes, Any], None]) -> None:
        self.deliver = deliver

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.deliver(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass


class UdpRelay:
    """The UDP side of one association: a socket facing the client (on the server's address)
    and one per address family facing the destinations. Datagrams from the client must come
    from its TCP connection's address; replies are accepted only from destinations it sent to."""

    def __init__(self, conn: SocksConn, client_ip: str, client_port: int) -> None:
        self.conn = conn
        self.loop = conn.loop
        self.client_ip = client_ip
        self.client_port = client_port
        self.client_addr: Any = None
        self.client_t: Any = None
        self.targets: dict[int, Any] = {}         # family -> transport
        self.opening: dict[int, asyncio.Future] = {}
        self.peers: set[tuple[str, int]] = set()  # destinations sent to
        self.names: dict[str, list[str]] = {}     # per-association resolution cache
        self.tasks: set[asyncio.Task] = set()
        self.last_active = self.loop.time()
        self.bound: tuple[str, int] = ("0.0.0.0", 0)
        self.closed = False
        self.dropped = 0
        self.relayed = 0

    async def open(self, host: str) -> None:
        self.client_t, _ = await self.loop.create_datagram_endpoint(lambda: _Side(self.from_client), local_addr=(host, 0))
        name = self.client_t.get_extra_info("sockname")
        self.bound = (name[0], name[1])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in self.tasks:
            task.cancel()
        if self.client_t is not None:
            self.client_t.close()
        for t in self.targets.values():
            t.close()
        self.targets.clear()

    # -- client -> destination ------------------------------------------------------------------------------
    def from_client(self, data: bytes, addr: Any) -> None:
        if addr[0] != self.client_ip or (self.client_port and addr[1] != self.client_port):
            self.dropped += 1
            return
        self.client_addr = addr
        try:
            d = s5.parse_udp(data)
        except s5.Socks5Error as e:
            self.dropped += 1
            log.debug("socks UDP from %s: %s", addr[0], e)
            return
        if d.frag:
            self.dropped += 1  # fragmentation is optional (RFC 1928 §7): not supported, dropped
            return
        self.last_active = self.loop.time()
        ips = [d.host] if is_ip(d.host) else self.names.get(d.host.lower())
        if ips is not None:
            family = socket.AF_INET6 if ":" in ips[0] else socket.AF_INET
            t = self.targets.get(family)
            if t is not None and ips:
                self._send(t, d.host, ips, d.port, d.data)
                return
        task = self.loop.create_task(self._send_slow(d))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send_slow(self, d: s5.UdpDatagram) -> None:
        server = self.conn.server
        key = d.host.lower()
        ips = [d.host] if is_ip(d.host) else self.names.get(key)
        if ips is None:
            if server.destinations.name_denied(d.host):
                ips = []
            else:
                try:
                    ips = await asyncio.wait_for(server.resolve(d.host, d.port), server.connect_timeout)
                except (OSError, asyncio.TimeoutError):
                    ips = []
            if len(self.names) > 256:
                self.names.clear()
            self.names[key] = ips
        if not ips:
            self.dropped += 1
            return
        family = socket.AF_INET6 if ":" in ips[0] else socket.AF_INET
        try:
            t = await self._target_socket(family)
        except OSError:
            self.dropped += 1
            return
        self._send(t, d.host, ips, d.port, d.data)

    async def _target_socket(self, family: int) -> Any:
        t = self.targets.get(family)
        if t is not None:
            return t
        fut = self.opening.get(family)
        if fut is None:
            fut = self.opening[family] = self.loop.create_future()
            try:
                local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
                t, _ = await self.loop.create_datagram_endpoint(lambda: _Side(self.from_target), local_addr=local,
                                                                family=family)
            except OSError as e:
                del self.opening[family]
                fut.set_exception(e)
                fut.exception()
                raise
            if self.closed:
                t.close()
                raise OSError("association closed")
            self.targets[family] = t
            fut.set_result(t)
            del self.opening[family]
            return t
        return await fut

    def _send(self, t: Any, host: str, ips: list[str], port: int, data: bytes) -> None:
        usable = self.conn.server.destinations.usable(host, ips)
        if not usable:
            self.dropped += 1
            log.info('socksServer "%s": %s UDP to %s:%d refused by .allow/.deny', self.conn.server.name,
                     self.client_ip, host, port)
            return
        ip = usable[0]
        if (ip, port) not in self.peers:
            if len(self.peers) >= _MAX_UDP_PEERS:
                self.peers.clear()
            self.peers.add((ip, port))
        t.sendto(data, (ip, port))
        self.relayed += 1

    # -- destination -> client ------------------------------------------------------------------------------
    def from_target(self, data: bytes, addr: Any) -> None:
        if self.client_addr is None or (addr[0], addr[1]) not in self.peers:
            self.dropped += 1
            return
        self.last_active = self.loop.time()
        self.client_t.sendto(s5.build_udp(addr[0], addr[1], data), self.client_addr)
        self.relayed += 1
