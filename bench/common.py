"""What the benchmark scripts share: free ports, a server's CPU time, wrk runs, nginx configs,
and starting and stopping the servers under test.

A script imports from here (``bench/`` is on ``sys.path`` when a script in it runs). The CPU
time of a server is what makes a noisy machine's numbers usable: requests/s moves with the
load of the machine, CPU µs per request much less.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


# -- ports -----------------------------------------------------------------------------------------------
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


# -- CPU time ----------------------------------------------------------------------------------------------
def _proc_stats() -> dict[int, list[str]]:
    """The fields after "(comm)" of every process's /proc/PID/stat: state(0) ppid(1) pgrp(2) ...
    utime(11) stime(12)."""
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            stats[int(entry)] = text[text.rfind(")") + 2:].split()
    return stats


def _ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants: how much a server spent, which a
    busy machine disturbs far less than requests/s."""
    stats = _proc_stats()
    children: dict[int, list[int]] = {}
    for p, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(p)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += _ticks(stats[p])
        todo.extend(children.get(p, ()))
    return total / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in a process group (a leader and its workers)."""
    ticks = sum(_ticks(fields) for fields in _proc_stats().values() if int(fields[2]) == pgid)
    return ticks / os.sysconf("SC_CLK_TCK")


# -- wrk ---------------------------------------------------------------------------------------------------
_UNITS = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}


def wrk(url: str, duration: int, conns: int, pid: int | None = None, *, threads: int = 1,
        cpu: str | None = "1") -> dict:
    """One wrk run, pinned to CPU ``cpu`` (None: not pinned); with ``pid``, also the CPU µs the
    server (and its descendants) spent per request. Returns rps, mbps, cpu_us, p50, p99,
    non2xx, socket_errors and requests."""
    before = cpu_seconds(pid) if pid else 0.0
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", url]
    out = subprocess.run((["taskset", "-c", cpu] if cpu else []) + cmd, capture_output=True, text=True,
                         check=True).stdout

    def find(pattern: str) -> re.Match | None:
        return re.search(pattern, out)

    requests = int(find(r"(\d+) requests in").group(1))  # type: ignore[union-attr]
    transfer = find(r"Transfer/sec:\s+([\d.]+)(\w+)")
    p50, p99 = find(r"50%\s+([\d.]+\w+)"), find(r"99%\s+([\d.]+\w+)")
    non2xx, sock_err = find(r"Non-2xx or 3xx responses: (\d+)"), find(r"Socket errors: (.*)")
    return {"rps": float(find(r"Requests/sec:\s+([\d.]+)").group(1)),  # type: ignore[union-attr]
            "mbps": float(transfer.group(1)) * _UNITS[transfer.group(2)] if transfer else 0.0,
            "cpu_us": 1e6 * (cpu_seconds(pid) - before) / max(1, requests) if pid else 0.0,
            "p50": p50.group(1) if p50 else "", "p99": p99.group(1) if p99 else "",
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": sock_err.group(1) if sock_err else "",
            "requests": requests}


def wrk_errors(r: dict) -> str:
    """What went wrong in a wrk run (non-2xx answers, socket errors); "" for a clean run."""
    return (f" non-2xx {r['non2xx']}" if r["non2xx"] else "") + (
        f" socket errors: {r['socket_errors']}" if r["socket_errors"] else "")


# -- nginx -------------------------------------------------------------------------------------------------
def nginx_temp_paths(tmp: Path, name: str) -> str:
    """The http-level temp path directives of one nginx, in ``tmp`` (the directories made)."""
    lines = []
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / f"{name}-{d}").mkdir(exist_ok=True)
        lines.append(f"{d}_temp_path {tmp}/{name}-{d};")
    return "\n    ".join(lines)


def nginx_conf(tmp: Path, name: str, body: str, *, modules: Iterable[str] = ()) -> Path:
    """Write ``tmp/NAME.conf``: one worker in the foreground, pid and error log in ``tmp``, then
    ``body`` (the http or stream block; :func:`nginx_temp_paths` for an http block)."""
    head = [f"load_module {m};" for m in modules]
    head += ["worker_processes 1;", "daemon off;", f"pid {tmp}/{name}.pid;", f"error_log {tmp}/{name}-error.log warn;",
             "events { worker_connections 4096; }"]
    if os.geteuid() == 0:  # as root, nginx's workers would run as nobody and could not read a private temp dir
        head.append("user root root;")
    path = tmp / f"{name}.conf"
    path.write_text("\n".join(head) + "\n" + body)
    return path


# -- the run itself -------------------------------------------------------------------------------------------
def missing_tools(*tools: str) -> bool:
    """Say on stderr which of ``tools`` (programs on $PATH) this machine lacks; True if any."""
    missing = [t for t in tools if not shutil.which(t)]
    for tool in missing:
        print(f"missing {tool}", file=sys.stderr)
    return bool(missing)


def write_json(path: str | Path, data: dict) -> None:
    """The results of a run, for bench/RESULTS.md and later comparisons."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1))


# -- processes ---------------------------------------------------------------------------------------------
def spawn(cmd: list[str], *, cpu: str | None = None, **kw: object) -> subprocess.Popen:
    """Start a server (pinned to CPU ``cpu`` if given), its output discarded unless ``kw`` says."""
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen((["taskset", "-c", cpu] if cpu else []) + cmd, **kw)  # type: ignore[call-overload]


def gorox_cmd(conf: Path, base: Path, *args: str) -> list[str]:
    """``python -m gorox serve`` on a config (``args``: e.g. "-single")."""
    return [sys.executable, "-m", "gorox", "serve", *args, "-config", str(conf), "-base", str(base)]


def stop_all(procs: Iterable[subprocess.Popen], timeout: float = 10.0, *, group: bool = False) -> None:
    """SIGTERM every process (its whole process group with ``group``, for servers started with
    ``start_new_session``), then wait for each; SIGKILL what outlives ``timeout``."""
    procs = list(procs)
    for p in procs:
        _signal(p, signal.SIGTERM, group)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL, group)
            p.wait()


def _signal(p: subprocess.Popen, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
    except ProcessLookupError:
        pass


__all__ = ["NGINX", "ROOT", "cpu_seconds", "free_port", "gorox_cmd", "group_cpu_seconds", "missing_tools", "nginx_conf",
           "nginx_temp_paths", "spawn", "stop_all", "wait_port", "write_json", "wrk", "wrk_errors"]
