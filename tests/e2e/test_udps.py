"""udpsMesher end to end: dig through udpsProxy and dnsDealer to a real dnsmasq (Debian's
dnsmasq-base, on loopback, answering from a hosts file written here), udpsProxy to a Python
UDP echo upstream, cases on $srcHost, session timeouts, and garbage datagrams."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from hemi.net import dns

from ..conftest import free_port
from .test_socks import UdpEcho

pytestmark = pytest.mark.skipif(not (shutil.which("dnsmasq") and shutil.which("dig")),
                                reason="needs dnsmasq-base and dnsutils (apt-get install -y dnsmasq-base dnsutils)")


def udp_free_port() -> int:
    return free_port()  # free for UDP too, and never handed out again


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp: Path = tmp_path_factory.mktemp("dnsmasq")
    hosts = tmp / "hosts"
    hosts.write_text("10.9.8.7 db.test.lan\n10.9.8.8 web.test.lan\nfd00::77 six.test.lan\n")
    port = udp_free_port()
    proc = subprocess.Popen(["dnsmasq", "--no-daemon", f"--port={port}", "--listen-address=127.0.0.1",
                             "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}",
                             "--conf-file=/dev/null"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while dig(port, "db.test.lan", tries=1, timeout=1) != ["10.9.8.7"]:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "dnsmasq did not start"
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def dig(port: int, name: str, qtype: str = "A", tries: int = 1, timeout: int = 3) -> list[str]:
    r = subprocess.run(["dig", "+short", f"+time={timeout}", f"+tries={tries}", "@127.0.0.1", "-p", str(port),
                        name, qtype], capture_output=True, text=True, timeout=30)
    return r.stdout.split()


def dig_status(port: int, name: str) -> str:
    r = subprocess.run(["dig", "+time=5", "+tries=1", "@127.0.0.1", "-p", str(port), name],
                       capture_output=True, text=True, timeout=30)
    for line in r.stdout.splitlines():
        if "status:" in line:
            return line.split("status:")[1].split(",")[0].strip()
    return r.stdout


CONFIG = """
stage {{
    udpsBackend "dns" {{
        .nodes = ( [ "address": "127.0.0.1:DNS_PORT" ] )
    }}
    udpsBackend "echo" {{
        .nodes = ( [ "address": "127.0.0.1:ECHO_PORT" ] )
    }}
    udpsMesher "proxy" {{
        .address = "127.0.0.1:{port0}"
        .sessionTimeout = 1s
        case $srcHost == "127.0.0.1" {{
            udpsProxy {{ .toBackend = "dns" }}
        }}
    }}
    udpsMesher "echo" {{
        .address = "127.0.0.1:{port1}"
        .sessionTimeout = 1s
        case {{
            udpsProxy {{ .toBackend = "echo" }}
        }}
    }}
    udpsMesher "resolver" {{
        .address = "127.0.0.1:{port2}"
        case $transport == "udp" {{
            dnsDealer {{
                .upstreams = ("127.0.0.1:DEAD_PORT", "127.0.0.1:DNS_PORT")
                .timeout = 300ms
            }}
        }}
    }}
    udpsMesher "nobody" {{
        .address = "127.0.0.1:{port3}"
        case {{
            dnsDealer {{
                .upstreams = ("127.0.0.1:DEAD_PORT")
                .timeout = 300ms
            }}
        }}
    }}
    udpsMesher "picky" {{
        .address = "127.0.0.1:{port4}"
        case $srcHost == "10.0.0.1" {{
            udpsProxy {{ .toBackend = "dns" }}
        }}
    }}
    // A TCP listener on the same port must not be needed: this one only proves the first
    // gate is really UDP (gorox's readiness check uses TCP, so a TCP echo sits on port0).
    echoServer "tcpReady" {{
        .address = "127.0.0.1:{port0}"
    }}
}}
"""


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[UdpEcho]:
    e = UdpEcho()
    yield e
    e.close()


@pytest.fixture(scope="module")
def g(gorox_module, dnsmasq, echo_upstream):  # type: ignore[no-untyped-def]
    text = (CONFIG.replace("DNS_PORT", str(dnsmasq)).replace("ECHO_PORT", str(echo_upstream.port))
            .replace("DEAD_PORT", str(udp_free_port())))
    return gorox_module(text, ports=5)


def test_dig_through_udps_proxy(g) -> None:  # type: ignore[no-untyped-def]
    assert dig(g.ports[0], "db.test.lan") == ["10.9.8.7"]
    assert dig(g.ports[0], "web.test.lan") == ["10.9.8.8"]
    assert dig(g.ports[0], "six.test.lan", "AAAA") == ["fd00::77"]


def test_dns_dealer_tries_the_next_upstream(g) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    assert dig(g.ports[2], "db.test.lan") == ["10.9.8.7"]
    assert time.monotonic() - start < 2.5  # the dead first upstream costs one .timeout, not dig's retry
    # dnsmasq without upstreams refuses names it does not hold: its answer is relayed, not ours.
    assert dig_status(g.ports[2], "nothing.test.lan") == "REFUSED"


def test_dns_dealer_answers_servfail_when_no_upstream_answers(g) -> None:  # type: ignore[no-untyped-def]
    assert dig_status(g.ports[3], "db.test.lan") == "SERVFAIL"


def test_udps_proxy_to_udp_echo_keeps_datagram_boundaries(g, echo_upstream) -> None:  # type: ignore[no-untyped-def]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.connect(("127.0.0.1", g.ports[1]))
        for payload in (b"a", b"bb" * 1000, b"c" * 60000):
            s.send(payload)
            assert s.recv(65536) == b"echo:" + payload
    # Another client address is another session (and another upstream socket).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s2:
        s2.settimeout(3)
        s2.connect(("127.0.0.1", g.ports[1]))
        s2.send(b"second")
        assert s2.recv(100) == b"echo:second"
    sources = {addr for data, addr in echo_upstream.seen}
    assert sources == {"127.0.0.1"}


def test_sessions_end_after_session_timeout_and_are_logged(g) -> None:  # type: ignore[no-untyped-def]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.connect(("127.0.0.1", g.ports[1]))
        s.send(b"x")
        assert s.recv(100) == b"echo:x"
        port = s.getsockname()[1]
        log = g.base / "data" / "log" / "echo.access.log"
        deadline = time.monotonic() + 6
        while True:
            text = log.read_text() if log.exists() else ""
            line = [ln for ln in text.splitlines() if f"127.0.0.1:{port} udp" in ln]
            if line:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        assert 'reason="ok: idle"' in line[0] and "in=1 out=6" in line[0]


def test_no_case_matches_closes_the_session_and_logs(g) -> None:  # type: ignore[no-untyped-def]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(dns.build_query(7, "db.test.lan"), ("127.0.0.1", g.ports[4]))
        with pytest.raises((socket.timeout, ConnectionRefusedError)):
            s.recv(512)
    deadline = time.monotonic() + 5
    while "no case matched" not in g.log():
        assert time.monotonic() < deadline, g.log()[-2000:]
        time.sleep(0.05)


def test_garbage_datagrams_are_dropped_by_dns_dealer(g) -> None:  # type: ignore[no-untyped-def]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.7)
        s.connect(("127.0.0.1", g.ports[2]))
        for junk in (b"", b"\x00" * 5, b"hello world, not dns", dns.build_query(9, "x.lan")[:-3]):
            s.send(junk)
        with pytest.raises(socket.timeout):
            s.recv(512)
        # The same session still forwards a real query.
        s.settimeout(3)
        s.send(dns.build_query(0x4242, "web.test.lan"))
        reply = s.recv(512)
        h = dns.parse_header(reply)
        assert h.id == 0x4242 and h.qr and h.rcode == 0 and h.ancount == 1
        assert bytes([10, 9, 8, 8]) in reply
