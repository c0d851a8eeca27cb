"""A rule holding one handlet (no fixed answer, no revisers) is run by ``App.dispatch`` calling
the handlet directly, not through ``Rule.execute``: every kind of answer a handlet can give
must be read exactly as ``execute`` reads it. Differential: the same requests on a stage where
those rules go through ``execute``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hemi.web.handlet import Handlet

from ..stageutil import stage_with_handlet
from .fake_transport import recorded_conn


class _Answer(Handlet):
    """Answers as the request's path says."""

    def handle(self, req: Any, resp: Any) -> Any:
        kind = req.path[1:]
        if kind == "true":
            resp.send(b"one")
            return True
        if kind == "false":
            return False
        if kind == "none-sent":
            resp.send(b"sent")
            return None
        if kind == "none":
            return None
        if kind == "junk":
            return 42
        if kind == "raise":
            raise ValueError("bug")
        return self._later(kind, resp)

    @staticmethod
    async def _later(kind: str, resp: Any) -> Any:
        await asyncio.sleep(0)
        if kind == "coro-true":
            resp.send(b"later")
            return True
        if kind == "coro-none-sent":
            resp.send(b"later-sent")
            return None
        if kind == "coro-raise":
            raise LookupError("later bug")
        return False  # coro-false


CONF = '''
stage {
    app "a" { .hostnames = ("*") .accessLog = false
        rule { _testAnswer {} }
        rule $path == "/false" { _testAnswer {} }
        rule { .returnCode = 200 .returnText = "next" }
    }
    httpxServer "main" { .address = "127.0.0.1:0" .forApps = ("a") }
}
'''
KINDS = ["true", "false", "none-sent", "none", "junk", "raise", "coro-true", "coro-false", "coro-none-sent",
         "coro-raise"]


async def _answers(direct: bool) -> dict[str, bytes]:
    stage = await stage_with_handlet("_testAnswer", _Answer, CONF)
    app = stage.get("app", "a")
    lone = [rule for rule in app.rules if rule.direct is not None]  # type: ignore[union-attr]
    assert len(lone) == 2  # both handlet rules; not the fixed answer
    if not direct:
        for rule in lone:
            rule.direct = None
    out: dict[str, bytes] = {}
    for kind in KINDS:
        conn, t = recorded_conn(stage)
        conn.data_received(f"GET /{kind} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        for _ in range(5):
            await asyncio.sleep(0)
        head, _, body = t.out.partition(b"\r\n\r\n")
        out[kind] = head.split(b"\r\n")[0] + b" | " + body
        conn.connection_lost(None)
    await stage.shutdown()
    return out


def test_a_lone_handlet_is_read_as_execute_reads_it(caplog: pytest.LogCaptureFixture) -> None:
    direct = asyncio.run(_answers(True))
    through_execute = asyncio.run(_answers(False))
    assert direct == through_execute
    # And what that reading is, so that both cannot drift together:
    assert direct["true"].endswith(b"| one") and direct["none-sent"].endswith(b"| sent")
    assert direct["false"].endswith(b"| next")   # the second rule (same handlet) says False too
    assert direct["none"].endswith(b"| next") and direct["junk"].endswith(b"| next")
    assert direct["coro-true"].endswith(b"| later") and direct["coro-none-sent"].endswith(b"| later-sent")
    assert direct["coro-false"].endswith(b"| next")
    assert direct["raise"].startswith(b"HTTP/1.1 500 ") and direct["coro-raise"].startswith(b"HTTP/1.1 500 ")
