"""Web servers: gates that accept connections, and the choice of app for each request.

``WebServer`` holds what every HTTP version shares (properties, app binding, hostname lookup,
TLS contexts, timeouts); ``httpxServer`` runs HTTP/1.x on TCP or TLS gates.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from ..core.component import Component
from ..core.registry import server
from ..net.gate import Gate
from ..net.server import NetServer
from ..net.tls import server_context
from .app import App, app_lookup_table

log = logging.getLogger("hemi.web.server")


class WebServer(NetServer):
    """Properties and app binding common to every web server; gates, limits and timeouts come
    from :class:`~hemi.net.server.NetServer`, as for every server."""

    alpn: tuple[str, ...] = ("http/1.1",)

    def on_configure(self) -> None:
        super().on_configure()  # .address, gates, connection limits, read and write timeouts
        self.recv_timeout = self.configure_duration("recvTimeout", 120.0, min=0.001)
        self.send_timeout = self.configure_duration("sendTimeout", 120.0, min=0.001)
        self.max_content_size = self.configure_size("maxContentSize", 1 << 40, min=0)
        self.max_head_size = self.configure_size("maxHeadSize", 16 << 10, min=1 << 10, max=1 << 20)
        self.max_headers = self.configure_int("maxHeaders", 100, min=1, max=1000)
        self.max_uri_size = self.configure_size("maxURISize", 8 << 10, min=64, max=1 << 20)
        self.max_streams_per_conn = self.configure_int("maxStreamsPerConn", 0, min=0)
        self.force_scheme = self.configure_string("forceScheme", "", choices=("", "http", "https"))
        self.adjust_scheme = self.configure_bool("adjustScheme", True)
        self.tls_mode = self.configure_bool("tlsMode", False)
        self.tls_certificate = self.configure_file("tlsCertificate")
        self.tls_private_key = self.configure_file("tlsPrivateKey")
        if bool(self.tls_certificate) != bool(self.tls_private_key):
            self.error(".tlsCertificate and .tlsPrivateKey go together; set both or neither")
        self.server_name = self.configure_string("serverName", "gorox")
        self.server_line = b"server: " + self.server_name.encode("latin-1") + b"\r\n"  # rendered once
        self.server_line_end = self.server_line + b"\r\n"
        self.app_names = self.configure_string_list("forApps")
        self.apps: list[App] = []
        self.requests_total = 0

    def on_bind(self) -> None:
        loc = self.block.prop_locs.get("forApps")
        for name in self.app_names:
            app = self.stage.get("app", name)
            if not isinstance(app, App):
                self.error(f'.forApps names app "{name}", but the stage has no app of that name', loc)
                continue
            self.apps.append(app)
            if self.tls_mode and not app.tls_certificate and not self.tls_certificate:
                self.error(f'is in TLS mode, but neither it nor app "{name}" has a .tlsCertificate')
        if not self.app_names:
            self.error("has no .forApps: it would answer 404 to everything")
        self.exact, self.suffix, self.prefix, self.default_app = app_lookup_table(self.apps)

    def on_prepare(self) -> None:
        if self.tls_mode:
            self.ssl_context = self._build_tls()

    def on_check(self) -> None:
        if self.tls_mode:
            self._build_tls()  # every certificate and key, loaded and matched

    def _context(self, cert: str, key: str, owner: Component) -> ssl.SSLContext:
        ctx = server_context(cert, key, owner)
        ctx.set_alpn_protocols(list(self.alpn))
        return ctx

    def _build_tls(self) -> ssl.SSLContext:
        """The server's context, plus one per app certificate chosen by SNI.

        Without SNI, or for a name no app claims, the server's own certificate is used; if it
        has none, the default ("*") app's, else the first app's (as Gorox: the first one)."""
        by_name: dict[str, ssl.SSLContext] = {}
        wildcards: list[tuple[str, ssl.SSLContext]] = []
        first: ssl.SSLContext | None = None
        default: ssl.SSLContext | None = None
        for app in self.apps:
            if not app.tls_certificate:
                continue
            ctx = self._context(app.tls_certificate, app.tls_private_key, app)
            first = first or ctx
            for h in app.hostnames:
                if h == "*":
                    default = ctx
                elif h.startswith("*."):
                    wildcards.append((h[1:], ctx))
                elif not h.endswith(".*"):
                    by_name.setdefault(h, ctx)
        if self.tls_certificate:
            main = self._context(self.tls_certificate, self.tls_private_key, self)
        else:
            main = default or first
        assert main is not None

        def choose(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if not name:
                return
            name = name.lower()
            ctx = by_name.get(name)
            if ctx is None:
                for suffix, c in wildcards:
                    if name.endswith(suffix):
                        ctx = c
                        break
            if ctx is not None and ctx is not main:
                sock.context = ctx

        main.sni_callback = choose  # type: ignore[assignment]
        return main

    def find_app(self, hostname: str) -> App | None:
        app = self.exact.get(hostname)
        if app is not None:
            return app
        for suffix, app in self.suffix:
            if hostname.endswith(suffix):
                return app
        for prefix, app in self.prefix:
            if hostname.startswith(prefix):
                return app
        return self.default_app

    def scheme_for(self, tls: bool, requested: str | None = None) -> str:
        if self.force_scheme:
            return self.force_scheme
        if requested and not self.adjust_scheme:
            return requested
        return "https" if tls else "http"

    def sweep_period(self) -> float:
        return min(0.5, max(0.05, min(self.read_timeout, self.write_timeout, self.recv_timeout) / 4))


@server("httpxServer")
class HttpxServer(WebServer):
    """HTTP/1.0 and HTTP/1.1 over TCP, or over TLS with ``.tlsMode = true``."""

    def protocol_factory(self, gate: Gate) -> asyncio.Protocol:
        from .http1.conn import Http1Conn
        return Http1Conn(self, gate)


