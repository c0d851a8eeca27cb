"""Web server benchmark: gorox against uvicorn and nginx, side by side in one run.

Each server runs one worker pinned to CPU 0; wrk runs pinned to CPU 1. Every measurement is
repeated (``--rounds``), servers interleaved, and the median is reported, because this machine
is noisy. Usage::

    python bench/web_bench.py [--rounds 3] [--duration 5] [--conns 50] [--out bench/out/web.json]

Targets (issue 3): gorox /hello >= 1.5 x uvicorn's requests/s; gorox 1 MiB file >= 0.8 x nginx.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from common import NGINX, ROOT, free_port, gorox_cmd, missing_tools, nginx_conf, nginx_temp_paths, spawn, \
    stop_all, wait_port, write_json, wrk, wrk_errors

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

NGINX_HTTP = '''
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ text/plain txt; application/octet-stream bin; }}
    {temps}
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location = /hello {{ default_type text/plain; return 200 "hello, world!"; }}
    }}
}}
'''


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "web.json"))
    ap.add_argument("--only", default="", help="comma-separated cases to run (hello, file_1k, file_1m)")
    args = ap.parse_args()
    if missing_tools("wrk", "taskset"):
        return 2
    if not os.path.exists(NGINX):
        print("missing nginx", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="webbench-"))
    os.chmod(tmp, 0o755)  # nginx's worker must read the files
    www = tmp / "www"
    www.mkdir()
    (www / "1k.txt").write_bytes(os.urandom(512).hex().encode())
    (www / "1m.bin").write_bytes(os.urandom(1 << 20))
    ports = {"gorox": free_port(), "uvicorn": free_port(), "nginx": free_port()}
    (tmp / "gorox.conf").write_text(GOROX_CONF.format(www=www, port=ports["gorox"]))
    nginx = nginx_conf(tmp, "nginx", NGINX_HTTP.format(www=www, port=ports["nginx"],
                                                       temps=nginx_temp_paths(tmp, "nginx")))
    (tmp / "asgi_hello.py").write_text(ASGI_HELLO)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = {
        "gorox": spawn(gorox_cmd(tmp / "gorox.conf", tmp, "-single"), cpu="0", cwd=tmp, env=env),
        "uvicorn": spawn([sys.executable, "-m", "uvicorn", "asgi_hello:app", "--port", str(ports["uvicorn"]),
                          "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
                          "--workers", "1"], cpu="0", cwd=tmp),
        "nginx": spawn([NGINX, "-c", str(nginx), "-p", str(tmp)], cpu="0"),
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
                    if wrk_errors(r):
                        raise SystemExit(f"{server} answered errors on {path}: {r}")
                    results.setdefault(name, {}).setdefault(server, []).append(r)
                    print(f"{name:8} {server:8} {r['rps']:>10.0f} req/s {r['mbps']:>9.1f} MB/s p50 {r['p50']:>9} "
                          f"{r['cpu_us']:6.1f} us CPU/req",
                          flush=True)
    finally:
        stop_all(procs.values())
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
    write_json(args.out, {"args": vars(args), "runs": results, "medians": summary, "ratios": ratios})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
