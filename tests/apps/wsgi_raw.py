"""A raw PEP 3333 application for tests/e2e/test_wsgi.py: one route per behaviour of the
``wsgi`` handlet, each reporting what the app saw (as JSON) or doing what a real app does
(streaming, write(), file_wrapper, exc_info, failing), so the tests assert on the app's view.

Routes take their parameters from the query string; ``mark=<path>`` names a file the app writes
when its iterable is closed (the test process reads it).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
import time
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs

Start = Callable[..., Callable[[bytes], None]]

_lock = threading.Lock()
_active = 0
_max_active = 0


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}


def _json(start_response: Start, obj: Any, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _mark(path: str | None, text: str) -> None:
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


class Closing:
    """An iterable whose close() is recorded in a file."""

    def __init__(self, chunks: Iterable[bytes], mark: str | None, delay: float = 0.0) -> None:
        self.chunks = chunks
        self.mark = mark
        self.delay = delay
        self.produced = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            if self.delay:
                time.sleep(self.delay)
            self.produced += 1
            yield chunk

    def close(self) -> None:
        _mark(self.mark, f"closed {self.produced}")


class RecordingFile(io.FileIO):
    """A real file that records being read (it should not be: the server uses sendfile) and closed."""

    def __init__(self, path: str, mark: str | None) -> None:
        super().__init__(path, "rb")
        self.mark = mark

    def read(self, size: int = -1) -> bytes:
        _mark(self.mark, "read")
        return super().read(size)

    def close(self) -> None:
        if not self.closed:
            _mark(self.mark, "closed")
        super().close()


def environ_view(environ: dict[str, Any]) -> dict[str, Any]:
    """The environ as JSON: plain values as they are, objects by what they can do."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if isinstance(value, (str, int, bool, tuple)) or value is None:
            out[key] = value
        else:
            out[key] = {"type": type(value).__name__,
                        "abilities": [m for m in ("read", "readline", "readlines", "__iter__", "write", "writelines",
                                                  "flush", "__call__") if hasattr(value, m)]}
    out["_types"] = {k: type(v).__name__ for k, v in environ.items() if isinstance(v, str)}
    out["_body"] = environ["wsgi.input"].read().decode("latin-1")
    environ["wsgi.errors"].write("environ-route wrote this to wsgi.errors\n")
    return out


def app(environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    q = _query(environ)
    route = path.split("/")[1] if path.count("/") else ""
    if route == "env":
        return _json(start_response, environ_view(environ))
    if route == "upload":
        # Read the body in pieces, as a streaming consumer does.
        h = hashlib.sha256()
        size = int(q.get("piece", "65536"))
        total = pieces = biggest = 0
        stream = environ["wsgi.input"]
        while True:
            data = stream.read(size)
            if not data:
                break
            h.update(data)
            total += len(data)
            pieces += 1
            biggest = max(biggest, len(data))
        return _json(start_response, {"sha256": h.hexdigest(), "length": total, "pieces": pieces, "biggest": biggest})
    if route == "peek":
        # Answers after the first bytes of the body: the rest may not even have been sent.
        data = environ["wsgi.input"].read(int(q.get("n", "10")))
        return _json(start_response, {"peeked": data.decode("latin-1")})
    if route == "lines":
        stream = environ["wsgi.input"]
        first = stream.readline()
        limited = stream.readline(3)
        rest_of_line = stream.readline()
        two = stream.readlines(1)  # a hint: at least one line
        remaining = [line for line in stream]
        return _json(start_response, {"first": first.decode(), "limited": limited.decode(),
                                      "rest": rest_of_line.decode(), "two": [x.decode() for x in two],
                                      "remaining": [x.decode() for x in remaining],
                                      "eof": stream.read() == b"" and stream.readline() == b""})
    if route == "write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(int(q.get("n", "3"))):
            write(b"written %d\n" % i)
        return [b"returned\n"]
    if route == "stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        n = int(q.get("n", "4"))
        delay = float(q.get("delay", "0.2"))
        return Closing((b"chunk %d\n" % i for i in range(n)), q.get("mark"), delay)
    if route == "closing":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return Closing([b"hello"], q.get("mark"))
    if route == "endless":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def forever() -> Iterator[bytes]:
            while True:
                yield b"x" * 65536
        return Closing(forever(), q.get("mark"), float(q.get("delay", "0.001")))
    if route == "file":
        f = RecordingFile(q["path"], q.get("mark"))
        if "offset" in q:
            f.seek(int(q["offset"]))
        headers = [("Content-Type", "application/octet-stream")]
        if "length" in q:
            headers.append(("Content-Length", q["length"]))
        start_response("200 OK", headers)
        wrapper = environ["wsgi.file_wrapper"](f, 32768)
        return wrapper
    if route == "filelike":
        # A file_wrapper over something without a file descriptor: iterated, not sent with sendfile.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"from memory " * 1000), 1000)
    if route == "excinfo":
        # The classic error-handler pattern: replace the headers before anything was sent.
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "yes")])
        try:
            raise RuntimeError("handled")
        except RuntimeError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("X-Second", "yes")],
                           sys.exc_info())
        return [b"replaced"]
    if route == "excinfo-late":
        # After the head is out, start_response(exc_info) must raise the original error again.
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial")
        outcome = "no error"
        try:
            raise KeyError("late")
        except KeyError:
            try:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            except KeyError:
                outcome = "re-raised"
        _mark(q.get("mark"), outcome)
        raise RuntimeError("gives up after the head was sent")
    if route == "twice":
        start_response("200 OK", [])
        try:
            start_response("200 OK", [])
        except Exception as e:
            return [type(e).__name__.encode()]
        return [b"accepted twice"]
    if route == "boom":
        raise ValueError("boom-marker: the app failed")
    if route == "boom-iter":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def failing() -> Iterator[bytes]:
            yield b"first part"
            raise ValueError("boom-iter-marker")
        return Closing(failing(), q.get("mark"))
    if route == "head":
        body = b"x" * 1234
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]
    if route == "short":
        start_response("200 OK", [("Content-Length", "10")])
        return iter([b"abc", b"def"])
    if route == "slow":
        global _active, _max_active
        with _lock:
            _active += 1
            _max_active = max(_max_active, _active)
        try:
            time.sleep(float(q.get("delay", "0.3")))
        finally:
            with _lock:
                _active -= 1
        return _json(start_response, {"ok": True, "thread": threading.current_thread().name})
    if route == "max":
        with _lock:
            result = {"max": _max_active, "active": _active}
            if q.get("reset"):
                _max_active = 0
        return _json(start_response, result)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such route: " + path.encode("latin-1")]
