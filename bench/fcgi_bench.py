"""FastCGI gateway benchmark: gorox ``fcgiProxy`` against nginx ``fastcgi_pass``, same php-fpm.

php-fpm (``pm = static``, 4 children, a unix socket) serves ``<?php echo "hello";``. gorox and
nginx run one worker each pinned to CPU 0; php-fpm and wrk share CPU 1. Two modes, compared like
with like:

* ``close``: a new FastCGI connection per request (gorox ``.keepConn = false``; nginx without
  ``fastcgi_keep_conn``);
* ``keep``: kept connections (gorox ``.keepConn = true`` with the node's ``keepConns`` = 4;
  nginx ``fastcgi_keep_conn on`` with ``keepalive 4`` in the upstream).

Each server and mode has its own php-fpm pool (same settings, same CPU): a kept connection owns
a php-fpm child while it is open, so a shared pool would let one server starve the other.
Responses that are not 2xx are counted and shown: a run with errors is not a valid number.

Rounds interleave the servers; medians are reported with the gorox/nginx ratio. Usage::

    python bench/fcgi_bench.py [--rounds 3] [--duration 5] [--conns 20] [--modes close,keep]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
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

FPM_CONF = """
[global]
error_log = {tmp}/fpm-error.log
daemonize = no
"""
# One pool per (server, mode): a kept connection holds a php-fpm child for as long as it stays
# open, so servers sharing a pool would take each other's children away between rounds.
FPM_POOL = """
[{name}]
listen = {tmp}/{name}.sock
listen.mode = 0666
listen.backlog = 4096
pm = static
pm.max_children = 4
pm.max_requests = 0
"""

GOROX_CONF = """
stage {{
    tcpsBackend "fpm" {{ .nodes = ( [ "address": "{tmp}/gorox-{mode}.sock", "keepConns": 4 ] ) }}
    app "bench" {{
        .hostnames = ("*")
        .webRoot = "{www}"
        .accessLog = false
        rule {{ fcgiProxy {{ .toBackend = "fpm" .keepConn = {keep} }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("bench") }}
}}
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx-{mode}.pid;
error_log {tmp}/nginx-{mode}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream fpm {{
        server unix:{tmp}/nginx-{mode}.sock;
        {keepalive}
    }}
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location ~ \\.php$ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass fpm;
            {keep_conn}
        }}
    }}
}}
"""


from common import free_port, wait_port, wrk  # noqa: E402  (bench/ is on sys.path when a script runs)


def wait_unix(path: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{path} never opened")


def php_fpm() -> str | None:
    found = shutil.which("php-fpm") or shutil.which("php-fpm8.2")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/sbin/php-fpm*"))
    return candidates[-1] if candidates else None


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=20)
    ap.add_argument("--modes", default="close,keep")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "fcgi.json"))
    args = ap.parse_args()
    fpm = php_fpm()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            print(f"missing {tool}", file=sys.stderr)
            return 2
    if fpm is None or not os.path.exists(nginx):
        print("missing php-fpm or nginx", file=sys.stderr)
        return 2
    modes = [m for m in args.modes.split(",") if m]
    tmp = Path(tempfile.mkdtemp(prefix="fcgibench-"))
    tmp.chmod(0o755)  # nginx's worker (nobody) must reach the php-fpm socket in it
    www = tmp / "www"
    www.mkdir()
    (www / "hello.php").write_text('<?php echo "hello";')
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir()
    modes_pools = "".join(FPM_POOL.format(tmp=tmp, name=f"{server}-{mode}") for mode in modes
                          for server in ("gorox", "nginx"))
    (tmp / "fpm.conf").write_text(FPM_CONF.format(tmp=tmp) + modes_pools)
    fpm_args = ["taskset", "-c", "1", fpm, "-F", "-n", "-y", str(tmp / "fpm.conf"), "-p", str(tmp)]
    if os.geteuid() == 0:
        fpm_args.append("-R")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs: list[subprocess.Popen] = []
    results: dict[str, dict[str, list[dict]]] = {}
    try:
        procs.append(subprocess.Popen(fpm_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        for mode in modes:
            for server in ("gorox", "nginx"):
                wait_unix(str(tmp / f"{server}-{mode}.sock"))
        ports: dict[tuple[str, str], int] = {}
        pids: dict[tuple[str, str], int] = {}
        for mode in modes:
            keep = mode == "keep"
            gport, nport = free_port(), free_port()
            ports[("gorox", mode)], ports[("nginx", mode)] = gport, nport
            (tmp / f"gorox-{mode}.conf").write_text(GOROX_CONF.format(tmp=tmp, www=www, port=gport, mode=mode,
                                                                      keep="true" if keep else "false"))
            (tmp / f"nginx-{mode}.conf").write_text(NGINX_CONF.format(
                tmp=tmp, www=www, port=nport, mode=mode, keepalive="keepalive 4;" if keep else "",
                keep_conn="fastcgi_keep_conn on;" if keep else ""))
            base = tmp / f"gorox-{mode}"
            base.mkdir()
            procs.append(subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "gorox", "serve", "-single",
                                           "-config", str(tmp / f"gorox-{mode}.conf"), "-base", str(base)],
                                          cwd=base, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
            pids[("gorox", mode)] = procs[-1].pid   # taskset execs the server: same pid
            procs.append(subprocess.Popen(["taskset", "-c", "0", nginx, "-c", str(tmp / f"nginx-{mode}.conf"),
                                           "-p", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
            pids[("nginx", mode)] = procs[-1].pid
        for port in ports.values():
            wait_port(port)
        for mode in modes:
            for server in ("gorox", "nginx"):
                wrk(f"http://127.0.0.1:{ports[(server, mode)]}/hello.php", 1, args.conns)  # warm-up
            for _ in range(args.rounds):
                for server in ("gorox", "nginx"):
                    pid = pids[(server, mode)]
                    r = wrk(f"http://127.0.0.1:{ports[(server, mode)]}/hello.php", args.duration, args.conns, pid)
                    # CPU time per request: a measure the machine's other load disturbs less than req/s.
                    results.setdefault(mode, {}).setdefault(server, []).append(r)
                    print(f"{mode:6} {server:6} {r['rps']:>9.0f} req/s  {r['cpu_us']:>6.1f} us CPU/req  "
                          f"p50 {r['p50']:>8}  p99 {r['p99']:>8}  non-2xx {r['non2xx']}  {r['socket_errors']}",
                          flush=True)
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nmedians:")
    summary: dict[str, dict[str, float]] = {}
    for mode, by_server in results.items():
        g = statistics.median(r["rps"] for r in by_server["gorox"])
        n = statistics.median(r["rps"] for r in by_server["nginx"])
        gc = statistics.median(r["cpu_us"] for r in by_server["gorox"])
        nc = statistics.median(r["cpu_us"] for r in by_server["nginx"])
        summary[mode] = {"gorox_rps": g, "nginx_rps": n, "ratio": g / n if n else 0.0,
                         "gorox_cpu_us": gc, "nginx_cpu_us": nc}
        print(f"  {mode}: gorox {g:.0f} req/s ({gc:.0f} us CPU/req), nginx {n:.0f} req/s ({nc:.0f} us CPU/req), "
              f"gorox/nginx {summary[mode]['ratio']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "runs": results, "medians": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
