"""Proxies: handlets that pass a request on to an upstream and relay its answer.

``http1`` holds ``http1Backend`` and ``http1Proxy`` (HTTP/1.1 to the upstream, reverse or
forward); ``gateway`` holds what the CGI-style ``fcgiProxy`` and ``uwsgiProxy`` share. Backends,
nodes, pooling and health are in :mod:`hemi.net.backend`, for every protocol alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Final

if TYPE_CHECKING:
    from ..exchange import Request

# RFC 9110 §7.6.1: fields that describe one connection, never forwarded (plus the obsolete
# Keep-Alive and Proxy-Connection); the names a Connection header lists are removed as well.
HOP_BY_HOP: Final = frozenset(("connection", "keep-alive", "proxy-connection", "te", "trailer",
                               "transfer-encoding", "upgrade"))

# Methods a proxy may send again when the first try died before any response byte (RFC 9110 §9.2.2).
IDEMPOTENT: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))


def connection_options(value: str | None) -> frozenset[str]:
    """The field names listed in a Connection header (lower-case), without close/keep-alive."""
    if not value:
        return frozenset()
    names = {t.strip(" \t").lower() for t in value.split(",")}
    names -= {"close", "keep-alive", ""}
    return frozenset(names)


def copy_request_headers(headers: list[tuple[str, str]], drop: frozenset[str],
                         append: Callable[[str], None]) -> tuple[str | None, str | None]:
    """Append the request's header lines that are not in ``drop``; return the incoming Via and
    X-Forwarded-For values (when dropped), which :func:`forwarding_headers` extends."""
    via = xff = None
    for name, value in headers:
        if name in drop:
            if name == "via":
                via = value if via is None else f"{via}, {value}"
            elif name == "x-forwarded-for":
                xff = value if xff is None else f"{xff}, {value}"
            continue
        append(f"{name}: {value}\r\n")
    return via, xff


def forwarding_headers(req: "Request", via: str | None, xff: str | None, via_name: str) -> str:
    """Via, X-Forwarded-For, -Proto and -Host lines for a request passed upstream."""
    client = req.client_ip
    out = (f"via: {via}, {via_name}\r\n" if via else f"via: {via_name}\r\n") + \
        (f"x-forwarded-for: {xff}, {client}\r\n" if xff else f"x-forwarded-for: {client}\r\n") + \
        f"x-forwarded-proto: {req.scheme}\r\n"
    if req.authority:
        out += f"x-forwarded-host: {req.authority}\r\n"
    return out


def configure_buffering_and_storer(proxy: Any) -> None:
    """What every HTTP-speaking proxy (http1Proxy, fcgiProxy, uwsgiProxy) reads the same way:
    ``.bufferClientContent`` / ``.bufferServerContent`` (streamed by default) and the caching
    hook ``.withStorer``, parsed and checked now, refused until storers exist."""
    proxy.with_storer = proxy.configure_string("withStorer", "")
    if proxy.with_storer:
        proxy.error(f'.withStorer names "{proxy.with_storer}", but storers are not implemented yet',
                    proxy.block.prop_locs.get("withStorer"))
    proxy.buffer_client_content = proxy.configure_bool("bufferClientContent", False)
    proxy.buffer_server_content = proxy.configure_bool("bufferServerContent", False)
