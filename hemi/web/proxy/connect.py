"""HTTP ``CONNECT`` tunnels (RFC 9110 §9.3.6) for a forward ``http1Proxy``.

Off unless the proxy says ``.allowConnect = true`` (it must be in forward mode); then a
``CONNECT host:port`` whose port is in ``.connectPorts`` (default: 443 only, so the proxy is
not a way to reach arbitrary services) is dialled within ``.dialTimeout``, answered ``200
Connection Established``, and the client's connection becomes a byte tunnel to it
(:mod:`hemi.net.splice`: back-pressure, half-close, ``.readTimeout`` of silence ends it).

Refusals: CONNECT on a proxy without ``.allowConnect`` is 405, a port not listed 403, a
destination that cannot be reached 502 (504 when the dial times out). Each closes the
connection after the answer. Rules in front of the proxy can restrict who may tunnel
(e.g. ``rule $srcHost ...``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ...net.splice import Splice
from ..errors import HTTPError

if TYPE_CHECKING:
    from ..exchange import Request, Response

ESTABLISHED = b"HTTP/1.1 200 Connection Established\r\n\r\n"


def connect_target(req: "Request") -> tuple[str, int]:
    """(host, port) of a CONNECT's authority-form target."""
    host = req.hostname.strip("[]")
    port = req.colon_port[1:]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise HTTPError(400, "bad CONNECT target, expected host:port", close=True)
    return host, int(port)


async def open_tunnel(req: "Request", resp: "Response", *, allowed: bool, ports: frozenset[int],
                      dial_timeout: float, idle_timeout: float, resolv: Any) -> None:
    """Answer one CONNECT: refuse it, or dial, reply 200 and splice."""
    if not allowed:
        raise HTTPError(405, "CONNECT is not allowed here", close=True)
    host, port = connect_target(req)
    if port not in ports:
        raise HTTPError(403, f"CONNECT to port {port} is not allowed", close=True)
    take_over = getattr(req.stream, "take_over", None)
    if take_over is None:
        raise HTTPError(501, "CONNECT is not supported on this connection", close=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + dial_timeout
    try:
        found = await asyncio.wait_for(resolv.resolve(host, port), dial_timeout)
    except asyncio.TimeoutError:
        raise HTTPError(504, f"resolving {host} timed out", close=True) from None
    except OSError as e:
        raise HTTPError(502, f"cannot resolve {host}: {e}", close=True) from None
    splice = Splice(idle_timeout=idle_timeout)
    upstream: Any = None
    error = ""
    for _, ip in found:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            upstream, _ = await asyncio.wait_for(loop.create_connection(lambda: splice.b, ip, port), remaining)
            break
        except asyncio.TimeoutError:
            error = "timeout"
        except OSError as e:
            error = e.strerror or str(e)
    if upstream is None:
        if error == "timeout" or not error:
            raise HTTPError(504, f"connecting to {host}:{port} timed out", close=True)
        raise HTTPError(502, f"cannot connect to {host}:{port}: {error}", close=True)
    try:
        transport, early = take_over(splice.a)
    except BaseException:
        upstream.close()
        raise
    http_conn = req.stream
    splice.on_close = lambda s: http_conn.connection_lost(None)  # leaves the gate
    splice.a.connection_made(transport)
    transport.write(ESTABLISHED)
    splice.start(early)
    resp.status = 200
    if req.app is not None:  # the connection no longer logs this exchange: it is not HTTP any more
        req.app.log_request(req, resp, time.time())


__all__ = ["open_tunnel", "connect_target", "ESTABLISHED"]
