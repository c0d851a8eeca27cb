"""Helpers for the process-manager tests: start a real gorox leader (with workers) in its own
process group, run ``gorox ACTION`` commands against it, and kill the whole group at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..conftest import ROOT, free_port

ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def gorox(*args: str, timeout: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gorox", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=str(cwd) if cwd else None)


def wait_for(pred, timeout: float = 15.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class Leader:
    """A gorox leader under test, found through its base directory (like a user would)."""

    def __init__(self, base: Path, port: int, config: Path) -> None:
        self.base = base
        self.port = port
        self.config = config
        self.proc: subprocess.Popen | None = None   # the foreground leader (not with -daemon)
        self.pgid = 0

    @property
    def pid_file(self) -> Path:
        return self.base / "data" / "var" / "gorox.pid"

    def leader_pid(self) -> int:
        return int(self.pid_file.read_text())

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def cmd(self, action: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return gorox(action, "-base", str(self.base), *args, timeout=timeout)

    def pids(self) -> dict[str, int]:
        r = self.cmd("pids")
        assert r.returncode == 0, r.stderr
        return {k: int(v) for k, v in (line.split(": ", 1) for line in r.stdout.splitlines())}

    def info(self) -> dict[str, Any]:
        r = self.cmd("info", "-json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def worker_pids(self) -> list[int]:
        return [pid for name, pid in self.pids().items() if name.startswith("worker") and "draining" not in name]

    def output(self) -> str:
        parts = []
        for name in ("gorox.out", "data/log/gorox.out", "data/log/gorox.err"):
            p = self.base / name
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def kill(self) -> None:
        """Kill the leader and every worker (they share the leader's process group)."""
        if self.pgid:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


def start_leader(base: Path, config: str, *, workers: int = 2, files: dict[str, str] | None = None,
                 daemon: bool = False, extra: tuple[str, ...] = (), started: list[Leader] | None = None) -> Leader:
    """Write ``config`` (``{port}``, ``{base}`` substituted) and start ``gorox serve`` on it with
    ``-cmdui 127.0.0.1:0``; return once the leader wrote its pid file (all workers serve)."""
    base.mkdir(parents=True, exist_ok=True)
    for name, content in (files or {}).items():
        p = base / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    port = free_port()
    conf = base / "gorox.conf"
    conf.write_text(config.format(port=port, base=base))
    leader = Leader(base, port, conf)
    if started is not None:
        started.append(leader)
    args = ["serve", "-config", str(conf), "-base", str(base), "-cmdui", "127.0.0.1:0",
            "-workers", str(workers), *extra]
    if daemon:
        r = gorox(*args, "-daemon")
        assert r.returncode == 0, r.stdout + r.stderr + leader.output()
    else:
        out = open(base / "gorox.out", "wb")
        leader.proc = subprocess.Popen([sys.executable, "-m", "gorox", *args], stdout=out, stderr=subprocess.STDOUT,
                                       env=ENV, cwd=str(base), start_new_session=True)
        leader.pgid = leader.proc.pid
        ok = wait_for(lambda: leader.pid_file.exists() or leader.proc.poll() is not None, 30)
        assert ok and leader.proc.poll() is None, f"gorox did not start:\n{leader.output()}"
    leader.pgid = leader.leader_pid()
    return leader
