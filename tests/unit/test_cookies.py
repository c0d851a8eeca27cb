"""Tests for hemi.web.cookies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hemi.web.cookies import parse_cookie_header, render_set_cookie


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", []),
        ("a=1", [("a", "1")]),
        ("a=1; b=2", [("a", "1"), ("b", "2")]),
        ("a=1;b=2", [("a", "1"), ("b", "2")]),
        ("  a = 1 ;\tb=2  ", [("a", "1"), ("b", "2")]),
        ("a=1; a=2", [("a", "1"), ("a", "2")]),  # duplicates kept, in order
        ('a="quoted"', [("a", "quoted")]),
        ('a=""', [("a", "")]),
        ('a="', [("a", '"')]),  # a lone quote is not a quoted value
        ('a="x', [("a", '"x')]),
        ("a=", [("a", "")]),
        ("a==b", [("a", "=b")]),
        ("a=x=y; b", [("a", "x=y")]),  # no '=' -> skipped
        ("novalue; a=1", [("a", "1")]),
        ("=1; a=1", [("a", "1")]),  # empty name
        ("a b=1; c=2", [("c", "2")]),  # name not a token
        ("a,b=1; c=2", [("c", "2")]),
        ("é=1; c=2", [("c", "2")]),
        ("a=x\x00y; c=2", [("c", "2")]),  # control characters
        ("a=x\ty; c=2", [("c", "2")]),
        ("a=x\x7f; c=2", [("c", "2")]),
        ("a=hello world, yes", [("a", "hello world, yes")]),  # lenient value
        ("a=é", [("a", "é")]),
        ("a=1;;;; ;b=2;", [("a", "1"), ("b", "2")]),
        ("__Host-id=abc; __Secure-x=y", [("__Host-id", "abc"), ("__Secure-x", "y")]),
        ("a=%20+", [("a", "%20+")]),  # no decoding
    ],
)
def test_parse_cookie_header(value: str, expected: list[tuple[str, str]]) -> None:
    assert parse_cookie_header(value) == expected


@given(st.text(max_size=100))
def test_parse_cookie_header_never_raises(value: str) -> None:
    for name, val in parse_cookie_header(value):
        assert name and ";" not in name and ";" not in val and "=" not in name


def test_parse_cookie_header_non_str() -> None:
    assert parse_cookie_header(None) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (("a", "1"), {}, "a=1"),
        (("a", ""), {}, "a="),
        (("a", '"quoted"'), {}, 'a="quoted"'),
        (("a", '""'), {}, 'a=""'),
        (("sid", "abc"), {"path": "/", "http_only": True, "secure": True, "same_site": "lax"},
         "sid=abc; Path=/; HttpOnly; Secure; SameSite=Lax"),
        (("a", "1"), {"domain": "example.com", "max_age": 3600}, "a=1; Domain=example.com; Max-Age=3600"),
        (("a", "1"), {"max_age": 0}, "a=1; Max-Age=0"),
        (("a", "1"), {"max_age": -5}, "a=1; Max-Age=0"),
        (("a", "1"), {"expires": 784111777.5}, "a=1; Expires=Sun, 06 Nov 1994 08:49:37 GMT"),
        (("a", "1"), {"expires": 0, "max_age": -1}, "a=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0"),
        (("a", "1"), {"same_site": "Strict"}, "a=1; SameSite=Strict"),
        (("a", "1"), {"same_site": "NONE", "secure": True}, "a=1; Secure; SameSite=None"),
        (("a", "b64+/=_-.!~*'()"), {}, "a=b64+/=_-.!~*'()"),
        (("a", "1"), {"path": "/a b/é"}, "a=1; Path=/a b/é"),
    ],
)
def test_render_set_cookie(args: tuple[str, str], kwargs: dict[str, object], expected: str) -> None:
    assert render_set_cookie(*args, **kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("", "1"), {}),
        (("a b", "1"), {}),
        (("a;b", "1"), {}),
        (("a=b", "1"), {}),
        (("a\r\nSet-Cookie: x", "1"), {}),
        (("é", "1"), {}),
        (("a", "1;admin=1"), {}),  # attribute injection
        (("a", "1\r\nX-Evil: 1"), {}),  # header injection
        (("a", "has space"), {}),
        (("a", "comma,"), {}),
        (("a", 'quote"inside'), {}),
        (("a", '"unbalanced'), {}),
        (("a", "back\\slash"), {}),
        (("a", "é"), {}),
        (("a", "\x00"), {}),
        (("a", "1"), {"path": "/; Domain=evil.com"}),
        (("a", "1"), {"path": "/\r\n"}),
        (("a", "1"), {"domain": "evil.com; Secure"}),
        (("a", "1"), {"domain": "x\x7f"}),
        (("a", "1"), {"same_site": "Sometimes"}),
        (("a", "1"), {"same_site": ""}),
        (("a", "1"), {"expires": float("inf")}),
    ],
)
def test_render_set_cookie_rejects(args: tuple[str, str], kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        render_set_cookie(*args, **kwargs)  # type: ignore[arg-type]


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~", min_size=1, max_size=20),
    st.text(alphabet=[chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\'], max_size=40),
)
def test_render_then_parse_round_trip(name: str, value: str) -> None:
    header = render_set_cookie(name, value, path="/", http_only=True)
    pair = header.split(";", 1)[0]
    assert parse_cookie_header(pair) == [(name, value)]
