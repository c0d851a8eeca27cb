"""The WebSocket opening handshake (RFC 6455 §4.2) on a request our HTTP/1 connection parsed.

The connection already parsed the request, so no HTTP parser is needed here (wsproto's
``H11Handshake`` would parse it again): :func:`check_upgrade` validates what a server must
check and says what the client offered; :func:`negotiate` picks the subprotocol and
permessage-deflate parameters; :func:`response_head` renders the 101. The frames that follow
are wsproto's business (:mod:`.session`).

A request that is not a valid upgrade is refused with the status RFC 6455 and RFC 9110 name:
405 (not GET), 426 with ``sec-websocket-version: 13`` (a version we do not speak), 400 (no or
bad key, a body).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from ..errors import HTTPError

if TYPE_CHECKING:
    from ..exchange import Request

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = "13"
COMPRESS_LEVEL = 1        # as nginx's gzip_comp_level: most of the gain for a fraction of the CPU
COMPRESS_MEM_LEVEL = 8

# Headers the handshake writes itself: an app's extra 101 headers may not repeat them.
HANDSHAKE_FIELDS = frozenset(("connection", "upgrade", "sec-websocket-accept", "sec-websocket-protocol",
                              "sec-websocket-extensions", "sec-websocket-version", "content-length",
                              "transfer-encoding", "date", "server"))


@dataclass
class Offer:
    """What the client asked for in its upgrade request."""

    key: str
    subprotocols: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)   # raw offers: "permessage-deflate; client_max_window_bits"


def comma_list(values: Iterable[str]) -> list[str]:
    """The items of (possibly repeated) comma-separated header values, stripped, empty ones dropped."""
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item:
                out.append(item)
    return out


def is_websocket_upgrade(req: "Request") -> bool:
    """The request asks for a WebSocket (``Connection: upgrade`` + ``Upgrade: websocket``; the
    codec only notes an upgrade on HTTP/1.1 with the connection option)."""
    up = req.upgrade
    return up is not None and "websocket" in (t.strip() for t in up.split(","))


def check_upgrade(req: "Request") -> Offer:
    """Validate a WebSocket upgrade request; raise :class:`HTTPError` when it is not one a
    server may accept."""
    if not is_websocket_upgrade(req):
        raise HTTPError(426, "this resource speaks WebSocket only",
                        headers=[("upgrade", "websocket"), ("connection", "upgrade")])
    if req.method != "GET":
        raise HTTPError(405, "a WebSocket handshake is a GET", headers=[("allow", "GET")])
    if req.has_body:
        raise HTTPError(400, "a WebSocket handshake has no body", close=True)
    versions = comma_list(req.header_list("sec-websocket-version"))
    if versions != [VERSION]:
        raise HTTPError(426, "unsupported WebSocket version", headers=[("sec-websocket-version", VERSION)])
    keys = req.header_list("sec-websocket-key")
    if len(keys) != 1:
        raise HTTPError(400, "missing or repeated sec-websocket-key")
    key = keys[0].strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise HTTPError(400, "bad sec-websocket-key") from None
    return Offer(key, comma_list(req.header_list("sec-websocket-protocol")),
                 _split_extensions(req.header_list("sec-websocket-extensions")))


def _split_extensions(values: list[str]) -> list[str]:
    # Extension parameters are tokens or quoted strings; quoted commas are vanishingly rare and
    # an offer we misread is simply not accepted.
    return comma_list(values)


def accept_token(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


# -- extensions ---------------------------------------------------------------------------------------
class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate that never inflates a message beyond ``max_size`` bytes: a tiny
    compressed frame can expand a thousandfold (a "zip bomb"), so the decompressor is given the
    room left in the message and the message fails with 1009 when it wants more. It deflates
    at ``COMPRESS_LEVEL`` (wsproto's default, 6, costs several times the CPU for a few percent)."""

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size
        self._inflated = 0

    def frame_outbound(self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, data: bytes,
                       fin: bool) -> tuple[RsvBits, bytes]:
        if self._compressor is None and opcode is not Opcode.CONTINUATION and self._compressible_opcode(opcode):
            bits = self.client_max_window_bits if proto.client else self.server_max_window_bits
            self._compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -int(bits), COMPRESS_MEM_LEVEL)
        return super().frame_outbound(proto, opcode, rsv, data, fin)

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        room = self.max_size - self._inflated
        try:
            out = self._decompressor.decompress(data, room + 1)  # type: ignore[union-attr]
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self.max_size:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_payload_data(self, proto: FrameDecoder | FrameProtocol, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(self, proto: FrameDecoder | FrameProtocol, fin: bool) -> bytes | CloseReason | None:
        if not fin:
            return None
        if not self._inbound_is_compressible or not self._inbound_compressed:
            self._inbound_compressed = None
            self._inflated = 0
            return None
        tail = self._inflate(b"\x00\x00\xff\xff")
        if isinstance(tail, CloseReason):
            return tail
        self._inflated = 0
        if self.server_no_context_takeover if proto.client else self.client_no_context_takeover:
            self._decompressor = None
        self._inbound_compressed = None
        return tail


class MessageLimit(Extension):
    """Fails a message with 1009 as soon as its frames' declared lengths pass ``max_size``,
    before the payload arrives. A compressed message is bounded by :class:`BoundedDeflate` as
    it inflates; its compressed length only gets the slack stored deflate blocks may add.
    Uses no reserved bit and is never negotiated."""

    name = "hemi-message-limit"

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._size = 0
        self._compressed = False

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False

    def frame_inbound_header(self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits,
                             payload_length: int) -> CloseReason | RsvBits:
        if not opcode.iscontrol():
            if opcode is not Opcode.CONTINUATION:
                self._size = 0
                self._compressed = rsv.rsv1
            self._size += payload_length
            limit = self.max_size + (self.max_size >> 6) + 1024 if self._compressed else self.max_size
            if self._size > limit:
                return CloseReason.MESSAGE_TOO_BIG
        return RsvBits(False, False, False)


@dataclass
class Agreement:
    """What the server answers: the chosen subprotocol, the extension header, and the
    extensions the frame codec runs with."""

    subprotocol: str | None
    extensions_header: str | None
    extensions: list[Extension]


def negotiate(offer: Offer, subprotocol: str | None, *, compression: bool, max_message_size: int) -> Agreement:
    """Agree on ``subprotocol`` (chosen by the caller among ``offer.subprotocols``) and, when
    ``compression`` is on, on the first permessage-deflate offer we can accept."""
    extensions: list[Extension] = []
    header: str | None = None
    if compression:
        for item in offer.extensions:
            if item.split(";", 1)[0].strip().lower() != "permessage-deflate":
                continue
            deflate = BoundedDeflate(max_message_size)
            try:
                params = deflate.accept(item)
            except ValueError:  # a malformed window size: try the next offer
                continue
            if params is None or params is False:
                continue
            header = "permessage-deflate" + (f"; {params}" if isinstance(params, str) and params else "")
            extensions.append(deflate)
            break
    extensions.append(MessageLimit(max_message_size))
    return Agreement(subprotocol, header, extensions)


def response_fields(offer: Offer, agreement: Agreement, extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """The 101's header fields (the connection adds Date and Server)."""
    fields = [("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-accept", accept_token(offer.key))]
    if agreement.subprotocol:
        fields.append(("sec-websocket-protocol", agreement.subprotocol))
    if agreement.extensions_header:
        fields.append(("sec-websocket-extensions", agreement.extensions_header))
    for name, value in extra:
        name = name.lower()
        if name in HANDSHAKE_FIELDS:
            continue
        if any(c in name for c in "\r\n\x00: ") or any(c in value for c in "\r\n\x00"):
            raise ValueError(f"bad header {name!r} for the handshake response")
        fields.append((name, value))
    return fields


def response_head(fields: list[tuple[str, str]], date_line: bytes, server_line: bytes) -> bytes:
    parts = [b"HTTP/1.1 101 Switching Protocols\r\n"]
    parts.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in fields)
    parts.append(date_line)
    parts.append(server_line)
    parts.append(b"\r\n")
    return b"".join(parts)


__all__ = ["Agreement", "BoundedDeflate", "MessageLimit", "Offer", "accept_token", "check_upgrade", "comma_list",
           "is_websocket_upgrade", "negotiate", "response_fields", "response_head", "VERSION"]
