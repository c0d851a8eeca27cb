"""The stage fixtures (clock, fcache, resolv) and the log files (access logs, the error log),
each used through a real Stage, the way components use them."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

import hemi.contrib  # noqa: F401
from hemi.core import logs
from hemi.core.clock import render_date
from hemi.core.logs import AccessLog, reopen_all, setup_error_log
from hemi.core.stage import Dirs, Stage

IMF_FIXDATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                         r"\d{4} \d\d:\d\d:\d\d GMT$")


def make_stage(tmp_path: Path, body: str = "") -> Stage:
    stage = Stage.from_text("stage {\n" + body + "\n}", Dirs.under(str(tmp_path)))
    stage.configure()
    stage.prepare()
    return stage


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run on a plain asyncio loop (its ``getaddrinfo`` can be wrapped, unlike uvloop's)."""
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro_fn())


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- clock ---------------------------------------------------------------------------------------------------
def test_render_date_is_imf_fixdate() -> None:
    assert render_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert render_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert render_date(951782400) == "Tue, 29 Feb 2000 00:00:00 GMT"
    for ts in (1e9, 1.7e9, 2e9, time.time()):
        assert render_date(ts) == email.utils.formatdate(int(ts), usegmt=True)


def test_clock_renders_the_date_line(tmp_path: Path) -> None:
    clock = make_stage(tmp_path).clock
    assert IMF_FIXDATE.match(clock.date)
    assert clock.date_line == b"date: " + clock.date.encode() + b"\r\n"
    assert len(clock.date) == 29
    assert abs(email.utils.parsedate_to_datetime(clock.date).timestamp() - time.time()) <= 1.5


def test_clock_changes_each_second(tmp_path: Path) -> None:
    stage = make_stage(tmp_path)
    clock = stage.clock

    async def watch() -> list[tuple[float, bytes]]:
        await stage.start()
        seen = [(time.time(), clock.date_line)]
        try:
            while len(seen) < 3:
                await asyncio.sleep(0.005)
                if clock.date_line != seen[-1][1]:
                    seen.append((time.time(), clock.date_line))
        finally:
            await stage.shutdown()
        return seen

    seen = run(watch)
    stamps = [email.utils.parsedate_to_datetime(line[6:-2].decode()).timestamp() for _, line in seen]
    assert stamps[2] - stamps[1] == 1.0
    # Each change comes just after the second turns (the tick is ~1 ms late, the polling 5 ms;
    # the rest is slack for a busy machine), and shows that second.
    for observed, stamp in ((seen[1][0], stamps[1]), (seen[2][0], stamps[2])):
        assert stamp <= observed < stamp + 0.3
    assert clock._handle is None  # the timer is cancelled at shutdown


# -- fcache ------------------------------------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path: Path) -> Path:
    www = tmp_path / "www"
    www.mkdir()
    for i in range(4):
        (www / f"small{i}.txt").write_bytes(b"s" * 600 + bytes([48 + i]))
        (www / f"large{i}.bin").write_bytes(bytes(range(256)) * 20 + bytes([i]))  # 5121 bytes
    (www / "dir").mkdir()
    return www


FCACHE = "fcache { .smallFileSize = 1K .maxSmallFiles = 2 .maxLargeFiles = 1 .cacheTimeout = %s }"


def test_fcache_small_file_in_memory(tmp_path: Path, files: Path) -> None:
    fc = make_stage(tmp_path, FCACHE % "5s").fcache
    path = str(files / "small0.txt")
    e = fc.get(path)
    assert (e.data, e.fd, e.is_dir, e.size) == ((files / "small0.txt").read_bytes(), None, False, 601)
    assert e.mtime == os.stat(path).st_mtime
    again = fc.get(path)
    assert again is e and (fc.hits, fc.misses, len(fc)) == (1, 1, 1)
    e.release()
    again.release()


