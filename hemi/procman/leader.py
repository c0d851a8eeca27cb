"""The leader: owns the listening sockets, supervises the workers, answers the admin channel.

Start-up: check the config (a broken one never starts), bind every listening socket it names,
open the admin channel (cmdui, and the webui if asked), start the workers and wait until each
serves, then write ``<vars>/gorox.pid`` and ``<vars>/gorox.cmdui``.

The leader binds each socket once and hands it to every worker (``sockets.hand_over``), so all
workers accept from one queue: whatever a worker does (reload, exit, crash), the socket stays
open in the leader and the others keep accepting; no connection is refused.

- reconf: check the new config in the leader; if it is broken, reply with its errors and change
  nothing. Otherwise bind any new address, send the sockets and RECONF to every worker, and each
  swaps its stage in place (``SingleRunner.reload``): the new stage starts on the same sockets
  before the old one drains.
- A worker that dies is restarted, at once the first time and with a doubling delay (up to 30 s)
  while new workers keep dying within 10 s. A worker past ``-maxRSS`` or ``-maxRequests`` is
  recycled: its replacement starts first, then it quits gracefully. ``rework`` does that to all.
- quit: every worker stops accepting, finishes what is in flight (within ``-grace``) and exits;
  then the leader. stop: workers are killed at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .. import __version__
from ..config.errors import ConfigError
from ..core.logs import reopen_all
from ..core.stage import Dirs, Stage
from ..net.gate import Key, listeners
from . import commands as C
from .channel import Channel, pair
from .cmdui import CmdUI
from .daemon import Readiness, RunFiles, reopen_stdio, stdio_paths
from .msgx import Message
from .sockets import bind_all, encode_keys, hand_over
from .report import info_args, pids_args, snapshot
from .stats import RecentErrors
from .token import ensure_token, token_path
from .worker import ENV as WORKER_ENV
from .worker import label_logs
from .workers import QUICK_DEATH, Slot, WorkerProc, backoff, exit_text, wait_exit

log = logging.getLogger("hemi.procman")

START_TIMEOUT = 60.0      # a worker imports everything, then builds and starts its stage
CALL_TIMEOUT = 10.0       # STATS, REOPEN, PING
RECONF_TIMEOUT = 120.0
POLL_INTERVAL = 1.0


class LeaderError(Exception):
    """Why the leader cannot start (printed, exit 1)."""


@dataclass
class Options:
    config_file: str
    dirs: Dirs
    worker_argv: list[str]            # how to run this program again (as a worker)
    worker_env: dict[str, str]
    workers: int = 1
    cmdui: str = "127.0.0.1:9527"
    webui: str = ""
    grace: float = 30.0
    max_rss: int = 0
    max_requests: int = 0
    program: str = "gorox"


class Leader:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.started = time.time()
        self.slots = [Slot() for _ in range(opts.workers)]
        self.retiring: list[WorkerProc] = []
        self.generation = 0
        self.socks: dict[Key, Any] = {}
        self.quitting = False
        self.reconfs = {"ok": 0, "failed": 0}
        self.last_reconf: dict[str, Any] = {}
        self.errors = RecentErrors()
        self.run_files = RunFiles(opts.dirs, opts.program)
        self.readiness = Readiness()
        self.stdio = stdio_paths(opts.dirs, opts.program) if self.readiness.daemon else ("", "")
        self.cmdui: CmdUI | None = None
        self.cmdui_addr = ""
        self.webui_stage: Stage | None = None
        self.webui_addr = ""
        self.token = ""
        self._reconf_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._done: asyncio.Future[int] | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- start-up -------------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        label_logs("leader")
        self.errors.install()
        try:
            await self._start()
        except ConfigError as e:
            self.readiness.report(f"error: the config has problems:\n{e}\n")
            await self._shutdown_all(kill=True)
            raise
        except LeaderError as e:
            log.error("%s", e)
            self.readiness.report(f"error: {e}\n")
            await self._shutdown_all(kill=True)
            return 1
        for sig, handler in ((signal.SIGHUP, lambda: self._spawn(self.reconf())),
                             (signal.SIGTERM, lambda: self._spawn(self.quit())),
                             (signal.SIGQUIT, lambda: self._spawn(self.quit())),
                             (signal.SIGINT, lambda: self._spawn(self.stop())),
                             (signal.SIGUSR1, lambda: self._spawn(self.reopen()))):
            loop.add_signal_handler(sig, handler)
        self.run_files.write(self.cmdui_addr)
        log.info("leader %d serving with %d workers (config %s); admin channel on %s%s", os.getpid(),
                 len(self.slots), self.opts.config_file, self.cmdui_addr,
                 f", webui on http://{self.webui_addr}/" if self.webui_addr else "")
        self.readiness.report(f"ok {os.getpid()}\n")
        self._spawn(self._supervise())
        self._spawn(self._poll_loop())
        code = await self._done
        self.run_files.remove()
        return code

    async def _start(self) -> None:
        other = self.run_files.running_pid()
        if other is not None and other != os.getpid():
            raise LeaderError(f"a leader (pid {other}) already runs with this base directory; "
                              f"stop it first (gorox stop -base {self.opts.dirs.base})")
        stage = self.check()  # ConfigError -> the caller prints it
        try:
            self.socks = bind_all(stage)
        except OSError as e:
            raise LeaderError(str(e)) from None
        self.token = ensure_token(token_path(self.opts.dirs, self.opts.program))
        self.cmdui = CmdUI(self, self.token)
        try:
            self.cmdui_addr = await self.cmdui.start(self.opts.cmdui)
        except (OSError, ValueError) as e:
            raise LeaderError(f"cannot open the admin channel (-cmdui) on {self.opts.cmdui}: {e}") from None
        if self.opts.webui:
            from .webui import start_webui
            try:
                self.webui_stage = await start_webui(self, self.opts.webui)
            except (OSError, ConfigError) as e:
                raise LeaderError(f"cannot start the webui on {self.opts.webui}: {e}") from None
            self.webui_addr = str(self.webui_stage.by_kind["server"]["webui"].bound_addresses[0])
        results = await asyncio.gather(*(self._spawn_worker(i) for i in range(len(self.slots))),
                                       return_exceptions=True)
        for i, result in enumerate(results):
            if not isinstance(result, BaseException):
                self.slots[i].worker = result  # so that a failure below stops it too
        for i, result in enumerate(results):
            if isinstance(result, BaseException):
                raise LeaderError(f"worker {i} could not start: {result}")

    def check(self) -> Stage:
        """Build and configure the config as a worker would (raises ConfigError). Nothing is
        prepared or started: that happens in the workers."""
        stage = Stage.from_file(self.opts.config_file, self.opts.dirs, id=self.generation)
        stage.configure()
        return stage

    # -- workers --------------------------------------------------------------------------------------
    async def _spawn_worker(self, slot: int) -> WorkerProc:
        """Start a worker on the current sockets and config; return once it serves."""
        mine, theirs = pair()
        # _GOROX_WORKERS_: how many workers serve (the wsgi handlet's wsgi.multiprocess).
        env = {**self.opts.worker_env, WORKER_ENV: f"{theirs.fileno()}:{slot}",
               "_GOROX_WORKERS_": str(self.opts.workers)}
        if len(self.slots) > 1:
            # Workers share one accept queue. libuv accepts everything queued at each wake-up, so
            # the first worker awake takes a whole burst of connections (wrk's 64 at once, say)
            # and the others idle. One accept per wake-up spreads them out.
            env.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
        try:
            proc = subprocess.Popen(self.opts.worker_argv, pass_fds=(theirs.fileno(),), env=env,
                                    stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        w = WorkerProc(slot, proc)
        w.channel = Channel(mine, lambda msg, socks: [s.close() for s in socks], self._wake.set)
        try:
            await hand_over(w.channel, self.socks)
            reply = await w.channel.call(Message(C.START, args={
                "stage": str(self.generation), "keys": encode_keys(self.socks),
                "stdout": self.stdio[0], "stderr": self.stdio[1]}), timeout=START_TIMEOUT)
            if reply.flag != C.OK:
                raise RuntimeError(reply.get("error") or f"flag {reply.flag}")
        except BaseException as e:
            w.state = "dead"
            w.channel.close()
            if proc.poll() is None:
                proc.kill()
            await wait_exit(proc, 5.0)
            if isinstance(e, (ConnectionError, asyncio.TimeoutError)):
                code = proc.poll()
                raise RuntimeError(f"it exited with {exit_text(code)} before serving" if code is not None
                                   else "it did not report ready in time") from None
            raise
        w.state = "serving"
        w.started = time.time()
        log.info("%s serves stage %d", w.describe(), self.generation)
        return w

    def workers(self) -> list[WorkerProc]:
        return [s.worker for s in self.slots if s.worker is not None and s.worker.state == "serving"]

    async def _supervise(self) -> None:
        """Reap workers; restart the ones that died; kill drained ones that overstay."""
        while not self.quitting:
            try:
                await asyncio.wait_for(self._wake.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self.quitting:
                return
            now = time.time()
            for w in list(self.retiring):
                if w.proc.poll() is not None:
                    self.retiring.remove(w)
                    w.state = "dead"
                    if w.channel:
                        w.channel.close()
                    log.info("%s has drained and exited", w.describe())
                elif now > w.quit_deadline:
                    log.warning("%s is still draining after the grace period; killing it", w.describe())
                    w.proc.kill()
            for i, slot in enumerate(self.slots):
                w = slot.worker
                if w is None or w.state != "serving" or w.proc.poll() is None:
                    continue
                w.state = "dead"
                if w.channel:
                    w.channel.close()
                lived = now - w.started
                slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH else 0
                delay = backoff(slot.quick_deaths)
                log.error("%s died (%s) after %.1fs; restarting it%s", w.describe(), exit_text(w.proc.returncode),
                          lived, f" in {delay:.1f}s" if delay else "")
                if slot.restarting is None:
                    slot.restarting = self._spawn(self._restart(i, delay))

    async def _restart(self, i: int, delay: float) -> None:
        slot = self.slots[i]
        try:
            while not self.quitting:
                await asyncio.sleep(delay)
                if self.quitting:
                    return
                try:
                    new = await self._spawn_worker(i)
                except Exception as e:
                    slot.quick_deaths += 1
                    delay = max(backoff(slot.quick_deaths), 0.5)
                    log.error("worker %d could not start: %s; trying again in %.1fs", i, e, delay)
                    continue
                await self._install(i, new)
                slot.restarts += 1
                return
        finally:
            slot.restarting = None

    async def replace(self, i: int, reason: str) -> bool:
        """Start a new worker for slot ``i``; once it serves, the old one quits gracefully."""
        slot = self.slots[i]
        old = slot.worker
        if old is None or old.state != "serving" or self.quitting:
            return False
        old.recycling = True
        try:
            new = await self._spawn_worker(i)
        except Exception as e:
            old.recycling = False
            log.error("could not start a replacement for %s (%s): %s", old.describe(), reason, e)
            return False
        if not await self._install(i, new):
            return False
        log.info("%s replaced by pid %d (%s); it drains", old.describe(), new.pid, reason)
        if old.state == "serving":
            await self._retire(old)
        return True

    async def _install(self, i: int, new: WorkerProc) -> bool:
        """Put a freshly started worker in slot ``i``, unless the leader quits meanwhile or
        another start (a restart racing a recycle) filled the slot first: then it quits."""
        slot = self.slots[i]
        current = slot.worker
        if self.quitting or (current is not None and current.state == "serving" and not current.recycling):
            await self._retire(new)
            return False
        slot.worker = new
        return True

    async def _retire(self, w: WorkerProc) -> None:
        w.state = "draining"
        w.quit_deadline = time.time() + self.opts.grace + 5.0
        self.retiring.append(w)
        try:
            assert w.channel is not None
            await w.channel.tell(Message(C.QUIT, args={"retire": "1"}))  # the others go on serving
        except ConnectionError:
            pass

    # -- polling --------------------------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        while not self.quitting:
            await asyncio.sleep(POLL_INTERVAL)
            await self.poll()
            for i, slot in enumerate(self.slots):
                w = slot.worker
                if w is None or w.state != "serving" or w.recycling:
                    continue
                rss = w.stats.get("rss", 0)
                if self.opts.max_rss and rss > self.opts.max_rss:
                    self._spawn(self.replace(i, f"RSS {rss >> 20} MiB > -maxRSS {self.opts.max_rss >> 20} MiB"))
                elif self.opts.max_requests and w.stats.get("requests_total", 0) >= self.opts.max_requests:
                    self._spawn(self.replace(i, f"served {w.stats['requests_total']} requests (-maxRequests)"))

    async def poll(self) -> None:
        """Refresh every serving worker's counters (and collect its recent warnings)."""
        await asyncio.gather(*(self._poll_one(w) for w in self.workers()), return_exceptions=True)

    async def _poll_one(self, w: WorkerProc) -> None:
        assert w.channel is not None
        try:
            reply = await w.channel.call(Message(C.STATS, args={"since": str(w.error_seq)}), timeout=CALL_TIMEOUT)
        except (ConnectionError, asyncio.TimeoutError):
            return
        if reply.flag != C.OK:
            return
        stats = json.loads(reply.get("json", "{}"))
        now = time.monotonic()
        per_server = {s["name"]: s["requests_total"] for s in stats.get("servers", [])}
        if w._last is None:
            w._last = (now, stats["requests_total"], per_server)
        elif now - w._last[0] >= POLL_INTERVAL / 2:  # an extra poll (info) just after: rates stay
            then, requests, servers = w._last
            dt = now - then
            w.rate = max(stats["requests_total"] - requests, 0) / dt
            w.server_rates = {n: max(v - servers.get(n, 0), 0) / dt for n, v in per_server.items()}
            w._last = (now, stats["requests_total"], per_server)
        w.stats = stats
        for entry in stats.get("errors", []):
            self.errors.add({**entry, "worker": w.slot, "pid": w.pid})
        w.error_seq = stats.get("error_seq", w.error_seq)

    # -- commands (cmdui, webui and signals all come here) ----------------------------------------------
    async def command(self, name: str) -> tuple[int, dict[str, str]]:
        handler: Callable[[], Awaitable[tuple[int, dict[str, str]]]] | None = {
            "ping": self._cmd_ping, "pids": self._cmd_pids, "info": self._cmd_info, "quit": self._cmd_quit,
            "stop": self._cmd_stop, "reconf": self.reconf, "reopen": self.reopen, "rework": self.rework,
        }.get(name)
        if handler is None:
            return C.UNKNOWN, {"error": f"unknown command: {name}"}
        if self.quitting and name not in ("ping", "pids", "info", "stop"):
            return C.BUSY, {"error": "the leader is quitting"}
        return await handler()

    async def _cmd_ping(self) -> tuple[int, dict[str, str]]:
        return C.OK, {"pong": str(os.getpid()), "version": __version__}

    async def _cmd_pids(self) -> tuple[int, dict[str, str]]:
        return C.OK, pids_args(self)

    async def _cmd_info(self) -> tuple[int, dict[str, str]]:
        await self.poll()
        return C.OK, info_args(self.snapshot())

    async def _cmd_quit(self) -> tuple[int, dict[str, str]]:
        asyncio.get_running_loop().call_later(0.05, lambda: self._spawn(self.quit()))
        return C.OK, {"quitting": str(os.getpid()), "grace": f"{self.opts.grace:g}s"}

    async def _cmd_stop(self) -> tuple[int, dict[str, str]]:
        asyncio.get_running_loop().call_later(0.05, lambda: self._spawn(self.stop()))
        return C.OK, {"stopping": str(os.getpid())}

    async def reconf(self) -> tuple[int, dict[str, str]]:
        """Check the config, then have every worker swap its stage in place."""
        async with self._reconf_lock:
            if self.quitting:
                return C.BUSY, {"error": "the leader is quitting"}
            try:
                stage = self.check()
                socks = bind_all(stage)
            except ConfigError as e:
                return self._reconf_done(False, f"config rejected, the running one stays:\n{e}")
            except OSError as e:
                return self._reconf_done(False, f"config rejected, the running one stays: {e}")
            generation = self.generation + 1
            workers = self.workers()
            results = await asyncio.gather(*(self._reconf_one(w, socks, generation) for w in workers))
            self.socks, self.generation = socks, generation
            failed = [f"worker {w.slot} (pid {w.pid}): {err}" for w, err in zip(workers, results) if err]
            if failed:
                return self._reconf_done(False, "reload failed in " + "; ".join(failed))
            listeners.keep_only(set(socks))
            return self._reconf_done(True, f"stage {generation} serving in {len(workers)} workers")

    async def _reconf_one(self, w: WorkerProc, socks: dict[Key, Any], generation: int) -> str:
        assert w.channel is not None
        try:
            await hand_over(w.channel, socks)
            reply = await w.channel.call(Message(C.RECONF, args={"stage": str(generation), "keys": encode_keys(socks)}),
                                         timeout=RECONF_TIMEOUT)
        except (ConnectionError, asyncio.TimeoutError) as e:
            return f"no answer ({e or type(e).__name__})"
        return "" if reply.flag == C.OK else reply.get("error", f"flag {reply.flag}")

    def _reconf_done(self, ok: bool, text: str) -> tuple[int, dict[str, str]]:
        self.reconfs["ok" if ok else "failed"] += 1
        self.last_reconf = {"ok": ok, "time": time.time(), "message": text}
        if ok:
            log.info("reconf: %s", text)
            return C.OK, {"reconf": text, "stage": str(self.generation)}
        log.error("reconf: %s", text)
        return C.FAILED, {"error": text}

    async def reopen(self) -> tuple[int, dict[str, str]]:
        count = reopen_all() + reopen_stdio(*self.stdio)
        for w in self.workers():
            assert w.channel is not None
            try:
                reply = await w.channel.call(Message(C.REOPEN), timeout=CALL_TIMEOUT)
                count += int(reply.get("files", "0") or 0)
            except (ConnectionError, asyncio.TimeoutError):
                pass
        log.info("reopened %d log files", count)
        return C.OK, {"reopened": f"{count} files"}

    async def rework(self) -> tuple[int, dict[str, str]]:
        """Replace every worker by a fresh process, one at a time (new code is loaded)."""
        done = 0
        for i in range(len(self.slots)):
            done += await self.replace(i, "rework")
        flag = C.OK if done == len(self.slots) else C.FAILED
        return flag, ({"reworked": f"{done} workers"} if flag == C.OK else {"error": f"only {done} of {len(self.slots)} workers were replaced"})

    async def quit(self) -> None:
        if self.quitting:
            return
        self.quitting = True
        log.info("quitting: workers finish what they serve (grace %gs)", self.opts.grace)
        await self._shutdown_all(kill=False)
        self._finish(0)

    async def stop(self) -> None:
        self.quitting = True
        log.info("stopping now")
        await self._shutdown_all(kill=True)
        self._finish(0)

    async def _shutdown_all(self, kill: bool) -> None:
        for slot in self.slots:
            if slot.restarting is not None:
                slot.restarting.cancel()
        procs = [s.worker for s in self.slots if s.worker is not None] + list(self.retiring)
        procs = [w for w in procs if w.proc.poll() is None]
        for w in procs:
            if kill:
                w.proc.kill()
            elif w.channel is not None and not w.channel.closed:
                try:
                    await w.channel.tell(Message(C.QUIT))
                except ConnectionError:
                    pass
        deadline = time.monotonic() + (5.0 if kill else self.opts.grace + 5.0)
        for w in procs:
            if await wait_exit(w.proc, deadline - time.monotonic()) is None:
                log.warning("%s did not exit in time; killing it", w.describe())
                w.proc.kill()
                await wait_exit(w.proc, 5.0)
            if w.channel is not None:
                w.channel.close()
        if self.webui_stage is not None:
            await self.webui_stage.shutdown()
        if self.cmdui is not None:
            self.cmdui.close()
        listeners.close_all()

    def _finish(self, code: int) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(code)

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- reporting ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the admin interfaces show, as plain data (see ``report.snapshot``)."""
        return snapshot(self)


def main(opts: Options) -> int:
    """Run the leader until quit or stop. Config problems raise ConfigError (the CLI prints them)."""
    from .single import install_loop
    install_loop()
    return asyncio.run(Leader(opts).run())
