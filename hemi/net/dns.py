"""The little of DNS (RFC 1035 §4.1) that a forwarder needs, sans-IO: read and check a message
header, find the end of the question, and build a SERVFAIL answer to a query.

A forwarder does not interpret records; it only has to refuse what is not a DNS query, match a
reply to its query by ID, and answer for an upstream that never did.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER_SIZE = 12
RCODE_SERVFAIL = 2


class DnsError(Exception):
    """Not a well-formed DNS message (for our purposes)."""


@dataclass(frozen=True, slots=True)
class Header:
    id: int
    qr: bool          # True in a response
    opcode: int
    rd: bool
    rcode: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int


def parse_header(data: bytes) -> Header:
    if len(data) < HEADER_SIZE:
        raise DnsError(f"message of {len(data)} bytes is shorter than a DNS header")
    mid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data)
    return Header(mid, bool(flags & 0x8000), (flags >> 11) & 0xF, bool(flags & 0x0100), flags & 0xF, qd, an, ns, ar)


def check_query(data: bytes) -> Header:
    """The header of ``data`` if it is a query with one question that ends inside the message."""
    h = parse_header(data)
    if h.qr:
        raise DnsError("a response where a query was expected")
    if h.qdcount != 1:
        raise DnsError(f"{h.qdcount} questions, expected 1")
    question_end(data)
    return h


def question_end(data: bytes) -> int:
    """Offset just past the first question (QNAME, QTYPE, QCLASS). Raises DnsError if cut."""
    pos = HEADER_SIZE
    n = len(data)
    while True:
        if pos >= n:
            raise DnsError("question name is cut short")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0:
            raise DnsError("compression pointer or reserved label type in a question")
        pos += 1 + length
    pos += 4
    if pos > n:
        raise DnsError("question type and class are cut short")
    return pos


def servfail(query: bytes) -> bytes:
    """The answer for a query no upstream answered: same ID, opcode, RD and question;
    QR=1, RA=1, RCODE=SERVFAIL, no records."""
    h = parse_header(query)
    end = question_end(query)
    flags = 0x8000 | (h.opcode << 11) | (0x0100 if h.rd else 0) | 0x0080 | RCODE_SERVFAIL
    return struct.pack("!HHHHHH", h.id, flags, 1, 0, 0, 0) + query[HEADER_SIZE:end]


def build_query(mid: int, name: str, qtype: int = 1, rd: bool = True) -> bytes:
    """A one-question query (for tests and health probes)."""
    qname = b"".join(bytes((len(p),)) + p.encode("ascii") for p in name.rstrip(".").split(".") if p) + b"\0"
    return struct.pack("!HHHHHH", mid, 0x0100 if rd else 0, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


__all__ = ["DnsError", "Header", "parse_header", "check_query", "question_end", "servfail", "build_query"]
