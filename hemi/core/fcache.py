"""The ``fcache`` fixture: recently used files, so static serving avoids a stat+open+read per
request. Small files are held in memory; large ones as an open descriptor (served with
sendfile). Entries live ``.cacheTimeout`` (so edits show up within that time), and the counts
are bounded: past a limit, files are served uncached rather than evicting hot entries early.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time

from .component import Component
from .registry import fixture


class FileEntry:
    """A stat result plus the content (small files) or an open descriptor (large files).

    Whoever gets an entry from :meth:`FCache.get` must call :meth:`release` when done; the
    descriptor closes when neither the cache nor any request holds it.
    """

    __slots__ = ("path", "size", "mtime", "is_dir", "data", "fd", "expires", "_refs")

    def __init__(self, path: str, st: os.stat_result, data: bytes | None, fd: int | None, expires: float) -> None:
        self.path = path
        self.size = st.st_size
        self.mtime = st.st_mtime
        self.is_dir = stat.S_ISDIR(st.st_mode)
        self.data = data
        self.fd = fd
        self.expires = expires
        self._refs = 1

    def acquire(self) -> "FileEntry":
        self._refs += 1
        return self

    def release(self) -> None:
        self._refs -= 1
        if self._refs <= 0 and self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


@fixture("fcache")
class FCache(Component):
    def on_configure(self) -> None:
        self.small_file_size = self.configure_size("smallFileSize", 64 << 10, min=1, max=16 << 20)
        self.max_small_files = self.configure_int("maxSmallFiles", 1000, min=1)
        self.max_small_bytes = self.configure_size("maxSmallBytes", 64 << 20, min=1)
        self.max_large_files = self.configure_int("maxLargeFiles", 500, min=1)
        self.timeout = self.configure_duration("cacheTimeout", 1.0, min=0.0)
        self._entries: dict[str, FileEntry] = {}
        self._small = 0
        self._small_bytes = 0
        self._large = 0
        self._sweeper: asyncio.Task | None = None
        self.hits = 0
        self.misses = 0

    def get(self, path: str) -> FileEntry:
        """The entry for ``path`` (+1 reference for the caller). Raises OSError like ``os.stat``/``open``."""
        now = time.monotonic()
        entry = self._entries.get(path)
        if entry is not None:
            if entry.expires > now:
                self.hits += 1
                return entry.acquire()
            self._drop(path, entry)
        self.misses += 1
        entry = self._load(path, now)
        if self._admit(entry):
            self._entries[path] = entry
            return entry.acquire()
        return entry

    def _load(self, path: str, now: float) -> FileEntry:
        # O_NONBLOCK: opening a FIFO (or a device) for reading would otherwise block the event
        # loop until a writer appears; it is refused below as "not a regular file" instead.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                os.close(fd)
                return FileEntry(path, st, None, None, now + self.timeout)
            if not stat.S_ISREG(st.st_mode):
                raise PermissionError(13, "not a regular file", path)
            if st.st_size <= self.small_file_size:
                chunks = []
                remaining = st.st_size
                while remaining > 0:
                    chunk = os.read(fd, remaining)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    remaining -= len(chunk)
                os.close(fd)
                return FileEntry(path, st, b"".join(chunks), None, now + self.timeout)
            return FileEntry(path, st, None, fd, now + self.timeout)
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise

    def _admit(self, entry: FileEntry) -> bool:
        if self.timeout <= 0:
            return False
        if entry.fd is not None:
            if self._large >= self.max_large_files:
                return False
            self._large += 1
        else:
            size = len(entry.data or b"")
            if self._small >= self.max_small_files or self._small_bytes + size > self.max_small_bytes:
                return False
            self._small += 1
            self._small_bytes += size
        return True

    def _drop(self, path: str, entry: FileEntry) -> None:
        del self._entries[path]
        if entry.fd is not None or (entry.data is None and not entry.is_dir):
            self._large -= 1
        else:
            self._small -= 1
            self._small_bytes -= len(entry.data or b"")
        entry.release()

    def sweep(self) -> None:
        now = time.monotonic()
        for path, entry in list(self._entries.items()):
            if entry.expires <= now:
                self._drop(path, entry)

    def __len__(self) -> int:
        return len(self._entries)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.sweep()

    async def on_start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._run())

    async def on_shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for path, entry in list(self._entries.items()):
            self._drop(path, entry)
