"""``tcpsProxy``: relay a tcpsMesher connection to a node of a ``tcpsBackend``.

    tcpsBackend "db" { .nodes = ( ["address": "10.0.0.10:5432"], ["address": "10.0.0.11:5432"] ) }
    tcpsMesher "front" { .address = ":5432"  case { tcpsProxy { .toBackend = "db" } } }

The relay is a :class:`~hemi.net.splice.Splice` (the one socksServer and CONNECT tunnels use):
the client's transport is handed over to the splice's ``a`` end and the upstream dials into its
``b`` end; ``data_received`` on one side writes straight to the other side's transport, with
no task and no await per chunk. Back-pressure, half-close, idle (``.readTimeout``) and stuck
writes (``.writeTimeout``) are the splice's; :class:`MeshSplice` adds the mesher's editors, the
byte counts of the access log, and hands the connection back to its gate when it ends.

While the upstream is dialed the client is not read (Envoy does the same, so nothing is
written to an upstream that might fail); a node that refuses is reported to the backend's
passive health and the next candidate is tried. Bytes the mesher read before dispatch (a
peeked ClientHello for SNI routing) are forwarded first, untouched. With ``.proxyProtocol =
"v1"|"v2"`` (here or on the backend) the upstream first gets a PROXY header with the client's
address.
"""

from __future__ import annotations

import asyncio
import logging

from ...core.registry import dealer
from ...net import proxyproto
from ...net.backend import BackendError, Node, bind_backend, open_connection
from ...net.backends import TcpsBackend
from ...net.mesher import Dealer, MeshConn
from ...net.splice import Splice, SpliceEnd
from ...net.tcps import TcpsConn, set_nodelay

log = logging.getLogger("hemi.contrib.dealers.tcps_proxy")

# Write buffer watermarks of both sides: past HIGH the other side stops reading. Big enough
# that a bulk transfer keeps the pipe full, small enough to bound memory per connection.
HIGH_WATER = 1 << 20
LOW_WATER = 256 << 10


class MeshSplice(Splice):
    """A splice whose ``a`` end is a tcpsMesher connection (``conn``): its hooked editors see
    the bytes both ways, the mesher's timeouts apply, and when the splice ends the connection's
    byte counts and reason are filled in and it leaves its gate (access log line included)."""

    __slots__ = ("conn", "node", "early_size", "bytes_out")

    def __init__(self, conn: TcpsConn) -> None:
        m = conn.mesher
        rt, wt = m.read_timeout, m.write_timeout  # type: ignore[attr-defined]
        super().__init__(idle_timeout=rt, write_timeout=wt, on_close=MeshSplice._closed,
                         idle_reason=f"idle for .readTimeout ({rt:g}s)",
                         stall_reason=f"writes stuck for .writeTimeout ({wt:g}s)")
        self.conn = conn
        self.node: Node | None = None
        self.early_size = 0     # bytes of conn.early given to start(): already counted by the conn
        self.bytes_out = 0      # bytes to the client after the output editors
        if conn.editors:
            self.a.edit = self._edit_input
            self.b.edit = self._edit_output

    def _edit_input(self, data: bytes) -> bytes:
        try:
            return self.conn.edit_input(data)
        except Exception:   # an editor's bug ends this relay, not the worker
            log.exception("handling bytes of %r failed", self.conn)
            self.abort("error: an editor or dealer failed on input")
            return b""

    def _edit_output(self, data: bytes) -> bytes:
        try:
            data = self.conn.edit_output(data)
        except Exception:
            log.exception("editing bytes to %r failed", self.conn)
            self.abort("error: an editor failed on output")
            return b""
        self.bytes_out += len(data)
        return data

    def lost_reason(self, end: SpliceEnd, exc: Exception) -> str:
        if end is self.b:
            return f"upstream {self.node.name if self.node else ''} reset: {exc}"
        return f"client connection lost: {exc}"

    @staticmethod
    def _closed(splice: Splice) -> None:
        assert isinstance(splice, MeshSplice)
        conn = splice.conn
        conn.bytes_in += splice.a.bytes_in - splice.early_size
        conn.bytes_out += splice.bytes_out if conn.editors else splice.b.bytes_in
        if splice.close_reason and not conn.reason:
            conn.reason = splice.close_reason
        conn.connection_lost(None)


