"""Helpers for the layer-4 tests: small real TCP/TLS peers in background threads, and waiting
for log lines (access logs are flushed within a second)."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Callable


class Peer:
    """A TCP (or TLS) server on a free loopback port; ``handler(sock)`` runs per connection in
    its own thread. ``conns`` counts accepted connections."""

    def __init__(self, handler: Callable[[socket.socket], None], ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = 0
        self.results: list = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c: socket.socket) -> None:
        try:
            if self.ssl_context is not None:
                c.settimeout(10)
                c = self.ssl_context.wrap_socket(c, server_side=True)
            self.handler(c)
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def recv_all(s: socket.socket, limit: int = 1 << 34) -> bytes:
    out = bytearray()
    while len(out) < limit:
        d = s.recv(1 << 16)
        if not d:
            break
        out += d
    return bytes(out)


def echo(s: socket.socket) -> None:
    """Echo until EOF, then half-close (a relay must carry both)."""
    while True:
        d = s.recv(1 << 16)
        if not d:
            break
        s.sendall(d)
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def digest_sink(peer_results: list) -> Callable[[socket.socket], None]:
    """Read to EOF, then answer "<bytes> <sha256>" and close."""
    def handler(s: socket.socket) -> None:
        h = hashlib.sha256()
        n = 0
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            h.update(d)
            n += len(d)
        peer_results.append(n)
        s.sendall(f"{n} {h.hexdigest()}".encode())
    return handler


def flood(s: socket.socket) -> None:
    """Send until the peer goes away."""
    chunk = b"f" * (1 << 16)
    while True:
        s.sendall(chunk)


def reset(s: socket.socket) -> None:
    """Read a little, then reset the connection (SO_LINGER 0)."""
    s.recv(100)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def wait_for(pred: Callable[[], object], timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    return pred()


def log_lines(path: Path, needle: str, timeout: float = 5.0) -> list[str]:
    """Lines of ``path`` containing ``needle``, waiting up to ``timeout`` for at least one."""
    def found() -> list[str]:
        return [ln for ln in path.read_text(errors="replace").splitlines() if needle in ln] if path.exists() else []
    return wait_for(found, timeout) or []  # type: ignore[return-value]


def closed_by_peer(s: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closes (EOF or reset) within ``timeout``, reading anything it sends."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
