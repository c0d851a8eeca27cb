"""The ``headReviser``: adds and removes request headers (before the handlets run) and response
headers (before the head is written).

    headReviser {
        .delRequest = ("x-forwarded-for")
        .addRequest = ["x-from": "gorox"]
        .delResponse = ("x-powered-by")
        .addResponse = ["x-frame-options": "DENY"]
    }

Deletions run before additions, so deleting and adding one name replaces it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ...core.registry import reviser
from ...web.handlet import BodyFilter, Reviser

if TYPE_CHECKING:
    from ...web.exchange import Request, Response

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers the connection writes from the framing it chooses, or on its own (date, server):
# a reviser cannot meaningfully add or remove them.
_FRAMING = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"))
_CONN_OWNED = frozenset(("date", "server"))


@reviser("headReviser")
class HeadReviser(Reviser):
    rank = 29

    def on_configure(self) -> None:
        self.add_request = self._header_dict("addRequest", response=False)
        self.del_request = self._header_names("delRequest", response=False)
        self.add_response = self._header_dict("addResponse", response=True)
        self.del_response = self._header_names("delResponse", response=True)

    def _problem(self, name: str, response: bool) -> str | None:
        if not _TOKEN.fullmatch(name):
            return f'names "{name}", which is not a valid header name'
        lower = name.lower()
        if lower in _FRAMING:
            return f'names "{name}", a header the server sets from the message framing'
        if response and lower in _CONN_OWNED:
            return f'names "{name}", a header the connection writes itself (see the server\'s .serverName)'
        return None

    def _header_names(self, prop: str, *, response: bool) -> list[str]:
        names = self.configure_string_list(prop, [], check=lambda ns: next(
            (p for p in (self._problem(n, response) for n in ns) if p), None))
        return [n.lower() for n in names]

    def _header_dict(self, prop: str, *, response: bool) -> list[tuple[str, str]]:
        def check(d: dict[str, str]) -> str | None:
            for name, value in d.items():
                problem = self._problem(name, response)
                if problem:
                    return problem
                if any(c in value for c in "\r\n\x00"):
                    return f'gives "{name}" a value with a control character'
            return None

        return [(k.lower(), v) for k, v in self.configure_string_dict(prop, {}, check=check).items()]

    def revise_request(self, req: "Request") -> None:
        for name in self.del_request:
            req.del_header(name)
        for name, value in self.add_request:
            req.add_header(name, value)

    def revise(self, req: "Request", resp: "Response") -> BodyFilter | None:
        for name in self.del_response:
            resp.del_header(name)
        for name, value in self.add_response:
            resp.add_header(name, value)
        return None
