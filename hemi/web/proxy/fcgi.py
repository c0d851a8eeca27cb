"""``fcgiProxy``: a FastCGI gateway (php-fpm and friends), the responder role.

One request per connection at a time, request id 1: BEGIN_REQUEST (with FCGI_KEEP_CONN when
``.keepConn``), the CGI meta-variables as PARAMS, the body as STDIN records (streamed as it
arrives, or from the spooled body), the empty STDIN record; back come STDOUT (a CGI head, then
the body), STDERR (written to the error log, logger ``hemi.web.fcgi``, never to the client) and
END_REQUEST. With ``.keepConn`` the connection then returns to the backend's pool; without, a
connection serves one request and is closed.

php-fpm gives a kept connection a worker of its own until the connection closes, so with
``.keepConn`` the backend's nodes should keep no more connections than the pool has workers
(``"keepConns": 4`` for ``pm.max_children = 4``): at most that many are in use at once, and
further requests wait for one instead of waiting, unaccepted, in php-fpm's listen queue.

The script is found as nginx's ``fastcgi_split_path_info``/``fastcgi_index`` find it:
``.splitPathInfo`` (default ``^(.+?\\.php)(/.*)$``) cuts the decoded path into SCRIPT_NAME and
PATH_INFO, ``.indexFile`` is appended to a SCRIPT_NAME ending in ``/``, and SCRIPT_FILENAME is
``.scriptFilename`` or the app's ``.webRoot`` + SCRIPT_NAME.

Fixes over Gorox (spec §11.2): an app without ``.webRoot`` and no ``.scriptFilename`` is a
config error, not a panic; REMOTE_ADDR, REMOTE_PORT, SERVER_ADDR, SERVER_PORT, DOCUMENT_ROOT,
DOCUMENT_URI and PATH_INFO are sent; chunked request bodies get a CONTENT_LENGTH (spooled
first); the ``Status`` header is not leaked; ``.recvTimeout`` and ``.maxContentSize`` are enforced;
headers with ``_`` in their name are always dropped (Gorox's ``.preferUnderscore`` is accepted
and ignored: sending them would let a client spoof the ``-`` spelling).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Callable, Final

from ...core.registry import handlet
from ...core.memo import remember
from ..fcgi.codec import (REQUEST_COMPLETE, CgiHeadParser, EndRequest, FcgiError, ResponseHead, ResponseParser,
                          Stdout, begin_request, encode_params, encode_stdin)
from .cgivars import cgi_vars
from .gateway import GatewayProxy

if TYPE_CHECKING:
    from ..exchange import Request

__all__ = ["FcgiProxy", "FcgiReader"]

log = logging.getLogger("hemi.web.fcgi")

_REQUEST_ID: Final = 1
_BEGIN_KEEP: Final = begin_request(_REQUEST_ID, True)
_BEGIN_CLOSE: Final = begin_request(_REQUEST_ID, False)
_STDIN_END: Final = encode_stdin(_REQUEST_ID, b"")
_REDIRECT_STATUS: Final = (b"REDIRECT_STATUS", b"200")   # php-fpm (cgi.force_redirect) refuses requests without it
_PROTOCOL_STATUS: Final = {1: "cannot multiplex connections", 2: "overloaded", 3: "unknown role"}


class FcgiReader:
    """The response side of one FastCGI exchange (see ``gateway.ResponseReader``)."""

    __slots__ = ("parser", "head_parser", "head", "body", "done", "started", "on_stderr", "_expect_body")

    ends_itself = True   # END_REQUEST says when the response is complete

    def __init__(self, on_stderr: Callable[[bytes], None]) -> None:
        self.parser = ResponseParser(_REQUEST_ID)
        self.head_parser = CgiHeadParser()
        self.head: ResponseHead | None = None
        self.body: list[bytes] = []
        self.done = False
        self.started = False
        self.on_stderr = on_stderr
        self._expect_body = True

    @property
    def reusable(self) -> bool:
        return self.done

    def feed(self, data: bytes) -> None:
        if not self.started:
            self.started = True
            whole = self.parser.whole(data)
            if whole is not None:  # the common short answer, in one read
                if whole[0]:
                    self._stdout(whole[0])
                self._end(whole[1])
                return
        for event in self.parser.feed(data):
            kind = type(event)
            if kind is Stdout:
                self._stdout(event.data)  # type: ignore[union-attr]
            elif kind is EndRequest:
                self._end(event.protocol_status)  # type: ignore[union-attr]
            else:  # Stderr
                self.on_stderr(event.data)  # type: ignore[union-attr]

    def _stdout(self, data: bytes) -> None:
        if self.head is not None:
            if self._expect_body:
                self.body.append(data)
            return
        head = self.head_parser.feed(data)
        if head is not None:
            self.head = head
            if head.rest:
                self.body.append(head.rest)

    def _end(self, status: int) -> None:
        if status != REQUEST_COMPLETE:
            raise FcgiError("the application refused the request: "
                            + _PROTOCOL_STATUS.get(status, f"protocol status {status}"))
        if self.head is None:
            raise FcgiError("END_REQUEST before a complete response head")
        self.done = True

    def start_body(self, expect_body: bool, length: int | None) -> None:
        if not expect_body:
            self._expect_body = False
            self.body.clear()

    def eof(self) -> None:
        self.parser.eof()


@handlet("fcgiProxy")
class FcgiProxy(GatewayProxy):
    """Pass requests to a FastCGI application (see the module docstring)."""

    protocol = "fcgi"
    codec_error = FcgiError
    log = log
    body_end = _STDIN_END

    def on_configure(self) -> None:
        super().on_configure()
        self.reuse_conns = self.configure_bool("keepConn", False)
        self.script_filename = self.configure_string("scriptFilename", "")
        self.index_file = self.configure_string("indexFile", "index.php",
                                                check=lambda v: "must not contain '/'" if "/" in v else None)
        self.configure_bool("preferUnderscore", False)  # Gorox's; see the module docstring
        pattern = self.configure_string("splitPathInfo", r"^(.+?\.php)(/.*)$")
        self.split_path_info: re.Pattern[str] | None = None
        if pattern:
            try:
                rx = re.compile(pattern)
            except re.error as e:
                self.error(f".splitPathInfo is not a valid regular expression: {e}",
                           self.block.prop_locs.get("splitPathInfo"))
            else:
                if rx.groups != 2:
                    self.error(".splitPathInfo needs exactly two groups: (script name)(path info)",
                               self.block.prop_locs.get("splitPathInfo"))
                else:
                    self.split_path_info = rx
        self._begin = _BEGIN_KEEP if self.reuse_conns else _BEGIN_CLOSE
        self._splits: dict[str, tuple[str, str]] = {}

    def on_bind(self) -> None:
        super().on_bind()
        self.web_root = self.app.web_root
        self._root_bytes = self.web_root.encode()
        self._fixed_script = self.script_filename.encode()
        if not self.script_filename and not self.web_root:
            self.error(f'has no .scriptFilename and app "{self.app.name}" has no .webRoot: '
                       "there is no way to name the script")

    def split_path(self, path: str) -> tuple[str, str]:
        """(SCRIPT_NAME, PATH_INFO) of a decoded path. A path with a newline is never split:
        a PATH_INFO cut short at a newline is how CVE-2019-11043 reached php-fpm. The split of
        a path seen before is remembered (bounded): a site has a few busy scripts."""
        split = self._splits.get(path)
        if split is None:
            split = self._split(path)
            if len(path) <= 256:
                remember(self._splits, path, split, 1024)
        return split

    def _split(self, path: str) -> tuple[str, str]:
        script_name, path_info = path, ""
        rx = self.split_path_info
        if rx is not None and "\n" not in path:
            m = rx.search(path)
            if m is not None:
                script_name, path_info = m[1], m[2]
        if script_name.endswith("/") and self.index_file:
            script_name += self.index_file
        return script_name, path_info

    def encode_head(self, req: "Request", content_length: int | None) -> bytes:
        script_name, path_info = self.split_path(req.path)
        root = self._root_bytes
        extra = ((b"SCRIPT_FILENAME", self._fixed_script or root + script_name.encode()), _REDIRECT_STATUS)
        params = cgi_vars(req, script_name=script_name, path_info=path_info, document_root=root,
                          content_length=content_length, extra=extra)
        head = self._begin + encode_params(_REQUEST_ID, params)
        return head if content_length is not None else head + _STDIN_END

    def frame_body(self, data: bytes) -> bytes:
        return encode_stdin(_REQUEST_ID, data)

    def new_reader(self, req: "Request") -> FcgiReader:
        return FcgiReader(lambda data: self._stderr(req, data))

    def _stderr(self, req: "Request", data: bytes) -> None:
        text = data.decode("utf-8", "replace").strip()
        if text:
            log.warning('%s "%s" %s %s: %s', self.sign, self.name, req.method, req.path, text)
