"""SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), sans-IO.

Bytes in, events out; bytes out from small builders. No sockets here: the server
(``hemi.contrib.servers.socks``) and tests drive it.

Server side, in order::

    p = ServerParser(); p.feed(data)
    p.next_event() -> Greeting(methods)        # reply: method_selection(METHOD_x)
    p.expect_auth()                             # only when METHOD_USERPASS was selected
    p.next_event() -> UserPass(user, password)  # reply: auth_status(ok)
    p.next_event() -> Request(cmd, host, port)  # reply: reply(REP_x, bound_host, bound_port)
    p.take_buffer()                             # bytes the client sent past its request

``next_event`` returns ``NEED_DATA`` until a whole message is buffered and raises
``Socks5Error`` on anything malformed; after an error the parser is dead. Every message has a
fixed upper size (the longest is 513 bytes), so a half message is never buffered unboundedly.

UDP ASSOCIATE datagrams carry a header of their own (RFC 1928 §7): ``parse_udp`` and
``build_udp``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

VERSION: Final = 5
AUTH_VERSION: Final = 1  # RFC 1929 sub-negotiation version

METHOD_NO_AUTH: Final = 0x00
METHOD_GSSAPI: Final = 0x01
METHOD_USERPASS: Final = 0x02
METHOD_NONE_ACCEPTABLE: Final = 0xFF

CMD_CONNECT: Final = 0x01
CMD_BIND: Final = 0x02
CMD_UDP_ASSOCIATE: Final = 0x03

ATYP_IPV4: Final = 0x01
ATYP_DOMAIN: Final = 0x03
ATYP_IPV6: Final = 0x04

# Reply codes (RFC 1928 §6).
REP_SUCCEEDED: Final = 0x00
REP_GENERAL_FAILURE: Final = 0x01
REP_NOT_ALLOWED: Final = 0x02
REP_NETWORK_UNREACHABLE: Final = 0x03
REP_HOST_UNREACHABLE: Final = 0x04
REP_CONNECTION_REFUSED: Final = 0x05
REP_TTL_EXPIRED: Final = 0x06
REP_COMMAND_NOT_SUPPORTED: Final = 0x07
REP_ADDRESS_TYPE_NOT_SUPPORTED: Final = 0x08

REPLY_TEXT: Final = {
    REP_SUCCEEDED: "succeeded",
    REP_GENERAL_FAILURE: "general SOCKS server failure",
    REP_NOT_ALLOWED: "connection not allowed by ruleset",
    REP_NETWORK_UNREACHABLE: "network unreachable",
    REP_HOST_UNREACHABLE: "host unreachable",
    REP_CONNECTION_REFUSED: "connection refused",
    REP_TTL_EXPIRED: "TTL expired",
    REP_COMMAND_NOT_SUPPORTED: "command not supported",
    REP_ADDRESS_TYPE_NOT_SUPPORTED: "address type not supported",
}


class Socks5Error(Exception):
    """Malformed or unsupported input. ``reply`` is the reply code to send before closing when
    the request stage was reached (None: just close)."""

    def __init__(self, reason: str, reply: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclass(frozen=True, slots=True)
class Greeting:
    """The client's offer: which authentication methods it can do."""
    methods: bytes


@dataclass(frozen=True, slots=True)
class UserPass:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Request:
    """CONNECT, BIND or UDP ASSOCIATE to ``host`` (an IP literal or a domain name) and ``port``."""
    cmd: int
    atyp: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Reply:
    """The server's answer to a request (for clients)."""
    rep: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    frag: int
    host: str
    port: int
    data: bytes


# -- addresses -------------------------------------------------------------------------------------------
def encode_address(host: str, port: int) -> bytes:
    """ATYP, address and port: an IP literal as itself, anything else as a domain name."""
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna") if not host.isascii() else host.encode("ascii")
        if not 0 < len(name) <= 255:
            raise ValueError(f"domain name of {len(name)} bytes, expected 1..255") from None
        return bytes((ATYP_DOMAIN, len(name))) + name + struct.pack("!H", port)
    if ip.version == 4:
        return bytes((ATYP_IPV4,)) + ip.packed + struct.pack("!H", port)
    return bytes((ATYP_IPV6,)) + ip.packed + struct.pack("!H", port)


