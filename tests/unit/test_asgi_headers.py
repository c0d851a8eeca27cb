"""Response headers from an ASGI app: checked (a name must be a token, a value holds no control
character but HTAB, a Content-Length is digits) before they reach the wire, whether the list
was seen before or not, so an app cannot split a response."""

from __future__ import annotations

import pytest

from hemi.web.asgi.headers import response_head

GOOD = [(b"Content-Type", b"application/json"), (b"content-length", b"13"), (b"X-Trace", b"a\tb"),
        (b"date", b"x"), (b"Set-Cookie", b"a=1")]


def test_a_head_is_sorted_into_fields_type_and_length_and_repeats_the_same() -> None:
    fields, ctype, length = response_head(GOOD)
    assert fields == (("x-trace", "a\tb"), ("set-cookie", "a=1"))  # Date is the server's own
    assert (ctype, length) == ("application/json", 13)
    assert response_head(list(GOOD)) == (fields, ctype, length)   # a new list with the same items
    assert response_head(tuple(GOOD)) == (fields, ctype, length)
    assert response_head([[b"x-a", b"1"]]) == ((("x-a", "1"),), None, None)  # list pairs: not cached
    assert response_head(iter([[b"x-a", b"1"]])) == ((("x-a", "1"),), None, None)  # an iterator, read once
    assert response_head([(b"x-b", b"\xe9")]) == ((("x-b", "\xe9"),), None, None)  # obs-text: latin-1


@pytest.mark.parametrize("bad", [
    [(b"X Bad", b"1")],                       # not a token
    [(b"X-A", b"1\r\nX-Injected: 1")],        # response splitting
    [(b"X-A", b"1\n")],
    [(b"X-A", b"\x00")],
    [(b"content-length", b"12a")],
    [(b"content-length", b"-1")],
    [(b"content-length", "\u0661".encode())],  # a digit, but not an ASCII one
    [("x-str", b"1")],                          # names and values are bytes
    [(b"x-str", "1")],
])
def test_a_bad_header_is_refused_every_time(bad: list) -> None:
    for _ in range(2):  # a refused list is never remembered as good
        with pytest.raises(RuntimeError):
            response_head(bad)
        with pytest.raises(RuntimeError):
            response_head([*GOOD[:1], *bad])  # also beside good ones
