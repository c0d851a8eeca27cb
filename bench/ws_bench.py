"""WebSocket echo benchmark: messages per second on gorox (``echoSocklet``, and the raw ASGI echo
app on the ``asgi`` handlet) against uvicorn + websockets running the same ASGI app.

Every server runs with one worker pinned to CPU 0. The load is a raw-asyncio client (this
script with ``--client``) pinned to CPU 1: ``--conns`` connections, each keeping ``--window``
small text messages (``--size`` bytes, masked as a browser masks them, no compression) in
flight: when an echo comes back, the next message goes out. Rounds interleave the servers;
medians are reported, with the server's CPU time per message (from /proc), which is steadier
than messages/s on a shared machine. Usage::

    python bench/ws_bench.py [--rounds 5] [--duration 5] [--conns 50] [--window 1] [--size 32]
                             [--servers gorox-socklet,gorox-asgi,uvicorn] [--out bench/out/ws.json]

``uvicorn`` is uvicorn with ``--ws websockets`` (uvloop, httptools); ``uvicorn-sansio`` and
``uvicorn-wsproto`` are its other WebSocket implementations, for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, cpu_seconds, free_port, spawn, stop_all, wait_port, write_json  # noqa: E402

APPS = ROOT / "tests" / "apps"          # ws_echo.py: the raw ASGI echo app every ASGI server runs

GOROX_CONF = '''
stage {{
    app "bench" {{
        .hostnames = ("*")
        .accessLog = false
        .compression = false
        rule {{ {rule} }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("bench") }}
}}
'''
GOROX_RULES = {
    "gorox-socklet": "echoSocklet { }",
    "gorox-asgi": f'asgi {{ .app = "ws_echo:app" .appDir = "{APPS}" }}',
}
UVICORN_WS = {"uvicorn": "websockets", "uvicorn-sansio": "websockets-sansio", "uvicorn-wsproto": "wsproto"}


def command(server: str, port: int, tmp: Path) -> list[str]:
    pin = ["taskset", "-c", "0"]
    if server in GOROX_RULES:
        conf = tmp / f"{server}.conf"
        conf.write_text(GOROX_CONF.format(rule=GOROX_RULES[server], port=port))
        return pin + [sys.executable, "-m", "gorox", "serve", "-single", "-config", str(conf), "-base", str(tmp)]
    if server in UVICORN_WS:
        return pin + [sys.executable, "-m", "uvicorn", "ws_echo:app", "--app-dir", str(APPS), "--port", str(port),
                      "--loop", "uvloop", "--http", "httptools", "--ws", UVICORN_WS[server], "--ws-per-message-deflate",
                      "false", "--lifespan", "off", "--no-access-log", "--log-level", "warning"]
    raise ValueError(f"unknown server {server!r}")


# -- the client ------------------------------------------------------------------------------------------
class EchoClient(asyncio.Protocol):
    """One connection: the handshake, then ``window`` messages in flight, re-sent as echoes return."""

    def __init__(self, port: int, frame: bytes, window: int, stats: dict, opened: asyncio.Future | None) -> None:
        self.port = port
        self.frame = frame
        self.window = window
        self.stats = stats
        self.opened = opened
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(  # type: ignore[union-attr]
            f"GET /echo HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            f"sec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                raise SystemExit(f"handshake refused: {buf[:200]!r}")
            self.open = True
            buf = buf[end + 4:]
            if self.opened is not None and not self.opened.done():
                self.opened.set_result(None)
            self.transport.write(self.frame * self.window)  # type: ignore[union-attr]
        pos, size, count = 0, len(buf), 0
        while size - pos >= 2:
            n = buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if size - pos < head + n:
                break
            pos += head + n
            count += 1
        self.buf = buf[pos:] if pos < size else b""
        if count:
            self.stats["msgs"] += count
            if self.stats["running"]:
                self.transport.write(self.frame * count)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats["lost"] += 1


def masked_text_frame(size: int) -> bytes:
    payload = b"x" * size
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if size < 126:
        return bytes((0x81, 0x80 | size)) + mask + body
    return bytes((0x81, 0x80 | 126)) + struct.pack("!H", size) + mask + body


async def run_client(port: int, conns: int, window: int, size: int, duration: float, warmup: float) -> dict:
    loop = asyncio.get_running_loop()
    stats = {"msgs": 0, "running": True, "lost": 0}
    frame = masked_text_frame(size)
    transports = []
    opened = []
    for _ in range(conns):
        fut = loop.create_future()
        transport, _ = await loop.create_connection(lambda: EchoClient(port, frame, window, stats, fut),
                                                    "127.0.0.1", port)
        transports.append(transport)
        opened.append(fut)
    await asyncio.wait_for(asyncio.gather(*opened), 10)
    await asyncio.sleep(warmup)
    start_msgs, started = stats["msgs"], time.perf_counter()
    await asyncio.sleep(duration)
    msgs, elapsed = stats["msgs"] - start_msgs, time.perf_counter() - started
    stats["running"] = False
    for t in transports:
        t.abort()
    return {"msgs": msgs, "secs": elapsed, "rate": msgs / elapsed, "lost": stats["lost"]}


def client_main(args: argparse.Namespace) -> int:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run_client(args.port, args.conns, args.window, args.size, args.duration, args.warmup))
    print(json.dumps(result))
    return 0


def measure(port: int, args: argparse.Namespace, duration: float, warmup: float) -> dict:
    cmd = ["taskset", "-c", "1", sys.executable, __file__, "--client", "--port", str(port), "--conns", str(args.conns),
           "--window", str(args.window), "--size", str(args.size), "--duration", str(duration), "--warmup", str(warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 60)
    if out.returncode:
        raise RuntimeError(f"client failed on port {port}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the driver ---------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--servers", default="gorox-socklet,gorox-asgi,uvicorn")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.client:
        return client_main(args)
    if not shutil.which("taskset"):
        print("missing taskset", file=sys.stderr)
        return 2
    servers = args.servers.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="wsbench-"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), str(APPS))))
    procs: dict[str, tuple[subprocess.Popen, int]] = {}
    results: dict[str, list[dict]] = {}
    try:
        for server in servers:
            port = free_port()
            procs[server] = (spawn(command(server, port, tmp), cwd=tmp, env=env), port)
        for server, (_, port) in procs.items():
            wait_port(port)
            measure(port, args, 1.0, 0.2)  # warm-up
        for _ in range(args.rounds):
            for server in servers:
                proc, port = procs[server]
                before = cpu_seconds(proc.pid)
                r = measure(port, args, args.duration, args.warmup)
                cpu = cpu_seconds(proc.pid) - before
                # CPU over warm-up + measurement, per message over the same span (rate x time).
                r["cpu_us"] = cpu / (r["rate"] * (args.duration + args.warmup)) * 1e6 if r["rate"] else 0.0
                results.setdefault(server, []).append(r)
                print(f"{server:15} {r['rate']:>9.0f} msgs/s  {r['cpu_us']:6.1f} us CPU/msg", flush=True)
    finally:
        stop_all(proc for proc, _ in procs.values())
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {s: {"rate": statistics.median(r["rate"] for r in runs),
                   "cpu_us": statistics.median(r["cpu_us"] for r in runs)} for s, runs in results.items()}
    print(f"\nmedians ({args.conns} connections x {args.window} in flight, {args.size}-byte text messages):")
    for server, m in medians.items():
        print(f"  {server:15} {m['rate']:>9.0f} msgs/s  {m['cpu_us']:6.1f} us CPU/msg")
    for base in [s for s in medians if s.startswith("uvicorn")]:
        for ours in [s for s in medians if s.startswith("gorox")]:
            print(f"  {ours} / {base}: {medians[ours]['rate'] / medians[base]['rate']:.2f}x msgs/s, "
                  f"{medians[base]['cpu_us'] / medians[ours]['cpu_us']:.2f}x less CPU per message")
    if args.out:
        write_json(args.out, {"args": vars(args), "runs": results, "medians": medians})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