def test_fcache_large_file_kept_open(tmp_path: Path, files: Path) -> None:
    fc = make_stage(tmp_path, FCACHE % "5s").fcache
    before = open_fds()
    e = fc.get(str(files / "large0.bin"))
    assert e.data is None and e.fd is not None and e.size == 5121
    assert os.pread(e.fd, 5121, 0) == (files / "large0.bin").read_bytes()
    assert open_fds() == before + 1
    e2 = fc.get(str(files / "large0.bin"))
    assert e2 is e and open_fds() == before + 1
    e.release()
    e2.release()
    assert open_fds() == before + 1  # the cache still holds it
    run(fc.on_shutdown)
    assert open_fds() == before and len(fc) == 0


def test_fcache_count_limits(tmp_path: Path, files: Path) -> None:
    """Past a limit, files are served uncached; the hot entries stay."""
    fc = make_stage(tmp_path, FCACHE % "5s").fcache
    before = open_fds()
    entries = [fc.get(str(files / f"small{i}.txt")) for i in range(3)]
    assert len(fc) == 2 and all(e.data for e in entries)
    assert entries[2].data == (files / "small2.txt").read_bytes()
    assert fc.get(str(files / "small0.txt")) is entries[0]
    assert fc.get(str(files / "small2.txt")) is not entries[2]  # not cached: loaded again
    big = [fc.get(str(files / f"large{i}.bin")) for i in range(2)]
    assert len(fc) == 3 and big[0].fd is not None and big[1].fd is not None
    assert open_fds() == before + 2
    big[1].release()  # uncached: closed as soon as its user is done
    assert big[1].fd is None and open_fds() == before + 1
    big[0].release()
    assert open_fds() == before + 1
    assert fc.get(str(files / "large1.bin")).fd is not None


def test_fcache_size_limit(tmp_path: Path, files: Path) -> None:
    fc = make_stage(tmp_path, "fcache { .smallFileSize = 1K .maxSmallBytes = 1300 }").fcache
    for i in range(3):
        fc.get(str(files / f"small{i}.txt")).release()
    assert len(fc) == 2  # 601 + 601 fit in 1300 bytes, a third does not


def test_fcache_expiry_releases_the_descriptor(tmp_path: Path, files: Path) -> None:
    fc = make_stage(tmp_path, FCACHE % "100ms").fcache
    before = open_fds()
    large = fc.get(str(files / "large0.bin"))
    small = fc.get(str(files / "small0.txt"))
    large.release()
    small.release()
    assert open_fds() == before + 1 and len(fc) == 2
    time.sleep(0.15)
    fc.sweep()
    assert len(fc) == 0 and open_fds() == before and large.fd is None


def test_fcache_descriptor_lives_while_a_request_holds_it(tmp_path: Path, files: Path) -> None:
    fc = make_stage(tmp_path, FCACHE % "100ms").fcache
    before = open_fds()
    held = fc.get(str(files / "large0.bin"))
    time.sleep(0.15)
    fc.sweep()
    assert len(fc) == 0 and held.fd is not None and open_fds() == before + 1
    assert os.pread(held.fd, 4, 0) == bytes(range(4))
    held.release()
    assert open_fds() == before


def test_fcache_expired_entry_is_reloaded(tmp_path: Path, files: Path) -> None:
    fc = make_stage(tmp_path, FCACHE % "100ms").fcache
    path = files / "small0.txt"
    fc.get(str(path)).release()
    path.write_bytes(b"changed")
    assert fc.get(str(path)).data == b"s" * 600 + b"0"  # still cached
    time.sleep(0.15)
    assert fc.get(str(path)).data == b"changed"  # expired: read again, no sweep needed
    assert fc.misses == 2


def test_fcache_sweeper_runs_by_itself(tmp_path: Path, files: Path) -> None:
    stage = make_stage(tmp_path, FCACHE % "100ms")
    fc = stage.fcache
    before = open_fds()

    async def go() -> None:
        await stage.start()
        fc.get(str(files / "large0.bin")).release()
        assert len(fc) == 1
        await asyncio.sleep(1.2)
        assert len(fc) == 0
        await stage.shutdown()

    run(go)
    assert open_fds() == before


def test_fcache_directories(tmp_path: Path, files: Path) -> None:
    fc = make_stage(tmp_path, FCACHE % "5s").fcache
    before = open_fds()
    d = fc.get(str(files / "dir"))
    assert (d.is_dir, d.data, d.fd) == (True, None, None)
    assert open_fds() == before and len(fc) == 1
    assert fc.get(str(files / "dir")) is d


