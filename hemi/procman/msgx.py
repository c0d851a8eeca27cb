"""msgx: Gorox's framing for control messages (spec core §4.6), sans-IO.

    header (8 bytes): comd u8 | nArgs u8 | flag u16 BE | bit31 isCall, bits0..30 bodySize (BE)
    body: nArgs x (nameLen u8, valueLen u32 BE), then name0 value0 name1 value1 ...

Every length is checked against the receiver's limit before anything is allocated, so a
malformed or hostile message costs nothing but a clear error. Unlike Go's map, our arguments
keep their order on the wire (replies print in a stable order). Values are UTF-8 text;
structured data travels as JSON in one argument.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

HEADER = struct.Struct(">BBHI")
ARG_HEAD = struct.Struct(">BI")
CALL_BIT = 0x8000_0000
MAX_ARGS = 255
MAX_NAME = 255


class MsgxError(ValueError):
    """A message that breaks the format or a limit."""


@dataclass(slots=True)
class Message:
    comd: int
    flag: int = 0
    args: dict[str, str] = field(default_factory=dict)
    call: bool = True

    def get(self, name: str, default: str = "") -> str:
        return self.args.get(name, default)


def encode(msg: Message) -> bytes:
    args = [(k.encode("utf-8"), v.encode("utf-8")) for k, v in msg.args.items() if k]
    if len(args) > MAX_ARGS:
        raise MsgxError(f"too many args: {len(args)} > {MAX_ARGS}")
    heads, bodies = [], []
    for name, value in args:
        if len(name) > MAX_NAME:
            raise MsgxError(f"arg name too large: {len(name)} bytes > {MAX_NAME}")
        heads.append(ARG_HEAD.pack(len(name), len(value)))
        bodies += (name, value)
    body = b"".join(heads) + b"".join(bodies)
    if len(body) >= CALL_BIT:
        raise MsgxError("message too large")
    if not 0 <= msg.comd <= 255 or not 0 <= msg.flag <= 0xFFFF:
        raise MsgxError("comd or flag out of range")
    size = len(body) | (CALL_BIT if msg.call else 0)
    return HEADER.pack(msg.comd, len(args), msg.flag, size) + body


def parse_header(head: bytes, max_size: int) -> tuple[int, int, int, bool, int]:
    """(comd, nargs, flag, is_call, body_size), or MsgxError if the body would exceed ``max_size``."""
    if len(head) != HEADER.size:
        raise MsgxError("truncated header")
    comd, nargs, flag, word = HEADER.unpack(head)
    size = word & ~CALL_BIT
    if size > max_size:
        raise MsgxError(f"body of {size} bytes exceeds the limit of {max_size}")
    if size < nargs * ARG_HEAD.size:
        raise MsgxError(f"body of {size} bytes cannot hold {nargs} args")
    return comd, nargs, flag, bool(word & CALL_BIT), size


def decode_body(comd: int, nargs: int, flag: int, call: bool, body: bytes) -> Message:
    pos = nargs * ARG_HEAD.size
    lengths = [ARG_HEAD.unpack_from(body, i * ARG_HEAD.size) for i in range(nargs)]
    if pos + sum(n + v for n, v in lengths) != len(body):
        raise MsgxError("arg lengths do not add up to the body size")
    args: dict[str, str] = {}
    try:
        for nlen, vlen in lengths:
            name = body[pos:pos + nlen].decode("utf-8")
            pos += nlen
            value = body[pos:pos + vlen].decode("utf-8")
            pos += vlen
            if name:  # Gorox drops empty names
                args[name] = value
    except UnicodeDecodeError:
        raise MsgxError("an arg is not UTF-8") from None
    return Message(comd, flag, args, call)


def decode(data: bytes, max_size: int = 16 << 20) -> Message:
    """One whole message (a datagram or record)."""
    comd, nargs, flag, call, size = parse_header(data[:HEADER.size], max_size)
    if len(data) != HEADER.size + size:
        raise MsgxError(f"record of {len(data)} bytes, header says {HEADER.size + size}")
    return decode_body(comd, nargs, flag, call, data[HEADER.size:])


async def read_message(reader, max_size: int) -> Message | None:  # type: ignore[no-untyped-def]
    """Read one message from an asyncio StreamReader; None at a clean EOF before a header."""
    import asyncio
    try:
        head = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise MsgxError("truncated header") from None
    comd, nargs, flag, call, size = parse_header(head, max_size)
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise MsgxError("truncated body") from None
    return decode_body(comd, nargs, flag, call, body)
