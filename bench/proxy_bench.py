"""Reverse-proxy benchmark: gorox's http1Proxy against nginx's proxy_pass, in front of one
nginx upstream serving a small static file.

Both proxies run one worker pinned to CPU 0 (nginx with ``keepalive`` connections to the
upstream, as gorox pools them); the upstream nginx and wrk share CPU 1. Rounds are
interleaved and medians reported, because this machine is noisy. Besides requests/s, each
proxy's CPU time per request (user + system, from /proc, over its whole process tree) is
reported: it is what a proxy costs, and it varies much less than requests/s when other work
shares the machine. Usage::

    python bench/proxy_bench.py [--rounds 5] [--duration 5] [--conns 50] [--size 1024]
                                [--out bench/out/proxy.json] [--profile]

``--profile`` runs gorox under cProfile for one extra round and prints the top functions.
Target (issue 4): gorox >= 0.6 x nginx requests/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

GOROX_CONF = '''
stage {{
    http1Backend "up" {{
        .nodes = ( ["address": "127.0.0.1:{upstream}", "keepConns": 64] )
    }}
    app "bench" {{
        .hostnames = ("*")
        .accessLog = false
        rule {{ http1Proxy {{ .toBackend = "up" }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("bench") }}
}}
'''

NGINX_COMMON = '''
worker_processes 1;
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    types {{ text/plain txt; }}
    client_body_temp_path {tmp}/{name}-body;
    proxy_temp_path {tmp}/{name}-proxy;
    fastcgi_temp_path {tmp}/{name}-fastcgi;
    uwsgi_temp_path {tmp}/{name}-uwsgi;
    scgi_temp_path {tmp}/{name}-scgi;
    {body}
}}
'''

UPSTREAM_BODY = '''
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {www};
    }}
'''

PROXY_BODY = '''
    upstream up {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
'''


from common import free_port, wait_port, wrk  # noqa: E402  (bench/ is on sys.path when a script runs)


def nginx_conf(tmp: Path, name: str, body: str) -> Path:
    # As root, nginx's workers would run as nobody and could not read a private temp dir.
    user = "user root root;" if os.geteuid() == 0 else ""
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / f"{name}-{d}").mkdir(exist_ok=True)
    path = tmp / f"{name}.conf"
    path.write_text(NGINX_COMMON.format(tmp=tmp, name=name, user=user, body=body))
    return path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--size", type=int, default=1024, help="bytes of the static file")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "proxy.json"))
    ap.add_argument("--profile", action="store_true", help="one more gorox round under cProfile")
    args = ap.parse_args()
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            print(f"missing {tool}", file=sys.stderr)
            return 2
    if not os.path.exists(NGINX):
        print("missing nginx", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="proxybench-"))
    www = tmp / "www"
    www.mkdir()
    (www / "small.txt").write_bytes(os.urandom(args.size // 2 + 1).hex().encode()[:args.size])
    ports = {"upstream": free_port(), "gorox": free_port(), "nginx": free_port()}
    up_conf = nginx_conf(tmp, "upstream", UPSTREAM_BODY.format(port=ports["upstream"], www=www))
    px_conf = nginx_conf(tmp, "nginxproxy", PROXY_BODY.format(port=ports["nginx"], upstream=ports["upstream"]))
    (tmp / "gorox.conf").write_text(GOROX_CONF.format(port=ports["gorox"], upstream=ports["upstream"]))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    gorox_cmd = [sys.executable, "-m", "gorox", "serve", "-workers", "1", "-config", str(tmp / "gorox.conf"),
                 "-base", str(tmp)]
    procs = {
        "upstream": subprocess.Popen(["taskset", "-c", "1", NGINX, "-c", str(up_conf), "-p", str(tmp)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        "gorox": subprocess.Popen(["taskset", "-c", "0", *gorox_cmd], cwd=tmp, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        "nginx": subprocess.Popen(["taskset", "-c", "0", NGINX, "-c", str(px_conf), "-p", str(tmp)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    }
    results: dict[str, list[dict]] = {}
    try:
        for port in ports.values():
            wait_port(port)
        for name in ("gorox", "nginx"):  # warm-up (and a check that both proxy the file)
            wrk(f"http://127.0.0.1:{ports[name]}/small.txt", 1, args.conns)
        for _ in range(args.rounds):
            for name in ("gorox", "nginx"):
                r = wrk(f"http://127.0.0.1:{ports[name]}/small.txt", args.duration, args.conns, procs[name].pid)
                results.setdefault(name, []).append(r)
                print(f"{name:6} {r['rps']:>9.0f} req/s  {r['cpu_us']:6.1f} us CPU/req  p50 {r['p50']:>8}  p99 {r['p99']:>8}"
                      f"{'  non-2xx ' + str(r['non2xx']) if r['non2xx'] else ''}"
                      f"{'  socket errors ' + r['socket_errors'] if r['socket_errors'] else ''}", flush=True)
        if args.profile:
            profile(tmp, env, gorox_cmd, ports, args)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {name: statistics.median(r["rps"] for r in runs) for name, runs in results.items()}
    cpu = {name: statistics.median(r["cpu_us"] for r in runs) for name, runs in results.items()}
    ratio = medians["gorox"] / medians["nginx"]
    print(f"\nmedians: gorox {medians['gorox']:.0f} req/s ({cpu['gorox']:.1f} us CPU/req), "
          f"nginx {medians['nginx']:.0f} req/s ({cpu['nginx']:.1f} us CPU/req)")
    print(f"gorox/nginx requests/s = {ratio:.2f}x (target >= 0.6x); "
          f"CPU per request nginx/gorox = {cpu['nginx'] / cpu['gorox']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "runs": results, "medians": medians,
                                          "cpu_us": cpu, "ratio": ratio}, indent=1))
    return 0


def profile(tmp: Path, env: dict, gorox_cmd: list[str], ports: dict, args: argparse.Namespace) -> None:
    """Run a second gorox (single process) under cProfile while wrk loads it; print the top."""
    port = free_port()
    conf = tmp / "gorox-prof.conf"
    conf.write_text(GOROX_CONF.format(port=port, upstream=ports["upstream"]))
    stats = tmp / "gorox.prof"
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "cProfile", "-o", str(stats), "-m", "gorox", "serve",
           "-single", "-config", str(conf), "-base", str(tmp)]
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        r = wrk(f"http://127.0.0.1:{port}/small.txt", args.duration, args.conns)
        print(f"(under cProfile: {r['rps']:.0f} req/s)")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    import pstats
    pstats.Stats(str(stats)).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    raise SystemExit(main())
