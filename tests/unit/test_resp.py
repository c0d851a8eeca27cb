"""The RESP request reader behind redisViewer: arrays of bulk strings and inline commands,
fed whole and byte by byte; big values are cut, not buffered."""

from __future__ import annotations

import pytest

from hemi.contrib.editors.resp import RespError, RespReader


def resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def test_commands_whole_and_byte_by_byte() -> None:
    stream = resp(b"SET", b"k", b"v") + b"PING\r\n" + resp(b"get", b"k") + resp(b"SET", b"e", b"")
    whole = RespReader().feed(stream)
    assert [c.render() for c in whole] == ['SET "k" "v"', "PING", 'GET "k"', 'SET "e" ""']
    reader = RespReader()
    pieces = [c for i in range(len(stream)) for c in reader.feed(stream[i:i + 1])]
    assert pieces == whole


def test_a_big_value_is_cut_and_its_size_reported() -> None:
    reader = RespReader(keep=4)
    big = b"x" * 100000
    cmds = reader.feed(resp(b"SET", b"key", big)[:50000])
    assert cmds == []
    assert len(reader._bulk) == 4  # kept, not buffered
    cmds = reader.feed(resp(b"SET", b"key", big)[50000:])
    assert cmds[0].sizes == (3, 3, 100000)
    assert cmds[0].render() == 'SET "key" "xxxx"...(100000 bytes)'


def test_rendering_escapes_and_limits_args() -> None:
    cmd = RespReader().feed(resp(b"MSET", *[b'a"\n%d' % i for i in range(12)]))[0]
    text = cmd.render(max_args=2)
    assert text == 'MSET "a\\"\\n0" "a\\"\\n1" ...(+10 args)'


@pytest.mark.parametrize("bad", [b"*2\r\n:1\r\n", b"*x\r\n", b"+OK\r\n", b"*1\r\n$-5\r\n"])
def test_not_a_request_stream(bad: bytes) -> None:
    with pytest.raises(RespError):
        RespReader().feed(bad)