def decode_address(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, str, int, int] | None:
    """(atyp, host, port, end) of the address at ``pos``, or None if it is not all there yet.
    Raises Socks5Error for an unknown address type or a bad domain name."""
    if len(buf) <= pos:
        return None
    atyp = buf[pos]
    if atyp == ATYP_IPV4:
        end = pos + 1 + 4 + 2
        if len(buf) < end:
            return None
        host = str(ipaddress.IPv4Address(bytes(buf[pos + 1:pos + 5])))
    elif atyp == ATYP_IPV6:
        end = pos + 1 + 16 + 2
        if len(buf) < end:
            return None
        host = str(ipaddress.IPv6Address(bytes(buf[pos + 1:pos + 17])))
    elif atyp == ATYP_DOMAIN:
        if len(buf) < pos + 2:
            return None
        n = buf[pos + 1]
        end = pos + 2 + n + 2
        if len(buf) < end:
            return None
        raw = bytes(buf[pos + 2:pos + 2 + n])
        if n == 0 or not _is_hostname(raw):
            raise Socks5Error(f"bad domain name {raw[:64]!r}", REP_GENERAL_FAILURE)
        host = raw.decode("ascii")
    else:
        raise Socks5Error(f"unknown address type {atyp}", REP_ADDRESS_TYPE_NOT_SUPPORTED)
    port = (buf[end - 2] << 8) | buf[end - 1]
    return atyp, host, port, end


_HOST_BYTES: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


def _is_hostname(raw: bytes) -> bool:
    """Letters, digits, '-', '.', '_' only: no NUL, no spaces, nothing a log or resolver chokes on."""
    return all(b in _HOST_BYTES for b in raw)


# -- the server's parser ------------------------------------------------------------------------------------
_GREETING, _AUTH, _REQUEST, _DONE, _ERROR = range(5)


class ServerParser:
    """What a SOCKS5 client sends to a server, one message at a time."""

    __slots__ = ("_buf", "_state", "_error")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = _GREETING
        self._error: Socks5Error | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def expect_auth(self) -> None:
        """The server selected username/password: the next message is the RFC 1929 request."""
        if self._state == _REQUEST:
            self._state = _AUTH

    def next_event(self) -> Greeting | UserPass | Request | _NeedData:
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except Socks5Error as e:
            self._state = _ERROR
            self._error = e
            raise

    def _next(self) -> Greeting | UserPass | Request | _NeedData:
        buf = self._buf
        state = self._state
        if state == _GREETING:
            if len(buf) < 2:
                if buf and buf[0] != VERSION:
                    raise _bad_version(buf[0])
                return NEED_DATA
            if buf[0] != VERSION:
                raise _bad_version(buf[0])
            n = buf[1]
            if n == 0:
                raise Socks5Error("greeting offers no authentication method")
            if len(buf) < 2 + n:
                return NEED_DATA
            methods = bytes(buf[2:2 + n])
            del buf[:2 + n]
            self._state = _REQUEST
            return Greeting(methods)
        if state == _AUTH:
            if not buf:
                return NEED_DATA
            if buf[0] != AUTH_VERSION:
                raise Socks5Error(f"username/password version {buf[0]}, expected 1")
            if len(buf) < 2:
                return NEED_DATA
            ulen = buf[1]
            if len(buf) < 3 + ulen:
                return NEED_DATA
            plen = buf[2 + ulen]
            end = 3 + ulen + plen
            if len(buf) < end:
                return NEED_DATA
            user = bytes(buf[2:2 + ulen]).decode("utf-8", "replace")
            password = bytes(buf[3 + ulen:end]).decode("utf-8", "replace")
            del buf[:end]
            self._state = _REQUEST
            return UserPass(user, password)
        if state == _REQUEST:
            if not buf:
                return NEED_DATA
            if buf[0] != VERSION:
                raise _bad_version(buf[0])
            if len(buf) < 4:
                return NEED_DATA
            cmd, rsv = buf[1], buf[2]
            if rsv != 0:
                raise Socks5Error(f"reserved byte is {rsv}, expected 0", REP_GENERAL_FAILURE)
            if cmd not in (CMD_CONNECT, CMD_BIND, CMD_UDP_ASSOCIATE):
                raise Socks5Error(f"unknown command {cmd}", REP_COMMAND_NOT_SUPPORTED)
            addr = decode_address(buf, 3)
            if addr is None:
                return NEED_DATA
            atyp, host, port, end = addr
            del buf[:end]
            self._state = _DONE
            return Request(cmd, atyp, host, port)
        if state == _DONE:
            return NEED_DATA
        raise Socks5Error("parser used after an error")  # pragma: no cover - _error is raised first

    def take_buffer(self) -> bytes:
        """What the client sent past its request (the first bytes of the tunnel)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data


def _bad_version(v: int) -> Socks5Error:
    hint = " (an HTTP request?)" if v in b"CGPHDO" else ""
    return Socks5Error(f"SOCKS version {v}, expected 5{hint}")


# -- what a server sends ------------------------------------------------------------------------------------
def method_selection(method: int) -> bytes:
    return bytes((VERSION, method))


def auth_status(ok: bool) -> bytes:
    return bytes((AUTH_VERSION, 0 if ok else 1))


def reply(rep: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """A reply to a request; ``host``/``port`` are BND.ADDR/BND.PORT."""
    return bytes((VERSION, rep, 0)) + encode_address(host, port)


# -- what a client sends, and parses (for tests and outbound SOCKS) -------------------------------------------
def client_greeting(methods: bytes = bytes((METHOD_NO_AUTH,))) -> bytes:
    return bytes((VERSION, len(methods))) + methods


def client_userpass(username: str, password: str) -> bytes:
    u, p = username.encode(), password.encode()
    if len(u) > 255 or len(p) > 255:
        raise ValueError("username and password are at most 255 bytes each")
    return bytes((AUTH_VERSION, len(u))) + u + bytes((len(p),)) + p


def client_request(cmd: int, host: str, port: int) -> bytes:
    return bytes((VERSION, cmd, 0)) + encode_address(host, port)


def parse_reply(buf: bytes) -> tuple[Reply, int] | None:
    """The server's reply and its length, or None if incomplete."""
    if len(buf) < 4:
        return None
    if buf[0] != VERSION:
        raise _bad_version(buf[0])
    addr = decode_address(buf, 3)
    if addr is None:
        return None
    _, host, port, end = addr
    return Reply(buf[1], host, port), end


