"""The ClientHello reader on real ClientHellos (made by Python's ssl module, as a client would
send them), fed whole, byte by byte and cut, plus broken ones."""

from __future__ import annotations

import ssl

import pytest

from hemi.net.clienthello import MAX_HELLO, ClientHello, HelloError, NotTLS, read_client_hello


def client_hello(server_name: str | None, alpn: list[str] | None = None) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_reads_the_sni_name_and_alpn() -> None:
    data = client_hello("Api.Example.COM", ["h2", "http/1.1"])
    hello = read_client_hello(data)
    assert hello == ClientHello("api.example.com", ("h2", "http/1.1"), len(data))


def test_no_sni_gives_an_empty_name() -> None:
    hello = read_client_hello(client_hello(None))
    assert hello is not None and hello.server_name == ""


def test_every_prefix_needs_more_bytes_and_never_fails() -> None:
    data = client_hello("a.test")
    for cut in range(len(data)):
        assert read_client_hello(data[:cut]) is None, cut
    assert read_client_hello(data).server_name == "a.test"  # type: ignore[union-attr]


def test_extra_bytes_after_the_hello_are_ignored_and_length_says_where_it_ends() -> None:
    data = client_hello("a.test")
    hello = read_client_hello(data + b"\x17\x03\x03junk")
    assert hello is not None and hello.length == len(data)


def test_a_hello_split_over_two_records() -> None:
    data = client_hello("split.test")
    body = data[5:]
    half = len(body) // 2
    records = (b"\x16\x03\x01" + half.to_bytes(2, "big") + body[:half]
               + b"\x16\x03\x01" + (len(body) - half).to_bytes(2, "big") + body[half:])
    assert read_client_hello(records[:-1]) is None
    assert read_client_hello(records).server_name == "split.test"  # type: ignore[union-attr]


def test_not_tls_is_told_apart_from_broken_tls() -> None:
    with pytest.raises(NotTLS):
        read_client_hello(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HelloError) as e:
        read_client_hello(b"\x16\x09\x01\x00\x10" + b"x" * 16)
    assert not isinstance(e.value, NotTLS)


@pytest.mark.parametrize("bad", [
    b"\x16\x03\x01\x00\x00",                                   # empty record
    b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",                # a ServerHello, not a ClientHello
    b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00",    # body too short for its random
    b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00" + b"\x17\x03\x03\x00\x01x",  # other record type mid-hello
])
def test_malformed_hellos_raise(bad: bytes) -> None:
    with pytest.raises(HelloError):
        read_client_hello(bad)


def test_an_oversized_hello_is_refused_without_waiting_for_all_of_it() -> None:
    header = b"\x16\x03\x01\x40\x00" + b"\x01" + (MAX_HELLO + 10).to_bytes(3, "big")
    with pytest.raises(HelloError, match="larger"):
        read_client_hello(header + b"\x03\x03" + b"\0" * 100)


def test_garbage_never_raises_anything_but_hello_error() -> None:
    import random
    rnd = random.Random(5)
    base = client_hello("fuzz.test")
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rnd.randint(1, 6)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        data = data[:rnd.randint(0, len(data))]
        try:
            read_client_hello(bytes(data))
        except HelloError:
            pass
