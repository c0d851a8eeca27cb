"""The leader's view of its worker processes: one ``WorkerProc`` per process, one ``Slot`` per
place in the pool (a slot outlives the processes that fill it: restarts, recycling)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from .channel import Channel

QUICK_DEATH = 10.0        # a worker that dies younger than this counts toward the backoff
MAX_BACKOFF = 30.0


@dataclass
class WorkerProc:
    """One worker process as the leader sees it."""

    slot: int
    proc: subprocess.Popen
    channel: Channel | None = None
    state: str = "starting"            # starting, serving, draining, dead
    started: float = field(default_factory=time.time)
    stats: dict[str, Any] = field(default_factory=dict)
    rate: float = 0.0
    server_rates: dict[str, float] = field(default_factory=dict)
    error_seq: int = 0
    recycling: bool = False
    quit_deadline: float = 0.0
    _last: tuple[float, int, dict[str, int]] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def describe(self) -> str:
        return f"worker {self.slot} (pid {self.pid})"


@dataclass
class Slot:
    worker: WorkerProc | None = None
    restarts: int = 0
    quick_deaths: int = 0
    restarting: asyncio.Task | None = None


def backoff(quick_deaths: int) -> float:
    """Seconds before restarting a worker: none after a death that ends a long life or is the
    first quick one, then 0.5, 1, 2, 4 ... up to MAX_BACKOFF while workers keep dying young."""
    if quick_deaths <= 1:
        return 0.0
    return min(0.5 * 2 ** (quick_deaths - 2), MAX_BACKOFF)


async def wait_exit(proc: subprocess.Popen, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.02)
    return proc.returncode


def exit_text(code: int | None) -> str:
    if code is None:
        return "no exit yet"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
