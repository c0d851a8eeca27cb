"""tcpsMesher with real peers from Debian: HAProxy sending PROXY protocol v1 and v2 to the
mesher, curl ``--haproxy-protocol``, nginx (``listen ... proxy_protocol``) receiving the header
tcpsProxy sends, and redis-server + redis-cli through a tcpsProxy with ``redisViewer``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from ..conftest import free_port, wait_port
from .l4util import log_lines

pytestmark = [pytest.mark.timeout(90)]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REDIS = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def need(*tools: str | None) -> None:
    for tool in tools:
        if not tool or not os.path.exists(tool):
            pytest.skip("needs haproxy, nginx, redis-server and redis-tools (apt-get install -y -qq ...)")


def spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def nginx_pp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """nginx that expects a PROXY header on every connection and logs the address in it."""
    need(NGINX)
    port = free_port()
    d = tmp_path / "nginx"
    d.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(d, 0o755)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / sub).mkdir()
    user = "user root root;" if os.geteuid() == 0 else ""
    (d / "nginx.conf").write_text(f"""
worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log info; {user}
events {{ worker_connections 256; }}
http {{
    log_format pp 'pp=$proxy_protocol_addr:$proxy_protocol_port remote=$remote_addr';
    access_log {d}/access.log pp;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} proxy_protocol;
        location / {{ default_type text/plain; return 200 "nginx saw $proxy_protocol_addr:$proxy_protocol_port"; }}
    }}
}}
""")
    proc = spawn([NGINX, "-c", str(d / "nginx.conf"), "-p", str(d)], d / "out.log")
    wait_port(port, proc=proc)
    yield port, d / "access.log"
    stop(proc)


def haproxy(tmp_path: Path, front: int, mesher: int, option: str) -> subprocess.Popen:
    cfg = tmp_path / f"haproxy-{front}.cfg"
    cfg.write_text(f"""
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind 127.0.0.1:{front}
    default_backend b
backend b
    server gorox 127.0.0.1:{mesher} {option}
""")
    proc = spawn([HAPROXY, "-db", "-f", str(cfg)], tmp_path / f"haproxy-{front}.log")
    wait_port(front, proc=proc)
    return proc


MESHER = """
stage {{
    tcpsBackend "nginx1" {{ .nodes = ( ["address": "127.0.0.1:{nginx}"] ) .proxyProtocol = "v1" }}
    tcpsBackend "nginx2" {{ .nodes = ( ["address": "127.0.0.1:{nginx}"] ) }}
    tcpsMesher "pp" {{
        .address = "127.0.0.1:{port}"
        .proxyProtocol = true
        case $srcPort $= ("0", "2", "4", "6", "8") {{ tcpsProxy {{ .toBackend = "nginx1" }} }}
        case {{ tcpsProxy {{ .toBackend = "nginx2" .proxyProtocol = "v2" }} }}
    }}
}}
"""


def curl(port: int, local_port: int, *extra: str) -> str:
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--local-port", str(local_port), *extra,
                        f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_haproxy_sends_v1_and_v2_and_tcpsproxy_sends_both_to_nginx(gorox, nginx_pp, tmp_path) -> None:  # type: ignore[no-untyped-def]
    need(HAPROXY, shutil.which("curl"))
    nginx_port, nginx_log = nginx_pp
    g = gorox(MESHER.replace("{nginx}", str(nginx_port)))
    procs = [haproxy(tmp_path, h1 := free_port(), g.port, "send-proxy"),
             haproxy(tmp_path, h2 := free_port(), g.port, "send-proxy-v2")]
    try:
        # curl -> haproxy (send-proxy / -v2) -> tcpsMesher (.proxyProtocol) -> tcpsProxy (v1 / v2) -> nginx.
        # The client's own port must arrive at nginx, not haproxy's or gorox's outgoing port.
        seen = []
        for front, local in ((h1, 41110), (h1, 41111), (h2, 41112), (h2, 41113)):
            local = free_local_port(local)
            assert curl(front, local) == f"nginx saw 127.0.0.1:{local}"
            seen.append(local)
        # curl itself speaking the PROXY protocol to the mesher.
        local = free_local_port(41114)
        assert curl(g.port, local, "--haproxy-protocol") == f"nginx saw 127.0.0.1:{local}"
        seen.append(local)
    finally:
        for p in procs:
            stop(p)
    for local in seen:
        assert log_lines(nginx_log, f"pp=127.0.0.1:{local} remote=127.0.0.1")
        assert log_lines(g.base / "data" / "log" / "pp.access.log", f" 127.0.0.1:{local} tcp ")


def free_local_port(start: int) -> int:
    """A free port at or above ``start`` with the same parity (the config cases test it)."""
    import socket
    for p in range(start, start + 2000, 2):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
    raise RuntimeError("no local port")


REDIS_CONF = """
stage {{
    tcpsBackend "redis" {{ .nodes = ( ["address": "127.0.0.1:{redis}"] ) }}
    tcpsMesher "redis" {{
        .address = "127.0.0.1:{port}"
        case {{
            redisViewer {{ .maxArgSize = 16 }}
            countingEditor {{}}
            tcpsProxy {{ .toBackend = "redis" }}
        }}
    }}
}}
"""


def test_redis_viewer_logs_the_commands_redis_cli_sends(gorox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    need(REDIS, REDIS_CLI)
    rport = free_port()
    redis = spawn([REDIS, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(tmp_path)], tmp_path / "redis.log")
    try:
        wait_port(rport, proc=redis)
        g = gorox(REDIS_CONF.replace("{redis}", str(rport)))

        def cli(*args: str, stdin: bytes | None = None) -> str:
            r = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(g.port), *args], input=stdin,
                               capture_output=True, timeout=20)
            assert r.returncode == 0, r.stderr
            return r.stdout.decode().strip()

        assert cli("SET", "greeting", "hello world") == "OK"
        assert cli("GET", "greeting") == "hello world"
        big = b"z" * 300000
        assert cli("-x", "SET", "big", stdin=big) == "OK"
        assert cli("STRLEN", "big") == str(len(big))
        assert cli("DEL", "greeting", "big") == "2"
        log = g.base / "data" / "log" / "redis.access.log"
        assert log_lines(log, 'redis SET "greeting" "hello world"')
        assert log_lines(log, 'redis GET "greeting"')
        assert log_lines(log, 'redis SET "big" "zzzzzzzzzzzzzzzz"...(300000 bytes)')
        assert log_lines(log, 'redis DEL "greeting" "big"')
        lines = log_lines(log, "countingEditor#")
        assert any(f"in={len(big)}" not in ln and "countingEditor#" in ln for ln in lines)
        assert any(int(ln.split(" in=")[1].split()[0]) > len(big) for ln in lines)
    finally:
        stop(redis)
