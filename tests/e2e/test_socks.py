"""socksServer and echoServer end to end: curl through SOCKS5 (with and without remote name
resolution, with a password) to real upstreams on IPv4 and IPv6, UDP ASSOCIATE driven by a
small client, refusals and garbage (each a clean close and one log line)."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
import time
from typing import Iterator

import pytest

from hemi.net import socks5 as s5

from .upstreams import Farm, pattern

CONFIG = """
stage {{
    echoServer "echo" {{
        .address = "127.0.0.1:{port0}"
        .readTimeout = 1s
    }}
    socksServer "open" {{
        .address = "127.0.0.1:{port1}"
        .deny = ("127.0.0.2", "*.denied.test", "::2")
        .readTimeout = 2s
    }}
    socksServer "auth" {{
        .address = "127.0.0.1:{port2}"
        .users = ["alice": "secret", "bob": "hunter2"]
        .allow = ("127.0.0.0/8", "::1", "localhost")
    }}
}}
"""


@pytest.fixture(scope="module")
def farm() -> Iterator[Farm]:
    f = Farm()
    yield f
    f.close()


@pytest.fixture(scope="module")
def g(gorox_module):  # type: ignore[no-untyped-def]
    return gorox_module(CONFIG, ports=3)


def curl(*args: str, timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args], capture_output=True, timeout=timeout + 5)


def wait_log(g, text: str, timeout: float = 5.0) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = g.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log:\n{g.log()[-3000:]}")


def socks_handshake(port: int, cmd: int, host: str, dport: int, auth: tuple[str, str] | None = None) -> tuple[socket.socket, s5.Reply]:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if auth is None:
        s.sendall(s5.client_greeting())
        assert s.recv(2) == b"\x05\x00"
    else:
        s.sendall(s5.client_greeting(bytes((s5.METHOD_USERPASS,))) + s5.client_userpass(*auth))
        assert s.recv(2) == b"\x05\x02"
        assert s.recv(2) == b"\x01\x00"
    s.sendall(s5.client_request(cmd, host, dport))
    buf = b""
    while True:
        parsed = s5.parse_reply(buf)
        if parsed is not None:
            return s, parsed[0]
        data = s.recv(512)
        assert data, "closed before the reply"
        buf += data


def recv_all(s: socket.socket) -> bytes:
    out = []
    while data := s.recv(65536):
        out.append(data)
    return b"".join(out)


# -- echoServer -----------------------------------------------------------------------------------------------
def test_echo_echoes_until_the_client_is_done(g) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection(("127.0.0.1", g.ports[0]), timeout=5) as s:
        s.sendall(b"hello, echo")
        assert s.recv(100) == b"hello, echo"
        s.sendall(b"more")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"more"  # then EOF: the server closed after the echo


def test_echo_large_transfer_with_a_slow_reader(g) -> None:  # type: ignore[no-untyped-def]
    data = pattern(8 << 20)
    with socket.create_connection(("127.0.0.1", g.ports[0]), timeout=10) as s:
        sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
        sender.start()
        time.sleep(0.3)  # not reading for a while: the server must stop reading, not buffer it all
        got = recv_all(s)
        sender.join(10)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_echo_back_pressure_bounds_what_a_non_reader_can_push(g) -> None:  # type: ignore[no-untyped-def]
    """A client that never reads can push only what fits in kernel buffers and the server's
    write buffer: once they are full, the server stops reading."""
    s = socket.create_connection(("127.0.0.1", g.ports[0]), timeout=5)
    s.setblocking(False)
    chunk = b"x" * 65536
    sent = 0
    last_progress = time.monotonic()
    try:
        while sent < 200 << 20 and time.monotonic() - last_progress < 0.5:
            try:
                sent += s.send(chunk)
                last_progress = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        s.close()
    assert sent < 64 << 20, f"the server read {sent} bytes it could not echo"


def test_echo_idle_client_is_closed_after_read_timeout(g) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection(("127.0.0.1", g.ports[0]), timeout=5) as s:
        start = time.monotonic()
        assert s.recv(10) == b""
        assert 0.8 < time.monotonic() - start < 3.5


# -- socksServer: CONNECT with curl ----------------------------------------------------------------------------
def test_curl_socks5_hostname_resolves_on_the_proxy(g, farm) -> None:  # type: ignore[no-untyped-def]
    node = farm.node("v4")
    r = curl("--socks5-hostname", f"127.0.0.1:{g.ports[1]}", f"http://localhost:{node.port}/who")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"v4"


def test_curl_socks5_ipv4_and_a_large_body(g, farm) -> None:  # type: ignore[no-untyped-def]
    node = farm.node("big")
    n = 24 << 20
    r = curl("--socks5", f"127.0.0.1:{g.ports[1]}", f"http://127.0.0.1:{node.port}/big?n={n}")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == n and r.stdout == pattern(n)


def test_curl_socks5_ipv6_target(g, farm) -> None:  # type: ignore[no-untyped-def]
    node = farm.node("v6", host="::1")
    r = curl("--socks5", f"127.0.0.1:{g.ports[1]}", f"http://[::1]:{node.port}/who")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"v6"


def test_curl_with_password(g, farm) -> None:  # type: ignore[no-untyped-def]
    node = farm.node("authed")
    r = curl("--socks5-hostname", f"127.0.0.1:{g.ports[2]}", "--proxy-user", "alice:secret",
             f"http://localhost:{node.port}/who")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"authed"


def test_wrong_password_is_refused_and_logged(g, farm) -> None:  # type: ignore[no-untyped-def]
    node = farm.node("secret")
    r = curl("--socks5", f"127.0.0.1:{g.ports[2]}", "--proxy-user", "alice:wrong", f"http://127.0.0.1:{node.port}/who")
    assert r.returncode == 97 and node.requests == 0
    wait_log(g, 'failed authentication as "alice"')


def test_no_auth_is_refused_when_users_are_configured(g, farm) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection(("127.0.0.1", g.ports[2]), timeout=5) as s:
        s.sendall(s5.client_greeting())
        assert s.recv(2) == b"\x05\xff"
        assert s.recv(10) == b""
    wait_log(g, "username/password required")


@pytest.mark.parametrize("url,hostname", [("http://127.0.0.2:{p}/who", False), ("http://x.denied.test:{p}/who", True),
                                          ("http://10.1.2.3:{p}/who", False)])
def test_denied_destination_gets_reply_2(g, farm, url: str, hostname: bool) -> None:  # type: ignore[no-untyped-def]
    node = farm.node("denied")
    # The "auth" server allows only 127/8, ::1 and localhost; the "open" one denies a list.
    port, user = (g.ports[2], ["--proxy-user", "bob:hunter2"]) if "10.1.2.3" in url else (g.ports[1], [])
    r = curl("--socks5-hostname" if hostname else "--socks5", f"127.0.0.1:{port}", *user, url.format(p=node.port))
    assert r.returncode == 97, r
    assert b"(2)" in r.stderr  # curl names the SOCKS reply code
    assert node.requests == 0
    wait_log(g, "refused by .")


def test_refused_upstream_gets_reply_5(g) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    s, rep = socks_handshake(g.ports[1], s5.CMD_CONNECT, "127.0.0.1", closed_port)
    with s:
        assert rep.rep == s5.REP_CONNECTION_REFUSED
        assert s.recv(10) == b""


def test_unresolvable_name_gets_reply_4(g) -> None:  # type: ignore[no-untyped-def]
    s, rep = socks_handshake(g.ports[1], s5.CMD_CONNECT, "no-such-host.invalid", 80)
    with s:
        assert rep.rep == s5.REP_HOST_UNREACHABLE


def test_bind_is_not_supported(g) -> None:  # type: ignore[no-untyped-def]
    s, rep = socks_handshake(g.ports[1], s5.CMD_BIND, "127.0.0.1", 80)
    with s:
        assert rep.rep == s5.REP_COMMAND_NOT_SUPPORTED
        assert s.recv(10) == b""


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00",
                                     b"\x05\x01\x00\x05\x09\x00\x01\x7f\x00\x00\x01\x00\x50",
                                     bytes(range(256))])
def test_garbage_gets_a_clean_close_and_a_log_line(g, farm, garbage: bytes) -> None:  # type: ignore[no-untyped-def]
    before = g.log().count("sent garbage")
    with socket.create_connection(("127.0.0.1", g.ports[1]), timeout=5) as s:
        s.sendall(garbage)
        s.recv(100)  # maybe a method selection or a reply first...
        s.settimeout(3)
        while s.recv(100):  # ...then the close, not a hang
            pass
    deadline = time.monotonic() + 5
    while g.log().count("sent garbage") <= before:
        assert time.monotonic() < deadline, g.log()[-2000:]
        time.sleep(0.05)
    node = farm.node("after-garbage")  # the server is still fine
    assert curl("--socks5", f"127.0.0.1:{g.ports[1]}", f"http://127.0.0.1:{node.port}/who").stdout == b"after-garbage"


def test_truncated_handshake_is_timed_out(g) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection(("127.0.0.1", g.ports[1]), timeout=6) as s:
        s.sendall(b"\x05\x01\x00\x05\x01\x00\x03\x20half")  # a request cut in its domain name
        assert s.recv(2) == b"\x05\x00"
        start = time.monotonic()
        assert s.recv(10) == b""
        assert time.monotonic() - start < 4
    wait_log(g, "handshake not done within 2s")


def test_half_close_travels_through_the_tunnel(g) -> None:  # type: ignore[no-untyped-def]
    """Client EOF -> echoServer's EOF -> its close -> our client sees every byte, then EOF."""
    s, rep = socks_handshake(g.ports[1], s5.CMD_CONNECT, "127.0.0.1", g.ports[0])
    with s:
        assert rep.rep == 0
        data = pattern(3 << 20)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        got = []
        last = time.monotonic()
        while chunk := s.recv(65536):
            got.append(chunk)
            last = time.monotonic()
        assert b"".join(got) == data
        # The EOF follows the last byte at once (not after the echo server's 1s idle timeout).
        assert time.monotonic() - last < 0.6


