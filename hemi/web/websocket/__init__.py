"""WebSocket (RFC 6455) over HTTP/1.1: the handshake on a request our connection parsed
(:mod:`.handshake`) and the connection after its 101 (:mod:`.session`, around wsproto's frame
codec). Socklets (:mod:`hemi.web.socklet`), the ASGI ``websocket`` scope
(:mod:`hemi.web.asgi.ws`) and ``sock1Proxy`` (:mod:`hemi.web.proxy.sock1`) are built on it."""

from .handshake import Agreement, Offer, check_upgrade, is_websocket_upgrade, negotiate
from .session import ConnectionClosed, Limits, WebSocketSession, accept, configure_limits

__all__ = ["Agreement", "ConnectionClosed", "Limits", "Offer", "WebSocketSession", "accept", "check_upgrade",
           "configure_limits", "is_websocket_upgrade", "negotiate"]
