"""What a worker reports to its leader (and the leader to cmdui, webui and /metrics): counters
per server summed over the stages the worker has run, memory, and the recent warnings."""

from __future__ import annotations

import collections
import logging
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.stage import Stage

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


class ServerCounters:
    """Totals per server name over every stage this process has run: a reload starts new
    server objects from zero, but a counter that goes back looks like a restart to Prometheus."""

    def __init__(self) -> None:
        self._retired: dict[str, list[int]] = {}

    def retire(self, stage: "Stage") -> None:
        for name, srv in stage.by_kind["server"].items():
            total = self._retired.setdefault(name, [0, 0])
            total[0] += getattr(srv, "connections_total", 0)
            total[1] += getattr(srv, "requests_total", 0)

    def snapshot(self, live: list["Stage"]) -> list[dict[str, Any]]:
        """One entry per server name of the live stages (the first is the running one)."""
        out: dict[str, dict[str, Any]] = {}
        for stage in live:
            for name, srv in stage.by_kind["server"].items():
                entry = out.get(name)
                if entry is None:
                    retired = self._retired.get(name, [0, 0])
                    entry = out[name] = {"name": name, "sign": srv.sign, "address": str(getattr(srv, "address", "")),
                                         "conns_open": 0, "connections_total": retired[0],
                                         "requests_total": retired[1]}
                entry["conns_open"] += sum(len(g.conns) for g in getattr(srv, "gates", ()))
                entry["connections_total"] += getattr(srv, "connections_total", 0)
                entry["requests_total"] += getattr(srv, "requests_total", 0)
        return list(out.values())


class RecentErrors(logging.Handler):
    """The last ``size`` warnings and errors, numbered so a reader can ask for what is new."""

    def __init__(self, size: int = 100) -> None:
        super().__init__(logging.WARNING)
        self.entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self.seq = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        self.add({"time": record.created, "level": record.levelname, "logger": record.name,
                  "message": message[:2000]})

    def add(self, entry: dict[str, Any]) -> None:
        self.seq += 1
        self.entries.append({**entry, "seq": self.seq})

    def since(self, seq: int) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["seq"] > seq]

    def install(self) -> "RecentErrors":
        for name in ("hemi", "gorox"):
            logging.getLogger(name).addHandler(self)
        return self


def uptime(since: float) -> float:
    return round(time.time() - since, 3)
