"""Shared test fixtures: a real gorox process started on free ports with a config written by
the test, and stopped (with everything it spawned) at the end of the test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    return free_ports(1)[0]


# Every port handed out in this test session: never handed out again, so a port a test closed
# (a "dead" upstream, a stopped gorox) cannot become another listener of the same test.
_HANDED_OUT: set[int] = set()


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 for both TCP and UDP (configs put udpsMeshers on
    them too), none handed out before in this session. gorox binds with SO_REUSEPORT, so two of
    its listeners given one port would both bind it and split the traffic, silently."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            t = socket.socket()
            held.append(t)
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            if port in _HANDED_OUT:
                continue
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(u)
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
            _HANDED_OUT.add(port)
        return ports
    finally:
        for s in held:
            s.close()


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"gorox exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class Gorox:
    """A running gorox process. ``url(path)`` builds a URL on its first port."""

    def __init__(self, proc: subprocess.Popen, base: Path, ports: list[int], config: Path) -> None:
        self.proc = proc
        self.base = base
        self.ports = ports
        self.port = ports[0]
        self.config = config

    def url(self, path: str = "/", port: int | None = None, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{port or self.port}{path}"

    def log(self) -> str:
        out = self.base / "gorox.out"
        return out.read_text(errors="replace") if out.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def gorox_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gorox", *args]


def _gorox_factory(tmp_dir: Path) -> tuple[Callable[..., Gorox], Callable[[], None]]:
    """The ``start`` function of the gorox fixtures, and the clean-up that stops what it started."""
    started: list[Gorox] = []

    def start(config: str, *, ports: int = 1, files: dict[str, str | bytes] | None = None,
              wait: bool = True, extra_args: tuple[str, ...] = ()) -> Gorox:
        base = tmp_dir / f"gorox{len(started)}"
        base.mkdir()
        for name, content in (files or {}).items():
            p = base / name
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
        plist = free_ports(ports)
        subst = {"port": plist[0], "base": str(base)}
        subst.update({f"port{i}": p for i, p in enumerate(plist)})
        conf = base / "gorox.conf"
        conf.write_text(config.format(**subst))
        out = open(base / "gorox.out", "wb")
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        # -single: one process, as these tests expect (the leader and its workers have their own
        # tests, tests/e2e/test_procman.py, and would share the default admin port 9527 here).
        proc = subprocess.Popen(gorox_cmd("serve", "-single", "-config", str(conf), "-base", str(base), *extra_args),
                                stdout=out, stderr=subprocess.STDOUT, cwd=str(base), env=env,
                                start_new_session=True)
        g = Gorox(proc, base, plist, conf)
        started.append(g)
        if wait:
            try:
                wait_port(plist[0], proc=proc)
                # The first port answers as soon as its server is up; the stage is started (every
                # gate of every server and mesher open) when gorox says so.
                deadline = time.monotonic() + 10
                while "started (config" not in g.log() and time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.02)
            except Exception as e:
                raise RuntimeError(f"{e}\n--- gorox output ---\n{g.log()}") from None
        return g

    def stop_all() -> None:
        for g in started:
            if g.proc.poll() is None:
                try:
                    os.killpg(g.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    g.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(g.proc.pid, signal.SIGKILL)
                    g.proc.wait()

    return start, stop_all


@pytest.fixture
def gorox(tmp_path: Path) -> Iterator[Callable[..., Gorox]]:
    """Factory: ``gorox(config_text, ports=1)``; ``{port}``, ``{port1}``..., ``{base}`` are
    substituted in the text (use ``{{`` and ``}}`` for the config's braces)."""
    start, stop_all = _gorox_factory(tmp_path)
    yield start
    stop_all()


@pytest.fixture(scope="module")
def gorox_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Gorox]]:
    """Like ``gorox``, for a server shared by every test of a module (e.g. a table of cases)."""
    start, stop_all = _gorox_factory(tmp_path_factory.mktemp("gorox_module"))
    yield start
    stop_all()
