"""The transport-neutral mesher core: cases in order on every variable, dealers that pass or
take, shared (mesher-level) dealers, editors that observe and rewrite, bytes received before
dispatch going through each editor exactly once, and one access log line per connection. A
fake connection stands in for the transport, as a UDP mesher's session would."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

import hemi.contrib  # noqa: F401
from hemi.core.registry import register, registry
from hemi.core.stage import Dirs, Stage
from hemi.net.mesher import Dealer, Editor, MeshConn, Mesher


class UpperEditor(Editor):
    """Rewrites: upper-cases input, reverses output."""

    def on_input(self, conn: MeshConn, data: bytes) -> bytes:
        return data.upper()

    def on_output(self, conn: MeshConn, data: bytes) -> bytes:
        return data[::-1]


class PassDealer(Dealer):
    def deal(self, conn: MeshConn) -> bool:
        conn.log_fields.append(f"passed={self.name}")
        return False


class FakeConn(MeshConn):
    def __init__(self, mesher: Mesher, src: str = "10.0.0.1", port: str = "4000", transport: str = "tcp",
                 hostname: str = "") -> None:
        super().__init__(mesher, transport)
        self.src_host, self.src_port, self.hostname = src, port, hostname
        self.sent: list[bytes] = []
        self.eof_sent = False

    def send(self, data: bytes) -> None:
        if self.editors:
            data = self.edit_output(data)
        self.bytes_out += len(data)
        self.sent.append(data)

    def send_eof(self) -> None:
        self.eof_sent = True

    def close(self, reason: str = "") -> None:
        if reason and not self.reason:
            self.reason = reason
        self.finish()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


CONFIG = """
stage {
    tcpsMesher "m" {
        .address = "127.0.0.1:1"
        .accessLog = "%s"
        case "a" $srcHost == "10.0.0.1" { tPassDealer {} }
        case "b" $hostname ^= "api." { tUpperEditor {} echoDealer {} }
        case "c" $transport != "tls" { .editors = ("up") .dealers = ("pass", "hello") }
        tUpperEditor "up" {}
        tPassDealer "pass" {}
        helloDealer "hello" {}
    }
}
"""


@pytest.fixture(autouse=True, scope="module")
def test_signs() -> Iterator[None]:
    """Signs for this module only (the registry is process-wide)."""
    register("tUpperEditor", "editor")(UpperEditor)
    register("tPassDealer", "dealer")(PassDealer)
    yield
    registry.remove("tUpperEditor")
    registry.remove("tPassDealer")


@pytest.fixture
def mesher(tmp_path: Path) -> Iterator[Mesher]:
    stage = Stage.from_text(CONFIG % (tmp_path / "m.log"), Dirs.under(str(tmp_path)))
    stage.configure()
    stage.prepare()
    m = stage.get("mesher", "m")
    assert isinstance(m, Mesher)
    m.log_path = tmp_path / "m.log"  # type: ignore[attr-defined]
    yield m
    if m.access_log is not None:
        m.access_log.close()


def log_text(m: Mesher) -> str:
    assert m.access_log is not None
    m.access_log.flush()
    return m.log_path.read_text()  # type: ignore[attr-defined]


def test_a_passing_case_falls_through_to_the_next_matching_one(mesher: Mesher) -> None:
    conn = FakeConn(mesher, hostname="x.test")
    assert mesher.dispatch(conn)
    # "a" passed; "b" does not match x.test; "c" runs the shared editor and dealers in order.
    assert conn.case is not None and conn.case.name == "c" and conn.dealer is not None and conn.dealer.name == "hello"
    assert conn.sent == [b"!dlrow ,olleh"]          # output rewritten by the editor
    assert "passed=tPassDealer#" in log_text(mesher) and "passed=pass" in log_text(mesher)


def test_early_bytes_go_through_each_editor_once_then_live_bytes_too(mesher: Mesher) -> None:
    conn = FakeConn(mesher, src="10.0.0.2", hostname="api.test")
    conn.received(b"early ")      # before dispatch: kept
    assert mesher.dispatch(conn)
    assert conn.case is not None and conn.case.name == "b"
    assert conn.sent == [b" YLRAE"]                  # upper-cased once on input, reversed on output
    conn.received(b"more")
    assert conn.sent[-1] == b"EROM"
    conn.on_eof()  # type: ignore[misc]
    assert conn.eof_sent


def test_no_case_matches_closes_and_logs(mesher: Mesher) -> None:
    conn = FakeConn(mesher, src="10.0.0.2", transport="tls")
    assert not mesher.dispatch(conn)
    assert conn.closed
    line = log_text(mesher).strip().splitlines()[-1]
    assert "10.0.0.2:4000 tls" in line and 'reason="no case matched"' in line
    conn.close("again")          # a second close changes nothing
    assert log_text(mesher).count("10.0.0.2:4000 tls") == 1


def test_dealer_failure_is_contained(mesher: Mesher, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Dealer, conn: MeshConn) -> bool:
        raise RuntimeError("bug")
    monkeypatch.setattr(PassDealer, "deal", boom)
    conn = FakeConn(mesher)
    assert mesher.dispatch(conn)
    assert conn.closed and conn.reason == "error: dealer failed"
