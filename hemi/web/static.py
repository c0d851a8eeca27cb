"""The ``static`` handlet: files under a web root, with validators, conditional requests, byte
ranges and (optionally) directory listings.

The common case must stay cheap, so ``handle`` is a plain method: a small file comes from the
stage's ``fcache`` in memory and is sent inline, with no task and no await. Only a large file
(an open descriptor in the cache, sent with sendfile) makes ``handle`` return a coroutine.

Containment: the server hands us a percent-decoded path with ``..`` already resolved, but this
handlet does not rely on that alone. A ``..`` segment is refused outright, and the real path
(symlinks resolved) must stay under the real web root unless ``.allowSymlinksOutside`` says
otherwise; that check is remembered for ``fcache.cacheTimeout``, like the file itself.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from typing import TYPE_CHECKING, Awaitable
from urllib.parse import quote

from ..config.errors import ConfigError
from ..core.registry import handlet
from ..core.memo import remember
from .autoindex import render_listing, scan_directory
from .conditional import (content_range, evaluate_preconditions, if_range_allows, make_etag,
                          multipart_byteranges, parse_range, unsatisfied_range)
from .handlet import Handlet
from .httpdate import format_http_date
from .mime import MIME_TYPES, guess_type

if TYPE_CHECKING:
    from ..core.fcache import FileEntry
    from .exchange import Request, Response

log = logging.getLogger("hemi.web.static")

__all__ = ["Static", "reject_method", "answer_preconditions", "redirect_location", "is_inside", "has_dot_dot"]

DEVELOPER_CACHE_CONTROL = "no-cache, no-store, must-revalidate"
ALLOW = "GET, HEAD"
# Errors that mean "there is no such file here" (ENOTDIR: "/a.txt/" where a.txt is a file).
_MISSING = frozenset((errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP))
_FORBIDDEN = frozenset((errno.EACCES, errno.EPERM))
# A multi-range answer is built in memory; past this many bytes of ranges of a large file we
# send the whole file instead, which RFC 9110 §14.2 always allows.
MAX_MULTIPART_BYTES = 8 << 20
# Bound on remembered paths (cleared wholesale when full: cheap, and always safe).
_MAX_KNOWN = 4096
_ACCEPT_RANGES = ("accept-ranges", "bytes")
# Characters left as they are in a redirect's Location (RFC 3986 pchar minus '%', plus '/').
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


# -- helpers shared with other handlets (favicon) ---------------------------------------------------
def reject_method(req: "Request", resp: "Response") -> bool:
    """Answer 405 to anything but GET and HEAD; True when it did."""
    if req.method == "GET" or req.method == "HEAD":
        return False
    resp.headers.append(("allow", ALLOW))
    resp.send_error(405)
    return True


def answer_preconditions(req: "Request", resp: "Response", etag: str, mtime: float,
                         extra: tuple[tuple[str, str], ...] = ()) -> bool:
    """Evaluate If-Match & co. (RFC 9110 §13.2.2) and answer 304 or 412 when they say so.

    A 304 carries the validator and ``extra`` (e.g. Cache-Control), as RFC 9110 §15.4.5 asks,
    and no body. Returns True when it answered.
    """
    header = req.header
    # conditional.py asks in canonical case ("If-None-Match"); our header names are lower-case.
    status = evaluate_preconditions(req.method, lambda name: header(name.lower()), etag, mtime)
    if status is None:
        return False
    if status == 304:
        resp.status = 304
        resp.headers.append(("etag", etag))
        resp.headers.extend(extra)
        resp.send(b"")
    else:
        resp.send_error(status)
    return True


def redirect_location(path: str, query_string: str) -> str:
    """Where a directory URL without its trailing slash is sent: the same path plus "/".

    Built from the normalised path, re-encoded, never from the raw target: a raw
    ``//evil.example`` would otherwise become a protocol-relative redirect to another site.
    """
    return quote(path, safe=_PATH_SAFE) + "/" + query_string


def is_inside(real: str, root: str) -> bool:
    """Whether real path ``real`` is ``root`` or below it (both real, root without a trailing
    slash; the file-system root is "")."""
    return real == root or real.startswith(root + "/")


def has_dot_dot(path: str) -> bool:
    """Whether a decoded path has a ``..`` segment (the server removes them; we check anyway)."""
    return "/.." in path and ".." in path.split("/")


@handlet("static")
class Static(Handlet):
    """Serves ``webRoot + path``. Properties: ``.webRoot`` (default: the app's), ``.indexFile``,
    ``.autoIndex``, ``.mimeTypes``, ``.defaultType``, ``.developerMode``,
    ``.allowSymlinksOutside``, ``.maxAge``."""

    def on_configure(self) -> None:
        raw_root = self.configure_string("webRoot", "")
        self.web_root = raw_root.rstrip("/") or ("/" if raw_root else "")
        if not self.web_root:
            self.error("has no .webRoot: set it here or on the app")
        self.index_file = self.configure_string(
            "indexFile", "index.html",
            check=lambda v: "must be a file name (no '/', not '.' or '..')"
            if not v or "/" in v or "\x00" in v or v in (".", "..") else None)
        self.auto_index = self.configure_bool("autoIndex", False)
        extra_types = self.configure_string_dict("mimeTypes")
        self.mime_types = {**MIME_TYPES, **{k.lstrip("."): v for k, v in extra_types.items()}}
        self.default_type = self.configure_string("defaultType", "application/octet-stream")
        self.developer_mode = self.configure_bool("developerMode", False)
        self.allow_symlinks_outside = self.configure_bool("allowSymlinksOutside", False)
        max_age = self.configure_duration("maxAge", 0.0, min=0.0)
        # Extra head fields of every file answer (and of its 304s).
        if self.developer_mode:
            self.cache_headers: tuple[tuple[str, str], ...] = (("cache-control", DEVELOPER_CACHE_CONTROL),)
        elif max_age > 0:
            self.cache_headers = (("cache-control", f"max-age={int(max_age)}"),)
        else:
            self.cache_headers = ()
        self.root = ""
        self._memo: dict[str, _Known] = {}

    def on_prepare(self) -> None:
        root = os.path.join(self.stage.dirs.base, self.web_root)  # a relative root is under the base dir
        real = os.path.realpath(root)
        self.root = "" if real == "/" else real
        self.fcache = self.stage.fcache
        if not os.path.isdir(real):
            log.warning('static "%s": web root %s is not a directory (yet): requests will get 404', self.name, real)
            return
        index = os.path.join(real, self.index_file)
        if os.path.lexists(index) and not os.path.isfile(index):
            raise ConfigError(f'{index} is not a regular file, so it cannot be .indexFile (in {self.describe()})',
                              self.block.loc)

    # -- serving -------------------------------------------------------------------------------------
    def handle(self, req: "Request", resp: "Response") -> bool | Awaitable[bool]:
        if req.method != "GET" and req.method != "HEAD":
            return reject_method(req, resp)
        path = req.path
        if "\x00" in path:
            resp.send_error(400, "malformed path")
            return True
        full = self.root + path
        is_index = path.endswith("/")
        if is_index:
            full += self.index_file
        known = self._known(full)
        if not known.inside or has_dot_dot(path):
            req.app.send_not_found(resp)
            return True
        try:
            entry = self.fcache.get(full)
        except OSError as e:
            if is_index and e.errno in _MISSING:
                return self._no_index(req, resp, path)
            return self._failed(req, resp, e)
        if entry.is_dir:
            entry.release()
            if is_index:  # the "index file" is a directory: as if there were none
                return self._no_index(req, resp, path)
            resp.redirect(redirect_location(path, req.query_string), 301)
            return True
        if known.mtime != entry.mtime or known.size != entry.size:
            self._validators(known, entry)
        return self._serve(req, resp, entry, known)

    def _known(self, full: str) -> "_Known":
        """What we know of ``full``: remembered for ``fcache.cacheTimeout``, like the file.

        Finding out costs a realpath (an lstat per path component) and a MIME lookup, which
        would otherwise double the cost of serving a small file.
        """
        now = time.monotonic()
        memo = self._memo
        known = memo.get(full)
        if known is not None and known.expires > now:
            return known
        inside = self.allow_symlinks_outside or is_inside(os.path.realpath(full), self.root)
        if not inside:
            log.debug('static "%s": %s leads outside the web root; answered 404', self.name, full)
        ttl = self.fcache.timeout
        known = _Known(now + ttl, inside, guess_type(full, self.mime_types, self.default_type))
        if ttl > 0:
            remember(memo, full, known, _MAX_KNOWN)
        return known

    def _validators(self, known: "_Known", entry: "FileEntry") -> None:
        """Compute the ETag and the head fields of a 200 for the version of the file in ``entry``."""
        known.mtime, known.size = entry.mtime, entry.size
        known.etag = make_etag(entry.mtime, entry.size)
        if self.developer_mode:
            known.head = (*self.cache_headers, _ACCEPT_RANGES)
        else:
            known.head = (("etag", known.etag), ("last-modified", format_http_date(entry.mtime)),
                          *self.cache_headers, _ACCEPT_RANGES)

    def _serve(self, req: "Request", resp: "Response", entry: "FileEntry", known: "_Known") -> bool | Awaitable[bool]:
        size = entry.size
        if _needs_care(req.headers):  # conditionals or a range: the slow path
            if answer_preconditions(req, resp, known.etag, entry.mtime, self.cache_headers):
                entry.release()
                return True
            resp.headers.extend(known.head)
            if req.method == "GET":
                value = req.header("range")
                if value is not None and if_range_allows(req.header("if-range"), known.etag, entry.mtime):
                    ranges = parse_range(value, size)
                    if ranges is not None:
                        return self._send_ranges(resp, entry, ranges, known.ctype)
        else:
            resp.headers.extend(known.head)
        data = entry.data
        if data is not None:
            entry.release()
            resp.send(data, known.ctype)
            return True
        return self._send_large(resp, entry, 0, size, known.ctype)

    def _send_ranges(self, resp: "Response", entry: "FileEntry", ranges: list[tuple[int, int]] | str,
                     ctype: str) -> bool | Awaitable[bool]:
        size = entry.size
        data = entry.data
        if ranges == "unsatisfiable":
            entry.release()
            resp.headers.append(("content-range", unsatisfied_range(size)))
            resp.send_error(416)
            return True
        assert isinstance(ranges, list)
        if len(ranges) == 1:
            first, last = ranges[0]
            resp.status = 206
            resp.headers.append(("content-range", content_range(first, last, size)))
            if data is not None:
                entry.release()
                resp.send(data[first:last + 1], ctype)
                return True
            return self._send_large(resp, entry, first, last - first + 1, ctype)
        if data is None and sum(last - first + 1 for first, last in ranges) > MAX_MULTIPART_BYTES:
            return self._send_large(resp, entry, 0, size, ctype)
        try:
            if data is not None:
                mtype, body = multipart_byteranges(ranges, size, ctype, lambda o, n: data[o:o + n])
            else:
                fd = entry.fd
                assert fd is not None
                mtype, body = multipart_byteranges(ranges, size, ctype, lambda o, n: _pread(fd, n, o))
        finally:
            entry.release()
        resp.status = 206
        resp.send(body, mtype)
        return True

    async def _send_large(self, resp: "Response", entry: "FileEntry", offset: int, count: int, ctype: str) -> bool:
        """Send part of a cached descriptor with sendfile; the entry is released only once the
        last byte is handed to the kernel (or the client has gone)."""
        try:
            resp.content_type = ctype
            await resp.send_fd(entry.fd, offset, count)  # type: ignore[arg-type]
        finally:
            entry.release()
        return True

    def _no_index(self, req: "Request", resp: "Response", path: str) -> bool:
        """A directory URL whose index file is missing: a listing, 403, or 404 if there is no
        such directory either."""
        directory = self.root + path
        if not self.auto_index:
            if os.path.isdir(directory):
                resp.send_error(403, "directory listing is off")
            else:
                req.app.send_not_found(resp)
            return True
        try:
            rows = scan_directory(directory)
        except OSError as e:
            return self._failed(req, resp, e)
        resp.send_html(render_listing(path, rows))
        return True

    def _failed(self, req: "Request", resp: "Response", e: OSError) -> bool:
        if e.errno in _MISSING:
            req.app.send_not_found(resp)
        elif e.errno in _FORBIDDEN:
            resp.send_error(403)
        else:
            log.error('static "%s": cannot serve %s: %s', self.name, req.path, e)
            resp.send_error(500)
        return True


class _Known:
    """What a static handlet remembers about one path: whether it stays inside the web root,
    its content type, and the validators and head fields of the version of the file last seen
    (recomputed when the fcache shows another mtime or size)."""

    __slots__ = ("expires", "inside", "ctype", "mtime", "size", "etag", "head")

    def __init__(self, expires: float, inside: bool, ctype: str) -> None:
        self.expires = expires
        self.inside = inside
        self.ctype = ctype
        self.mtime = -1.0
        self.size = -1
        self.etag = ""
        self.head: tuple[tuple[str, str], ...] = ()


def _needs_care(headers: list[tuple[str, str]]) -> bool:
    """Whether a request has preconditions (If-*) or a Range; most have neither."""
    for name, _ in headers:
        if name[:3] == "if-" or name == "range":
            return True
    return False


def _pread(fd: int, count: int, offset: int) -> bytes:
    """Exactly ``count`` bytes at ``offset`` unless the file is shorter (then fewer)."""
    parts: list[bytes] = []
    while count > 0:
        chunk = os.pread(fd, count, offset)
        if not chunk:
            break
        parts.append(chunk)
        count -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)
