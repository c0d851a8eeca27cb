"""Run one stage in this process until told to stop; reload it in place.

This is both ``gorox -single`` (one process, driven by signals) and the core of every worker
under the leader (driven by the leader's messages; see ``worker.py``).

Signals (``-single`` only): SIGTERM/SIGQUIT graceful quit (servers stop accepting and drain),
SIGINT the same and a second SIGINT stops at once, SIGHUP reload, SIGUSR1 reopen logs.

A reload builds, configures and starts the new stage beside the old one. Both accept from the
same listening sockets (``hemi.net.gate.listeners``), so no connection is refused; then the old
stage drains. A broken config is logged and the old stage keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable

from ..config.errors import ConfigError
from ..core.logs import reopen_all
from ..core.stage import Dirs, Stage

log = logging.getLogger("hemi.procman")

StageFactory = Callable[[int], Stage]

# How long, after a reload, an idle keep-alive connection of the old stage may still bring one
# more request (answered with "connection: close") before it is closed.
RELOAD_IDLE_GRACE = 1.0


def install_loop() -> None:
    """Use uvloop when it is installed: it is markedly faster for every protocol we run."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class SingleRunner:
    """Owns the running stage of this process and the stages that still drain after a reload.

    ``on_retired(stage)`` is called when a retired stage is fully down (a worker folds its
    counters into its totals then)."""

    def __init__(self, factory: StageFactory, *, grace: float = 30.0, signals: bool = True,
                 on_retired: Callable[[Stage], None] | None = None) -> None:
        self.factory = factory
        self.grace = grace
        self.signals = signals
        self.on_retired = on_retired
        self.stage: Stage | None = None
        self.retiring: list[Stage] = []
        self.last_error = ""
        self._stop = asyncio.Event()
        self._reloading = False
        self._interrupts = 0
        self._retire_tasks: set[asyncio.Task] = set()

    async def run(self, on_ready: Callable[[], None] | None = None, *, stage_id: int = 0) -> int:
        """Start the first stage (ConfigError/OSError propagate: nothing serves then), serve
        until ``quit``, then shut down within the grace period."""
        stage = self.factory(stage_id)
        await stage.launch()
        self.stage = stage
        if self.signals:
            loop = asyncio.get_running_loop()
            for sig, handler in ((signal.SIGTERM, self.quit), (signal.SIGQUIT, self.quit),
                                 (signal.SIGINT, self._interrupt), (signal.SIGHUP, self._reload),
                                 (signal.SIGUSR1, self.reopen)):
                loop.add_signal_handler(sig, handler)
        log.info("stage %d started (config %s)", stage.id, stage.config_file or "<embedded>")
        if on_ready:
            on_ready()
        await self._stop.wait()
        log.info("shutting down stage %d", self.stage.id)
        try:
            await asyncio.wait_for(asyncio.gather(self.stage.shutdown(), *self._retire_tasks), self.grace)
        except asyncio.TimeoutError:
            log.warning("grace period of %.0fs is over; closing what is left", self.grace)
        return 0

    def quit(self, idle_grace: float = 0.0) -> None:
        """Graceful: stop accepting, let in-flight exchanges finish, then ``run`` returns.
        ``idle_grace``: when other processes go on serving (a worker being replaced), idle
        keep-alive connections get that long to bring one more request, as in a reload."""
        if self.stage is not None:
            self.stage.idle_grace = idle_grace
        self._stop.set()

    def _interrupt(self) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            raise SystemExit(130)
        self._stop.set()

    def reopen(self) -> int:
        count = reopen_all()
        log.info("reopened %d log files", count)
        return count

    def _reload(self) -> None:
        if not self._reloading:
            asyncio.get_running_loop().create_task(self.reload())

    async def reload(self, stage_id: int | None = None) -> bool:
        """Replace the running stage by a fresh one built from the same config file. On False,
        ``last_error`` says why and the running stage is untouched."""
        if self.stage is None:
            self.last_error = "not serving yet"
            return False
        if self._reloading:
            self.last_error = "a reload is already in progress"
            return False
        self._reloading = True
        old = self.stage
        try:
            try:
                new = self.factory(old.id + 1 if stage_id is None else stage_id)
                new.configure()
                new.prepare()
            except ConfigError as e:
                self.last_error = str(e)
                log.error("reload rejected, the running config stays:\n%s", e)
                return False
            try:
                await new.start()
            except Exception as e:  # a port taken, a certificate unreadable...
                self.last_error = f"cannot start the new stage: {e}"
                log.error("reload failed while starting, the running config stays: %s", e)
                await new.shutdown()
                return False
            self.stage = new
            self.last_error = ""
            log.info("stage %d started; stage %d drains", new.id, old.id)
            old.idle_grace = RELOAD_IDLE_GRACE
            self.retiring.append(old)
            task = asyncio.get_running_loop().create_task(self._retire(old))
            self._retire_tasks.add(task)
            task.add_done_callback(self._retire_tasks.discard)
            return True
        finally:
            self._reloading = False

    async def _retire(self, old: Stage) -> None:
        """Let a replaced stage drain; the reload itself does not wait for that."""
        try:
            await old.shutdown()
        finally:
            self.retiring.remove(old)
            if self.on_retired is not None:
                self.on_retired(old)


def serve(config_file: str | None, dirs: Dirs, *, text: str | None = None) -> int:
    """Build, start and run a stage until told to stop. Raises ConfigError before serving."""
    install_loop()
    runner = SingleRunner(stage_factory(config_file, dirs, text=text))
    return asyncio.run(runner.run())


def stage_factory(config_file: str | None, dirs: Dirs, *, text: str | None = None) -> StageFactory:
    """Stages built from the config file (re-read on every call: that is what a reload is)."""

    def factory(stage_id: int) -> Stage:
        if text is not None:
            return Stage.from_text(text, dirs, id=stage_id, file=config_file or "<text>")
        assert config_file is not None
        return Stage.from_file(config_file, dirs, id=stage_id)

    return factory
