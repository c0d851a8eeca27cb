"""The process manager, driven through the real ``gorox`` command: a leader and its workers,
the admin commands, signals, worker restarts and recycling, and reloads under load."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from hemi.procman import commands as C
from hemi.procman import msgx
from hemi.procman.client import call

from .h1util import Conn, exts_files
from .procman_util import Leader, alive, gorox, start_leader, wait_for

pytestmark = pytest.mark.timeout(60)

CONFIG = """
stage {{
    app "a" {{
        .hostnames = ("*")
        rule $path ^= "/slow" {{ testSlow {{ }} }}
        rule {{ .returnCode = 200 .returnText = "version 1" }}
    }}
    httpxServer "main" {{ .address = "127.0.0.1:{port}" .forApps = ("a") }}
}}
"""


@pytest.fixture
def leaders(tmp_path: Path) -> Iterator[list[Leader]]:
    started: list[Leader] = []
    yield started
    for leader in started:
        leader.kill()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Leader]:
    """One leader started with -daemon, shared by the tests that leave it running."""
    started: list[Leader] = []
    try:
        yield start_leader(tmp_path_factory.mktemp("daemon"), CONFIG, files=exts_files(), daemon=True, started=started)
    finally:
        for leader in started:
            leader.kill()


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


# -- a daemon and its commands ---------------------------------------------------------------------

def test_daemon_runs_in_the_background(daemon: Leader) -> None:
    pid = daemon.leader_pid()
    assert alive(pid)
    assert os.getsid(pid) == pid, "the daemon leads its own session"
    assert (daemon.base / "data" / "log" / "gorox.out").exists()
    assert (daemon.base / "data" / "log" / "gorox.err").exists()
    token = daemon.base / "data" / "var" / "gorox.token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert get(daemon.url("/")).text == "version 1"


def test_pids(daemon: Leader) -> None:
    pids = daemon.pids()
    assert pids["leader"] == daemon.leader_pid()
    workers = daemon.worker_pids()
    assert len(workers) == 2 and all(alive(p) for p in workers)
    assert all(os.getpgid(p) == daemon.pgid for p in workers), "workers share the leader's process group"


def test_info(daemon: Leader) -> None:
    with httpx.Client() as client:
        for _ in range(20):
            assert client.get(daemon.url("/")).status_code == 200
    info = daemon.info()
    assert info["leader"]["pid"] == daemon.leader_pid()
    assert info["leader"]["config"] == str(daemon.config)
    assert info["leader"]["uptime"] > 0
    workers = [w for w in info["workers"] if w["state"] == "serving"]
    assert len(workers) == 2
    assert sum(w["requests_total"] for w in workers) >= 20
    assert all(w["rss"] > 0 and w["servers"][0]["name"] == "main" for w in workers)
    text = daemon.cmd("info").stdout
    assert "worker 0: pid=" in text and "requests=" in text and "config: " in text


def test_reopen_recreates_a_moved_log(daemon: Leader) -> None:
    logs = daemon.base / "data" / "log"
    (logs / "error.log").rename(logs / "error.log.1")
    (logs / "gorox.err").rename(logs / "gorox.err.1")
    r = daemon.cmd("reopen")
    assert r.returncode == 0, r.stderr
    assert "reopened" in r.stdout
    assert (logs / "error.log").exists() and (logs / "gorox.err").exists()
    assert daemon.cmd("reconf").returncode == 0
    assert wait_for(lambda: "reconf" in (logs / "error.log").read_text())
    assert "reconf" not in (logs / "error.log.1").read_text().split("reopened")[-1]


def test_a_killed_worker_is_restarted(daemon: Leader) -> None:
    before = daemon.worker_pids()
    os.kill(before[0], signal.SIGKILL)
    assert wait_for(lambda: len(set(daemon.worker_pids()) - set(before)) == 1, 15), daemon.output()
    after = daemon.worker_pids()
    assert before[0] not in after and before[1] in after
    info = daemon.info()
    assert sum(w["restarts"] for w in info["workers"]) >= 1
    with httpx.Client() as client:
        for _ in range(10):
            assert client.get(daemon.url("/")).status_code == 200


def test_a_broken_config_is_rejected_on_reconf(daemon: Leader) -> None:
    good = daemon.config.read_text()
    daemon.config.write_text(good.replace(".returnCode = 200", ".returnCode = 42").replace("version 1", "broken"))
    try:
        r = daemon.cmd("reconf")
        assert r.returncode == 1
        assert "config rejected" in r.stderr and str(daemon.config) in r.stderr and ".returnCode" in r.stderr
        for _ in range(5):
            assert get(daemon.url("/")).text == "version 1"
        assert daemon.cmd("ping").returncode == 0
    finally:
        daemon.config.write_text(good)
    daemon.config.write_text(good.replace("version 1", "version 2"))
    r = daemon.cmd("reconf")
    assert r.returncode == 0, r.stderr
    assert get(daemon.url("/")).text == "version 2"
    daemon.config.write_text(good)
    assert daemon.cmd("reload").returncode == 0  # Gorox's old name still works


def test_admin_channel_rejects_bad_messages_and_keeps_running(daemon: Leader) -> None:
    addr = (daemon.base / "data" / "var" / "gorox.cmdui").read_text().strip()
    token = (daemon.base / "data" / "var" / "gorox.token").read_text().strip()
    reply = call(addr, "not-the-token", "pids")
    assert reply.flag == C.BAD_TOKEN and reply.get("error") == "wrong token"
    host, port = addr.rsplit(":", 1)
    for raw, flag in ((msgx.encode(msgx.Message(99, args={"token": token})), C.UNKNOWN),
                      (msgx.encode(msgx.Message(C.PIDS)), C.BAD_TOKEN),
                      (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", C.MALFORMED),
                      (b"\x01\x05\x00\x00\x00\x00\x00\x02xx", C.MALFORMED)):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        reply = msgx.decode(data)
        assert reply.flag == flag and reply.get("error"), (raw, reply)
    r = gorox("nosuchaction", "-base", str(daemon.base))
    assert r.returncode == 2 and "unknown action" in r.stderr
    assert call(addr, token, "ping").flag == C.OK
    assert get(daemon.url("/")).status_code == 200


# -- quit, stop, signals -----------------------------------------------------------------------------

def test_quit_lets_an_inflight_request_finish(tmp_path: Path, leaders: list[Leader]) -> None:
    leader = start_leader(tmp_path / "g", CONFIG, files=exts_files(), started=leaders)
    workers = leader.worker_pids()
    c = Conn(leader.port, timeout=10)
    c.send(b"GET /slow?s=3 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    r = leader.cmd("quit")
    assert r.returncode == 0 and "quitting" in r.stdout
    resp = c.read_response()
    assert resp is not None and resp.status == 200 and resp.body == b"slow done"
    assert resp.header("connection") == "close"
    assert leader.proc is not None and leader.proc.wait(15) == 0
    assert not any(alive(p) for p in workers)
    assert not leader.pid_file.exists()
    c.close()


def test_stop_exits_at_once(tmp_path: Path, leaders: list[Leader]) -> None:
    leader = start_leader(tmp_path / "g", CONFIG, files=exts_files(), started=leaders)
    workers = leader.worker_pids()
    c = Conn(leader.port, timeout=10)
    c.send(b"GET /slow?s=20 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    t0 = time.monotonic()
    assert leader.cmd("stop").returncode == 0
    assert leader.proc is not None and leader.proc.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert c.read_response() is None, "the in-flight request is cut"
    assert not any(alive(p) for p in workers)
    c.close()
    r = leader.cmd("ping")
    assert r.returncode == 1 and "no leader answers" in r.stderr


def test_signals_reload_and_quit(tmp_path: Path, leaders: list[Leader]) -> None:
    leader = start_leader(tmp_path / "g", CONFIG, files=exts_files(), started=leaders, workers=1)
    assert leader.proc is not None
    leader.config.write_text(leader.config.read_text().replace("version 1", "version 2"))
    leader.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: get(leader.url("/")).text == "version 2", 10)
    leader.proc.send_signal(signal.SIGTERM)
    assert leader.proc.wait(15) == 0


def test_a_broken_config_does_not_start(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text('stage {\n    app "a" { .hostnames = ("*") .nosuch = 1 }\n}\n')
    for extra in ((), ("-daemon",)):
        r = gorox("serve", "-config", str(conf), "-base", str(tmp_path), "-cmdui", "127.0.0.1:0", *extra)
        assert r.returncode == 1
        assert ".nosuch" in r.stderr
    assert not (tmp_path / "data" / "var" / "gorox.pid").exists()


def test_workers_are_recycled_after_max_requests(tmp_path: Path, leaders: list[Leader]) -> None:
    leader = start_leader(tmp_path / "g", CONFIG, files=exts_files(), started=leaders, workers=1,
                          extra=("-maxRequests", "30"))
    first = leader.worker_pids()
    with httpx.Client() as client:
        deadline = time.monotonic() + 20
        while leader.worker_pids() == first and time.monotonic() < deadline:
            for _ in range(10):
                assert client.get(leader.url("/")).status_code == 200
            time.sleep(0.2)
    now = leader.worker_pids()
    assert now != first and len(now) == 1
    assert wait_for(lambda: not alive(first[0]), 10), "the recycled worker drains and exits"


CRASH_EXTS = """

