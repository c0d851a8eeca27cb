"""The upstream request line of http1Proxy: rendered once per (method, target, Host)."""

from __future__ import annotations

from hemi.web.proxy.http1 import _upstream_line


def test_an_upstream_line_is_rendered_and_remembered() -> None:
    key = ("GET", "/a/b?c=1", "up.example:8080")
    assert _upstream_line(key) == b"GET /a/b?c=1 HTTP/1.1\r\nhost: up.example:8080\r\n"
    assert key in _upstream_line.__self__  # type: ignore[attr-defined]
    other = ("DELETE", "/a/b?c=1", "up.example:8080")
    assert _upstream_line(other) == b"DELETE /a/b?c=1 HTTP/1.1\r\nhost: up.example:8080\r\n"


def test_a_long_target_is_rendered_every_time_and_not_kept() -> None:
    key = ("GET", "/" + "x" * 300, "up")
    assert _upstream_line(key) == b"GET /" + b"x" * 300 + b" HTTP/1.1\r\nhost: up\r\n"
    assert key not in _upstream_line.__self__  # type: ignore[attr-defined]
