"""Layer-4 benchmark: gorox's tcpsMesher + tcpsProxy against nginx's ``stream { proxy_pass }``,
both in front of one nginx HTTP upstream, one worker each.

Two measures, rounds interleaved and medians reported (this machine is noisy):

* bulk: curl downloads a 1 GiB file (served by the upstream with sendfile) through each proxy;
  MB/s, and the proxy's CPU time per MB (user + system, whole process tree);
* requests: wrk (keep-alive) GETs a small file through each proxy; requests/s and CPU µs per
  request.

The proxies run pinned to CPU 0; the upstream, curl and wrk share CPU 1. Usage::

    python bench/l4_bench.py [--rounds 5] [--duration 5] [--conns 50] [--bulk 1024] [--out bench/out/l4.json]

Targets (issue 5): gorox >= 0.7 x nginx MB/s and >= 0.6 x nginx requests/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NGINX, ROOT, cpu_seconds, free_port, gorox_cmd, missing_tools, nginx_conf, nginx_temp_paths, \
    spawn, stop_all, wait_port, write_json, wrk  # noqa: E402

STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

GOROX_CONF = '''
stage {{
    tcpsBackend "up" {{ .nodes = ( ["address": "127.0.0.1:{upstream}"] ) }}
    tcpsMesher "l4" {{
        .address = "127.0.0.1:{port}"
        .accessLog = false
        case {{ tcpsProxy {{ .toBackend = "up" }} }}
    }}
}}
'''

UPSTREAM = '''
http {{
    access_log off;
    keepalive_requests 1000000;
    sendfile on;
    {temps}
    types {{ text/plain txt; application/octet-stream bin; }}
    server {{
        listen 127.0.0.1:{port};
        root {www};
    }}
}}
'''

STREAM = '''
stream {{
    server {{
        listen 127.0.0.1:{port};
        proxy_pass 127.0.0.1:{upstream};
    }}
}}
'''


def bulk(url: str, pid: int) -> dict:
    """One download through a proxy: MB/s and the proxy's CPU ms per MB."""
    before = cpu_seconds(pid)
    t0 = time.monotonic()
    out = subprocess.run(["taskset", "-c", "1", "curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", url],
                         capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - t0
    size = int(float(out))
    mb = size / (1 << 20)
    return {"mbps": mb / elapsed, "cpu_ms_per_mb": 1e3 * (cpu_seconds(pid) - before) / mb, "bytes": size}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--bulk", type=int, default=1024, help="MiB downloaded per bulk round")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "l4.json"))
    args = ap.parse_args()
    if missing_tools("wrk", "taskset", "curl"):
        return 2
    if not os.path.exists(NGINX) or not os.path.exists(STREAM_MODULE):
        print("missing nginx or its stream module (apt-get install -y -qq nginx libnginx-mod-stream)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="l4bench-"))
    os.chmod(tmp, 0o755)
    www = tmp / "www"
    www.mkdir()
    (www / "small.txt").write_bytes(b"x" * 1024)
    with open(www / "big.bin", "wb") as f:   # sparse: read from the page cache, no disk
        f.truncate(args.bulk << 20)
    ports = {"upstream": free_port(), "gorox": free_port(), "nginx": free_port()}
    up_conf = nginx_conf(tmp, "upstream", UPSTREAM.format(port=ports["upstream"], www=www,
                                                          temps=nginx_temp_paths(tmp, "upstream")))
    px_conf = nginx_conf(tmp, "stream", STREAM.format(port=ports["nginx"], upstream=ports["upstream"]),
                         modules=[STREAM_MODULE])
    (tmp / "gorox.conf").write_text(GOROX_CONF.format(port=ports["gorox"], upstream=ports["upstream"]))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = {
        "upstream": spawn([NGINX, "-c", str(up_conf), "-p", str(tmp)], cpu="1"),
        "gorox": spawn(gorox_cmd(tmp / "gorox.conf", tmp, "-single"), cpu="0", cwd=tmp, env=env),
        "nginx": spawn([NGINX, "-c", str(px_conf), "-p", str(tmp)], cpu="0"),
    }
    bulk_runs: dict[str, list[dict]] = {}
    req_runs: dict[str, list[dict]] = {}
    try:
        for port in ports.values():
            wait_port(port)
        for name in ("gorox", "nginx"):  # warm-up, and a check that both relay
            wrk(f"http://127.0.0.1:{ports[name]}/small.txt", 1, args.conns)
        bulk(f"http://127.0.0.1:{ports['upstream']}/big.bin", procs["upstream"].pid)  # the file into the page cache
        for _ in range(args.rounds):
            for name in ("gorox", "nginx"):
                b = bulk(f"http://127.0.0.1:{ports[name]}/big.bin", procs[name].pid)
                assert b["bytes"] == args.bulk << 20, b
                bulk_runs.setdefault(name, []).append(b)
                r = wrk(f"http://127.0.0.1:{ports[name]}/small.txt", args.duration, args.conns, procs[name].pid)
                req_runs.setdefault(name, []).append(r)
                print(f"{name:6} bulk {b['mbps']:8.0f} MB/s {b['cpu_ms_per_mb']:6.2f} ms CPU/MB | "
                      f"{r['rps']:9.0f} req/s {r['cpu_us']:6.1f} us CPU/req p50 {r['p50']:>8} p99 {r['p99']:>8}"
                      f"{'  non-2xx ' + str(r['non2xx']) if r['non2xx'] else ''}"
                      f"{'  socket errors ' + r['socket_errors'] if r['socket_errors'] else ''}", flush=True)
    finally:
        stop_all(procs.values())
        shutil.rmtree(tmp, ignore_errors=True)

    def med(runs: dict[str, list[dict]], key: str) -> dict[str, float]:
        return {name: statistics.median(r[key] for r in rs) for name, rs in runs.items()}

    mbps, cpu_mb = med(bulk_runs, "mbps"), med(bulk_runs, "cpu_ms_per_mb")
    rps, cpu_req = med(req_runs, "rps"), med(req_runs, "cpu_us")
    print(f"\nbulk medians: gorox {mbps['gorox']:.0f} MB/s ({cpu_mb['gorox']:.2f} ms CPU/MB), "
          f"nginx {mbps['nginx']:.0f} MB/s ({cpu_mb['nginx']:.2f} ms CPU/MB); "
          f"gorox/nginx = {mbps['gorox'] / mbps['nginx']:.2f}x (target >= 0.7x)")
    print(f"req medians:  gorox {rps['gorox']:.0f} req/s ({cpu_req['gorox']:.1f} us CPU/req), "
          f"nginx {rps['nginx']:.0f} req/s ({cpu_req['nginx']:.1f} us CPU/req); "
          f"gorox/nginx = {rps['gorox'] / rps['nginx']:.2f}x (target >= 0.6x)")
    write_json(args.out, {"args": vars(args), "bulk": bulk_runs, "requests": req_runs,
                          "medians": {"mbps": mbps, "cpu_ms_per_mb": cpu_mb, "rps": rps, "cpu_us_per_req": cpu_req}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
