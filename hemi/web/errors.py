"""How a handler or the server says "answer with this status": raise :class:`HTTPError`."""

from __future__ import annotations

from html import escape

from .http1.codec import REASONS


class HTTPError(Exception):
    """Answer ``status``; ``close`` asks the connection to close after it (bad framing, limits)."""

    def __init__(self, status: int, reason: str = "", *, close: bool = False,
                 headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.reason = reason
        self.close = close
        self.headers = headers or []
        super().__init__(f"{status} {reason}".strip())


def reason_of(status: int) -> str:
    return REASONS.get(status, b"Unknown").decode("latin-1")


def error_page(status: int, detail: str = "") -> bytes:
    """A small HTML page for an error status. ``detail`` is shown escaped (never raw input)."""
    reason = reason_of(status)
    extra = f"<p>{escape(detail)}</p>" if detail else ""
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{status} {reason}</title></head>"
            f"<body><h1>{status} {reason}</h1>{extra}<hr><p>Powered by Gorox</p></body></html>").encode()
