"""ASGI benchmark: gorox's ``asgi`` handlet against uvicorn (uvloop + httptools) and granian
(ASGI interface), the same apps, one worker each, in one run.

Two apps: a raw ASGI hello (``/hello``) and a FastAPI JSON endpoint (``/json``); for the hello
case the same gorox also answers from a ``.returnText`` rule ("gorox-text"), the floor that
shows what the HTTP server costs by itself. Each server runs
pinned to CPU 0 (granian's threads too); wrk -t1 -c50 runs pinned to CPU 1. Rounds interleave
the servers and medians are reported, with the server's CPU time per request (from
/proc/<pid>/stat over the server's process tree), which is steadier than requests/s on a
shared machine. Usage::

    python bench/asgi_bench.py [--rounds 5] [--duration 5] [--conns 50] [--cases hello,fastapi]
                               [--servers gorox,uvicorn,granian] [--out bench/out/asgi.json]

Targets (issue 8): raw ASGI >= 1.3 x uvicorn and above granian; FastAPI >= 1.1 x uvicorn.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, free_port, missing_tools, spawn, stop_all, wait_port, write_json, wrk  # noqa: E402
from web_bench import ASGI_HELLO  # noqa: E402

APPS = {
    "hello_app.py": ASGI_HELLO,
    "fastapi_app.py": '''
from fastapi import FastAPI

app = FastAPI()


@app.get("/json")
async def json_endpoint():
    return {"message": "hello, world!"}
''',
}

CASES = {"hello": ("hello_app:app", "/hello"), "fastapi": ("fastapi_app:app", "/json")}
# The floor: the same gorox answering from a rule (.returnText), no ASGI at all. What the ASGI
# layer costs is the difference; what is left is the HTTP server's own cost per request.
FLOOR = "gorox-text"

GOROX_CONF = '''
stage {{
    app "bench" {{
        .hostnames = ("*")
        .accessLog = false
        rule $path == "/text" {{
            .returnCode = 200
            .returnType = "text/plain; charset=utf-8"
            .returnText = "hello, world!"
        }}
        rule {{ asgi {{ .app = "{app}" .appDir = "{tmp}" }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("bench") }}
}}
'''


def command(server: str, app: str, port: int, tmp: Path, case: str) -> list[str]:
    pin = ["taskset", "-c", "0"]
    if server in ("gorox", FLOOR):
        conf = tmp / f"{server}-{case}.conf"
        conf.write_text(GOROX_CONF.format(app=app, tmp=tmp, port=port))
        return pin + [sys.executable, "-m", "gorox", "serve", "-single", "-config", str(conf), "-base", str(tmp)]
    if server == "uvicorn":
        return pin + [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--loop", "uvloop", "--http",
                      "httptools", "--no-access-log", "--log-level", "warning"]
    if server == "granian":
        return pin + [sys.executable, "-m", "granian", "--interface", "asgi", "--port", str(port), "--workers", "1",
                      "--loop", "uvloop", "--no-ws", "--log-level", "warning", app]
    raise ValueError(server)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--cases", default="hello,fastapi")
    ap.add_argument("--servers", default=f"gorox,uvicorn,granian,{FLOOR}")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if missing_tools("wrk", "taskset"):
        return 2
    cases = args.cases.split(",")
    servers = args.servers.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="asgibench-"))
    for name, text in APPS.items():
        (tmp / name).write_text(text)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), str(tmp))))
    procs: dict[tuple[str, str], tuple[subprocess.Popen, int]] = {}
    results: dict[str, dict[str, list[dict]]] = {}
    try:
        for case in cases:
            app, _ = CASES[case]
            for server in servers:
                if server == FLOOR and case != "hello":
                    continue
                port = free_port()
                procs[case, server] = (spawn(command(server, app, port, tmp, case), cwd=tmp, env=env), port)
        for (case, server), (proc, port) in procs.items():
            wait_port(port)
        for case in cases:
            here = [s for s in servers if (case, s) in procs]

            def path_of(server: str) -> str:
                return "/text" if server == FLOOR else CASES[case][1]

            for server in here:  # warm-up
                wrk(f"http://127.0.0.1:{procs[case, server][1]}{path_of(server)}", 1, args.conns)
            for _ in range(args.rounds):
                for server in here:
                    proc, port = procs[case, server]
                    path = path_of(server)
                    r = wrk(f"http://127.0.0.1:{port}{path}", args.duration, args.conns, proc.pid)
                    results.setdefault(case, {}).setdefault(server, []).append(r)
                    bad = f" non-2xx {r['non2xx']}" if r["non2xx"] else ""
                    print(f"{case:8} {server:8} {r['rps']:>9.0f} req/s  {r['cpu_us']:6.1f} us CPU/req  "
                          f"p50 {r['p50']}{bad}", flush=True)
    finally:
        stop_all(proc for proc, _ in procs.values())
        shutil.rmtree(tmp, ignore_errors=True)
    medians: dict[str, dict[str, dict[str, float]]] = {}
    print("\nmedians (requests/s, server CPU per request):")
    for case, by_server in results.items():
        medians[case] = {s: {"rps": statistics.median(r["rps"] for r in runs),
                             "cpu_us": statistics.median(r["cpu_us"] for r in runs)} for s, runs in by_server.items()}
        m = medians[case]
        print(f"  {case}: " + ", ".join(f"{s} {v['rps']:.0f} ({v['cpu_us']:.1f} us)" for s, v in m.items()))
        if "gorox" in m:
            for other in m:
                if other not in ("gorox", FLOOR):
                    print(f"    gorox / {other}: {m['gorox']['rps'] / m[other]['rps']:.2f}x requests/s, "
                          f"{m[other]['cpu_us'] / m['gorox']['cpu_us']:.2f}x less CPU per request")
            if FLOOR in m:
                print(f"    the ASGI layer costs {m['gorox']['cpu_us'] - m[FLOOR]['cpu_us']:.1f} us per request over "
                      f"gorox's floor ({m[FLOOR]['cpu_us']:.1f} us: a .returnText rule)")
    if args.out:
        write_json(args.out, {"args": vars(args), "runs": results, "medians": medians})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
