"""The ``gzipReviser``: compresses response bodies for clients that accept gzip.

    gzipReviser {
        .compressLevel = 6
        .minLength = 256
        .onContentTypes = ("text/", "application/json")
    }

A response is compressed when: its status is 200, it has no Content-Encoding yet, its media
type is listed (an entry ending in "/" or "/*" is a prefix), Cache-Control does not say
no-transform, its length (when the sender knows it before the head goes out) is at least
``.minLength``, and the request's Accept-Encoding allows gzip. Such a response then gets
``content-encoding: gzip``, ``vary: accept-encoding`` (also when the client did not accept gzip,
so caches keep the variants apart), a weak ETag (the bytes differ from the identity ones) and no
Accept-Ranges (a Range request gets the identity bytes as a 206); its Content-Length is the
compressed length (sized sends), or it is streamed chunked.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from ...core.registry import reviser
from ...web.handlet import BodyFilter, Reviser

if TYPE_CHECKING:
    from ...web.exchange import Request, Response

DEFAULT_TYPES = ("text/html", "text/plain", "text/css", "application/javascript", "application/json", "image/svg+xml")


def accepts_gzip(values: list[str]) -> bool:
    """Whether Accept-Encoding field values allow gzip: listed (or as x-gzip) with q > 0, or not
    listed and ``*`` has q > 0. No field at all: no (identity is the safe choice)."""
    gzip_q: float | None = None
    star_q: float | None = None
    for value in values:
        for item in value.split(","):
            coding, *params = item.split(";")
            coding = coding.strip().lower()
            q = 1.0
            for param in params:
                key, _, val = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        q = float(val.strip())
                    except ValueError:
                        q = 0.0
            if coding in ("gzip", "x-gzip"):
                gzip_q = q if gzip_q is None else max(gzip_q, q)
            elif coding == "*":
                star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


class TypeSet:
    """Media types to compress: exact types, and prefixes written as ``text/`` or ``text/*``."""

    def __init__(self, entries: list[str]) -> None:
        self.exact = frozenset(e.lower() for e in entries if not e.endswith(("/", "/*")))
        self.prefixes = tuple(e.lower().rstrip("*") for e in entries if e.endswith(("/", "/*")))

    def __contains__(self, content_type: object) -> bool:
        if not isinstance(content_type, str):
            return False
        media = content_type.split(";", 1)[0].strip().lower()
        return media in self.exact or (bool(self.prefixes) and media.startswith(self.prefixes))


class GzipFilter:
    """Streams a body through zlib with gzip framing. Each fed piece is flushed (sync flush),
    so a streamed response reaches the client as it is produced, not when zlib's window fills."""

    __slots__ = ("_z",)

    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def end(self) -> bytes:
        return self._z.flush(zlib.Z_FINISH)


def add_vary(resp: "Response", name: str) -> None:
    """Add ``name`` to the response's Vary, unless it is there already or Vary is ``*``."""
    for i, (k, v) in enumerate(resp.headers):
        if k == "vary":
            tokens = [t.strip().lower() for t in v.split(",")]
            if name not in tokens and "*" not in tokens:
                resp.headers[i] = (k, f"{v}, {name}")
            return
    resp.headers.append(("vary", name))


def weaken_etag(resp: "Response") -> None:
    for i, (k, v) in enumerate(resp.headers):
        if k == "etag" and not v.startswith("W/"):
            resp.headers[i] = (k, "W/" + v)


@reviser("gzipReviser")
class GzipReviser(Reviser):
    rank = 31

    def on_configure(self) -> None:
        self.level = self.configure_int("compressLevel", 6, min=1, max=9)
        self.min_length = self.configure_size("minLength", 256, min=0)
        self.types = TypeSet(self.configure_string_list(
            "onContentTypes", list(DEFAULT_TYPES), non_empty=True,
            check=lambda es: next((f'holds "{e}", expected a media type such as text/html or a prefix such as text/'
                                   for e in es if "/" not in e), None)))

    def revise(self, req: "Request", resp: "Response") -> BodyFilter | None:
        if resp.status != 200 or resp.content_type not in self.types:
            return None
        if resp.header("content-encoding") is not None:
            return None
        cache_control = resp.header("cache-control")
        if cache_control is not None and "no-transform" in cache_control.lower():
            return None
        length = resp.body_length
        if length is not None and length < self.min_length:
            return None
        add_vary(resp, "accept-encoding")
        if not accepts_gzip(req.header_list("accept-encoding")):
            return None
        resp.headers.append(("content-encoding", "gzip"))
        weaken_etag(resp)
        resp.del_header("accept-ranges")  # ranges of the gzip bytes cannot be served
        return GzipFilter(self.level)
