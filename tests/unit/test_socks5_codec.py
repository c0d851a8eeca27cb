"""The sans-IO SOCKS5 codec: whole messages, messages cut anywhere, and garbage."""

from __future__ import annotations

import random

import pytest

from hemi.net import socks5 as s5
from hemi.net.socks5 import NEED_DATA, Greeting, Request, ServerParser, Socks5Error, UserPass


def events(parser: ServerParser) -> list:
    out = []
    while True:
        ev = parser.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)
        if isinstance(ev, Greeting) and s5.METHOD_USERPASS in ev.methods:
            parser.expect_auth()


def conversation(auth: bool, host: str, port: int, cmd: int = s5.CMD_CONNECT) -> bytes:
    data = s5.client_greeting(bytes((s5.METHOD_USERPASS,)) if auth else bytes((s5.METHOD_NO_AUTH,)))
    if auth:
        data += s5.client_userpass("alice", "s3cr3t")
    return data + s5.client_request(cmd, host, port)


@pytest.mark.parametrize("host,atyp", [("127.0.0.1", s5.ATYP_IPV4), ("::1", s5.ATYP_IPV6),
                                       ("2001:db8::5", s5.ATYP_IPV6), ("example.com", s5.ATYP_DOMAIN)])
@pytest.mark.parametrize("auth", [False, True])
def test_whole_conversation(host: str, atyp: int, auth: bool) -> None:
    p = ServerParser()
    p.feed(conversation(auth, host, 8443) + b"early bytes")
    evs = events(p)
    expected: list = [Greeting(bytes((s5.METHOD_USERPASS if auth else s5.METHOD_NO_AUTH,)))]
    if auth:
        expected.append(UserPass("alice", "s3cr3t"))
    expected.append(Request(s5.CMD_CONNECT, atyp, host, 8443))
    assert evs == expected
    assert p.take_buffer() == b"early bytes"


@pytest.mark.parametrize("auth", [False, True])
def test_byte_by_byte_gives_the_same_events(auth: bool) -> None:
    data = conversation(auth, "host-1.example.org", 443, s5.CMD_UDP_ASSOCIATE)
    p = ServerParser()
    got = []
    for i in range(len(data)):
        p.feed(data[i:i + 1])
        got += events(p)
    assert [type(e) for e in got] == ([Greeting, UserPass, Request] if auth else [Greeting, Request])
    assert got[-1] == Request(s5.CMD_UDP_ASSOCIATE, s5.ATYP_DOMAIN, "host-1.example.org", 443)


@pytest.mark.parametrize("cut", range(1, 12))
def test_truncated_request_needs_data_and_never_raises(cut: int) -> None:
    msg = s5.client_request(s5.CMD_CONNECT, "10.1.2.3", 80)
    p = ServerParser()
    p.feed(s5.client_greeting())
    assert isinstance(p.next_event(), Greeting)
    p.feed(msg[:cut - 1] if cut <= len(msg) else msg)
    ev = p.next_event()
    if cut - 1 < len(msg):
        assert ev is NEED_DATA
    else:
        assert ev == Request(1, s5.ATYP_IPV4, "10.1.2.3", 80)


@pytest.mark.parametrize("data,reply", [
    (b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", None),            # an HTTP client at a SOCKS port
    (b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", None),          # SOCKS4
    (b"\x05\x00", None),                                        # no methods offered
])
def test_garbage_greeting_raises(data: bytes, reply: int | None) -> None:
    p = ServerParser()
    p.feed(data)
    with pytest.raises(Socks5Error) as e:
        p.next_event()
    assert e.value.reply is reply
    with pytest.raises(Socks5Error):  # dead after an error
        p.next_event()


def test_an_http_request_is_named_in_the_error() -> None:
    p = ServerParser()
    p.feed(b"G")
    with pytest.raises(Socks5Error, match="HTTP"):
        p.next_event()


@pytest.mark.parametrize("request_bytes,reply", [
    (b"\x05\x09\x00\x01\x7f\x00\x00\x01\x00\x50", s5.REP_COMMAND_NOT_SUPPORTED),  # unknown command
    (b"\x05\x01\x00\x07\x7f\x00\x00\x01\x00\x50", s5.REP_ADDRESS_TYPE_NOT_SUPPORTED),
    (b"\x05\x01\x01\x01\x7f\x00\x00\x01\x00\x50", s5.REP_GENERAL_FAILURE),  # reserved byte set
    (b"\x05\x01\x00\x03\x00\x00\x50", s5.REP_GENERAL_FAILURE),              # empty domain name
    (b"\x05\x01\x00\x03\x05a\x00b c\x00\x50", s5.REP_GENERAL_FAILURE),      # NUL and space in a name
    (b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50", None),                   # wrong version
])
def test_bad_requests_carry_their_reply_code(request_bytes: bytes, reply: int | None) -> None:
    p = ServerParser()
    p.feed(s5.client_greeting() + request_bytes)
    assert isinstance(p.next_event(), Greeting)
    with pytest.raises(Socks5Error) as e:
        p.next_event()
    assert e.value.reply == reply


def test_bad_auth_version() -> None:
    p = ServerParser()
    p.feed(s5.client_greeting(b"\x02") + b"\x05\x05alice\x01x")
    assert isinstance(p.next_event(), Greeting)
    p.expect_auth()
    with pytest.raises(Socks5Error, match="version"):
        p.next_event()


def test_random_garbage_only_raises_socks5error_or_needs_data() -> None:
    rnd = random.Random(5)
    for _ in range(3000):
        p = ServerParser()
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 40)))
        if rnd.random() < 0.5:
            data = b"\x05" + data  # get past the version check more often
        p.feed(data)
        try:
            for _ in range(4):
                ev = p.next_event()
                if isinstance(ev, Greeting) and rnd.random() < 0.5:
                    p.expect_auth()
        except Socks5Error:
            pass


