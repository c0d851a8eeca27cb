"""A worker process: serves the stage its leader tells it to, and nothing else.

The leader starts it with the same command line and ``_GOROX_WORKER_=<fd>:<slot>`` naming its
end of the channel. Signals are ignored (the leader alone decides; a Ctrl-C in a terminal
reaches the whole process group). The worker adopts the listening sockets the leader sends,
runs a ``SingleRunner`` (the very runner of ``-single``) and answers the leader's commands:
START, RECONF (an in-process reload), REOPEN, STATS, QUIT, PING. If the leader goes away the
worker quits gracefully: no orphan keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from typing import Any

from ..config.errors import ConfigError
from ..core.stage import Dirs
from ..net.gate import listeners
from . import commands as C
from .channel import Channel
from .msgx import Message
from .single import RELOAD_IDLE_GRACE, SingleRunner, install_loop, stage_factory
from .sockets import adopt, listen_addresses
from .stats import RecentErrors, ServerCounters, rss_bytes, uptime

log = logging.getLogger("hemi.procman")

ENV = "_GOROX_WORKER_"
START_TIMEOUT = 30.0
MAX_REPLY_TEXT = 64 << 10


def is_worker() -> bool:
    return ENV in os.environ


def main(config_file: str, dirs: Dirs, *, grace: float) -> int:
    fd_text, _, slot = os.environ.pop(ENV).partition(":")
    sock = socket.socket(fileno=int(fd_text))
    sock.set_inheritable(False)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    label_logs(f"worker {slot or '?'}")
    install_loop()
    return asyncio.run(Worker(sock, config_file, dirs, grace).run())


def label_logs(label: str) -> None:
    """Put ``label`` and the pid in every log line: leader and workers share the error log."""
    fmt = logging.Formatter(f"%(asctime)s [%(levelname)s] {label} (pid %(process)d) %(name)s: %(message)s")
    for name in ("hemi", "gorox"):
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(fmt)


class Worker:
    def __init__(self, sock: socket.socket, config_file: str, dirs: Dirs, grace: float) -> None:
        self.sock = sock
        self.config_file = config_file
        self.dirs = dirs
        self.grace = grace
        self.started = time.time()
        self.counters = ServerCounters()
        self.errors = RecentErrors().install()
        self.runner = SingleRunner(stage_factory(config_file, dirs), grace=grace, signals=False,
                                   on_retired=self.counters.retire)
        self.stdio: tuple[str, str] = ("", "")
        self._start: asyncio.Future[Message] | None = None
        self._tasks: set[asyncio.Task] = set()
        self.channel: Channel | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._start = loop.create_future()
        self.channel = Channel(self.sock, self._on_request, self._on_close)
        try:
            start = await asyncio.wait_for(self._start, START_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError):
            log.error("no start command from the leader; exiting")
            return 1
        self.stdio = (start.get("stdout"), start.get("stderr"))

        def ready() -> None:
            self._keep_only_used()
            self._spawn(self.channel.reply(start, C.OK, {"pid": str(os.getpid()), "stage": str(self.runner.stage.id)}))

        try:
            return await self.runner.run(ready, stage_id=int(start.get("stage", "0") or 0))
        except (ConfigError, OSError) as e:
            await self.channel.reply(start, C.FAILED, {"error": _clip(str(e))})
            return 1
        except Exception as e:  # a component's bug: say so to the leader, with the trace in the log
            log.exception("the stage could not start")
            await self.channel.reply(start, C.FAILED, {"error": _clip(f"{type(e).__name__}: {e}")})
            return 1

    # -- the leader's commands ------------------------------------------------------------------------
    def _on_request(self, msg: Message, socks: list[socket.socket]) -> None:
        if msg.comd == C.ADOPT:
            adopt(msg.args, socks)  # inline: the command that needs them is the next record
            return
        for s in socks:
            s.close()
        if msg.comd == C.START:
            if self._start is not None and not self._start.done():
                self._start.set_result(msg)
            return
        if self.runner.stage is None and msg.comd != C.PING:
            self._spawn(self.channel.reply(msg, C.BUSY, {"error": "the worker is starting"}))
            return
        if msg.comd == C.QUIT:
            self.runner.quit(RELOAD_IDLE_GRACE if msg.get("retire") else 0.0)
        elif msg.comd == C.RECONF:
            self._spawn(self._reconf(msg))
        elif msg.comd == C.STATS:
            self._spawn(self.channel.reply(msg, C.OK, {"json": json.dumps(self.stats(int(msg.get("since", "0") or 0)))}))
        elif msg.comd == C.REOPEN:
            from .daemon import reopen_stdio
            count = self.runner.reopen() + reopen_stdio(*self.stdio)
            self._spawn(self.channel.reply(msg, C.OK, {"files": str(count)}))
        elif msg.comd == C.PING:
            self._spawn(self.channel.reply(msg, C.OK, {"pid": str(os.getpid())}))
        elif msg.call:
            self._spawn(self.channel.reply(msg, C.UNKNOWN, {"error": f"unknown command {msg.comd}"}))

    async def _reconf(self, msg: Message) -> None:
        ok = await self.runner.reload(int(msg.get("stage")) if msg.get("stage") else None)
        self._keep_only_used()
        assert self.runner.stage is not None and self.channel is not None
        if ok:
            await self.channel.reply(msg, C.OK, {"stage": str(self.runner.stage.id)})
        else:
            await self.channel.reply(msg, C.FAILED, {"error": _clip(self.runner.last_error)})

    def _keep_only_used(self) -> None:
        """Close adopted sockets the running stage does not use (old stages keep theirs until
        they release them)."""
        if self.runner.stage is not None:
            listeners.keep_only({(str(a), i) for a, i in listen_addresses(self.runner.stage)})

    def _on_close(self) -> None:
        if self._start is not None and not self._start.done():
            self._start.set_exception(ConnectionError("leader gone"))
            return
        log.warning("the leader is gone; quitting")
        self.runner.quit()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- reporting --------------------------------------------------------------------------------------
    def stats(self, since: int = 0) -> dict[str, Any]:
        stage = self.runner.stage
        live = ([stage] if stage is not None else []) + list(self.runner.retiring)
        servers = self.counters.snapshot(live)
        errors = self.errors.since(since)
        while errors and len(json.dumps(errors)) > MAX_REPLY_TEXT:
            errors = errors[len(errors) // 2 + 1:]
        return {
            "pid": os.getpid(), "stage": stage.id if stage is not None else None, "uptime": uptime(self.started),
            "rss": rss_bytes(os.getpid()), "stages_draining": len(self.runner.retiring), "servers": servers,
            "conns_open": sum(s["conns_open"] for s in servers),
            "connections_total": sum(s["connections_total"] for s in servers),
            "requests_total": sum(s["requests_total"] for s in servers),
            "errors": errors, "error_seq": self.errors.seq,
        }


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REPLY_TEXT else text[:MAX_REPLY_TEXT] + "\n..."
