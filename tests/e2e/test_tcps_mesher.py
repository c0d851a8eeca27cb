"""tcpsMesher end to end: cases on every variable, the small dealers, tcpsProxy relaying to
real TCP and TLS peers (bulk both ways, half-close, failover, refused and reset upstreams),
SNI routing without terminating TLS (curl, upstreams' own certificates), TLS termination, the
PROXY protocol from a raw client, and bad input. Each bad input must end in a clean close and a
log line, and the gorox process must go on serving."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import trustme

from ..conftest import free_port, wait_port
from .l4util import Peer, closed_by_peer, digest_sink, echo, flood, log_lines, recv_all, reset, wait_for

pytestmark = pytest.mark.timeout(90)


def connect(port: int, data: bytes = b"", *, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if data:
        s.sendall(data)
    return s


def fill(template: str, **ports: int) -> str:
    """Put the peers' ports in a config template (the gorox fixture fills {port}, {base}...)."""
    for key, value in ports.items():
        template = template.replace("{" + key + "}", str(value))
    return template


def still_serving(port: int) -> None:
    """The hello case answers: the worker is alive and accepting."""
    with connect(port) as s:
        assert recv_all(s) == b"hello, world!"


def access_log(g, name: str) -> Path:  # type: ignore[no-untyped-def]
    return g.base / "data" / "log" / f"{name}.access.log"


# -- cases, echo, hello ------------------------------------------------------------------------------
CASES = """
stage {{
    tcpsMesher "m" {{
        .address = "127.0.0.1:{port}"
        case "hello" $srcPort $= "7" {{ helloDealer {{}} }}
        case "deny" $srcPort $= "3" {{ accessDealer {{ .deny = ("127.0.0.0/8") }} helloDealer {{}} }}
        case "pass" $srcPort ~= "1$" {{ accessDealer {{ .allow = ("127.0.0.1/32") }} echoDealer {{}} }}
        case "none" $srcPort $= "5" {{ accessDealer {{ .allow = ("127.0.0.0/8") }} }}
        case "tcp" $transport == "tcp" {{ .dealers = ("hi") }}
        helloDealer "hi" {{}}
    }}
    tcpsMesher "u" {{
        .address = "{base}/l4.sock"
        case $transport != "unix" {{ echoDealer {{}} }}
        case $srcHost !~ "." {{ echoDealer {{}} }}
    }}
    tcpsMesher "last" {{
        .address = "127.0.0.1:{port1}"
        case $srcHost == "10.0.0.1" {{ helloDealer {{}} }}
    }}
}}
"""


def connect_from(port: int, last_digit: str) -> socket.socket:
    """A connection whose source port ends in ``last_digit`` (cases test ``$srcPort``)."""
    import random
    for _ in range(500):
        p = random.randrange(2000, 6000) * 10 + int(last_digit)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            s.connect(("127.0.0.1", port))
            s.settimeout(5)
            return s
        except OSError:
            s.close()
    raise RuntimeError("no source port found")


def test_cases_run_in_order_on_srcport_transport_and_srchost(gorox) -> None:  # type: ignore[no-untyped-def]
    g = gorox(CASES, ports=2)
    with connect_from(g.port, "7") as s:
        assert recv_all(s) == b"hello, world!"
    # accessDealer denies: closed before the greeting, logged.
    with connect_from(g.port, "3") as s:
        assert recv_all(s) == b""
    # accessDealer passes to the next dealer, echoDealer: echo until EOF, then half-close.
    with connect_from(g.port, "1") as s:
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b""
    # Every dealer of "none" passes: the next matching case ("tcp", naming a mesher-level dealer) runs.
    with connect_from(g.port, "5") as s:
        assert recv_all(s) == b"hello, world!"
    # Unix socket: $transport is "unix", $srcHost is "".
    with socket.socket(socket.AF_UNIX) as u:
        u.connect(str(g.base / "l4.sock"))
        u.sendall(b"over unix")
        assert u.recv(100) == b"over unix"
    # No case matches: closed and logged.
    with connect(g.ports[1]) as s:
        assert recv_all(s) == b""
    log = access_log(g, "m")
    assert log_lines(log, 'case=deny dealer=accessDealer#') and log_lines(log, 'reason="denied by accessDealer')
    assert log_lines(log, "case=tcp dealer=hi")
    assert log_lines(access_log(g, "u"), "unix sni=- case=case#")
    assert log_lines(access_log(g, "last"), 'reason="no case matched"')
    assert wait_for(lambda: "no case matched" in g.log())


