"""Client-side helpers for the HTTP/1 end-to-end tests: raw sockets, a tiny strict response
reader (so tests see exactly what went over the wire), and the files that load the test
handlets into a gorox process."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


def exts_files() -> dict[str, str]:
    """``files=`` for the gorox fixture: installs tests/e2e/helpers_handlets.py as ``exts``."""
    return {"exts/__init__.py": (HERE / "helpers_handlets.py").read_text()}


@dataclass
class Resp:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    interim: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json(self):  # type: ignore[no-untyped-def]
        return json.loads(self.body)


class Conn:
    """A raw TCP connection with a buffered, strict HTTP/1 response reader."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0,
                 sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _line(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            if not self._fill():
                return None
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed with {len(self.buf)} of {n} body bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _fields(self) -> list[tuple[str, str]]:
        out = []
        while True:
            line = self._line()
            if line is None:
                raise EOFError("connection closed inside a header section")
            if not line:
                return out
            name, _, value = line.decode("latin-1").partition(":")
            out.append((name.strip().lower(), value.strip()))

    def read_response(self, head: bool = False) -> Resp | None:
        """The next final response (interim 1xx ones are collected in ``interim``);
        None when the server closed cleanly before a status line."""
        interim: list[int] = []
        while True:
            line = self._line()
            if line is None:
                if self.buf:
                    raise EOFError(f"connection closed inside a status line: {self.buf!r}")
                return None
            version, status, reason = (line.decode("latin-1").split(" ", 2) + ["", ""])[:3]
            assert version in ("HTTP/1.1", "HTTP/1.0"), line
            headers = self._fields()
            code = int(status)
            if code < 200:
                interim.append(code)
                continue
            break
        resp = Resp(code, reason, headers, interim=interim)
        if head or code in (204, 304):
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te is not None:
            assert te == "chunked", te
            parts = []
            while True:
                size_line = self._line()
                assert size_line is not None, "closed inside chunked body"
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    resp.trailers = self._fields()
                    break
                parts.append(self._exact(size))
                assert self._exact(2) == b"\r\n"
            resp.body = b"".join(parts)
        elif cl is not None:
            resp.body = self._exact(int(cl))
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def closed_after(self, timeout: float = 3.0) -> bool:
        """True if the server closes its side (recv gives b"") with nothing more sent."""
        if self.buf:
            return False
        if self.eof:
            return True
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        if data:
            self.buf += data
            return False
        self.eof = True
        return True


def request(port: int, data: bytes, *, head: bool = False, timeout: float = 5.0,
            close_wait: float = 1.0) -> tuple[Resp | None, bool]:
    """Send raw bytes on a new connection; the first response and whether the server closed
    after it (within ``close_wait`` seconds: a server that closes does so right after replying)."""
    with Conn(port, timeout=timeout) as c:
        c.send(data)
        r = c.read_response(head=head)
        return r, c.closed_after(close_wait)


def fetch(port: int, data: bytes, *, head: bool = False, timeout: float = 5.0) -> Resp:
    """Send raw bytes on a new connection and return the first response (which must come)."""
    with Conn(port, timeout=timeout) as c:
        c.send(data)
        r = c.read_response(head=head)
        assert r is not None, "the server closed without answering"
        return r


def wait_until(pred, timeout: float = 5.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())
