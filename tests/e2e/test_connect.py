"""HTTP CONNECT tunnels on httpxServer through a forward http1Proxy with ``.allowConnect``:
curl ``-p -x`` to a real TLS upstream (certificate made by the test, verified by curl with
``--cacert``), refused ports (403), a proxy without ``.allowConnect`` (405), a destination
that refuses (502), and a large download through the tunnel."""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import trustme

from .upstreams import pattern

BIG = 8 << 20


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = pattern(BIG) if self.path == "/big" else b"hello over tls"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.1 with a certificate for "localhost"; yields (port, CA file)."""
    tmp = tmp_path_factory.mktemp("connect")
    ca = trustme.CA()
    cafile = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], cafile
    httpd.shutdown()
    httpd.server_close()


CONFIG = """
stage {{
    app "tunnels" {{
        .hostnames = ("*")
        rule {{
            http1Proxy {{
                .proxyMode = "forward"
                .allowConnect = true
                .connectPorts = (TLS_PORT, CLOSED_PORT)
                .readTimeout = 2s
            }}
        }}
    }}
    app "noTunnels" {{
        .hostnames = ("*")
        rule {{
            http1Proxy {{
                .proxyMode = "forward"
            }}
        }}
    }}
    httpxServer "proxy" {{
        .address = "127.0.0.1:{port0}"
        .forApps = ("tunnels")
    }}
    httpxServer "plainProxy" {{
        .address = "127.0.0.1:{port1}"
        .forApps = ("noTunnels")
    }}
}}
"""


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def g(gorox_module, tls_upstream, closed_port):  # type: ignore[no-untyped-def]
    text = CONFIG.replace("TLS_PORT", str(tls_upstream[0])).replace("CLOSED_PORT", str(closed_port))
    return gorox_module(text, ports=2)


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, timeout=30)


def test_curl_tunnels_tls_through_connect(g, tls_upstream) -> None:  # type: ignore[no-untyped-def]
    port, cafile = tls_upstream
    r = curl("-p", "-x", f"http://127.0.0.1:{g.ports[0]}", "--cacert", str(cafile), f"https://localhost:{port}/")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello over tls"
    # The certificate was the upstream's, verified end to end: the proxy saw only ciphertext.
    r = curl("-p", "-x", f"http://127.0.0.1:{g.ports[0]}", f"https://localhost:{port}/")
    assert r.returncode == 60, r.stderr  # no --cacert: curl rejects the test CA's certificate


def test_large_download_through_the_tunnel(g, tls_upstream) -> None:  # type: ignore[no-untyped-def]
    port, _ = tls_upstream
    r = curl("-k", "-p", "-x", f"http://127.0.0.1:{g.ports[0]}", f"https://127.0.0.1:{port}/big")
    assert r.returncode == 0, r.stderr
    assert r.stdout == pattern(BIG)


def test_port_not_listed_is_403(g) -> None:  # type: ignore[no-untyped-def]
    r = curl("-k", "-p", "-x", f"http://127.0.0.1:{g.ports[0]}", "https://127.0.0.1:22/", "-v")
    assert r.returncode != 0
    assert b"< HTTP/1.1 403" in r.stderr


def test_proxy_without_allow_connect_is_405(g, tls_upstream) -> None:  # type: ignore[no-untyped-def]
    port, cafile = tls_upstream
    r = curl("-p", "-x", f"http://127.0.0.1:{g.ports[1]}", "--cacert", str(cafile), f"https://localhost:{port}/", "-v")
    assert r.returncode != 0
    assert b"< HTTP/1.1 405" in r.stderr


def test_refusing_destination_is_502(g, closed_port) -> None:  # type: ignore[no-untyped-def]
    r = curl("-k", "-p", "-x", f"http://127.0.0.1:{g.ports[0]}", f"https://127.0.0.1:{closed_port}/", "-v")
    assert r.returncode != 0
    assert b"< HTTP/1.1 502" in r.stderr


def raw_connect(port: int, target: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = s.recv(1)
        assert data, head
        head += data
    assert head.startswith(b"HTTP/1.1 200 Connection Established\r\n"), head
    return s


def test_tunnel_carries_bytes_both_ways_and_ends_when_idle(g, tls_upstream) -> None:  # type: ignore[no-untyped-def]
    port, cafile = tls_upstream
    s = raw_connect(g.ports[0], f"127.0.0.1:{port}")
    ctx = ssl.create_default_context(cafile=str(cafile))
    with ctx.wrap_socket(s, server_hostname="localhost") as t:
        t.sendall(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        got = b""
        while not got.endswith(b"hello over tls"):
            data = t.recv(4096)
            assert data
            got += data
        start = time.monotonic()
        t.settimeout(8)
        try:
            assert t.recv(10) == b""  # .readTimeout = 2s of silence ends the tunnel
        except (ssl.SSLError, ConnectionResetError):
            pass
        assert 1.5 < time.monotonic() - start < 6


@pytest.mark.parametrize("target", ["nohostport", "[::1]", "a/b:443", "user@host:443"])
def test_bad_connect_targets_are_400(g, target: str) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection(("127.0.0.1", g.ports[0]), timeout=5) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
