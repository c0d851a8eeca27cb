"""Sans-IO uwsgi codec: the request packet a web server sends, and the response head it gets back.

A request is one packet: a 4-byte header (``modifier1`` u8, ``datasize`` u16 little-endian,
``modifier2`` u8) and ``datasize`` bytes of vars, each a u16le-length key and a u16le-length
value. With ``modifier1`` 0 (WSGI/CGI vars) the request body follows the packet raw, its size
announced by the ``CONTENT_LENGTH`` var. See https://uwsgi-docs.readthedocs.io/en/latest/Protocol.html.

The response is plain bytes until the connection closes: a head, then the body. Depending on
the application server the head starts with an HTTP status line (``HTTP/1.1 200 OK``, what uWSGI
itself sends) or is a CGI header block with a ``Status:`` field; :class:`HttpHeadParser`
accepts both, as nginx's uwsgi module does. The head grammar is shared with the FastCGI codec's
CGI head parser.

Nothing here does I/O. :class:`UwsgiError` is the only exception raised for peer input or an
unencodable request.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from ..cgihead import MAX_HEAD_SIZE, HeadBlockParser, ResponseHead, to_bytes

__all__ = [
    "PACKET_HEADER_SIZE",
    "MAX_VARS_SIZE",
    "MAX_HEAD_SIZE",
    "UwsgiError",
    "encode_request",
    "decode_packet_header",
    "decode_vars",
    "ResponseHead",
    "HttpHeadParser",
]

PACKET_HEADER_SIZE: Final = 4
MAX_VARS_SIZE: Final = 0xFFFF          # datasize is a u16; also the bound on one key or value

_PACKET_HEADER: Final = struct.Struct("<BHB")
_U16: Final = struct.Struct("<H")


class UwsgiError(Exception):
    """The uwsgi exchange is broken (bad packet, bad response head, or an unencodable request).

    ``reason`` is a short explanation for logs; a proxy answers 502 and closes the connection.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason: str = reason


def _to_bytes(s: str | bytes) -> bytes:
    return to_bytes(s, UwsgiError, "var")


def encode_request(vars: Sequence[tuple[str | bytes, str | bytes]], modifier1: int = 0, modifier2: int = 0) -> bytes:
    """The request packet: header and vars block. The body, if any, is sent after it as is.

    Keys and values may be ``str`` (UTF-8, ``surrogateescape``) or ``bytes`` (sent as is).
    Raises :class:`UwsgiError` if a key or value is longer than 65535 bytes, the vars block
    exceeds 65535 bytes, or a modifier is not a byte.
    """
    if not 0 <= modifier1 <= 0xFF or not 0 <= modifier2 <= 0xFF:
        raise UwsgiError("modifier out of range 0..255")
    pack = _U16.pack
    parts: list[bytes] = [b""]           # [0] becomes the packet header
    for key, value in vars:
        k = _to_bytes(key)
        v = _to_bytes(value)
        if len(k) > MAX_VARS_SIZE or len(v) > MAX_VARS_SIZE:
            raise UwsgiError("var key or value longer than 65535 bytes")
        parts += (pack(len(k)), k, pack(len(v)), v)
    size = sum(map(len, parts))
    if size > MAX_VARS_SIZE:
        raise UwsgiError(f"vars block of {size} bytes exceeds 65535")
    parts[0] = _PACKET_HEADER.pack(modifier1, size, modifier2)
    return b"".join(parts)


def decode_packet_header(data: bytes) -> tuple[int, int, int]:
    """(modifier1, datasize, modifier2) from the first 4 bytes of a packet."""
    if len(data) < PACKET_HEADER_SIZE:
        raise UwsgiError("truncated packet header")
    modifier1, size, modifier2 = _PACKET_HEADER.unpack_from(data)
    return modifier1, size, modifier2


def decode_vars(data: bytes) -> list[tuple[str, str]]:
    """Decode a vars block (the ``datasize`` bytes after the packet header), for tests and fakes.

    Keys and values are decoded as UTF-8 with ``surrogateescape``, so any bytes decode and
    :func:`encode_request` gives them back unchanged. The block must be consumed exactly.
    """
    out: list[tuple[str, str]] = []
    unpack = _U16.unpack_from
    pos = 0
    end = len(data)
    while pos < end:
        if pos + 2 > end:
            raise UwsgiError("truncated var key length")
        kl = unpack(data, pos)[0]
        pos += 2
        if pos + kl + 2 > end:
            raise UwsgiError("truncated var key")
        k = data[pos:pos + kl]
        pos += kl
        vl = unpack(data, pos)[0]
        pos += 2
        if pos + vl > end:
            raise UwsgiError("truncated var value")
        v = data[pos:pos + vl]
        pos += vl
        out.append((bytes(k).decode("utf-8", "surrogateescape"), bytes(v).decode("utf-8", "surrogateescape")))
    return out


class HttpHeadParser(HeadBlockParser):
    """The response head from a uwsgi application server; errors are :class:`UwsgiError`.

    ``HTTP/1.x NNN [reason]`` followed by header lines, or, without a status line, a CGI header
    block (``Status:`` sets the status and is removed, ``Location`` alone means 302, default
    200). CRLF or LF line ends; the head (up to and including its empty line) is bounded by
    ``max_size`` (64 KiB). ``feed`` returns None until the head is complete, then a
    :class:`ResponseHead` whose ``rest`` is the start of the body.
    """

    __slots__ = ()

    error = UwsgiError
    allow_status_line = True