@dealer("tcpsProxy")
class TcpsProxy(Dealer):
    """Properties: ``.toBackend`` (a tcpsBackend, required), ``.proxyProtocol`` ("v1"/"v2":
    send a PROXY header upstream; default: the backend's own ``.proxyProtocol``)."""

    def on_configure(self) -> None:
        self.backend_name = self.configure_string("toBackend", None, required=True)
        value, holder = self.find("proxyProtocol")
        if value is not None and value.kind == "bool" and holder is not self.block:
            self.proxy_protocol = ""   # the mesher's own switch (accept a header), not ours (send one)
        else:
            self.proxy_protocol = self.configure_string("proxyProtocol", "", choices=("", "v1", "v2"))
        self.backend: TcpsBackend | None = None

    def on_bind(self) -> None:
        if not self.backend_name:
            return
        value = self.find("toBackend")[0]  # may sit on the mesher: dealers inherit its properties
        found = bind_backend(self, self.backend_name, "a tcpsBackend", lambda c: isinstance(c, TcpsBackend),
                             value.loc if value else None, noun="backend ")
        if found is not None:
            self.backend = found
            if not self.proxy_protocol:
                self.proxy_protocol = getattr(found, "proxy_protocol", "")

    def deal(self, conn: MeshConn) -> bool:
        if not isinstance(conn, TcpsConn):
            conn.close(f'tcpsProxy "{self.name}" works only in a tcpsMesher')
            return True
        conn.pause_reading()
        transport = conn.hand_over()
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        set_nodelay(transport)
        splice = MeshSplice(conn)
        splice.attach(splice.a, transport)
        if conn.input_ended:
            splice.a.eof = True
        asyncio.get_running_loop().create_task(self._connect(conn, splice))
        return True

    async def _connect(self, conn: TcpsConn, splice: MeshSplice) -> None:
        backend = self.backend
        assert backend is not None
        tried: set[Node] = set()
        last = "no node available"
        while True:
            node = backend.balancer.pick(backend.candidates(tried), conn.src_host)
            if node is None:
                conn.close(f'upstream failed: backend "{backend.name}": {last}')
                return
            node.picks += 1
            node.dials += 1
            try:
                await open_connection(node, lambda: splice.b,  # type: ignore[arg-type,return-value]
                                      dial_timeout=backend.dial_timeout, ssl_context=backend.ssl_context,
                                      server_hostname=backend.tls_server_name or None, resolv=self.stage.resolv)
                break
            except BackendError as e:
                backend.report(node, False)
                tried.add(node)
                last = str(e)
                log.warning('tcpsProxy "%s": %s', self.name, e)
                if splice.closed:
                    return
            except Exception as e:  # a bug must not leave the client hanging
                log.exception('tcpsProxy "%s": dialing %s failed', self.name, node.name)
                conn.close(f"upstream failed: {e!r}")
                return
        backend.report(node, True)
        splice.node = node
        conn.log_fields.append(f"upstream={node.name}")
        if splice.closed:   # the client left while we dialed (the upstream end was aborted on connect)
            return
        upstream = splice.b.transport
        set_nodelay(upstream)
        upstream.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        if self.proxy_protocol:
            dst = transport_sockname(conn)
            upstream.write(proxyproto.build(self.proxy_protocol, conn.src_host, int(conn.src_port or 0), *dst))
        early = conn.take_early()
        splice.early_size = len(early)
        conn.resume_reading()
        splice.start(early)


def transport_sockname(conn: TcpsConn) -> tuple[str, int]:
    """(host, port) the client connected to; ("", 0) on a unix socket."""
    dst = conn.transport.get_extra_info("sockname")
    return (dst[0], dst[1]) if isinstance(dst, tuple) else ("", 0)


__all__ = ["TcpsProxy", "MeshSplice"]
