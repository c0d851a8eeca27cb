"""Stream backends for proxies that bring their own protocol (fcgiProxy, uwsgiProxy, and the
layer-4 tcpsProxy): plain TCP, TLS (``.tlsMode``) or a unix stream socket (a node address
starting with ``/`` or ``@``). Everything is the shared :class:`~hemi.net.backend.Backend`; the
active health check is a successful connect."""

from __future__ import annotations

from ..core.registry import backend
from .backend import Backend


@backend("tcpsBackend")
class TcpsBackend(Backend):
    """Nodes reached over TCP, TLS or unix stream sockets. ``.proxyProtocol = "v1"|"v2"``
    makes ``tcpsProxy`` open each upstream connection with a PROXY protocol header."""

    def on_configure(self) -> None:
        super().on_configure()
        self.proxy_protocol = self.configure_string("proxyProtocol", "", choices=("", "v1", "v2"))


@backend("tudsBackend")
class TudsBackend(TcpsBackend):
    """Gorox's name for a backend of unix stream sockets; here the same as ``tcpsBackend``
    (whose nodes may already be socket paths), kept so Gorox configs work unchanged."""
