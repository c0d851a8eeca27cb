"""PROXY protocol v1 and v2: parse what HAProxy's spec shows and what we build, byte by byte,
and reject truncated or malformed headers at the first wrong byte."""

from __future__ import annotations

import random
import struct

import pytest

from hemi.net.proxyproto import (V2_SIGNATURE, ProxyHeader, ProxyProtocolError, build, build_v1, build_v2,
                                 parse)


def test_v1_tcp4_and_the_bytes_after_it() -> None:
    header = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    data = header + b"GET / HTTP/1.1\r\n"
    h = parse(data)
    assert h == ProxyHeader(1, "PROXY", "TCP4", "192.168.0.1", 56324, "192.168.0.11", 443, len(header))
    assert data[h.length:] == b"GET / HTTP/1.1\r\n"
    assert h.has_address


def test_v1_tcp6_and_unknown() -> None:
    h = parse(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n")
    assert h is not None and (h.family, h.src_host, h.dst_host) == ("TCP6", "2001:db8::1", "::1")
    u = parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n")
    assert u is not None and u.family == "UNKNOWN" and not u.has_address


@pytest.mark.parametrize("data", [b"", b"P", b"PROXY", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"])
def test_v1_incomplete_needs_more(data: bytes) -> None:
    assert parse(data) is None


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n",                           # no header at all
    b"PROXZ",                                        # wrong at the 5th byte: no need to wait
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",              # a field missing
    b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",          # not an address
    b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",                # wrong family
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",        # port out of range
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",           # leading zero
    b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",              # LF without CR
    b"PROXY " + b"1" * 120,                          # no CRLF within 107 bytes
])
def test_v1_malformed(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(data)


def v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes((ver_cmd, fam)) + struct.pack("!H", len(body)) + body


def test_v2_tcp4_with_tlvs_and_the_bytes_after_it() -> None:
    body = bytes((10, 0, 0, 1, 10, 0, 0, 2)) + struct.pack("!HH", 4000, 80) + b"\x04\x00\x02hi"
    data = v2(0x21, 0x11, body) + b"payload"
    h = parse(data)
    assert h is not None
    assert (h.version, h.command, h.family, h.src_host, h.src_port, h.dst_host, h.dst_port) == \
        (2, "PROXY", "TCP4", "10.0.0.1", 4000, "10.0.0.2", 80)
    assert h.tlvs == ((4, b"hi"),)
    assert data[h.length:] == b"payload"


def test_v2_local_keeps_the_connection_address() -> None:
    h = parse(v2(0x20, 0x00, b""))
    assert h is not None and h.command == "LOCAL" and not h.has_address


def test_v2_every_prefix_needs_more_bytes() -> None:
    data = build_v2("2001:db8::5", 1234, "::1", 443)
    for cut in range(len(data)):
        assert parse(data[:cut]) is None, cut
    h = parse(data)
    assert h is not None and (h.family, h.src_host, h.src_port) == ("TCP6", "2001:db8::5", 1234)


@pytest.mark.parametrize("data", [
    V2_SIGNATURE[:5] + b"X",                                   # wrong signature, early
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\0" * 12,            # version 1 in the v2 byte
    V2_SIGNATURE + b"\x23\x11\x00\x0c" + b"\0" * 12,            # command 3
    V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\0" * 4,             # too short for IPv4 addresses
    V2_SIGNATURE + b"\x21\x41\x00\x0c" + b"\0" * 12,            # family 4
    V2_SIGNATURE + b"\x21\x11\xff\xff",                        # absurd length
    V2_SIGNATURE + b"\x21\x11\x00\x0e" + b"\0" * 12 + b"\x01\x00",  # truncated TLV
])
def test_v2_malformed(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(data)


def test_build_round_trips() -> None:
    for version in ("v1", "v2"):
        for src, dst in (("127.0.0.1", "127.0.0.2"), ("::1", "2001:db8::1")):
            h = parse(build(version, src, 5555, dst, 80))
            assert h is not None and (h.src_host, h.src_port, h.dst_host, h.dst_port) == (src, 5555, dst, 80)
    assert build_v1("", 0, "127.0.0.1", 80) == b"PROXY UNKNOWN\r\n"
    h = parse(build_v2("::1", 1, "127.0.0.1", 2))   # mixed families: LOCAL
    assert h is not None and h.command == "LOCAL"


def test_fuzz_only_proxy_protocol_errors() -> None:
    rnd = random.Random(7)
    seeds = [build_v1("1.2.3.4", 1, "5.6.7.8", 2), build_v2("1.2.3.4", 1, "5.6.7.8", 2),
             build_v2("::1", 1, "::2", 2)]
    for _ in range(5000):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        try:
            parse(bytes(data[:rnd.randint(0, len(data))]))
        except ProxyProtocolError:
            pass
