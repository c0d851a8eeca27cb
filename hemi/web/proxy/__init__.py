"""Proxies: handlets that pass a request on to an upstream and relay its answer.

``http1`` holds ``http1Backend`` and ``http1Proxy`` (HTTP/1.1 to the upstream, reverse or
forward); ``gateway`` holds what the CGI-style ``fcgiProxy`` and ``uwsgiProxy`` share. Backends,
nodes, pooling and health are in :mod:`hemi.net.backend`, for every protocol alike.
"""

from __future__ import annotations

from typing import Final

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
