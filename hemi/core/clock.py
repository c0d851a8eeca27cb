"""The ``clock`` fixture: the HTTP ``Date`` value, rendered once a second for everyone.

Responses never format a date themselves; they copy ``clock.date_line`` (bytes, ready to write).
"""

from __future__ import annotations

import asyncio
import time

from .component import Component
from .registry import fixture

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def render_date(ts: float) -> str:
    t = time.gmtime(ts)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


@fixture("clock")
class Clock(Component):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._handle: asyncio.TimerHandle | None = None
        self.now = 0
        self.date = ""
        self.date_line = b""
        self._update()

    def _update(self) -> None:
        now = int(time.time())
        if now != self.now:
            self.now = now
            self.date = render_date(now)
            self.date_line = b"date: " + self.date.encode("ascii") + b"\r\n"

    def _tick(self) -> None:
        self._update()
        loop = asyncio.get_running_loop()
        # Wake just after the next second boundary so the value is never more than ~10 ms stale.
        self._handle = loop.call_later(1.0 - (time.time() % 1.0) + 0.001, self._tick)

    async def on_start(self) -> None:
        self._tick()

    async def on_shutdown(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
