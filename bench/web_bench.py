"""Web server benchmark: gorox against uvicorn and nginx, side by side in one run.

Each server runs one worker pinned to CPU 0; wrk runs pinned to CPU 1. Every measurement is
repeated (``--rounds``), servers interleaved, and the median is reported, because this machine
is noisy. Usage::

    python bench/web_bench.py [--rounds 3] [--duration 5] [--conns 50] [--out bench/out/web.json]

Targets (issue 3): gorox /hello >= 1.5 x uvicorn's requests/s; gorox 1 MiB file >= 0.8 x nginx.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ASGI_HELLO = '''
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"hello, world!"})
'''

GOROX_CONF = '''
stage {{
    app "bench" {{
        .hostnames = ("*")
        .webRoot = "{www}"
        .accessLog = false
        rule $path == "/hello" {{
            .returnCode = 200
            .returnType = "text/plain; charset=utf-8"
            .returnText = "hello, world!"
        }}
        rule {{ static {{ }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("bench") }}
}}
'''

NGINX_CONF = '''
worker_processes 1;
user root;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ text/plain txt; application/octet-stream bin; }}
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location = /hello {{ default_type text/plain; return 200 "hello, world!"; }}
    }}
}}
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} never opened")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants: how much a server spent, which a
    busy machine disturbs far less than requests/s."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, ValueError):
            pass
    return total


def wrk(url: str, duration: int, conns: int, pid: int | None = None) -> dict:
    """One wrk run (pinned to CPU 1); with ``pid``, also the server's CPU µs per request."""
    before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    tr = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}[tr.group(2)]
    p50 = re.search(r"50%\s+([\d.]+)(\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu_us = 1e6 * (cpu_seconds(pid) - before) / max(1, requests) if pid else 0.0
    return {"rps": rps, "mbps": float(tr.group(1)) * scale, "cpu_us": cpu_us,
            "p50": p50.group(1) + p50.group(2) if p50 else "", "p99": p99.group(1) + p99.group(2) if p99 else "",
            "non2xx": int(errors.group(1)) if errors else 0, "socket_errors": sock_err.group(1) if sock_err else ""}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "web.json"))
    ap.add_argument("--only", default="", help="comma-separated cases to run (hello, file_1k, file_1m)")
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "taskset"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            print(f"missing {tool}", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="webbench-"))
    os.chmod(tmp, 0o755)  # nginx's worker must read the files
    www = tmp / "www"
    www.mkdir()
    (www / "1k.txt").write_bytes(os.urandom(512).hex().encode())
    (www / "1m.bin").write_bytes(os.urandom(1 << 20))
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir()
    ports = {"gorox": free_port(), "uvicorn": free_port(), "nginx": free_port()}
    (tmp / "gorox.conf").write_text(GOROX_CONF.format(www=www, port=ports["gorox"]))
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(www=www, port=ports["nginx"], tmp=tmp))
    (tmp / "asgi_hello.py").write_text(ASGI_HELLO)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = {
        "gorox": subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "gorox", "serve", "-config",
                                   str(tmp / "gorox.conf"), "-base", str(tmp)], cwd=tmp, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        "uvicorn": subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "uvicorn", "asgi_hello:app",
                                     "--port", str(ports["uvicorn"]), "--loop", "uvloop", "--http", "httptools",
                                     "--no-access-log", "--log-level", "warning", "--workers", "1"], cwd=tmp,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        "nginx": subprocess.Popen(["taskset", "-c", "0", nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    }
    results: dict[str, dict[str, list[dict]]] = {}
    try:
        for port in ports.values():
            wait_port(port)
        cases = [("hello", "/hello", ("gorox", "uvicorn", "nginx")),
                 ("file_1k", "/1k.txt", ("gorox", "nginx")),
                 ("file_1m", "/1m.bin", ("gorox", "nginx"))]
        if args.only:
            cases = [c for c in cases if c[0] in args.only.split(",")]
        for name, path, servers in cases:
            for server in servers:  # warm-up
                wrk(f"http://127.0.0.1:{ports[server]}{path}", 1, args.conns)
            for _ in range(args.rounds):
                for server in servers:
                    r = wrk(f"http://127.0.0.1:{ports[server]}{path}", args.duration, args.conns, procs[server].pid)
                    if r["non2xx"] or r["socket_errors"]:
                        raise SystemExit(f"{server} answered errors on {path}: {r}")
                    results.setdefault(name, {}).setdefault(server, []).append(r)
                    print(f"{name:8} {server:8} {r['rps']:>10.0f} req/s {r['mbps']:>9.1f} MB/s p50 {r['p50']:>9} "
                          f"{r['cpu_us']:6.1f} us CPU/req",
                          flush=True)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    summary: dict[str, dict[str, float]] = {}
    print("\nmedians:")
    for name, by_server in results.items():
        summary[name] = {}
        for server, runs in by_server.items():
            summary[name][server + "_rps"] = statistics.median(r["rps"] for r in runs)
            summary[name][server + "_mbps"] = statistics.median(r["mbps"] for r in runs)
            summary[name][server + "_cpu_us"] = statistics.median(r["cpu_us"] for r in runs)
        line = ", ".join(f"{s}: {summary[name][s + '_rps']:.0f} req/s ({summary[name][s + '_mbps']:.1f} MB/s, "
                         f"{summary[name][s + '_cpu_us']:.1f} us CPU)"
                         for s in by_server)
        print(f"  {name}: {line}")
    ratios = {}
    if "hello" in summary:
        h = summary["hello"]
        ratios["hello_vs_uvicorn"] = h["gorox_rps"] / h["uvicorn_rps"]
        ratios["hello_vs_nginx"] = h["gorox_rps"] / h["nginx_rps"]
    if "file_1k" in summary:
        ratios["file_1k_vs_nginx"] = summary["file_1k"]["gorox_rps"] / summary["file_1k"]["nginx_rps"]
    if "file_1m" in summary:
        ratios["file_1m_vs_nginx"] = summary["file_1m"]["gorox_mbps"] / summary["file_1m"]["nginx_mbps"]
    for k, v in ratios.items():
        print(f"  {k}: {v:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "runs": results, "medians": summary,
                                          "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