def test_fcache_errors_are_os_errors(tmp_path: Path, files: Path) -> None:
    fc = make_stage(tmp_path, FCACHE % "5s").fcache
    before = open_fds()
    with pytest.raises(FileNotFoundError):
        fc.get(str(files / "missing"))
    with pytest.raises(NotADirectoryError):
        fc.get(str(files / "small0.txt" / "x"))
    os.mkfifo(files / "fifo")
    t0 = time.monotonic()
    with pytest.raises(PermissionError):  # refused at once, not blocked waiting for a writer
        fc.get(str(files / "fifo"))
    assert time.monotonic() - t0 < 1.0
    assert open_fds() == before and len(fc) == 0


def test_fcache_zero_timeout_caches_nothing(tmp_path: Path, files: Path) -> None:
    fc = make_stage(tmp_path, FCACHE % "0s").fcache
    before = open_fds()
    e = fc.get(str(files / "large0.bin"))
    assert len(fc) == 0 and e.fd is not None
    e.release()
    assert open_fds() == before


def test_fcache_properties_are_checked(tmp_path: Path) -> None:
    from hemi.config import ConfigError
    stage = Stage.from_text("stage { fcache { .smallFileSize = 0 .maxSmallFiles = 0 .cacheTimeout = 5 } }",
                            Dirs.under(str(tmp_path)))
    with pytest.raises(ConfigError) as info:
        stage.configure()
    assert [p.message for p in info.value.problems] == [
        ".smallFileSize is 0 bytes, expected at least 1 bytes (in fcache)",
        ".maxSmallFiles is 0, expected at least 1 (in fcache)",
        ".cacheTimeout is an integer, expected a duration (e.g. 500ms, 30s, 5m) (in fcache)"]


