"""Micro-benchmark of the HTTP/1.1 request codec.

Measures the full per-request cycle a keep-alive server runs —
feed + next_event (head) + next_event (end of message) + start_next — on one
long-lived parser, because that is what the server does per request.  Also
times the serializer helpers.  Prints µs per operation (best of several runs,
so scheduler noise does not inflate the numbers).

    python bench/codec_bench.py [--number N] [--repeat R]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hemi.web.http1.codec import (  # noqa: E402
    NEED_DATA,
    Body,
    EndOfMessage,
    RequestHead,
    RequestParser,
    encode_chunk,
    render_response_head,
)

HELLO: bytes = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"

TYPICAL_GET: bytes = (
    b"GET /api/v1/items?id=42&sort=desc HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)

SMALL_POST: bytes = (
    b"POST /submit HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\n"
    b"Content-Length: 27\r\n\r\n" + b'{"hello": "world", "n": 42}'
)


def request_cycle(raw: bytes, body: bool = False) -> Callable[[], None]:
    """One request through a persistent parser, exactly as a server drives it: the head, one
    Body event if ``body``, the end of the message, then start_next."""
    parser = RequestParser()
    feed = parser.feed
    next_event = parser.next_event
    start_next = parser.start_next

    def run() -> None:
        feed(raw)
        next_event()
        next_event()
        start_next()

    def run_with_body() -> None:
        feed(raw)
        next_event()
        next_event()
        next_event()
        start_next()

    return run_with_body if body else run


def httptools_cycle(raw: bytes) -> Callable[[], None] | None:
    """Reference only: httptools (C, llhttp) with the minimal callbacks
    uvicorn needs (url, lower-cased headers, keep-alive).  None if absent."""
    try:
        import httptools  # type: ignore[import-not-found]
    except ImportError:
        return None

    class Callbacks:
        def __init__(self) -> None:
            self.url = b""
            self.headers: list[tuple[bytes, bytes]] = []
            self.keep_alive = False

        def on_message_begin(self) -> None:
            self.url = b""
            self.headers = []

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.lower(), value))

        def on_headers_complete(self) -> None:
            self.keep_alive = parser.should_keep_alive()

        def on_message_complete(self) -> None:
            pass

    parser = httptools.HttpRequestParser(Callbacks())
    feed_data = parser.feed_data

    def run() -> None:
        feed_data(raw)

    return run


def check() -> None:
    """Make sure the benchmark measures real parses, not errors."""
    for raw, extra in ((HELLO, 0), (TYPICAL_GET, 0), (SMALL_POST, 1)):
        p = RequestParser()
        p.feed(raw)
        assert type(p.next_event()) is RequestHead
        for _ in range(extra):
            assert type(p.next_event()) is Body
        assert type(p.next_event()) is EndOfMessage
        p.start_next()
        assert p.next_event() is NEED_DATA


def best_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--number", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    check()
    headers = [("content-type", "text/plain"), ("content-length", "13"), ("date", "Mon, 01 Jan 2024 00:00:00 GMT")]
    chunk = b"x" * 1024
    cases: list[tuple[str, Callable[[], object]]] = [
        ("parse 'GET /hello' (Host only)", request_cycle(HELLO)),
        ("parse typical 6-header GET", request_cycle(TYPICAL_GET)),
        ("parse small POST (CL body)", request_cycle(SMALL_POST, body=True)),
        ("render_response_head (3 headers)", lambda: render_response_head(200, headers)),
        ("encode_chunk (1 KiB)", lambda: encode_chunk(chunk)),
    ]
    for label, raw in (("'GET /hello'", HELLO), ("typical 6-header GET", TYPICAL_GET)):
        ref = httptools_cycle(raw)
        if ref is not None:
            cases.append((f"(ref) httptools {label}", ref))
    print(f"Python {sys.version.split()[0]}, best of {args.repeat} x {args.number}")
    for label, fn in cases:
        print(f"  {label:<36} {best_us(fn, args.number, args.repeat):6.2f} µs")


if __name__ == "__main__":
    main()