# -- UDP ASSOCIATE datagrams (RFC 1928 §7) --------------------------------------------------------------------
def parse_udp(datagram: bytes) -> UdpDatagram:
    """RSV(2) FRAG(1) address DATA. Raises Socks5Error when the header is malformed or cut."""
    if len(datagram) < 4:
        raise Socks5Error(f"UDP datagram of {len(datagram)} bytes has no SOCKS header")
    if datagram[0] or datagram[1]:
        raise Socks5Error("UDP header reserved bytes are not zero")
    addr = decode_address(datagram, 3)
    if addr is None:
        raise Socks5Error("UDP header is cut short")
    _, host, port, end = addr
    return UdpDatagram(datagram[2], host, port, datagram[end:])


def build_udp(host: str, port: int, data: bytes, frag: int = 0) -> bytes:
    return bytes((0, 0, frag)) + encode_address(host, port) + data


__all__ = [
    "ServerParser", "Greeting", "UserPass", "Request", "Reply", "UdpDatagram", "Socks5Error", "NEED_DATA",
    "method_selection", "auth_status", "reply", "client_greeting", "client_userpass", "client_request",
    "parse_reply", "parse_udp", "build_udp", "encode_address", "decode_address", "REPLY_TEXT",
    "METHOD_NO_AUTH", "METHOD_USERPASS", "METHOD_NONE_ACCEPTABLE", "CMD_CONNECT", "CMD_BIND",
    "CMD_UDP_ASSOCIATE", "ATYP_IPV4", "ATYP_IPV6", "ATYP_DOMAIN", "REP_SUCCEEDED", "REP_GENERAL_FAILURE",
    "REP_NOT_ALLOWED", "REP_NETWORK_UNREACHABLE", "REP_HOST_UNREACHABLE", "REP_CONNECTION_REFUSED",
    "REP_TTL_EXPIRED", "REP_COMMAND_NOT_SUPPORTED", "REP_ADDRESS_TYPE_NOT_SUPPORTED",
]