# -- resolv -------------------------------------------------------------------------------------------------------
class CountingResolver:
    """Wraps the running loop's getaddrinfo: counts the queries and makes each take a while."""

    def __init__(self, delay: float = 0.05) -> None:
        self.calls: list[str] = []
        self.delay = delay

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo

        async def counting(host, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls.append(host)
            await asyncio.sleep(self.delay)
            return await real(host, *args, **kwargs)

        loop.getaddrinfo = counting  # type: ignore[method-assign]


def test_resolv_ip_literals_need_no_query(tmp_path: Path) -> None:
    resolv = make_stage(tmp_path).resolv
    counter = CountingResolver()

    async def go() -> list:
        counter.install()
        return [await resolv.resolve(h) for h in ("127.0.0.1", "::1", "[::1]", "10.1.2.3")]

    assert run(go) == [[(socket.AF_INET, "127.0.0.1")], [(socket.AF_INET6, "::1")], [(socket.AF_INET6, "::1")],
                       [(socket.AF_INET, "10.1.2.3")]]
    assert counter.calls == [] and resolv.cached() == 0


def test_resolv_caches_answers(tmp_path: Path) -> None:
    resolv = make_stage(tmp_path).resolv
    counter = CountingResolver()

    async def go() -> list:
        counter.install()
        return [await resolv.resolve("localhost", 80), await resolv.resolve("localhost", 80),
                await resolv.resolve("LocalHost", 80)]

    first, second, third = run(go)
    assert first == second == third
    assert (socket.AF_INET, "127.0.0.1") in first or (socket.AF_INET6, "::1") in first
    assert len(set(first)) == len(first)  # one entry per address, not per socket type
    assert counter.calls == ["localhost"] and resolv.cached() == 1


def test_resolv_entries_expire(tmp_path: Path) -> None:
    resolv = make_stage(tmp_path, "resolv { .cacheTimeout = 100ms }").resolv
    counter = CountingResolver(delay=0)

    async def go() -> None:
        counter.install()
        await resolv.resolve("localhost")
        await resolv.resolve("localhost")
        assert len(counter.calls) == 1
        await asyncio.sleep(0.15)
        await resolv.resolve("localhost")
        assert len(counter.calls) == 2

    run(go)


def test_resolv_concurrent_lookups_share_one_query(tmp_path: Path) -> None:
    resolv = make_stage(tmp_path).resolv
    counter = CountingResolver(delay=0.1)

    async def go() -> list:
        counter.install()
        return await asyncio.gather(*(resolv.resolve("localhost") for _ in range(10)))

    answers = run(go)
    assert counter.calls == ["localhost"]
    assert all(a == answers[0] for a in answers) and answers[0]


def test_resolv_failure_raises_oserror_and_is_not_cached(tmp_path: Path) -> None:
    resolv = make_stage(tmp_path).resolv
    counter = CountingResolver(delay=0.05)

    async def go() -> list:
        counter.install()
        results = await asyncio.gather(*(resolv.resolve("no-such-host.invalid") for _ in range(3)),
                                       return_exceptions=True)
        assert len(counter.calls) == 1
        with pytest.raises(OSError):
            await resolv.resolve("no-such-host.invalid")
        assert len(counter.calls) == 2
        return results

    results = run(go)
    assert all(isinstance(r, OSError) for r in results), results
    assert resolv.cached() == 0


# -- logs -----------------------------------------------------------------------------------------------------------
def test_access_log_writes_at_once_outside_a_loop(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "a.log"
    log = AccessLog(str(path))
    log.write("line 1\n")
    assert path.read_text() == "line 1\n"
    log.close()


def test_access_log_buffers_then_flushes(tmp_path: Path) -> None:
    path = tmp_path / "a.log"

    async def go() -> None:
        log = AccessLog(str(path), buffer_size=100)
        log.write("x" * 10 + "\n")
        assert path.read_text() == ""  # buffered
        log.write("y" * 100 + "\n")  # past the buffer size: written now
        assert path.read_text() == "x" * 10 + "\n" + "y" * 100 + "\n"
        log.write("z\n")
        log.flush()
        assert path.read_text().endswith("z\n")
        log.write("timed\n")
        assert not path.read_text().endswith("timed\n")
        await asyncio.sleep(1.1)  # the timer flushes within a second
        assert path.read_text().endswith("timed\n")
        log.write("at close\n")
        log.close()
        assert path.read_text().endswith("at close\n")

    run(go)


def test_access_log_reopen_after_move(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    log = AccessLog(str(path))
    log.write("before\n")
    os.rename(path, tmp_path / "a.log.1")
    log.write("moved\n")  # still goes to the moved file, as with logrotate before the signal
    log.reopen()
    assert path.exists()
    log.write("after\n")
    log.close()
    assert (tmp_path / "a.log.1").read_text() == "before\nmoved\n"
    assert path.read_text() == "after\n"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate,
                    logging.getLogger(name).level) for name in ("hemi", "gorox")}
    saved_handler = logs._error_handler
    yield
    for name, (handlers, propagate, level) in saved.items():
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
            if h not in handlers:
                h.close()
        for h in handlers:
            lg.addHandler(h)
        lg.propagate, lg.level = propagate, level
    logs._error_handler = saved_handler


def test_reopen_all(tmp_path: Path, restore_logging: None) -> None:
    setup_error_log(str(tmp_path / "logs"), to_stderr=False)
    logging.getLogger("hemi.test").info("first")
    error_log = tmp_path / "logs" / "error.log"
    assert "first" in error_log.read_text()
    a, b = AccessLog(str(tmp_path / "a.log")), AccessLog(str(tmp_path / "b.log"))
    for log, name in ((a, "a"), (b, "b")):
        log.write(f"{name} before\n")
        os.rename(tmp_path / f"{name}.log", tmp_path / f"{name}.log.1")
    os.rename(error_log, tmp_path / "error.log.1")
    assert reopen_all() >= 3
    a.write("a after\n")
    b.write("b after\n")
    logging.getLogger("hemi.test").info("second")
    assert (tmp_path / "a.log").read_text() == "a after\n"
    assert (tmp_path / "b.log").read_text() == "b after\n"
    assert "second" in error_log.read_text() and "second" not in (tmp_path / "error.log.1").read_text()
    a.close()
    b.close()
    assert a not in logs._open_logs
