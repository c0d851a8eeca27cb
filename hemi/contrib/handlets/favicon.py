"""The ``favicon`` handlet: answers ``/favicon.ico`` with a built-in 32x32 PNG, so a site
without an icon of its own does not fill its logs with 404s.

The icon never changes, so its validators are fixed (Last-Modified 1234567890 and an ETag
naming its size, as Gorox does) and browsers revalidate with a cheap 304.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from ...core.registry import handlet
from ...web.handlet import Handlet
from ...web.httpdate import format_http_date
from ...web.static import answer_preconditions, reject_method

if TYPE_CHECKING:
    from ...web.exchange import Request, Response

__all__ = ["Favicon", "ICON", "ICON_TYPE", "ICON_ETAG", "ICON_MTIME"]

# A white "G" on a teal rounded square, 32x32 RGBA.
ICON = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAYAAABzenr0AAAAiklEQVR42u2XUQ7AIAhDOcEOuKPs8tvfPlzUVVtQYxM/SV8U"
    "EMwSHed1K4/lpDYugnibfyBCAaLMX4jpAGqSAaCiArSIBqA0rwKgBnIA1ypgZDgVwL0PIAA9ybkB1gDoiZeUIRIraURInKQV"
    "0wBaPyPk1mTf8d8nm2MgGWIkW3cq3pvREMtp5Hr+ACEJBKlQP6qOAAAAAElFTkSuQmCC")
ICON_TYPE = "image/png"
ICON_MTIME = 1234567890.0
ICON_ETAG = f'"favi-{len(ICON):x}"'
_HEADERS = (("etag", ICON_ETAG), ("last-modified", format_http_date(ICON_MTIME)))


@handlet("favicon")
class Favicon(Handlet):
    """No properties: put it in a rule such as ``rule $path == "/favicon.ico" { favicon {} }``."""

    def handle(self, req: "Request", resp: "Response") -> bool:
        if reject_method(req, resp) or answer_preconditions(req, resp, ICON_ETAG, ICON_MTIME):
            return True
        resp.headers.extend(_HEADERS)
        resp.send(ICON, ICON_TYPE)
        return True