def test_config_mistakes_name_the_place(gorox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ..conftest import gorox_cmd
    conf = tmp_path / "bad.conf"
    conf.write_text("""stage {
    tcpsMesher "m" {
        .address = "127.0.0.1:1"
        .tlsMode = true
        case $transport == "udp" { tcpsProxy { .toBackend = "nope" } }
        echoDealer "lonely" {}
        case { accessDealer { .allow = ("10.0.0.0/33") } }
    }
}
""")
    r = subprocess.run(gorox_cmd("check", "-config", str(conf), "-base", str(tmp_path)), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    err = r.stderr
    assert "bad.conf:2:5: " in err and "TLS mode" in err
    assert 'bad.conf:5:25: tests $transport against "udp"' in err
    assert 'names backend "nope"' in err
    assert "bad.conf:6:9: " in err and "outside any case" in err
    assert 'holds "10.0.0.0/33"' in err


# -- tcpsProxy --------------------------------------------------------------------------------------
PROXY = """
stage {{
    tcpsBackend "up" {{ .nodes = ( ["address": "127.0.0.1:{up}"] ) }}
    tcpsBackend "two" {{ .nodes = ( ["address": "127.0.0.1:{dead}"], ["address": "127.0.0.1:{up}"] ) }}
    tcpsBackend "dead" {{ .nodes = ( ["address": "127.0.0.1:{dead}"] ) }}
    tcpsBackend "rst" {{ .nodes = ( ["address": "127.0.0.1:{rst}"] ) }}
    tcpsBackend "sink" {{ .nodes = ( ["address": "127.0.0.1:{sink}"] ) }}
    tcpsBackend "tls" {{ .nodes = ( ["address": "127.0.0.1:{tls}"] ) .tlsMode = true }}
    tcpsMesher "m" {{
        .address = "127.0.0.1:{port}"
        .readTimeout = 2s
        case $srcPort $= ("1", "2") {{ countingEditor {{}} tcpsProxy {{ .toBackend = "up" }} }}
        case $srcPort $= ("3", "4") {{ tcpsProxy {{ .toBackend = "two" }} }}
        case $srcPort $= "5" {{ tcpsProxy {{ .toBackend = "dead" }} }}
        case $srcPort $= "6" {{ tcpsProxy {{ .toBackend = "rst" }} }}
        case $srcPort $= "7" {{ helloDealer {{}} }}
        case $srcPort $= "8" {{ tcpsProxy {{ .toBackend = "tls" }} }}
        case {{ tcpsProxy {{ .toBackend = "sink" }} }}
    }}
    tcpsBackend "flood" {{ .nodes = ( ["address": "127.0.0.1:{flood}"] ) }}
    tcpsMesher "slow" {{
        .address = "127.0.0.1:{port1}"
        .writeTimeout = 1s
        .maxConnsPerGate = 2
        case {{ tcpsProxy {{ .toBackend = "flood" }} }}
    }}
}}
"""


@pytest.fixture
def relay(gorox):  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    sink_results: list = []
    peers = {"up": Peer(echo), "rst": Peer(reset), "sink": Peer(digest_sink(sink_results)),
             "tls": Peer(echo, server_ctx), "flood": Peer(flood)}
    conf = fill(PROXY, dead=free_port(), **{k: p.port for k, p in peers.items()})
    g = gorox(conf, ports=2)
    g.peers = peers
    g.sink_results = sink_results
    yield g
    for p in peers.values():
        p.close()


def test_relay_bulk_both_ways_with_half_close_and_counting_editor(relay) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(1 << 20) * 24   # 24 MiB through an echo: back-pressure in both directions
    with connect_from(relay.port, "1") as s:
        s.settimeout(30)
        import threading
        got = bytearray()

        def reader() -> None:
            got.extend(recv_all(s))

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)   # half-close: the echo answers the rest, then closes its side
        t.join(30)
    assert len(got) == len(data) and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    lines = log_lines(access_log(relay, "m"), f"in={len(data)} out={len(data)}")
    assert lines and f"countingEditor#1.in={len(data)} countingEditor#1.out={len(data)}" in lines[0]
    assert "upstream=127.0.0.1:" in lines[0] and 'reason="ok"' in lines[0]


def test_relay_upload_to_a_sink_that_answers_after_eof(relay) -> None:  # type: ignore[no-untyped-def]
    for data in (b"x", os.urandom(1 << 22)):    # one byte and EOF at once: both reach the upstream
        with connect_from(relay.port, "9") as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(20)
            answer = recv_all(s)
        assert answer == f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()


def test_failover_to_the_next_node_when_one_refuses(relay) -> None:  # type: ignore[no-untyped-def]
    for digit in ("3", "4", "3"):
        with connect_from(relay.port, digit) as s:
            s.sendall(b"x")
            assert s.recv(1) == b"x"
    assert relay.peers["up"].conns >= 3


def test_refused_reset_and_idle_upstreams_end_in_a_clean_close_and_a_log_line(relay) -> None:  # type: ignore[no-untyped-def]
    with connect_from(relay.port, "5") as s:
        s.sendall(b"hello?")
        assert closed_by_peer(s)
    with connect_from(relay.port, "6") as s:
        s.sendall(b"hello?")
        assert closed_by_peer(s)
    # Idle: no byte either way for .readTimeout (2s) closes the pair.
    with connect_from(relay.port, "2") as s:
        t0 = time.monotonic()
        assert closed_by_peer(s, timeout=6)
        assert 1.5 < time.monotonic() - t0 < 5
    log = access_log(relay, "m")
    assert log_lines(log, 'reason="upstream failed: backend "dead": ')
    assert log_lines(log, "reset") or log_lines(log, 'dealer=tcpsProxy#')
    assert log_lines(log, "idle for .readTimeout (2s)")
    assert "upstream failed" in relay.log()
    still_serving_digit(relay)


def still_serving_digit(g) -> None:  # type: ignore[no-untyped-def]
    with connect_from(g.port, "7") as s:
        assert recv_all(s) == b"hello, world!"


def test_a_client_that_does_not_read_is_closed_after_write_timeout_and_gates_have_a_limit(relay) -> None:  # type: ignore[no-untyped-def]
    slow = connect(relay.ports[1])
    second = connect(relay.ports[1])
    third = connect(relay.ports[1])     # over .maxConnsPerGate = 2: closed at once
    assert closed_by_peer(third, 3)
    time.sleep(0.2)
    second.close()
    t0 = time.monotonic()
    assert wait_for(lambda: log_lines(access_log(relay, "slow"), "writes stuck for .writeTimeout (1s)", 0.1), 8)
    assert time.monotonic() - t0 < 6
    assert closed_by_peer(slow, 10)    # what was buffered, then the close
    slow.close()
    assert log_lines(access_log(relay, "slow"), 'reason="over .maxConnsPerGate (2)"')
    with connect(relay.ports[1]) as again:   # the slots are free again
        assert again.recv(10)


def test_tls_upstream(relay) -> None:  # type: ignore[no-untyped-def]
    with connect_from(relay.port, "8") as s:
        s.sendall(b"through TLS")
        assert s.recv(100) == b"through TLS"


def test_client_leaving_while_dialing_and_shutdown_with_live_relays(relay) -> None:  # type: ignore[no-untyped-def]
    live = [connect_from(relay.port, "1") for _ in range(5)]
    for s in live:
        s.sendall(b"a")
        assert s.recv(1) == b"a"
    quick = connect_from(relay.port, "1")
    quick.close()
    assert relay.stop(signal.SIGTERM, timeout=15) == 0
    for s in live:
        assert closed_by_peer(s, 2)
        s.close()
    out = relay.log()
    assert "Traceback" not in out and "Exception" not in out


# -- SNI routing without terminating TLS, and TLS termination --------------------------------------------
SNI = """
stage {{
    tcpsBackend "a" {{ .nodes = ( ["address": "127.0.0.1:{a}"] ) }}
    tcpsBackend "b" {{ .nodes = ( ["address": "127.0.0.1:{b}"] ) }}
    tcpsMesher "sni" {{
        .address = "127.0.0.1:{port}"
        .helloTimeout = 1s
        case $hostname == "a.test" {{ tcpsProxy {{ .toBackend = "a" }} }}
        case $hostname $= ".b.test" {{ tcpsProxy {{ .toBackend = "b" }} }}
        case $hostname !~ "." {{ helloDealer {{}} }}
    }}
    tcpsMesher "term" {{
        .address = "127.0.0.1:{port1}"
        .tlsMode = true
        .tlsCertificate = "{base}/mesher.pem"
        .tlsPrivateKey = "{base}/mesher.key"
        case $hostname == "a.test" {{ echoDealer {{}} }}
        case $transport == "tls" {{ helloDealer {{}} }}
    }}
}}
"""


def https_responder(name: str):  # type: ignore[no-untyped-def]
    def handler(s: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            d = s.recv(4096)
            if not d:
                return
            head += d
        body = f"upstream {name}".encode()
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    return handler


@pytest.fixture
def sni(gorox, tmp_path):  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    peers = {}
    certs = {}
    for name, host in (("a", "a.test"), ("b", "*.b.test")):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf = ca.issue_cert(host)
        leaf.configure_cert(ctx)
        certs[name] = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
        peers[name] = Peer(https_responder(name), ctx)
    mesher = ca.issue_cert("a.test", "term.test")
    files = {"mesher.pem": b"".join(p.bytes() for p in mesher.cert_chain_pems), "mesher.key": mesher.private_key_pem.bytes()}
    g = gorox(fill(SNI, a=peers["a"].port, b=peers["b"].port), ports=2, files=files)
    wait_port(g.ports[1])  # the fixture waits for the first mesher only
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    g.cafile = tmp_path / "ca.pem"
    g.certs = certs
    g.ca = ca
    yield g
    for p in peers.values():
        p.close()


def curl(g, name: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(g.cafile), "--resolve",
                           f"{name}:{g.port}:127.0.0.1", f"https://{name}:{g.port}/"],
                          capture_output=True, text=True, timeout=20)


def test_sni_routing_passes_tls_through_to_each_upstream(sni) -> None:  # type: ignore[no-untyped-def]
    for name, expect in (("a.test", "upstream a"), ("x.b.test", "upstream b"), ("a.test", "upstream a")):
        r = curl(sni, name)
        assert r.returncode == 0, r.stderr
        assert r.stdout == expect
    # The certificate the client sees is the upstream's own (the mesher has none on this port).
    ctx = ssl.create_default_context(cafile=str(sni.cafile))
    for name, key in (("a.test", "a"), ("y.b.test", "b")):
        with ctx.wrap_socket(connect(sni.port), server_hostname=name) as t:
            assert t.getpeercert(binary_form=True) == sni.certs[key]
    log = access_log(sni, "sni")
    assert log_lines(log, "sni=a.test case=case#")
    assert log_lines(log, "sni=x.b.test case=case#")


def test_a_client_without_tls_or_sni_goes_by_an_empty_hostname(sni) -> None:  # type: ignore[no-untyped-def]
    with connect(sni.port, b"GET / HTTP/1.1\r\n\r\n") as s:
        assert recv_all(s) == b"hello, world!"
    ctx = ssl.create_default_context(cafile=str(sni.cafile))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # A TLS client without SNI: the ClientHello is read, $hostname is "", helloDealer answers
    # with plain bytes, which the TLS client cannot take: the handshake fails, nothing hangs.
    with pytest.raises((ssl.SSLError, OSError)):
        with ctx.wrap_socket(connect(sni.port), server_hostname=None) as t:
            t.recv(10)


def test_clienthello_cut_in_half_or_broken_closes_and_logs(sni) -> None:  # type: ignore[no-untyped-def]
    hello = client_hello_bytes("a.test")
    with connect(sni.port, hello[:len(hello) // 2]) as s:
        t0 = time.monotonic()
        assert closed_by_peer(s, timeout=5)
        assert 0.7 < time.monotonic() - t0 < 4        # .helloTimeout = 1s
    with connect(sni.port, hello[:len(hello) // 2]) as s:
        s.shutdown(socket.SHUT_WR)                     # cut, and the client gives up
        assert closed_by_peer(s)
    with connect(sni.port, b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00") as s:   # a ServerHello
        assert closed_by_peer(s)
    with connect(sni.port, b"\x16\x03\x01" + os.urandom(300)) as s:
        assert closed_by_peer(s)
    log = access_log(sni, "sni")
    assert log_lines(log, "no complete TLS ClientHello within .helloTimeout")
    assert log_lines(log, "client closed before its TLS ClientHello was complete")
    assert log_lines(log, 'reason="bad TLS ClientHello: ')
    assert curl(sni, "a.test").stdout == "upstream a"   # still serving


def client_hello_bytes(name: str) -> bytes:
    ctx = ssl.create_default_context()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), (out := ssl.MemoryBIO()), server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_tls_termination_routes_on_the_handshake_sni(sni) -> None:  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cafile=str(sni.cafile))
    with ctx.wrap_socket(connect(sni.ports[1]), server_hostname="a.test") as t:
        t.sendall(b"decrypted echo")
        assert t.recv(100) == b"decrypted echo"
    with ctx.wrap_socket(connect(sni.ports[1]), server_hostname="term.test") as t:
        assert t.recv(100) == b"hello, world!"
    log = access_log(sni, "term")
    assert log_lines(log, "tls sni=a.test case=case#")
    # Garbage instead of a handshake: the event loop's TLS layer closes it; the mesher goes on.
    with connect(sni.ports[1], b"\x16\x03\x01\x00\x10" + b"\x00" * 16) as s:
        assert closed_by_peer(s, 12)
    with ctx.wrap_socket(connect(sni.ports[1]), server_hostname="term.test") as t:
        assert t.recv(100) == b"hello, world!"


# -- PROXY protocol from a raw client ---------------------------------------------------------------------
PP = """
stage {{
    tcpsMesher "pp" {{
        .address = "127.0.0.1:{port}"
        .proxyProtocol = true
        .helloTimeout = 1s
        case $srcHost == "10.1.2.3" {{ helloDealer {{}} }}
        case $srcHost == "2001:db8::7" {{ echoDealer {{}} }}
        case $srcHost == "127.0.0.1" {{ helloDealer {{}} }}
    }}
}}
"""


def test_proxy_protocol_accept_and_bad_headers(gorox) -> None:  # type: ignore[no-untyped-def]
    from hemi.net.proxyproto import build_v1, build_v2
    g = gorox(PP)
    with connect(g.port, build_v1("10.1.2.3", 5555, "127.0.0.1", g.port)) as s:
        assert recv_all(s) == b"hello, world!"
    with connect(g.port, build_v2("2001:db8::7", 6666, "2001:db8::1", 80) + b"data after") as s:
        assert s.recv(100) == b"data after"
    with connect(g.port, build_v2("10.1.2.3", 1, "10.0.0.1", 2)[:20]) as s:   # truncated, then silence
        assert closed_by_peer(s)
    with connect(g.port, b"PROXY TCP4 1.2.3.4\r\n") as s:
        assert closed_by_peer(s)
    with connect(g.port, b"GET / HTTP/1.1\r\n") as s:
        assert closed_by_peer(s)
    log = access_log(g, "pp")
    assert log_lines(log, "10.1.2.3:5555 tcp")
    assert log_lines(log, "2001:db8::7:6666 tcp")
    assert log_lines(log, "no complete PROXY protocol header within .helloTimeout")
    assert len(log_lines(log, 'reason="bad PROXY protocol header: ')) >= 2
    assert "bad PROXY protocol header" in g.log()
    with connect(g.port, build_v1("127.0.0.1", 1, "127.0.0.1", 2)) as s:   # still serving
        assert recv_all(s) == b"hello, world!"
