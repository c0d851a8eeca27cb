"""WSGI benchmark: a Flask hello on gorox's ``wsgi`` handlet against gunicorn (gthread) and granian.

The same app (tests/apps/flask_app.py, ``GET /hello``) on three servers, one worker each pinned
to CPU 0: gorox ``serve -single`` with ``wsgi { .threads = 16 }`` (access log off), gunicorn
``-k gthread --threads 16 -w 1``, granian ``--interface wsgi --workers 1``. wrk (one thread,
``--conns`` keep-alive connections) is pinned to CPU 1. Rounds interleave the servers; medians
and the ratios to gunicorn are reported. Usage::

    python bench/wsgi_bench.py [--rounds 3] [--duration 5] [--conns 50] [--out bench/out/wsgi.json]

Target (issue 8): gorox >= 1.0 x gunicorn gthread's requests/s.
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

from common import ROOT, free_port, missing_tools, stop_all, wait_port, write_json, wrk, wrk_errors  # bench/ is on sys.path

APPS = ROOT / "tests" / "apps"

GOROX_CONF = """
stage {{
    app "bench" {{
        .hostnames = ("*")
        .accessLog = false
        rule {{ wsgi {{ .app = "flask_app:app" .appDir = "{apps}" .threads = {threads} }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("bench") }}
}}
"""


def commands(tmp: Path, ports: dict[str, int], threads: int) -> dict[str, list[str]]:
    pin = ["taskset", "-c", "0"]
    return {
        "gorox": [*pin, sys.executable, "-m", "gorox", "serve", "-single", "-config", str(tmp / "gorox.conf"),
                  "-base", str(tmp)],
        "gunicorn": [*pin, sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", str(threads), "-w", "1",
                     "--bind", f"127.0.0.1:{ports['gunicorn']}", "--log-level", "warning", "flask_app:app"],
        "granian": [*pin, sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", "1",
                    "--host", "127.0.0.1", "--port", str(ports["granian"]), "--log-level", "warning", "flask_app:app"],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--threads", type=int, default=16, help="app threads of gorox and gunicorn")
    ap.add_argument("--servers", default="gorox,gunicorn,granian")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "wsgi.json"))
    args = ap.parse_args()
    if missing_tools("wrk", "taskset"):
        return 2
    servers = args.servers.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="wsgibench-"))
    ports = {name: free_port() for name in ("gorox", "gunicorn", "granian")}
    (tmp / "gorox.conf").write_text(GOROX_CONF.format(apps=APPS, port=ports["gorox"], threads=args.threads))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), str(APPS))))
    cmds = commands(tmp, ports, args.threads)
    procs = {name: subprocess.Popen(cmds[name], cwd=APPS, env=env, stdout=subprocess.DEVNULL,
                                    stderr=open(tmp / f"{name}.err", "wb")) for name in servers}
    results: dict[str, list[dict]] = {}
    try:
        for name in servers:
            wait_port(ports[name])
            wrk(f"http://127.0.0.1:{ports[name]}/hello", 1, args.conns)  # warm-up
        for _ in range(args.rounds):
            for name in servers:
                r = wrk(f"http://127.0.0.1:{ports[name]}/hello", args.duration, args.conns)
                results.setdefault(name, []).append(r)
                print(f"flask hello {name:9} {r['rps']:>9.0f} req/s p50 {r['p50']}{wrk_errors(r)}", flush=True)
    finally:
        stop_all(procs.values())
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {name: statistics.median(r["rps"] for r in runs) for name, runs in results.items()}
    print("\nmedians: " + ", ".join(f"{n}: {v:.0f} req/s" for n, v in medians.items()))
    ratios = {}
    if "gunicorn" in medians:
        for name in medians:
            if name != "gunicorn":
                ratios[f"{name}_vs_gunicorn"] = medians[name] / medians["gunicorn"]
    if "gorox" in medians and "granian" in medians:
        ratios["gorox_vs_granian"] = medians["gorox"] / medians["granian"]
    for k, v in ratios.items():
        print(f"  {k}: {v:.2f}x")
    write_json(args.out, {"args": vars(args), "commands": cmds, "runs": results, "medians": medians,
                          "ratios": ratios})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
