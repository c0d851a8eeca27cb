"""Scaling with worker processes: gorox /hello requests/s with 1 worker versus 2 (and -single
for reference), measured with wrk on the same machine.

Nothing is pinned: the workers may use every core, and wrk competes with them for the same
cores, so on a 2-core machine 2 workers cannot double the rate (wrk needs a good part of a
core itself). Rounds are interleaved and the median is reported, with the CPU time gorox's
processes used per request (which, unlike requests/s, does not depend on what else runs on the
machine). Usage::

    python bench/workers_bench.py [--path /hello|/burn] [--rounds 3] [--duration 8] [--conns 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, free_port, group_cpu_seconds, stop_all, wrk, wrk_errors  # bench/ is on sys.path

CONF = '''
stage {{
    app "bench" {{
        .hostnames = ("*")
        .accessLog = false
        rule $path == "/hello" {{
            .returnCode = 200
            .returnType = "text/plain; charset=utf-8"
            .returnText = "hello, world!"
        }}
        rule $path == "/burn" {{ benchBurn {{ }} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("bench") }}
}}
'''

# /burn: a handler that spends ~0.3 ms of CPU per request, so that the load generator's own
# share of the CPU is small and what the worker count does to throughput shows.
EXTS = '''
import hashlib
from hemi.core.registry import handlet
from hemi.web.handlet import Handlet

BLOCK = bytes(256 << 10)

@handlet("benchBurn")
class BenchBurn(Handlet):
    def handle(self, req, resp):
        resp.send(hashlib.sha256(BLOCK).hexdigest())
        return True
'''

MODES = {"single": ["-single"], "1 worker": ["-workers", "1"], "2 workers": ["-workers", "2"]}


def worker_shares(base: Path) -> str:
    """How the requests were spread over the workers (from ``gorox info -json``)."""
    out = subprocess.run([sys.executable, "-m", "gorox", "info", "-json", "-base", str(base)], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if out.returncode != 0:
        return ""
    counts = [w["requests_total"] for w in json.loads(out.stdout)["workers"] if w["pid"]]
    total = sum(counts) or 1
    return ", requests per worker " + "/".join(f"{100 * c / total:.0f}%" for c in counts)


def start(mode: str, tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    base = tmp / re.sub(r"\W", "_", mode)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    conf = base / "gorox.conf"
    conf.write_text(CONF.format(port=port))
    (base / "exts").mkdir()
    (base / "exts" / "__init__.py").write_text(EXTS)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "gorox", "serve", "-config", str(conf), "-base", str(base),
                             "-cmdui", "127.0.0.1:0", *MODES[mode]], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = (base / "data" / "var" / "gorox.pid") if mode != "single" else None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gorox ({mode}) exited with {proc.returncode}")
        if ready is None or ready.exists():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc, port
            except OSError:
                pass
        time.sleep(0.05)
    raise TimeoutError(f"gorox ({mode}) did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--path", default="/hello", help="/hello (fixed text) or /burn (~0.3 ms of CPU per request)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("needs wrk (apt-get install wrk)", file=sys.stderr)
        return 1
    results: dict[str, list[float]] = {m: [] for m in MODES}
    per_request: dict[str, list[float]] = {m: [] for m in MODES}
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="workers-bench-") as tmp:
        for r in range(args.rounds):
            for mode in MODES:
                proc, port = start(mode, Path(tmp))
                try:
                    url = f"http://127.0.0.1:{port}{args.path}"
                    wrk(url, 1, args.conns, threads=args.threads, cpu=None)  # warm up: every worker gets connections
                    cpu0 = group_cpu_seconds(proc.pid)
                    run = wrk(url, args.duration, args.conns, threads=args.threads, cpu=None)
                    cpu = group_cpu_seconds(proc.pid) - cpu0
                    if wrk_errors(run):
                        raise RuntimeError(f"wrk saw errors: {run}")
                    rps = run["rps"]
                    shares = worker_shares(Path(tmp) / re.sub(r"\W", "_", mode)) if mode != "single" else ""
                finally:
                    stop_all([proc], 15, group=True)
                results[mode].append(rps)
                per_request[mode].append(cpu / (rps * args.duration) * 1e6)
                print(f"round {r + 1} {mode:>9}: {rps:10.0f} req/s, gorox used {cpu / args.duration:.2f} cores, "
                      f"{per_request[mode][-1]:.1f} us CPU/request{shares}", flush=True)
    medians = {m: statistics.median(v) for m, v in results.items()}
    costs = {m: statistics.median(v) for m, v in per_request.items()}
    print(f"\nGET {args.path}; {os.cpu_count()} CPUs; wrk -t{args.threads} -c{args.conns} -d{args.duration}s on the same machine; "
          f"median of {args.rounds}; load average before: {load0}")
    for mode, rps in medians.items():
        print(f"  {mode:>9}: {rps:10.0f} req/s  ({rps / medians['1 worker']:.2f} x 1 worker), "
              f"{costs[mode]:.1f} us CPU/request")
    if args.json:
        print(json.dumps({"medians": medians, "us_per_request": costs, "rounds": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
