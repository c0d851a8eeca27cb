"""``uwsgiProxy``: a gateway to uWSGI (and other servers of the uwsgi protocol), modifier 0 (WSGI).

The request is one packet of CGI/WSGI vars (:mod:`.cgivars`: SCRIPT_NAME is empty, PATH_INFO
the decoded path, as nginx's ``uwsgi_params`` set them) followed by the raw body, whose size
the ``CONTENT_LENGTH`` var announces (a chunked request body is spooled first to know it).
The response is an HTTP status line (or a CGI ``Status:``) with headers, then the body up to
its Content-Length or to the close. uWSGI closes the connection after every response, so a
connection is never reused.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ...core.registry import handlet
from ..uwsgi.codec import HttpHeadParser, ResponseHead, UwsgiError, encode_request
from .cgivars import cgi_vars
from .gateway import GatewayProxy

if TYPE_CHECKING:
    from ..exchange import Request

__all__ = ["UwsgiProxy", "UwsgiReader"]

log = logging.getLogger("hemi.web.uwsgi")


class UwsgiReader:
    """The response side of one uwsgi exchange (see ``gateway.ResponseReader``): the head,
    then the body, delimited by its Content-Length or by the backend's close."""

    __slots__ = ("head_parser", "head", "body", "done", "started", "_left", "_keep", "_begun")

    reusable = False
    ends_itself = False  # the end is the head's Content-Length (or the close)

    def __init__(self) -> None:
        self.head_parser = HttpHeadParser()
        self.head: ResponseHead | None = None
        self.body: list[bytes] = []
        self.done = False
        self.started = False
        self._left: int | None = None   # body bytes still due, None: until the close
        self._keep = True
        self._begun = False

    def feed(self, data: bytes) -> None:
        self.started = True
        if self.head is None:
            head = self.head_parser.feed(data)
            if head is None:
                return
            self.head = head
            data = head.rest
            if not data:
                return
        if not self._begun:  # body bytes that came with the head wait for start_body
            self.body.append(data)
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        if self.done:
            return  # bytes past the announced length are dropped; the connection is not reused
        left = self._left
        if left is not None:
            if len(data) >= left:
                data = data[:left]
                self.done = True
            self._left = left - len(data)
        if self._keep and data:
            self.body.append(data)

    def start_body(self, expect_body: bool, length: int | None) -> None:
        self._begun = True
        self._keep = expect_body
        self._left = length
        if length == 0:
            self.done = True
        pending, self.body = self.body, []
        for data in pending:
            self._take(data)

    def eof(self) -> None:
        if self.head is None:
            raise UwsgiError("connection closed before the response head")
        if self._left:
            raise UwsgiError(f"connection closed {self._left} bytes before the end of the response")
        self.done = True


@handlet("uwsgiProxy")
class UwsgiProxy(GatewayProxy):
    """Pass requests to a uwsgi application server (see the module docstring)."""

    protocol = "uwsgi"
    codec_error = UwsgiError
    log = log

    def on_bind(self) -> None:
        super().on_bind()
        self._root_bytes = self.app.web_root.encode()

    def encode_head(self, req: "Request", content_length: int | None) -> bytes:
        return encode_request(cgi_vars(req, script_name="", path_info=req.path, document_root=self._root_bytes,
                                       content_length=content_length))

    def new_reader(self, req: "Request") -> UwsgiReader:
        return UwsgiReader()
