"""``tcpsMesher``: a layer-4 mesher over TCP, TLS and unix stream sockets.

A connection goes through up to three phases before a dealer gets it, each bounded by
``.helloTimeout`` (reading) and by a size:

1. with ``.proxyProtocol = true``, a PROXY protocol v1/v2 header (``hemi.net.proxyproto``);
   its client address becomes ``$srcHost``/``$srcPort``;
2. when a case tests ``$hostname`` and the mesher does not terminate TLS, the TLS ClientHello
   is peeked (``hemi.net.clienthello``): its SNI name becomes ``$hostname``, and the bytes are
   kept for the dealer, which forwards them untouched (SNI routing without decrypting);
3. the cases (``Mesher.dispatch``).

With ``.tlsMode = true`` the gate terminates TLS (``.tlsCertificate``/``.tlsPrivateKey``) and
``$hostname`` is the SNI name of the handshake.

Timeouts use one sweeper per mesher (like the web servers): a connection with no bytes in
either direction for ``.readTimeout`` is closed, and so is one whose writes have been stuck
(the peer not reading) for ``.writeTimeout``. A connection a relay took over
(``tcpsProxy``, :meth:`TcpsConn.hand_over`) is timed by its splice instead, with the same
properties.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from ..core.registry import mesher
from .clienthello import MAX_HELLO, HelloError, NotTLS, read_client_hello
from .gate import Gate
from .mesher import MeshConn, Mesher
from .proxyproto import ProxyProtocolError, parse as parse_proxy_header

log = logging.getLogger("hemi.net.tcps")

# Phases of a connection (_RELAYED: a relay's protocol took the transport, see ``hand_over``).
_PROXY, _HELLO, _RUNNING, _RELAYED = 0, 1, 2, 3


class TcpsConn(MeshConn, asyncio.Protocol):
    """The client side of one tcpsMesher connection (an asyncio Protocol).

    A dealer may set ``peer``: the object whose reading pauses while this connection's writes
    back up (``pause_reading``/``resume_reading``), and which is closed when this connection
    is lost (``echoDealer`` is its own peer). A relay (``tcpsProxy``) instead takes the transport
    with :meth:`hand_over`. Invariant: ``finish`` (access log, editors' ``on_close``) and
    ``gate.on_close`` run exactly once, in ``connection_lost``.
    """

    __slots__ = ("gate", "transport", "peer", "_phase", "_buf", "_loop", "deadline", "active", "idle_since",
                 "write_stalled_at", "closing", "tls")

    def __init__(self, mesher: "TcpsMesher", gate: Gate) -> None:
        MeshConn.__init__(self, mesher, "tcp")
        self.gate = gate
        self.transport: Any = None
        self.peer: Any = None
        self._phase = _RUNNING
        self._buf = b""
        self._loop = asyncio.get_running_loop()
        self.deadline = 0.0            # of the PROXY header / ClientHello phase, or of a flush at close
        self.active = True             # bytes moved since the sweeper last looked
        self.idle_since = 0.0
        self.write_stalled_at = 0.0    # when our writes (or the peer's) began to back up
        self.closing = False
        self.tls = False

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        m: TcpsMesher = self.mesher  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.src_host, self.src_port = str(peer[0]), str(peer[1])
        else:
            self.transport_name = "unix"
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.tls = True
            self.transport_name = "tls"
            self.hostname = getattr(sslobj, "sni_name", "") or ""
        if not self.gate.on_open(self):
            self.reason = f"over .maxConnsPerGate ({self.gate.max_conns})"
            self.closing = True
            transport.abort()
            return
        if m.proxy_protocol:
            self._phase = _PROXY
        elif m.peek_hello and not self.tls:
            self._phase = _HELLO
        if self._phase != _RUNNING:
            self.deadline = self._loop.time() + m.hello_timeout
        else:
            self._dispatch()

    def data_received(self, data: bytes) -> None:
        self.active = True
        if self._phase == _RUNNING:
            self.bytes_in += len(data)
            if not self.editors:
                sink = self.on_data
                if sink is not None:
                    sink(data)
                    return
            try:
                self.received(data)
            except Exception:   # an editor's or dealer's bug ends this connection, not the worker
                log.exception("handling bytes of %r failed", self)
                self.abort("error: an editor or dealer failed on input")
            return
        self._buf += data
        if self._phase == _PROXY:
            self._read_proxy_header()
        if self._phase == _HELLO:
            self._read_hello()

    def eof_received(self) -> bool:
        self.input_ended = True
        if self._phase != _RUNNING:
            self.close("client closed before " + ("its PROXY header" if self._phase == _PROXY
                                                   else "its TLS ClientHello") + " was complete")
            return False
        on_eof = self.on_eof
        if on_eof is not None and not self.closing:
            on_eof()
        # Keep our side open: the dealer may still answer (a relay half-closes; a dealer that
        # has not attached yet learns of the EOF when it does). TLS cannot half-close: it closes.
        return not self.tls and not self.closing

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.deadline = 0.0
        if exc is not None and not self.reason:
            self.reason = f"client connection lost: {exc}"
        self.gate.on_close(self)
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.close()
        self.on_data = self.on_eof = None
        self.finish()

    def pause_writing(self) -> None:
        self.write_stalled_at = self._loop.time()
        peer = self.peer
        if peer is not None:
            peer.pause_reading()

    def resume_writing(self) -> None:
        self.write_stalled_at = 0.0
        peer = self.peer
        if peer is not None:
            peer.resume_reading()

    # -- phases before dispatch ----------------------------------------------------------------------
    def _read_proxy_header(self) -> None:
        try:
            header = parse_proxy_header(self._buf)
        except ProxyProtocolError as e:
            self.close(f"bad PROXY protocol header: {e}")
            return
        if header is None:
            return
        if header.has_address:
            self.src_host, self.src_port = header.src_host, str(header.src_port)
        self._buf = self._buf[header.length:]
        m: TcpsMesher = self.mesher  # type: ignore[assignment]
        if m.peek_hello and not self.tls:
            self._phase = _HELLO
        else:
            self._begin()

    def _read_hello(self) -> None:
        try:
            hello = read_client_hello(self._buf)
        except NotTLS:
            hello = None
            self.log_fields.append("hello=not-tls")
            self._begin()       # another protocol: cases see $hostname == ""
            return
        except HelloError as e:
            self.close(f"bad TLS ClientHello: {e}")
            return
        if hello is None:
            if len(self._buf) > MAX_HELLO:
                self.close(f"TLS ClientHello larger than {MAX_HELLO} bytes")
            return
        self.hostname = hello.server_name
        self._begin()

    def _begin(self) -> None:
        self.deadline = 0.0
        data, self._buf = self._buf, b""
        if data:
            self.bytes_in += len(data)
            self.early = data
        self._dispatch()

    def _dispatch(self) -> None:
        self._phase = _RUNNING
        self.mesher.dispatch(self)

    # -- MeshConn API for dealers ----------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.closing:
            return
        if self.editors:
            data = self.edit_output(data)
        self.bytes_out += len(data)
        self.transport.write(data)

    def send_eof(self) -> None:
        """Half-close towards the client; over TLS (no half-close) or once the client has
        ended its side too, this closes the connection."""
        if self.closing:
            return
        if self.transport.can_write_eof() and not self.input_ended:
            self.transport.write_eof()
        else:
            self.close()

    def close(self, reason: str = "") -> None:
        if reason and not self.reason:
            self.reason = reason
        if self.closing:
            return
        self.closing = True
        transport = self.transport
        transport.close()      # flushes what is buffered first...
        if transport.get_write_buffer_size():
            # ...if the client reads it: the sweeper aborts after writeTimeout otherwise.
            self.deadline = self._loop.time() + self.mesher.write_timeout  # type: ignore[attr-defined]

    def abort(self, reason: str = "") -> None:
        if reason and not self.reason:
            self.reason = reason
        self.closing = True
        self.transport.abort()

    def pause_reading(self) -> None:
        if not self.closing:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closing:
            self.transport.resume_reading()

    def hand_over(self) -> Any:
        """Give the transport to a relay (``hemi.net.splice``), which reads, writes and times out
        idle and stuck writes from now on; returns it. This connection stays in its gate (the
        limit, the drain at shutdown, ``close``/``abort``) until the relay calls
        ``connection_lost``."""
        self._phase = _RELAYED
        return self.transport

    # -- timeouts and shutdown ---------------------------------------------------------------------------
    def check_timeouts(self, now: float, read_timeout: float, write_timeout: float) -> None:
        """Called by the mesher's sweeper a few times a second."""
        deadline = self.deadline
        if deadline and now >= deadline:
            if self.closing:
                self.abort("client did not read what was left to send")
            elif self._phase == _PROXY:
                self.abort("no complete PROXY protocol header within .helloTimeout")
            elif self._phase == _HELLO:
                self.abort("no complete TLS ClientHello within .helloTimeout")
            else:
                self.close("ok: grace period over at shutdown")
            return
        if self._phase == _RELAYED:
            return  # the relay times itself out
        if self.active:
            self.active = False
            self.idle_since = now
        elif now - self.idle_since >= read_timeout:
            self.abort(f"idle for .readTimeout ({read_timeout:g}s)")
            return
        stalled = self.write_stalled_at
        peer_stalled = getattr(self.peer, "write_stalled_at", 0.0)
        if (stalled and now - stalled >= write_timeout) or (peer_stalled and now - peer_stalled >= write_timeout):
            self.abort(f"writes stuck for .writeTimeout ({write_timeout:g}s)")

    def drain(self, grace: float) -> None:
        """Shutdown: close now, or after ``grace`` seconds (a reload lets relays finish)."""
        if self.closing:
            return
        if grace > 0 and self._phase >= _RUNNING:
            self.deadline = self._loop.time() + grace
        else:
            self.close("ok: closed for shutdown")


@mesher("tcpsMesher")
class TcpsMesher(Mesher):
    """Layer 4 over TCP, TLS (``.tlsMode``) or unix stream sockets (an address starting with
    ``/`` or ``@``). Properties besides the common ones: ``.proxyProtocol`` (accept a PROXY
    protocol header first) and ``.helloTimeout`` (how long the PROXY header and a peeked
    ClientHello may take)."""

    transports = ("tcp", "tls", "unix")

    def on_configure(self) -> None:
        super().on_configure()
        self.proxy_protocol = self.configure_bool("proxyProtocol", False)
        self.hello_timeout = self.configure_duration("helloTimeout", 10.0, min=0.001)
        if self.proxy_protocol and self.tls_mode:
            self.error(".proxyProtocol with .tlsMode is not supported: the PROXY header comes before the TLS "
                       "handshake; terminate TLS upstream, or route on $hostname without .tlsMode")
        self.peek_hello = False

    def on_check(self) -> None:
        if self.tls_mode:
            self.tls_context()

    def on_prepare(self) -> None:
        super().on_prepare()
        self.peek_hello = self.uses_hostname and not self.tls_mode
        if self.tls_mode:
            self.ssl_context = self.tls_context()

    def protocol_factory(self, gate: Gate) -> asyncio.Protocol:
        return TcpsConn(self, gate)

    def listening_note(self) -> str:
        return super().listening_note() + (" (PROXY protocol)" if self.proxy_protocol else "")

    def sweep_period(self) -> float:
        return min(0.5, max(0.05, min(self.read_timeout, self.write_timeout, self.hello_timeout) / 4))

    def sweep(self, now: float) -> None:
        """Each connection checks its own phase, idle and write timeouts."""
        rt, wt = self.read_timeout, self.write_timeout
        for gate in self.gates:
            for conn in list(gate.conns):
                try:
                    conn.check_timeouts(now, rt, wt)
                except Exception:  # one broken connection must not stop the timeouts of the others
                    log.exception("timeout check of %r failed", conn)


def set_nodelay(transport: Any) -> None:
    """Small writes go out at once (a relay must not add Nagle delay to request/response)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


__all__ = ["TcpsConn", "TcpsMesher", "set_nodelay"]
