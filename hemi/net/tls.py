"""Server-side TLS contexts, built the same way for web servers and layer-4 meshers."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from ..config.errors import ConfigError

if TYPE_CHECKING:
    from ..core.component import Component


def server_context(cert: str, key: str, owner: "Component") -> ssl.SSLContext:
    """TLS 1.2 or later, no compression, ``cert`` and ``key`` loaded. A pair that does not load
    is a ConfigError at ``owner``'s ``.tlsCertificate`` naming both files: OpenSSL's own words
    ("[SSL] PEM lib") say neither which file nor what is wrong."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"cannot load the certificate {cert} with the key {key} (PEM files, and a matching "
                          f"pair?): {e} (in {owner.describe()})",
                          owner.block.prop_locs.get("tlsCertificate") or owner.block.loc) from None
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx
