"""The bases of what runs inside an app: handlets answer requests, revisers change responses.

A handlet's ``handle(req, resp)`` returns True when it handled the request (the rule stops) or
False to let the next handlet (then the next matching rule) try. It may be a plain method or a
coroutine: the server runs plain ones inline, with no task per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Protocol

from ..core.component import Component

if TYPE_CHECKING:
    from .app import App
    from .exchange import Request, Response


class Handlet(Component):
    kind = "handlet"
    is_proxy = False

    @property
    def app(self) -> "App":
        comp = self.parent
        while comp is not None and comp.kind != "app":
            comp = comp.parent
        return comp  # type: ignore[return-value]

    def handle(self, req: "Request", resp: "Response") -> bool | Awaitable[bool]:
        raise NotImplementedError


class BodyFilter(Protocol):
    """Changes a response body on its way out; ``end`` flushes what it still holds."""

    def feed(self, data: bytes) -> bytes: ...

    def end(self) -> bytes: ...


class Reviser(Component):
    """Sees every response of the rules it is in, in ``rank`` order, before the head is written.

    ``revise`` may change the status and headers, and may return a :class:`BodyFilter` that
    every body byte then passes through (e.g. gzip); None leaves the body alone.
    """

    kind = "reviser"
    rank = 16

    def revise(self, req: "Request", resp: "Response") -> BodyFilter | None:
        return None

    def revise_request(self, req: "Request") -> None:
        """Called before the handlets run (e.g. to add or remove request headers)."""


class Socklet(Component):
    """Serves the WebSocket upgrades of the rules it is in (see :mod:`hemi.web.socklet`):
    ``serve(req, resp)`` takes the connection (True), or declines (False) so the next
    socklet, then the next matching rule, may."""

    kind = "socklet"

    def serve(self, req: "Request", resp: "Response") -> bool | Awaitable[bool]:
        raise NotImplementedError
