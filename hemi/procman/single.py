"""Run one stage in this process until a signal says stop.

SIGTERM/SIGQUIT: graceful quit (servers stop accepting and drain). SIGINT: the same, and a
second SIGINT stops at once. SIGHUP: reload the config — the new stage is built, configured and
started beside the old one (listeners use SO_REUSEPORT, so no connection is refused), then the
old one drains; a broken config is logged and the old stage keeps serving. SIGUSR1: reopen logs.
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


def install_loop() -> None:
    """Use uvloop when it is installed: it is markedly faster for every protocol we run."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class SingleRunner:
    def __init__(self, factory: StageFactory, *, grace: float = 30.0) -> None:
        self.factory = factory
        self.grace = grace
        self.stage: Stage | None = None
        self._stop = asyncio.Event()
        self._reloading = False
        self._interrupts = 0

    async def run(self, on_ready: Callable[[], None] | None = None) -> int:
        stage = self.factory(0)
        stage.configure()
        stage.prepare()
        await stage.start()
        self.stage = stage
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self._quit), (signal.SIGQUIT, self._quit),
                             (signal.SIGINT, self._interrupt), (signal.SIGHUP, self._reload),
                             (signal.SIGUSR1, self._reopen)):
            loop.add_signal_handler(sig, handler)
        log.info("stage %d started (config %s)", stage.id, stage.config_file or "<embedded>")
        if on_ready:
            on_ready()
        await self._stop.wait()
        log.info("shutting down stage %d", self.stage.id)
        try:
            await asyncio.wait_for(self.stage.shutdown(), self.grace)
        except asyncio.TimeoutError:
            log.warning("grace period of %.0fs is over; closing what is left", self.grace)
        return 0

    def _quit(self) -> None:
        self._stop.set()

    def _interrupt(self) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            raise SystemExit(130)
        self._stop.set()

    def _reopen(self) -> None:
        log.info("reopened %d log files", reopen_all())

    def _reload(self) -> None:
        if not self._reloading:
            asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Replace the running stage by a fresh one built from the same config file."""
        if self._reloading or self.stage is None:
            return False
        self._reloading = True
        old = self.stage
        try:
            try:
                new = self.factory(old.id + 1)
                new.configure()
                new.prepare()
            except ConfigError as e:
                log.error("reload rejected, the running config stays:\n%s", e)
                return False
            try:
                await new.start()
            except Exception as e:  # a port taken, a certificate unreadable...
                log.error("reload failed while starting, the running config stays: %s", e)
                await new.shutdown()
                return False
            self.stage = new
            log.info("stage %d started; stage %d drains", new.id, old.id)
            await old.shutdown()
            return True
        finally:
            self._reloading = False


def serve(config_file: str | None, dirs: Dirs, *, text: str | None = None) -> int:
    """Build, start and run a stage until told to stop. Raises ConfigError before serving."""

    def factory(stage_id: int) -> Stage:
        if text is not None:
            return Stage.from_text(text, dirs, id=stage_id, file=config_file or "<text>")
        assert config_file is not None
        return Stage.from_file(config_file, dirs, id=stage_id)

    install_loop()
    runner = SingleRunner(factory)
    return asyncio.run(runner.run())
