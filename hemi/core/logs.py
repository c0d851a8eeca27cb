"""Logging: the error log (Python ``logging``, to ``<logsDir>/error.log`` and stderr) and
access logs (one file per app, buffered, flushed at least once a second).

Every log file opened here can be reopened in place (``reopen_all``), so logrotate can move a
file away and gorox starts a new one without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import weakref

_open_logs: "weakref.WeakSet[AccessLog]" = weakref.WeakSet()
_error_handler: "ReopenableFileHandler | None" = None

FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"


class ReopenableFileHandler(logging.FileHandler):
    """A FileHandler whose file can be reopened after rotation."""

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


def setup_error_log(logs_dir: str | None, *, level: int = logging.INFO, to_stderr: bool = True) -> None:
    """Route the ``hemi`` and ``gorox`` loggers to ``<logs_dir>/error.log`` (and stderr)."""
    global _error_handler
    root = logging.getLogger("hemi")
    for name in ("hemi", "gorox"):
        lg = logging.getLogger(name)
        lg.setLevel(level)
        for h in list(lg.handlers):
            lg.removeHandler(h)
            h.close()
        lg.propagate = False
    handlers: list[logging.Handler] = []
    if logs_dir is not None:
        os.makedirs(logs_dir, exist_ok=True)
        _error_handler = ReopenableFileHandler(os.path.join(logs_dir, "error.log"), encoding="utf-8")
        handlers.append(_error_handler)
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
        for name in ("hemi", "gorox"):
            logging.getLogger(name).addHandler(h)
    del root


class AccessLog:
    """An append-only log file with a write buffer, flushed when it grows past ``buffer_size``
    or by :meth:`flush` (called once a second by the owner's timer and at close)."""

    def __init__(self, path: str, *, buffer_size: int = 64 << 10) -> None:
        self.path = path
        self.buffer_size = buffer_size
        self._parts: list[str] = []
        self._size = 0
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._file = open(path, "a", encoding="utf-8", buffering=1 << 16)
        self._timer: asyncio.TimerHandle | None = None
        _open_logs.add(self)

    def write(self, line: str) -> None:
        self._parts.append(line)
        self._size += len(line)
        if self._size >= self.buffer_size:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(1.0, self._timed_flush)
            except RuntimeError:
                self.flush()

    def _timed_flush(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        if self._parts and not self._file.closed:
            self._file.write("".join(self._parts))
            self._file.flush()
        self._parts.clear()
        self._size = 0

    def reopen(self) -> None:
        self.flush()
        self._file.close()
        self._file = open(self.path, "a", encoding="utf-8", buffering=1 << 16)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        self._file.close()
        _open_logs.discard(self)


def reopen_all() -> int:
    """Reopen the error log and every open access log; returns how many files were reopened."""
    count = 0
    if _error_handler is not None:
        _error_handler.reopen()
        count += 1
    for log in list(_open_logs):
        log.reopen()
        count += 1
    return count