def test_tunnel_idle_timeout(g, farm) -> None:  # type: ignore[no-untyped-def]
    node = farm.node("idle")
    s, rep = socks_handshake(g.ports[1], s5.CMD_CONNECT, "127.0.0.1", node.port)
    with s:
        assert rep.rep == 0
        s.settimeout(6)
        start = time.monotonic()
        assert s.recv(10) == b""  # .readTimeout = 2s of silence both ways ends the tunnel
        assert 1.5 < time.monotonic() - start < 5
    wait_log(g, "idle timeout")


def test_early_data_sent_with_the_request(g, farm) -> None:  # type: ignore[no-untyped-def]
    node = farm.node("early")
    s = socket.create_connection(("127.0.0.1", g.ports[1]), timeout=5)
    with s:
        s.sendall(s5.client_greeting() + s5.client_request(s5.CMD_CONNECT, "127.0.0.1", node.port) +
                  b"GET /who HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        got = recv_all(s)
    assert got.startswith(b"\x05\x00\x05\x00\x00\x01")
    assert got.endswith(b"\r\n\r\nearly")


# -- socksServer: UDP ASSOCIATE ---------------------------------------------------------------------------------
class UdpEcho:
    """A UDP echo upstream in a thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[tuple[bytes, str]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65536)
            except OSError:
                return
            self.seen.append((data, addr[0]))
            self.sock.sendto(b"echo:" + data, addr)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def udp_echo() -> Iterator[UdpEcho]:
    e = UdpEcho()
    yield e
    e.close()


def associate(g, auth: tuple[str, str] | None = None, port_index: int = 1) -> tuple[socket.socket, socket.socket, tuple]:  # type: ignore[no-untyped-def]
    ctl, rep = socks_handshake(g.ports[port_index], s5.CMD_UDP_ASSOCIATE, "0.0.0.0", 0, auth)
    assert rep.rep == 0 and rep.host == "127.0.0.1" and rep.port
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.settimeout(3)
    return ctl, u, (rep.host, rep.port)


def test_udp_associate_relays_both_ways(g, udp_echo) -> None:  # type: ignore[no-untyped-def]
    ctl, u, relay = associate(g)
    with ctl, u:
        for i in range(5):
            u.sendto(s5.build_udp("127.0.0.1", udp_echo.port, b"ping%d" % i), relay)
            d = s5.parse_udp(u.recv(65536))
            assert (d.host, d.port, d.data) == ("127.0.0.1", udp_echo.port, b"echo:ping%d" % i)
        # A domain name is resolved by the proxy.
        u.sendto(s5.build_udp("localhost", udp_echo.port, b"by-name"), relay)
        d = s5.parse_udp(u.recv(65536))
        assert d.data == b"echo:by-name" and d.port == udp_echo.port
        big = pattern(60000)
        u.sendto(s5.build_udp("127.0.0.1", udp_echo.port, big), relay)
        assert s5.parse_udp(u.recv(65536)).data == b"echo:" + big


def test_udp_associate_ipv6_target_and_auth(g) -> None:  # type: ignore[no-untyped-def]
    e6 = UdpEcho("::1")
    try:
        ctl, u, relay = associate(g, ("bob", "hunter2"), port_index=2)
        with ctl, u:
            u.sendto(s5.build_udp("::1", e6.port, b"six"), relay)
            d = s5.parse_udp(u.recv(65536))
            assert (d.host, d.data) == ("::1", b"echo:six")
    finally:
        e6.close()


def test_udp_denied_garbage_and_strangers_are_dropped(g, udp_echo) -> None:  # type: ignore[no-untyped-def]
    ctl, u, relay = associate(g)
    with ctl, u:
        u.settimeout(0.5)
        u.sendto(s5.build_udp("127.0.0.2", udp_echo.port, b"denied"), relay)
        u.sendto(b"\x00\x00\x00\x09garbage", relay)
        u.sendto(s5.build_udp("127.0.0.1", udp_echo.port, b"fragment", frag=1), relay)
        with pytest.raises(socket.timeout):
            u.recv(65536)
        assert udp_echo.seen == []
        # Still alive: a good datagram after the bad ones.
        u.settimeout(3)
        u.sendto(s5.build_udp("127.0.0.1", udp_echo.port, b"ok"), relay)
        assert s5.parse_udp(u.recv(65536)).data == b"echo:ok"


def test_udp_association_ends_with_its_tcp_connection(g, udp_echo) -> None:  # type: ignore[no-untyped-def]
    ctl, u, relay = associate(g)
    with u:
        u.sendto(s5.build_udp("127.0.0.1", udp_echo.port, b"one"), relay)
        assert s5.parse_udp(u.recv(65536)).data == b"echo:one"
        ctl.close()
        time.sleep(0.3)
        u.settimeout(0.5)
        u.sendto(s5.build_udp("127.0.0.1", udp_echo.port, b"two"), relay)
        with pytest.raises((socket.timeout, ConnectionRefusedError)):
            u.recv(65536)
        assert [d for d, _ in udp_echo.seen] == [b"one"]
