"""The PROXY protocol (HAProxy), versions 1 and 2: sans-IO parsing and building.

A load balancer in front of us opens each connection with a header saying who the real client
is; we parse it (``parse``) before anything else, and we can send one to an upstream
(``build_v1`` / ``build_v2``). Spec: https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt

``parse(buffer)`` returns None while the header is incomplete ("need more bytes"), a
:class:`ProxyHeader` (with ``length``, the bytes it used) once complete, and raises
:class:`ProxyProtocolError` as soon as the bytes cannot be a header — it does not wait for more
input to reject a bad prefix.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

V1_PREFIX = b"PROXY "
V1_MAX = 107                      # "the maximum line length is 107 bytes", CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = 16                    # signature, version/command, family/protocol, length
V2_MAX_LENGTH = 1 << 12           # we accept up to 4 KiB of addresses and TLVs

# v2 address families (high nibble) with their address block sizes; transport in the low nibble.
_AF_INET, _AF_INET6, _AF_UNIX = 0x1, 0x2, 0x3
_ADDR_LEN = {_AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}


class ProxyProtocolError(Exception):
    """The bytes are not a valid PROXY protocol header."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header. ``command`` is "PROXY" or "LOCAL" (a health check from the balancer
    itself: keep the connection's own addresses). ``family`` is "TCP4", "TCP6", "UDP4", "UDP6",
    "UNIX" or "UNKNOWN"; addresses are "" when not given."""

    version: int
    command: str
    family: str
    src_host: str
    src_port: int
    dst_host: str
    dst_port: int
    length: int
    tlvs: tuple[tuple[int, bytes], ...] = field(default=())

    @property
    def has_address(self) -> bool:
        return self.command == "PROXY" and self.family not in ("UNKNOWN", "UNIX") and bool(self.src_host)


def parse(data: bytes | bytearray | memoryview) -> ProxyHeader | None:
    """A header from the start of ``data``; None if more bytes are needed."""
    data = bytes(data[:max(V1_MAX, V2_HEADER + V2_MAX_LENGTH)])
    if not data:
        return None
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    raise ProxyProtocolError(f"does not start with a PROXY protocol header (first byte {data[:1]!r})")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    n = min(len(data), len(V1_PREFIX))
    if data[:n] != V1_PREFIX[:n]:
        raise ProxyProtocolError("bad v1 header: expected \"PROXY \"")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data:
            raise ProxyProtocolError("bad v1 header: no CRLF within 107 bytes")
        return None
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("bad v1 header: not ASCII") from None
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(1, "PROXY", "UNKNOWN", "", 0, "", 0, end + 2)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"bad v1 header: {line[:60]!r}")
    family, src, dst, sport, dport = parts[1:]
    version = 4 if family == "TCP4" else 6
    for host in (src, dst):
        try:
            if ipaddress.ip_address(host).version != version:
                raise ValueError
        except ValueError:
            raise ProxyProtocolError(f"bad v1 header: {host!r} is not an IPv{version} address") from None
    ports = []
    for port in (sport, dport):
        if not port.isdigit() or (len(port) > 1 and port[0] == "0") or int(port) > 65535:
            raise ProxyProtocolError(f"bad v1 header: bad port {port!r}")
        ports.append(int(port))
    return ProxyHeader(1, "PROXY", family, src, ports[0], dst, ports[1], end + 2)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    n = min(len(data), len(V2_SIGNATURE))
    if data[:n] != V2_SIGNATURE[:n]:
        raise ProxyProtocolError("bad v2 header: wrong signature")
    if len(data) < V2_HEADER:
        return None
    ver_cmd, fam, length = data[12], data[13], struct.unpack_from("!H", data, 14)[0]
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"bad v2 header: version {ver_cmd >> 4}")
    command = {0: "LOCAL", 1: "PROXY"}.get(ver_cmd & 0xF)
    if command is None:
        raise ProxyProtocolError(f"bad v2 header: command {ver_cmd & 0xF}")
    if length > V2_MAX_LENGTH:
        raise ProxyProtocolError(f"bad v2 header: {length} bytes of addresses is too long")
    if len(data) < V2_HEADER + length:
        return None
    body = data[V2_HEADER:V2_HEADER + length]
    total = V2_HEADER + length
    af, proto = fam >> 4, fam & 0xF
    if command == "LOCAL" or af == 0:
        return ProxyHeader(2, command, "UNKNOWN", "", 0, "", 0, total)
    if af not in _ADDR_LEN or proto not in (1, 2):
        raise ProxyProtocolError(f"bad v2 header: family/protocol byte 0x{fam:02x}")
    need = _ADDR_LEN[af]
    if length < need:
        raise ProxyProtocolError(f"bad v2 header: {length} bytes, too short for its addresses ({need})")
    kind = "TCP" if proto == 1 else "UDP"
    if af == _AF_INET:
        src, dst = str(ipaddress.IPv4Address(body[0:4])), str(ipaddress.IPv4Address(body[4:8]))
        sport, dport = struct.unpack_from("!HH", body, 8)
        family = kind + "4"
    elif af == _AF_INET6:
        src, dst = str(ipaddress.IPv6Address(body[0:16])), str(ipaddress.IPv6Address(body[16:32]))
        sport, dport = struct.unpack_from("!HH", body, 32)
        family = kind + "6"
    else:
        src = body[0:108].split(b"\0", 1)[0].decode("utf-8", "replace")
        dst = body[108:216].split(b"\0", 1)[0].decode("utf-8", "replace")
        sport = dport = 0
        family = "UNIX"
    return ProxyHeader(2, command, family, src, sport, dst, dport, total, _parse_tlvs(body[need:]))


def _parse_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    out = []
    i = 0
    while i < len(data):
        if len(data) - i < 3:
            raise ProxyProtocolError("bad v2 header: truncated TLV")
        kind, size = data[i], struct.unpack_from("!H", data, i + 1)[0]
        if i + 3 + size > len(data):
            raise ProxyProtocolError("bad v2 header: TLV longer than the header")
        out.append((kind, data[i + 3:i + 3 + size]))
        i += 3 + size
    return tuple(out)


# -- building ---------------------------------------------------------------------------------------
def _version(host: str) -> int:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return 0


def build_v1(src_host: str, src_port: int, dst_host: str, dst_port: int) -> bytes:
    """``PROXY TCP4 src dst sport dport\\r\\n``; ``PROXY UNKNOWN`` when the addresses are not
    both IPv4 or both IPv6 (a unix-socket client, say)."""
    v = _version(src_host)
    if not v or v != _version(dst_host):
        return b"PROXY UNKNOWN\r\n"
    return f"PROXY TCP{v} {src_host} {dst_host} {src_port} {dst_port}\r\n".encode("ascii")


def build_v2(src_host: str, src_port: int, dst_host: str, dst_port: int) -> bytes:
    """The binary header for a TCP connection; LOCAL (no addresses) when they are not IP
    addresses of one family."""
    v = _version(src_host)
    if not v or v != _version(dst_host):
        return V2_SIGNATURE + b"\x20\x00\x00\x00"
    a, b = ipaddress.ip_address(src_host).packed, ipaddress.ip_address(dst_host).packed
    body = a + b + struct.pack("!HH", src_port, dst_port)
    fam = 0x11 if v == 4 else 0x21
    return V2_SIGNATURE + bytes((0x21, fam)) + struct.pack("!H", len(body)) + body


def build(version: str, src_host: str, src_port: int, dst_host: str, dst_port: int) -> bytes:
    """``version`` is "v1" or "v2"."""
    return (build_v1 if version == "v1" else build_v2)(src_host, src_port, dst_host, dst_port)


__all__ = ["ProxyHeader", "ProxyProtocolError", "build", "build_v1", "build_v2", "parse"]
