"""fcgiProxy end to end: a real gorox in front of a real php-fpm (started by the test, on a unix
socket and on TCP), driven with httpx and curl. PHP scripts written by the test report what
PHP saw ($_GET, $_POST, $_FILES, $_COOKIE, $_SERVER), so the assertions are about what a PHP
application gets, not about bytes we expect to send."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import trustme

from ..conftest import ROOT, free_port, gorox_cmd
from .upstreams import stop_group, wait_listening


def find_php_fpm() -> str | None:
    """Debian installs it as /usr/sbin/php-fpm<version>, which may not be on PATH."""
    found = shutil.which("php-fpm") or shutil.which("php-fpm8.2")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/sbin/php-fpm*"))
    return candidates[-1] if candidates else None


PHP_FPM = find_php_fpm()
pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(PHP_FPM is None, reason="php-fpm is not installed")]

SCRIPTS: dict[str, str] = {
    "get.php": '<?php header("Content-Type: application/json"); echo json_encode($_GET);',
    "post.php": '<?php echo json_encode($_POST);',
    "upload.php": '''<?php
        $out = [];
        foreach ($_FILES as $field => $f) {
            $out[$field] = ["name" => $f["name"], "size" => $f["size"], "error" => $f["error"],
                            "md5" => $f["error"] === 0 ? md5_file($f["tmp_name"]) : null];
        }
        echo json_encode(["files" => $out, "post" => $_POST]);''',
    "input.php": '''<?php
        $body = file_get_contents("php://input");
        echo json_encode(["md5" => md5($body), "length" => strlen($body),
                          "content_length" => $_SERVER["CONTENT_LENGTH"] ?? null]);''',
    "big.php": '<?php echo str_repeat("0123456789abcdef", 65536);',
    "length.php": '<?php header("Content-Length: 5"); echo "hello";',
    "redirect.php": '<?php header("Location: /x");',
    "teapot.php": '<?php http_response_code(418); header("X-A: b"); echo "short and stout";',
    "status.php": '<?php header("Status: 201 Made"); echo "made";',
    "cookies.php": '''<?php
        setcookie("a", "1");
        setcookie("b", "2", ["path" => "/p"]);
        echo json_encode($_COOKIE);''',
    "fatal.php": '<?php this_function_does_not_exist_42(); echo "never";',
    "stderr.php": '<?php error_log("a note for the error log 7f3a"); echo "ok";',
    "vars.php": '<?php header("Content-Type: application/json"); echo json_encode($_SERVER);',
    "sleep.php": '<?php sleep(2); echo "late";',
    "sockets.php": '''<?php
        $out = [];
        foreach (scandir("/proc/self/fd") as $fd) {
            $l = @readlink("/proc/self/fd/$fd");
            if ($l !== false && strncmp($l, "socket:", 7) === 0) { $out[] = $l; }
        }
        sort($out);
        echo json_encode(["pid" => getmypid(), "sockets" => $out]);''',
    "flush.php": '''<?php
        for ($i = 0; $i < 5; $i++) { echo str_repeat((string)$i, 100000); flush(); usleep(20000); }''',
    "ticker.php": '''<?php
        for ($i = 0; $i < 30; $i++) {
            file_put_contents($_GET["f"], "x", FILE_APPEND);
            echo str_repeat(" ", 8192); flush(); usleep(100000);
        }''',
    "dir/index.php": '<?php echo "index of dir";',
    "front.php": '<?php echo "front controller for ", $_SERVER["REQUEST_URI"];',
}

POOL = """
[{name}]
listen = {listen}
listen.mode = 0666
pm = static
pm.max_children = {children}
clear_env = no
catch_workers_output = yes
php_admin_flag[display_errors] = off
php_admin_flag[log_errors] = on
"""


class Fpm:
    """A php-fpm master with one pool per ``listen`` address, in its own process group."""

    def __init__(self, tmp: Path, pools: dict[str, str], children: int = 4) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        conf = tmp / "fpm.conf"
        text = f"[global]\nerror_log = {tmp}/fpm-error.log\ndaemonize = no\n"
        for name, listen in pools.items():
            text += POOL.format(name=name, listen=listen, children=children)
        conf.write_text(text)
        args = [PHP_FPM or "php-fpm", "-F", "-n", "-y", str(conf), "-p", str(tmp)]
        if os.geteuid() == 0:
            args.append("-R")
        self.out = open(tmp / "fpm.out", "wb")
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_listening(self.proc, pools.values(), time.monotonic() + 10, tmp / "fpm.out", "php-fpm")

    def stop(self) -> None:
        stop_group(self.proc, 5)
        self.out.close()


@pytest.fixture(scope="module")
def fpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("fpm")
    tcp = f"127.0.0.1:{free_port()}"
    server = Fpm(tmp, {"unix": f"{tmp}/fpm.sock", "tcp": tcp})
    yield {"sock": f"{tmp}/fpm.sock", "tcp": tcp, "dir": str(tmp)}
    server.stop()


CONFIG = """
stage {{
    tcpsBackend "fpm" {{ .nodes = ( [ "address": "@SOCK@" ] ) }}
    tcpsBackend "fpmKeep" {{ .nodes = ( [ "address": "@SOCK@", "keepConns": 2 ] ) }}
    tcpsBackend "fpmTcp" {{ .nodes = ( [ "address": "@TCP@" ] ) }}
    tcpsBackend "fpmKeepTcp" {{ .nodes = ( [ "address": "@TCP@", "keepConns": 2 ] ) }}
    tcpsBackend "fpmSlow" {{ .nodes = ( [ "address": "@TCP@" ] ) .readTimeout = 1s }}
    app "php" {{
        .hostnames = ("*")
        .webRoot = "{base}/www"
        rule {{ fcgiProxy {{ .toBackend = "fpm" }} }}
    }}
    app "keep" {{
        .hostnames = ("keep.test")
        .webRoot = "{base}/www"
        rule {{ fcgiProxy {{ .toBackend = "fpmKeep" .keepConn = true }} }}
    }}
    app "tcp" {{
        .hostnames = ("tcp.test")
        .webRoot = "{base}/www"
        rule {{ fcgiProxy {{ .toBackend = "fpmTcp" .keepConn = true }} }}
    }}
    app "buffered" {{
        .hostnames = ("buf.test")
        .webRoot = "{base}/www"
        .maxMemoryContentSize = 64K
        rule {{ fcgiProxy {{ .toBackend = "fpm" .bufferClientContent = true .bufferServerContent = true }} }}
    }}
    app "slow" {{
        .hostnames = ("slow.test")
        .webRoot = "{base}/www"
        rule {{ fcgiProxy {{ .toBackend = "fpmSlow" }} }}
    }}
    app "impatient" {{
        .hostnames = ("recv.test")
        .webRoot = "{base}/www"
        rule {{ fcgiProxy {{ .toBackend = "fpmTcp" .recvTimeout = 1s }} }}
    }}
    app "impatientKeep" {{
        .hostnames = ("recvkeep.test")
        .webRoot = "{base}/www"
        rule {{ fcgiProxy {{ .toBackend = "fpmKeepTcp" .keepConn = true .recvTimeout = 1s }} }}
    }}
    app "small" {{
        .hostnames = ("small.test")
        .webRoot = "{base}/www"
        rule {{ fcgiProxy {{ .toBackend = "fpm" .maxContentSize = 64K }} }}
    }}
    app "front" {{
        .hostnames = ("front.test")
        .webRoot = "{base}/www"
        rule $path -f {{ static {{ }} }}
        rule {{ fcgiProxy {{ .toBackend = "fpm" .scriptFilename = "{base}/www/front.php" }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("php", "keep", "tcp", "buffered", "slow",
                                                                      "impatient", "impatientKeep", "small", "front") }}
    httpxServer "tls" {{
        .address = "127.0.0.1:{port1}"
        .tlsMode = true
        .tlsCertificate = "{base}/server.pem"
        .tlsPrivateKey = "{base}/server.key"
        .forApps = ("php")
    }}
}}
"""


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def g(gorox_module, fpm, ca):  # type: ignore[no-untyped-def]
    files: dict[str, str | bytes] = {f"www/{name}": text for name, text in SCRIPTS.items()}
    files["www/plain.txt"] = "a plain file"
    leaf = ca.issue_cert("server.test", "127.0.0.1")
    files["server.pem"] = b"".join(p.bytes() for p in leaf.cert_chain_pems)
    files["server.key"] = leaf.private_key_pem.bytes()
    config = CONFIG.replace("@SOCK@", fpm["sock"]).replace("@TCP@", fpm["tcp"])
    return gorox_module(config, ports=2, files=files)


@pytest.fixture
def client(g) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=g.url(""), timeout=10) as c:
        yield c


def error_log(g) -> str:  # type: ignore[no-untyped-def]
    path = g.base / "data" / "log" / "error.log"
    return (path.read_text(errors="replace") if path.exists() else "") + g.log()


# -- what PHP gets --------------------------------------------------------------------------------


def test_get_with_a_query(client: httpx.Client) -> None:
    r = client.get("/get.php?a=1&b=x%20y&c[]=1&c[]=2")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"a": "1", "b": "x y", "c": ["1", "2"]}


def test_post_form(client: httpx.Client) -> None:
    r = client.post("/post.php", data={"name": "gorox", "lang": "Python & PHP"})
    assert r.status_code == 200
    assert r.json() == {"name": "gorox", "lang": "Python & PHP"}


@pytest.mark.parametrize("host", ["127.0.0.1", "buf.test"])
def test_file_upload(client: httpx.Client, host: str) -> None:
    data = os.urandom(300_000)
    r = client.post("/upload.php", headers={"host": host}, data={"title": "t"},
                    files={"doc": ("report.bin", data, "application/octet-stream")})
    assert r.status_code == 200
    got = r.json()
    assert got["post"] == {"title": "t"}
    assert got["files"]["doc"] == {"name": "report.bin", "size": len(data), "error": 0,
                                   "md5": hashlib.md5(data).hexdigest()}


@pytest.mark.parametrize("host", ["127.0.0.1", "buf.test", "tcp.test"])
def test_big_request_body_streamed_or_buffered(client: httpx.Client, host: str) -> None:
    data = os.urandom(3 << 20)
    r = client.post("/input.php", headers={"host": host}, content=data)
    assert r.json() == {"md5": hashlib.md5(data).hexdigest(), "length": len(data), "content_length": str(len(data))}


def test_chunked_request_body_gets_a_content_length(client: httpx.Client) -> None:
    data = [os.urandom(70_000) for _ in range(5)]
    r = client.post("/input.php", content=iter(data))  # an iterator: httpx sends it chunked
    whole = b"".join(data)
    assert r.json() == {"md5": hashlib.md5(whole).hexdigest(), "length": len(whole),
                        "content_length": str(len(whole))}


@pytest.mark.parametrize("host", ["127.0.0.1", "buf.test", "tcp.test"])
def test_one_mebibyte_of_output(client: httpx.Client, host: str) -> None:
    r = client.get("/big.php", headers={"host": host})
    assert r.status_code == 200
    assert r.content == b"0123456789abcdef" * 65536
    if host == "buf.test":  # buffered (past the app's 64K memory limit, in a temp file): sized
        assert r.headers["content-length"] == str(1 << 20)
    else:  # streamed: PHP announces no length
        assert r.headers["transfer-encoding"] == "chunked"


def test_streamed_output_arrives_in_pieces(client: httpx.Client) -> None:
    with client.stream("GET", "/flush.php") as r:
        pieces = [len(chunk) for chunk in r.iter_raw()]
    assert sum(pieces) == 500_000 and len(pieces) > 1


def test_content_length_from_the_script_is_kept(client: httpx.Client) -> None:
    r = client.get("/length.php")
    assert r.headers["content-length"] == "5" and r.text == "hello"
    r = client.head("/length.php")
    assert r.status_code == 200 and r.headers["content-length"] == "5" and r.content == b""


def test_redirect(client: httpx.Client) -> None:
    r = client.get("/redirect.php")
    assert r.status_code == 302
    assert r.headers["location"] == "/x"


def test_custom_status_and_headers(client: httpx.Client) -> None:
    r = client.get("/teapot.php")
    assert r.status_code == 418
    assert r.headers["x-a"] == "b"
    assert r.text == "short and stout"
    assert "status" not in r.headers
    r = client.get("/status.php")
    assert r.status_code == 201 and r.text == "made" and "status" not in r.headers


def test_cookies_both_ways(client: httpx.Client) -> None:
    r = client.get("/cookies.php", headers={"cookie": "x=1; y=two"})
    assert r.json() == {"x": "1", "y": "two"}
    set_cookies = r.headers.get_list("set-cookie")
    assert len(set_cookies) == 2
    assert set_cookies[0].startswith("a=1") and set_cookies[1].startswith("b=2") and "path=/p" in set_cookies[1]


def test_a_fatal_error_is_a_500_and_goes_to_the_error_log(g, client: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/fatal.php")
    assert r.status_code == 500
    assert "this_function_does_not_exist_42" not in r.text
    deadline = time.monotonic() + 5
    while "this_function_does_not_exist_42" not in error_log(g):
        assert time.monotonic() < deadline, error_log(g)
        time.sleep(0.05)
    assert "hemi.web.fcgi" in error_log(g)


def test_stderr_goes_to_the_error_log_not_the_client(g, client: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/stderr.php")
    assert r.status_code == 200 and r.text == "ok"
    deadline = time.monotonic() + 5
    while "a note for the error log 7f3a" not in error_log(g):
        assert time.monotonic() < deadline, error_log(g)
        time.sleep(0.05)


def test_missing_script_is_php_fpms_404(client: httpx.Client) -> None:
    r = client.get("/nope.php")
    assert r.status_code == 404


def test_cgi_variables(g, client: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/vars.php/extra/path%20info?q=1&r=%2F", headers={
        "x-custom": "yes", "proxy": "http://evil.example", "x_forwarded_for": "6.6.6.6",
        "x-forwarded-for": "1.2.3.4", "accept-language": "fr"})
    v = r.json()
    www = str(g.base / "www")
    assert v["SCRIPT_NAME"] == "/vars.php"
    assert v["PATH_INFO"] == "/extra/path info"
    assert v["SCRIPT_FILENAME"] == www + "/vars.php"
    assert v["DOCUMENT_ROOT"] == www
    assert v["DOCUMENT_URI"] == "/vars.php/extra/path info"
    assert v["REQUEST_URI"] == "/vars.php/extra/path%20info?q=1&r=%2F"
    assert v["QUERY_STRING"] == "q=1&r=%2F"
    assert v["REQUEST_METHOD"] == "GET"
    assert v["REQUEST_SCHEME"] == "http"
    assert v["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert v["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert v["SERVER_SOFTWARE"] == "gorox"
    assert v["SERVER_NAME"] == "127.0.0.1"
    assert v["SERVER_ADDR"] == "127.0.0.1" and v["SERVER_PORT"] == str(g.port)
    assert v["REMOTE_ADDR"] == "127.0.0.1" and int(v["REMOTE_PORT"]) > 0
    assert v["REDIRECT_STATUS"] == "200"
    assert "HTTPS" not in v
    assert v["HTTP_HOST"] == f"127.0.0.1:{g.port}"
    assert v["HTTP_X_CUSTOM"] == "yes"
    assert v["HTTP_ACCEPT_LANGUAGE"] == "fr"
    assert v["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"       # the underscore spelling is dropped
    assert v.get("HTTP_PROXY") != "http://evil.example"  # httpoxy
    assert "CONTENT_LENGTH" not in v or v["CONTENT_LENGTH"] == ""


def test_repeated_and_hop_by_hop_headers(client: httpx.Client) -> None:
    r = client.get("/vars.php", headers=[("x-multi", "a"), ("x-multi", "b"), ("cookie", "c=1"), ("cookie", "d=2"),
                                         ("connection", "keep-alive, x-hop"), ("x-hop", "secret"), ("te", "trailers")])
    v = r.json()
    assert v["HTTP_X_MULTI"] == "a, b"
    assert v["HTTP_COOKIE"] == "c=1; d=2"
    assert "HTTP_X_HOP" not in v and "HTTP_TE" not in v and "HTTP_CONNECTION" not in v


def test_https_is_on_over_tls(g, ca) -> None:  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with httpx.Client(verify=ctx, timeout=10) as c:
        v = c.get(f"https://127.0.0.1:{g.ports[1]}/vars.php").json()
    assert v["HTTPS"] == "on" and v["REQUEST_SCHEME"] == "https" and v["SERVER_PORT"] == str(g.ports[1])


def test_index_file_and_fixed_script(client: httpx.Client) -> None:
    assert client.get("/dir/").text == "index of dir"
    r = client.get("/any/route?x=1", headers={"host": "front.test"})
    assert r.text == "front controller for /any/route?x=1"
    assert client.get("/plain.txt", headers={"host": "front.test"}).text == "a plain file"


def test_head_request(client: httpx.Client) -> None:
    r = client.head("/big.php")
    assert r.status_code == 200 and r.content == b""


# -- connections --------------------------------------------------------------------------------------


def sockets_seen(client: httpx.Client, host: str, n: int) -> list[tuple[int, tuple[str, ...]]]:
    out = []
    for _ in range(n):
        v = client.get("/sockets.php", headers={"host": host}).json()
        out.append((v["pid"], tuple(v["sockets"])))
    return out


@pytest.mark.parametrize("host", ["keep.test", "tcp.test"])
def test_keep_conn_reuses_one_connection(client: httpx.Client, host: str) -> None:
    """With .keepConn, sequential requests reach the same php-fpm worker over the same
    connection: the worker's accepted socket (an fd in /proc/self/fd) stays the same."""
    seen = sockets_seen(client, host, 6)
    assert len(set(seen)) == 1, seen


def test_without_keep_conn_each_request_has_its_own_connection(client: httpx.Client) -> None:
    seen = sockets_seen(client, "127.0.0.1", 6)
    assert len(set(seen)) == 6, seen


def test_keep_conn_under_concurrency_never_parks_requests(g) -> None:  # type: ignore[no-untyped-def]
    """20 clients at once against a pool of 4 workers: every request is answered (kept
    connections beyond the workers would wait unaccepted in php-fpm's queue)."""
    import concurrent.futures

    def fetch(i: int) -> int:
        with httpx.Client(timeout=10) as c:
            codes = [c.get(g.url(f"/get.php?i={i}&j={j}"), headers={"host": "keep.test"}).status_code for j in range(5)]
        return sum(code == 200 for code in codes)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        assert sum(pool.map(fetch, range(20))) == 100
    assert time.monotonic() - started < 10


# -- failures -------------------------------------------------------------------------------------------


def test_read_timeout_of_the_backend_is_a_504(client: httpx.Client) -> None:
    started = time.monotonic()
    r = client.get("/sleep.php", headers={"host": "slow.test"})
    assert r.status_code == 504
    assert time.monotonic() - started < 1.9


def test_recv_timeout_of_the_proxy_is_a_504(client: httpx.Client) -> None:
    started = time.monotonic()
    r = client.get("/sleep.php", headers={"host": "recv.test"})
    assert r.status_code == 504
    assert time.monotonic() - started < 1.9


def test_recv_timeout_on_a_kept_connection_is_a_504(client: httpx.Client) -> None:
    """A body-less request over a pooled connection is answered from callbacks (no task): the
    proxy's sweeper expires that exchange itself, which is a 504, not a client that left."""
    headers = {"host": "recvkeep.test"}
    assert client.get("/get.php?a=1", headers=headers).status_code == 200  # a connection pooled
    started = time.monotonic()
    r = client.get("/sleep.php", headers=headers)
    assert r.status_code == 504
    assert time.monotonic() - started < 1.9
    assert client.get("/get.php?a=2", headers=headers).status_code == 200  # and on it goes


def test_max_content_size_is_enforced(client: httpx.Client) -> None:
    assert client.get("/get.php?a=1", headers={"host": "small.test"}).status_code == 200
    # PHP announces no length, so the head is out when the limit is crossed: the connection is cut.
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/big.php", headers={"host": "small.test"})


def test_server_still_fine_after_failures(client: httpx.Client) -> None:
    assert client.get("/get.php?ok=1").json() == {"ok": "1"}


def test_stopped_php_fpm_is_a_502(gorox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sock = str(tmp_path / "fpm" / "fpm.sock")
    server = Fpm(tmp_path / "fpm", {"only": sock}, children=1)
    try:
        config = CONFIG_502.replace("@SOCK@", sock)
        g = gorox(config, files={"www/get.php": SCRIPTS["get.php"]})
        with httpx.Client(timeout=10) as c:
            assert c.get(g.url("/get.php?a=1")).status_code == 200
            server.stop()
            assert c.get(g.url("/get.php?a=1")).status_code == 502
            assert c.get(g.url("/get.php?a=1")).status_code == 502
    finally:
        server.stop()


CONFIG_502 = """
stage {{
    tcpsBackend "fpm" {{ .nodes = ( [ "address": "@SOCK@" ] ) }}
    app "php" {{
        .hostnames = ("*")
        .webRoot = "{base}/www"
        rule {{ fcgiProxy {{ .toBackend = "fpm" .keepConn = true }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("php") }}
}}
"""

class FakeBackend:
    """A TCP listener in the test process that answers every connection with ``reply`` (after
    reading ``read`` bytes), or never reads at all (``reply=None``)."""

    def __init__(self, reply: bytes | None, read: int = 1) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.read = read
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.reply is not None:
                try:
                    conn.recv(self.read)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


CONFIG_FAKE = """
stage {{
    tcpsBackend "fake" {{ .nodes = ( [ "address": "127.0.0.1:@PORT@" ] ) }}
    app "php" {{
        .hostnames = ("*")
        .webRoot = "{base}/www"
        rule {{ fcgiProxy {{ .toBackend = "fake" .sendTimeout = 1s .recvTimeout = 1s }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("php") }}
}}
"""


@pytest.mark.parametrize("reply", [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
                                   bytes([1, 6, 0, 2, 0, 5, 0, 0]) + b"hello\0\0\0"])
def test_malformed_fastcgi_is_a_502(gorox, reply: bytes) -> None:  # type: ignore[no-untyped-def]
    """Not FastCGI at all, or a record for another request id: 502, never a hang."""
    fake = FakeBackend(reply)
    try:
        g = gorox(CONFIG_FAKE.replace("@PORT@", str(fake.port)))
        with httpx.Client(timeout=10) as c:
            assert c.get(g.url("/a.php")).status_code == 502
    finally:
        fake.close()


def test_send_timeout_is_a_504(gorox) -> None:  # type: ignore[no-untyped-def]
    """A backend that accepts but never reads: the body cannot be handed over within .sendTimeout."""
    fake = FakeBackend(None)
    try:
        g = gorox(CONFIG_FAKE.replace("@PORT@", str(fake.port)))
        started = time.monotonic()
        with httpx.Client(timeout=20) as c:
            r = c.post(g.url("/a.php"), content=b"x" * (16 << 20))
        assert r.status_code == 504
        assert time.monotonic() - started < 10
    finally:
        fake.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "keep.test"])
def test_a_client_that_goes_away_aborts_the_backend(g, tmp_path: Path, host: str) -> None:  # type: ignore[no-untyped-def]
    """The client resets its connection while PHP is still producing output: gorox aborts the
    FastCGI connection, so PHP's next flush fails and the script stops (its tick file stops
    growing) instead of running to the end for nobody. The next requests are answered."""
    ticks = tmp_path / "ticks"
    with socket.create_connection(("127.0.0.1", g.port)) as s:
        s.sendall(f"GET /ticker.php?f={ticks} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        time.sleep(0.3)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a RST
    time.sleep(0.6)
    seen = ticks.stat().st_size
    time.sleep(0.5)
    assert ticks.stat().st_size == seen < 15
    with httpx.Client(timeout=10) as c:
        for i in range(4):
            assert c.get(g.url(f"/get.php?i={i}"), headers={"host": host}).json() == {"i": str(i)}


# -- configuration ---------------------------------------------------------------------------------------

BAD_CONFIGS = {
    "unknown backend": ('.toBackend = "nope"', "", 'the stage has no backend of that name'),
    "wrong kind": ('.toBackend = "web"', "", "expected a tcpsBackend"),
    "no webRoot": ('.toBackend = "fpm"', "none", "no .webRoot"),
    "storer": ('.toBackend = "fpm" .withStorer = "cache"', "", "storers are not implemented yet"),
    "bad split": ('.toBackend = "fpm" .splitPathInfo = "^(.+)$"', "", "exactly two groups"),
    "missing backend": ("", "", "missing required property .toBackend"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_errors(case: str, tmp_path: Path) -> None:
    props, root, message = BAD_CONFIGS[case]
    web_root = "" if root == "none" else '.webRoot = "/srv/www"'
    conf = tmp_path / "bad.conf"
    conf.write_text(f"""
stage {{
    tcpsBackend "fpm" {{ .nodes = ( [ "address": "/run/php/fpm.sock" ] ) }}
    http1Backend "web" {{ .nodes = ( [ "address": "127.0.0.1:8080" ] ) }}
    app "php" {{
        .hostnames = ("*")
        {web_root}
        rule {{ fcgiProxy {{ {props} }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:0" .forApps = ("php") }}
}}
""")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(gorox_cmd("check", "-config", str(conf), "-base", str(tmp_path)), env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_php_sees_json_body(client: httpx.Client) -> None:
    body = json.dumps({"k": "v"}).encode()
    r = client.post("/input.php", content=body, headers={"content-type": "application/json"})
    assert r.json()["md5"] == hashlib.md5(body).hexdigest()
