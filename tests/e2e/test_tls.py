"""TLS end to end: a server certificate plus per-app certificates chosen by SNI, ALPN, curl,
and a failed handshake that must not hurt the server. Certificates are made by the test
(trustme) and live only in its temporary directory."""

from __future__ import annotations

import socket
import ssl
import subprocess

import pytest
import trustme

from .h1util import Conn, exts_files

pytestmark = pytest.mark.timeout(60)

CONFIG = """
stage {{
    app "a" {{
        .hostnames = ("a.test")
        .tlsCertificate = "{base}/a.pem"
        .tlsPrivateKey = "{base}/a.key"
        .webRoot = "{base}/www"
        rule $path ^= "/echo" {{ testEcho {{ }} }}
        rule $path == "/file" {{ testFile {{ }} }}
        rule {{ .returnCode = 200 .returnText = "app a" }}
    }}
    app "b" {{
        .hostnames = ("*.b.test")
        .tlsCertificate = "{base}/b.pem"
        .tlsPrivateKey = "{base}/b.key"
        rule {{ .returnCode = 200 .returnText = "app b" }}
    }}
    app "d" {{
        .hostnames = ("*")
        rule {{ .returnCode = 200 .returnText = "default app" }}
    }}
    httpxServer "tls" {{
        .address = "127.0.0.1:{port}"
        .tlsMode = true
        .tlsCertificate = "{base}/server.pem"
        .tlsPrivateKey = "{base}/server.key"
        .forApps = ("a", "b", "d")
    }}
}}
"""


BIG = bytes(range(256)) * 8192  # 2 MiB


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls(gorox, ca, tmp_path):  # type: ignore[no-untyped-def]
    files: dict[str, str | bytes] = {**exts_files(), "www/big.bin": BIG}
    for stem, names in (("server", ["server.test"]), ("a", ["a.test"]), ("b", ["*.b.test"])):
        leaf = ca.issue_cert(*names)
        files[f"{stem}.pem"] = b"".join(p.bytes() for p in leaf.cert_chain_pems)
        files[f"{stem}.key"] = leaf.private_key_pem.bytes()
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    g = gorox(CONFIG, files=files)
    g.cafile = cafile
    return g


def client_context(cafile) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


def tls_get(g, sni: str | None, host: str, path: str = "/"):  # type: ignore[no-untyped-def]
    ctx = client_context(g.cafile)
    if sni is None:
        ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    sock = ctx.wrap_socket(raw, server_hostname=sni)
    with Conn(g.port, sock=sock) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        r = c.read_response()
        sans = [v for k, v in sock.getpeercert()["subjectAltName"] if k == "DNS"]
        return r, sans, sock.selected_alpn_protocol()


@pytest.mark.parametrize("sni,host,san,body", [
    ("a.test", "a.test", "a.test", b"app a"),
    ("x.b.test", "x.b.test", "*.b.test", b"app b"),
    ("server.test", "server.test", "server.test", b"default app"),
])
def test_certificate_by_sni_and_app_by_host(tls, sni: str, host: str, san: str, body: bytes) -> None:
    r, sans, alpn = tls_get(tls, sni, host)
    assert sans == [san]
    assert alpn == "http/1.1"
    assert r is not None and r.status == 200 and r.body == body


def test_no_sni_gets_the_server_certificate(tls) -> None:
    r, sans, _ = tls_get(tls, None, "a.test")
    assert sans == ["server.test"]
    assert r is not None and r.body == b"app a"


def test_scheme_is_https(tls) -> None:
    r, _, _ = tls_get(tls, "a.test", "a.test", "/echo")
    j = r.json()  # type: ignore[union-attr]
    assert j["scheme"] == "https" and j["colon_port"] == ":443"


def test_curl_with_cacert_and_resolve(tls) -> None:
    for name, body in (("a.test", "app a"), ("www.b.test", "app b")):
        out = subprocess.run(["curl", "-sS", "--cacert", str(tls.cafile), "--resolve", f"{name}:{tls.port}:127.0.0.1",
                              f"https://{name}:{tls.port}/"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        assert out.stdout == body


def test_failed_handshakes_do_not_hurt_the_server(tls) -> None:
    # Plain HTTP to the TLS port.
    with socket.create_connection(("127.0.0.1", tls.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        try:
            data = s.recv(1024)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/1.1 200")
    # A client that does not trust the certificate.
    with socket.create_connection(("127.0.0.1", tls.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="a.test")
    # A client that connects and says nothing, then leaves.
    socket.create_connection(("127.0.0.1", tls.port), timeout=5).close()
    r, _, _ = tls_get(tls, "a.test", "a.test")
    assert r is not None and r.body == b"app a"
    assert tls.proc.poll() is None


def test_keep_alive_and_pipelining_over_tls(tls) -> None:
    ctx = client_context(tls.cafile)
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls.port), timeout=5), server_hostname="a.test")
    with Conn(tls.port, sock=sock) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n" * 3)
        assert [c.read_response().body for _ in range(3)] == [b"app a"] * 3  # type: ignore[union-attr]
        c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        r = c.read_response()
        assert r is not None and r.header("connection") == "close"


def test_file_over_tls(tls) -> None:
    """No sendfile under TLS: the file is copied through the TLS transport, in order."""
    ctx = client_context(tls.cafile)
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls.port), timeout=5), server_hostname="a.test")
    with Conn(tls.port, sock=sock) as c:
        c.send(b"GET /file?f=big.bin HTTP/1.1\r\nHost: a.test\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        r = c.read_response()
        assert r is not None and r.body == BIG
        assert c.read_response().body == b"app a"  # type: ignore[union-attr]


def test_tls_bad_request_is_answered_and_closed(tls) -> None:
    ctx = client_context(tls.cafile)
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls.port), timeout=5), server_hostname="a.test")
    with Conn(tls.port, sock=sock) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        r = c.read_response()
        assert r is not None and r.status == 400
        try:
            assert c.closed_after()
        except (ssl.SSLError, ConnectionResetError):
            pass


NO_SERVER_CERT = """
stage {{
    app "a" {{
        .hostnames = ("a.test")
        .tlsCertificate = "{base}/a.pem"
        .tlsPrivateKey = "{base}/a.key"
        rule {{ .returnCode = 200 .returnText = "app a" }}
    }}
    app "d" {{
        .hostnames = ("*")
        .tlsCertificate = "{base}/d.pem"
        .tlsPrivateKey = "{base}/d.key"
        rule {{ .returnCode = 200 .returnText = "default app" }}
    }}
    httpxServer "tls" {{ .address = "127.0.0.1:{port}" .tlsMode = true .forApps = ("a", "d") }}
}}
"""


def test_without_server_certificate_the_default_app_certificate_is_the_fallback(gorox, ca, tmp_path) -> None:
    files: dict[str, str | bytes] = {}
    for stem, name in (("a", "a.test"), ("d", "default.test")):
        leaf = ca.issue_cert(name)
        files[f"{stem}.pem"] = b"".join(p.bytes() for p in leaf.cert_chain_pems)
        files[f"{stem}.key"] = leaf.private_key_pem.bytes()
    g = gorox(NO_SERVER_CERT, files=files)
    g.cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(g.cafile))
    assert tls_get(g, "a.test", "a.test")[1] == ["a.test"]
    r, sans, _ = tls_get(g, None, "whatever")
    assert sans == ["default.test"] and r is not None and r.body == b"default app"
