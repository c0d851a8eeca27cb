"""Reading the SNI name (and ALPN list) from a TLS ClientHello without terminating TLS.

A layer-4 mesher that routes on ``$hostname`` but passes the encrypted stream through peeks at
the first bytes a client sends. This module is sans-IO: ``read_client_hello(buffer)`` is given
everything received so far and returns

* ``None``: need more bytes (the ClientHello may span several TLS records and TCP segments);
* a :class:`ClientHello`: complete, with ``server_name`` ("" when the client sent no SNI);
* or raises :class:`HelloError` (:class:`NotTLS` when the very first byte already says it is
  not a TLS handshake, so a caller can tell "some other protocol" from "broken TLS").

The caller bounds the buffer (:data:`MAX_HELLO`) and the time it waits. Layout from RFC 8446
§4.1.2 (ClientHello) and RFC 6066 §3 (server_name), §5.1 of RFC 5246 (records).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HELLO = 16 << 10            # a ClientHello bigger than this is refused (post-quantum key shares fit)
_HANDSHAKE = 0x16
_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16


class HelloError(Exception):
    """The bytes are not a well-formed TLS ClientHello."""


class NotTLS(HelloError):
    """The first byte is not a TLS handshake record: another protocol."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    server_name: str                 # lower-cased; "" without SNI
    alpn: tuple[str, ...] = ()
    length: int = 0                  # bytes of records it took


def read_client_hello(data: bytes | bytearray) -> ClientHello | None:
    """See the module docstring."""
    if not data:
        return None
    if data[0] != _HANDSHAKE:
        raise NotTLS(f"first byte 0x{data[0]:02x} is not a TLS handshake record")
    # Gather the handshake bytes from as many records as it takes.
    body = bytearray()
    pos = 0
    need: int | None = None      # length of the handshake message, once its header is in
    while True:
        if len(data) - pos < 5:
            return None
        ctype, major, length = data[pos], data[pos + 1], int.from_bytes(data[pos + 3:pos + 5], "big")
        if ctype != _HANDSHAKE:
            raise HelloError(f"record type 0x{ctype:02x} before the ClientHello was complete")
        if major != 3:
            raise HelloError(f"record version {major}.{data[pos + 2]} is not TLS")
        if length == 0 or length > (1 << 14):
            raise HelloError(f"record length {length} is out of range")
        if len(data) - pos - 5 < length:
            if pos + 5 + length > MAX_HELLO:
                raise HelloError(f"ClientHello is larger than {MAX_HELLO} bytes")
            return None
        body += data[pos + 5:pos + 5 + length]
        pos += 5 + length
        if need is None and len(body) >= 4:
            if body[0] != _CLIENT_HELLO:
                raise HelloError(f"handshake type {body[0]} is not ClientHello")
            need = 4 + int.from_bytes(body[1:4], "big")
            if need > MAX_HELLO:
                raise HelloError(f"ClientHello is larger than {MAX_HELLO} bytes")
        if need is not None and len(body) >= need:
            name, alpn = _parse_hello(bytes(body[4:need]))
            return ClientHello(name, alpn, pos)
        if pos >= MAX_HELLO:
            raise HelloError(f"ClientHello is larger than {MAX_HELLO} bytes")


class _Cursor:
    """Bounds-checked reads over the ClientHello body; any overrun is a HelloError."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > self.end:
            raise HelloError(f"ClientHello is truncated in {what}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def num(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def vector(self, size_bytes: int, what: str) -> "_Cursor":
        n = self.num(size_bytes, what)
        start = self.pos
        self.take(n, what)
        return _Cursor(self.data, start, start + n)

    @property
    def left(self) -> int:
        return self.end - self.pos


def _parse_hello(body: bytes) -> tuple[str, tuple[str, ...]]:
    c = _Cursor(body)
    c.take(2, "legacy_version")
    c.take(32, "random")
    c.vector(1, "session id")
    c.vector(2, "cipher suites")
    c.vector(1, "compression methods")
    if not c.left:
        return "", ()            # no extensions at all (SSLv3-style hello)
    exts = c.vector(2, "extensions")
    name, alpn = "", ()
    while exts.left:
        ext_type = exts.num(2, "extension type")
        ext = exts.vector(2, "extension")
        if ext_type == _EXT_SERVER_NAME:
            names = ext.vector(2, "server name list")
            while names.left:
                name_type = names.num(1, "server name type")
                value = names.vector(2, "server name")
                if name_type == 0:
                    raw = value.data[value.pos:value.end]
                    try:
                        name = raw.decode("ascii").lower().rstrip(".")
                    except UnicodeDecodeError:
                        raise HelloError("server name is not ASCII") from None
                    if not name or any(ch in name for ch in "/\\ \0"):
                        raise HelloError(f"bad server name {raw[:64]!r}")
        elif ext_type == _EXT_ALPN:
            protos = ext.vector(2, "ALPN list")
            found = []
            while protos.left:
                p = protos.vector(1, "ALPN protocol")
                found.append(p.data[p.pos:p.end].decode("latin-1"))
            alpn = tuple(found)
    return name, alpn


__all__ = ["MAX_HELLO", "ClientHello", "HelloError", "NotTLS", "read_client_hello"]
