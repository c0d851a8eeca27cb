"""Editors that observe: ``countingEditor`` (traffic figures in the access log line) and
``redisViewer`` (one log line per Redis command a client sends). Neither changes a byte."""

from __future__ import annotations

import logging
import time

from ...core.registry import editor
from ...net.mesher import Editor, MeshConn
from .resp import RespError, RespReader

log = logging.getLogger("hemi.contrib.editors")


class _Counts:
    __slots__ = ("bytes_in", "bytes_out", "chunks_in", "chunks_out", "opened", "first_out")

    def __init__(self) -> None:
        self.bytes_in = self.bytes_out = self.chunks_in = self.chunks_out = 0
        self.opened = time.monotonic()
        self.first_out = 0.0


@editor("countingEditor")
class CountingEditor(Editor):
    """Counts what passes it in each direction, and when the first byte came back, and adds
    ``<name>.in=... .out=... .chunks=in/out .first=...s .time=...s`` to the access log line
    (the name prefix tells several counting editors apart)."""

    def on_open(self, conn: MeshConn) -> None:
        conn.edit_state[self] = _Counts()

    def on_input(self, conn: MeshConn, data: bytes) -> bytes:
        st: _Counts = conn.edit_state[self]
        st.bytes_in += len(data)
        st.chunks_in += 1
        return data

    def on_output(self, conn: MeshConn, data: bytes) -> bytes:
        st: _Counts = conn.edit_state[self]
        if not st.chunks_out:
            st.first_out = time.monotonic() - st.opened
        st.bytes_out += len(data)
        st.chunks_out += 1
        return data

    def on_close(self, conn: MeshConn) -> None:
        st: _Counts = conn.edit_state.pop(self)
        p = self.name
        conn.log_fields.append(f"{p}.in={st.bytes_in} {p}.out={st.bytes_out} {p}.chunks={st.chunks_in}/{st.chunks_out} "
                               f"{p}.first={st.first_out:.3f}s {p}.time={time.monotonic() - st.opened:.3f}s")


@editor("redisViewer")
class RedisViewer(Editor):
    """Logs each Redis command the client sends, as ``#<conn> redis <NAME> "arg" ...``, to the
    mesher's access log (or the error log at INFO when the mesher has none). Arguments are cut
    to ``.maxArgSize`` bytes and ``.maxArgs`` are shown. Input that is not RESP is reported once
    and then passes unlooked-at."""

    def on_configure(self) -> None:
        self.max_arg_size = self.configure_size("maxArgSize", 64, min=1, max=1 << 20)
        self.max_args = self.configure_int("maxArgs", 8, min=0, max=1000)

    def on_open(self, conn: MeshConn) -> None:
        conn.edit_state[self] = RespReader(self.max_arg_size)

    def on_input(self, conn: MeshConn, data: bytes) -> bytes:
        reader = conn.edit_state.get(self)
        if reader is None:
            return data
        try:
            commands = reader.feed(data)
        except RespError as e:
            conn.edit_state[self] = None
            self._write(conn, f"not RESP, stopped viewing: {e}")
            return data
        for cmd in commands:
            self._write(conn, cmd.render(self.max_args))
        return data

    def on_close(self, conn: MeshConn) -> None:
        conn.edit_state.pop(self, None)

    def _write(self, conn: MeshConn, text: str) -> None:
        access_log = conn.mesher.access_log
        line = f"#{conn.id} redis {text}"
        if access_log is not None:
            access_log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
        else:
            log.info("%s: %s", conn.mesher.describe(), line)