@handlet("testCrash")
class TestCrash(Handlet):
    def handle(self, req, resp):
        os._exit(3)
"""

CRASH_CONFIG = CONFIG.replace('rule $path ^= "/slow"', 'rule $path == "/crash" {{ testCrash {{ }} }}\n        rule $path ^= "/slow"')


def test_dying_workers_are_restarted_with_backoff(tmp_path: Path, leaders: list[Leader]) -> None:
    files = {"exts/__init__.py": exts_files()["exts/__init__.py"] + CRASH_EXTS}
    leader = start_leader(tmp_path / "g", CRASH_CONFIG, files=files, started=leaders, workers=1)
    pids = [leader.worker_pids()[0]]
    for n in range(3):
        with pytest.raises(httpx.TransportError):
            httpx.get(leader.url("/crash"), timeout=5)
        t0 = time.monotonic()
        # No worker is alive now, yet the leader's socket still queues connections: this request
        # waits for the restarted worker instead of being refused.
        assert httpx.get(leader.url("/"), timeout=15).text == "version 1"
        waited = time.monotonic() - t0
        assert waited >= [0.0, 0.4, 0.9][n], waited
        pids.append(leader.worker_pids()[0])
    assert len(set(pids)) == 4
    out = leader.output()
    assert "died (exit code 3)" in out and "restarting it in 0.5s" in out and "restarting it in 1.0s" in out


# -- reloads under load ---------------------------------------------------------------------------

class Load:
    """Clients that keep sending requests, on new connections and on keep-alive ones, and count
    every failure (a refused connection, a reset, a missing or wrong response)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.refused = 0
        self.failures: list[str] = []
        self.versions: set[str] = set()

    def _record(self, status: int, body: bytes) -> None:
        with self.lock:
            if status == 200 and body.startswith(b"version "):
                self.ok += 1
                self.versions.add(body.decode())
            else:
                self.failures.append(f"status {status}: {body[:80]!r}")

    def _fail(self, e: BaseException) -> None:
        with self.lock:
            if isinstance(e, ConnectionRefusedError):
                self.refused += 1
            self.failures.append(repr(e))

    def new_connections(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                self._record(int(head.split(b" ", 2)[1]) if head else 0, body)
            except Exception as e:
                self._fail(e)

    def keep_alive(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                self._record(resp.status, resp.read())
            except Exception as e:
                self._fail(e)
                conn.close()
        conn.close()


def test_reload_and_rework_under_load_lose_nothing(tmp_path: Path, leaders: list[Leader]) -> None:
    leader = start_leader(tmp_path / "g", CONFIG, files=exts_files(), started=leaders)
    load = Load(leader.port)
    threads = [threading.Thread(target=f, daemon=True) for f in (load.new_connections, load.new_connections,
                                                                 load.keep_alive, load.keep_alive)]
    for t in threads:
        t.start()
    text = leader.config.read_text()
    try:
        time.sleep(0.5)
        for i in range(2, 12):
            leader.config.write_text(text.replace("version 1", f"version {i}"))
            r = leader.cmd("reconf")
            assert r.returncode == 0, r.stderr
            time.sleep(0.3)
        # and every worker replaced by a new process, under the same load
        before = set(leader.worker_pids())
        r = leader.cmd("rework")
        assert r.returncode == 0, r.stderr
        assert not before & set(leader.worker_pids())
        time.sleep(0.5)
    finally:
        load.stop.set()
        for t in threads:
            t.join(15)
    print(f"reload under load: {load.ok} requests, {len(load.failures)} failed, {load.refused} refused, "
          f"{len(load.versions)} versions seen")
    assert load.refused == 0
    assert load.failures == []
    assert load.ok > 200, load.ok
    assert "version 11" in load.versions and len(load.versions) >= 5, load.versions
    assert get(leader.url("/")).text == "version 11"
    info = leader.info()
    assert info["leader"]["stage"] == 10
    assert all(w["stage"] == 10 for w in info["workers"] if w["state"] == "serving")
    assert wait_for(lambda: not any(alive(p) for p in before), 10), "the replaced workers drained and exited"
