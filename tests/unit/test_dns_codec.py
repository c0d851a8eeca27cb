"""The DNS header helpers of dnsDealer: queries pass, everything else is DnsError."""

from __future__ import annotations

import random
import struct

import pytest

from hemi.net import dns


def test_query_round_trip_and_servfail() -> None:
    q = dns.build_query(0x1234, "host.example.test", qtype=28)
    h = dns.check_query(q)
    assert (h.id, h.qr, h.opcode, h.rd, h.qdcount) == (0x1234, False, 0, True, 1)
    assert dns.question_end(q) == len(q)
    sf = dns.servfail(q)
    r = dns.parse_header(sf)
    assert (r.id, r.qr, r.rcode, r.rd, r.qdcount, r.ancount) == (0x1234, True, 2, True, 1, 0)
    assert sf[12:] == q[12:]


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 11,
    struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01",   # a response
    struct.pack("!HHHHHH", 1, 0, 2, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01",        # two questions
    struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x05ab",                           # name cut
    struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x01a\x00\x00\x01",                # type/class cut
    struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",        # pointer
])
def test_not_queries(data: bytes) -> None:
    with pytest.raises(dns.DnsError):
        dns.check_query(data)


def test_random_bytes_only_raise_dnserror() -> None:
    rnd = random.Random(53)
    for _ in range(5000):
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 40)))
        try:
            dns.check_query(data)
            dns.servfail(data)
        except dns.DnsError:
            pass