def test_replies_and_addresses_round_trip() -> None:
    for host in ("127.0.0.1", "::1", "example.com"):
        raw = s5.reply(s5.REP_SUCCEEDED, host, 1080)
        parsed = s5.parse_reply(raw + b"tail")
        assert parsed is not None
        r, n = parsed
        assert (r.rep, r.host, r.port, n) == (0, host, 1080, len(raw))
        assert s5.parse_reply(raw[:-1]) is None
    assert s5.method_selection(s5.METHOD_NONE_ACCEPTABLE) == b"\x05\xff"
    assert s5.auth_status(True) == b"\x01\x00" and s5.auth_status(False) == b"\x01\x01"
    assert s5.encode_address("[::1]", 53)[0] == s5.ATYP_IPV6
    with pytest.raises(ValueError):
        s5.encode_address("a" * 256, 1)


def test_udp_header_round_trip_and_garbage() -> None:
    for host in ("10.0.0.1", "fe80::1", "dns.example"):
        d = s5.build_udp(host, 53, b"payload")
        u = s5.parse_udp(d)
        assert (u.frag, u.host, u.port, u.data) == (0, host, 53, b"payload")
    assert s5.parse_udp(s5.build_udp("1.2.3.4", 1, b"", frag=3)).frag == 3
    for bad in (b"", b"\x00\x00\x00", b"\x01\x00\x00\x01\x01\x02\x03\x04\x00\x35",
                b"\x00\x00\x00\x01\x01\x02", b"\x00\x00\x00\x09rest", b"\x00\x00\x00\x03\x10short"):
        with pytest.raises(Socks5Error):
            s5.parse_udp(bad)


# -- destination rules (hemi.net.destinations), used by socksServer ------------------------------------------
def test_destination_rules() -> None:
    from hemi.net.destinations import Destinations

    d = Destinations(allow=("127.0.0.0/8", "::1", "*.example.com", "exact.test"), deny=("127.0.0.2", "bad.example.com"))
    assert d.usable("127.0.0.1", ["127.0.0.1"]) == ["127.0.0.1"]
    assert d.usable("::1", ["::1"]) == ["::1"]
    assert d.usable("127.0.0.2", ["127.0.0.2"]) == []           # denied address
    assert d.usable("10.0.0.1", ["10.0.0.1"]) == []             # not in the allow list
    assert d.usable("a.example.com", ["10.0.0.1"]) == ["10.0.0.1"]  # allowed by name
    assert d.usable("example.com", ["10.0.0.1"]) == []          # "*.x" is the names under x only
    assert d.name_denied("BAD.example.com") and d.usable("bad.example.com", ["127.0.0.1"]) == []
    assert d.usable("evil.test", ["127.0.0.2", "127.0.0.3"]) == ["127.0.0.3"]  # deny beats a name
    assert d.usable("exact.test", ["8.8.8.8"]) == ["8.8.8.8"]
    assert d.usable("x", ["::ffff:127.0.0.2"]) == []            # v4-mapped is the v4 address
    assert Destinations().open and Destinations().usable("any", ["1.2.3.4"]) == ["1.2.3.4"]
    assert Destinations(deny=("*",)).usable("1.2.3.4", ["1.2.3.4"]) == []
    for bad in ("10.0.0.0/99", "*.", "a b", "*.-/x"):
        with pytest.raises(ValueError):
            Destinations(allow=(bad,))
