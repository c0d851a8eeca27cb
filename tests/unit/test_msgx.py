"""msgx, the framing of the admin channel and the leader <-> worker channel (spec core §4.6):
round trips, Gorox's byte layout, and every malformed input rejected with MsgxError."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hemi.procman import msgx
from hemi.procman.workers import MAX_BACKOFF, backoff
from hemi.procman.msgx import Message, MsgxError

names = st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= 255)


@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.dictionaries(names, st.text(max_size=100), max_size=20),
       st.booleans())
def test_round_trip(comd: int, flag: int, args: dict[str, str], call: bool) -> None:
    msg = Message(comd, flag, args, call)
    assert msgx.decode(msgx.encode(msg)) == msg


def test_gorox_byte_layout() -> None:
    data = msgx.encode(Message(3, 500, {"ab": "xyz"}, call=True))
    assert data[:8] == bytes([3, 1]) + struct.pack(">H", 500) + struct.pack(">I", 0x8000_0000 | 10)
    assert data[8:] == bytes([2]) + struct.pack(">I", 3) + b"abxyz"
    tell = msgx.encode(Message(1, 0, {}, call=False))
    assert tell == bytes([1, 0, 0, 0, 0, 0, 0, 0])


def test_argument_order_is_kept() -> None:
    args = {"z": "1", "a": "2", "m": "3"}
    assert list(msgx.decode(msgx.encode(Message(1, 0, args))).args) == ["z", "a", "m"]


@pytest.mark.parametrize("data, error", [
    (b"\x01\x00\x00", "truncated header"),
    (bytes([1, 1, 0, 0, 0, 0, 0, 2]) + b"ab", "cannot hold 1 args"),
    (bytes([1, 1, 0, 0, 0, 0, 0, 7]) + bytes([5, 0, 0, 0, 0]) + b"ab", "do not add up"),
    (bytes([1, 1, 0, 0, 0, 0, 0, 6]) + bytes([1, 0, 0, 0, 0]) + b"\xff", "not UTF-8"),
    (bytes([1, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF]), "exceeds the limit"),
    (bytes([1, 0, 0, 0, 0, 0, 0, 4]) + b"ab", "record of"),
])
def test_malformed(data: bytes, error: str) -> None:
    with pytest.raises(MsgxError, match=error):
        msgx.decode(data, max_size=1 << 20)


def test_encode_limits() -> None:
    with pytest.raises(MsgxError, match="too many args"):
        msgx.encode(Message(1, 0, {str(i): "" for i in range(256)}))
    with pytest.raises(MsgxError, match="name too large"):
        msgx.encode(Message(1, 0, {"n" * 256: ""}))
    with pytest.raises(MsgxError, match="out of range"):
        msgx.encode(Message(256))


def test_empty_names_are_dropped() -> None:
    body = bytes([0]) + struct.pack(">I", 1) + b"v"
    data = bytes([1, 1, 0, 0]) + struct.pack(">I", len(body)) + body
    assert msgx.decode(data).args == {}


def test_read_message_from_a_stream() -> None:
    async def run() -> list[object]:
        reader = asyncio.StreamReader()
        reader.feed_data(msgx.encode(Message(2, args={"token": "t"})) + b"\x01\x00")
        reader.feed_eof()
        first = await msgx.read_message(reader, 1024)
        with pytest.raises(MsgxError, match="truncated header"):
            await msgx.read_message(reader, 1024)
        empty = asyncio.StreamReader()
        empty.feed_eof()
        return [first, await msgx.read_message(empty, 1024)]

    first, none = asyncio.run(run())
    assert first == Message(2, 0, {"token": "t"}, True) and none is None


def test_restart_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n) for n in range(0, 6)] == [0.0, 0.0, 0.5, 1.0, 2.0, 4.0]
    assert backoff(50) == MAX_BACKOFF
