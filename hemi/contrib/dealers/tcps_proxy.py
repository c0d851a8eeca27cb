"""``tcpsProxy``: relay a tcpsMesher connection to a node of a ``tcpsBackend``.

    tcpsBackend "db" { .nodes = ( ["address": "10.0.0.10:5432"], ["address": "10.0.0.11:5432"] ) }
    tcpsMesher "front" { .address = ":5432"  case { tcpsProxy { .toBackend = "db" } } }

The relay is a splice of two asyncio Protocols, with no task and no await per chunk:
``data_received`` on one side writes straight to the other side's transport. Back-pressure:
when one side's write buffer passes its high-water mark (``pause_writing``), the other side
stops reading until it drains (``resume_writing``). Half-close: an EOF from one side becomes a
``write_eof`` on the other, and the pair closes when both directions are done. Idle and stuck
writes are timed out by the mesher (``.readTimeout``, ``.writeTimeout``).

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
from typing import Any

from ...core.registry import dealer
from ...net import proxyproto
from ...net.backend import BackendError, Node, open_connection
from ...net.backends import TcpsBackend
from ...net.mesher import Dealer, MeshConn
from ...net.tcps import TcpsConn, set_nodelay

log = logging.getLogger("hemi.contrib.dealers.tcps_proxy")

# Write buffer watermarks of both sides: past HIGH the other side stops reading. Big enough
# that a bulk transfer keeps the pipe full, small enough to bound memory per connection.
HIGH_WATER = 1 << 20
LOW_WATER = 256 << 10


class Upstream(asyncio.Protocol):
    """The upstream side of a relay; ``conn`` is the client side (a TcpsConn)."""

    __slots__ = ("conn", "transport", "node", "write_stalled_at", "eof_in", "closing", "_loop")

    def __init__(self, conn: TcpsConn, node: Node) -> None:
        self.conn = conn
        self.node = node
        self.transport: Any = None
        self.write_stalled_at = 0.0
        self.eof_in = False
        self.closing = False
        self._loop = asyncio.get_running_loop()

    # -- asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        set_nodelay(transport)
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn.closing:   # (bytes may come before the relay is set up, and after the client left)
            return
        conn.active = True
        if conn.editors:
            try:
                data = conn.edit_output(data)
            except Exception:   # an editor's bug ends this relay, not the worker
                log.exception("editing bytes to %r failed", conn)
                conn.abort("error: an editor failed on output")
                return
        conn.bytes_out += len(data)
        conn.transport.write(data)

    def eof_received(self) -> bool:
        self.eof_in = True
        conn = self.conn
        if conn.input_ended or conn.closing:
            self.close()
            conn.close()
            return False
        conn.send_eof()
        return not conn.closing and self.transport.can_write_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        conn = self.conn
        if not conn.closing:
            conn.close(f"upstream {self.node.name} reset: {exc}" if exc is not None else "")

    def pause_writing(self) -> None:
        self.write_stalled_at = self._loop.time()
        self.conn.pause_reading()

    def resume_writing(self) -> None:
        self.write_stalled_at = 0.0
        self.conn.resume_reading()

    # -- what the client side calls (TcpsConn.peer) ----------------------------------------------------
    def pause_reading(self) -> None:
        if not self.closing:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closing:
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.transport.close()

    def client_eof(self) -> None:
        """The client ended its side: end ours towards the upstream (or close, when the
        upstream already ended, or cannot half-close because it is TLS)."""
        if self.closing:
            return
        if self.eof_in:
            self.close()
            self.conn.close()
        elif self.transport.can_write_eof():
            self.transport.write_eof()
        # TLS upstream: no half-close; wait for it to answer and close.


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
        found = self.stage.get("backend", self.backend_name)
        loc = self.find("toBackend")[0]
        if found is None:
            self.error(f'.toBackend names backend "{self.backend_name}", but the stage has no backend of that name',
                       loc.loc if loc else None)
        elif not isinstance(found, TcpsBackend):
            self.error(f'.toBackend names {found.describe()}, expected a tcpsBackend', loc.loc if loc else None)
        else:
            self.backend = found
            if not self.proxy_protocol:
                self.proxy_protocol = getattr(found, "proxy_protocol", "")

    def deal(self, conn: MeshConn) -> bool:
        if not isinstance(conn, TcpsConn):
            conn.close(f'tcpsProxy "{self.name}" works only in a tcpsMesher')
            return True
        conn.pause_reading()
        conn.transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        set_nodelay(conn.transport)
        asyncio.get_running_loop().create_task(self._connect(conn))
        return True

    async def _connect(self, conn: TcpsConn) -> None:
        backend = self.backend
        assert backend is not None
        tried: set[Node] = set()
        up: Upstream | None = None
        last = "no node available"
        while up is None:
            node = backend.balancer.pick(backend.candidates(tried), conn.src_host)
            if node is None:
                conn.close(f'upstream failed: backend "{backend.name}": {last}')
                return
            node.picks += 1
            node.dials += 1
            try:
                up = await open_connection(node, lambda n=node: Upstream(conn, n),  # type: ignore[misc]
                                           dial_timeout=backend.dial_timeout, ssl_context=backend.ssl_context,
                                           server_hostname=backend.tls_server_name or None,
                                           resolv=self.stage.resolv)
            except BackendError as e:
                backend.report(node, False)
                tried.add(node)
                last = str(e)
                log.warning('tcpsProxy "%s": %s', self.name, e)
                if conn.closing:
                    return
            except Exception as e:  # a bug must not leave the client hanging
                log.exception('tcpsProxy "%s": dialing %s failed', self.name, node.name)
                conn.close(f"upstream failed: {e!r}")
                return
        backend.report(up.node, True)
        conn.log_fields.append(f"upstream={up.node.name}")
        if conn.closing:   # the client left while we dialed
            up.close()
            return
        conn.peer = up
        if self.proxy_protocol:
            dst = conn.transport.get_extra_info("sockname")
            dst_host, dst_port = (dst[0], dst[1]) if isinstance(dst, tuple) else ("", 0)
            up.transport.write(proxyproto.build(self.proxy_protocol, conn.src_host, int(conn.src_port or 0),
                                                dst_host, dst_port))
        conn.attach(up.transport.write, up.client_eof)
        if not up.closing and not conn.closing:
            conn.resume_reading()


__all__ = ["TcpsProxy", "Upstream"]
