"""Helpers shared by the CGI-style codec tests (FastCGI and uwsgi): both parse a response head
(CGI or HTTP) that may arrive cut anywhere."""

from __future__ import annotations

from typing import Callable, Protocol


class HeadParser(Protocol):
    def feed(self, data: bytes) -> object: ...


def feed_head_in_pieces(parser: HeadParser, raw: bytes, cuts: list[int], error: type[Exception]) -> tuple | str | None:
    """Feed ``raw`` to a head parser cut at ``cuts``. Returns "error" when it raised ``error``
    (with a reason), None when no head was complete, else (status, reason, headers, every byte
    after the head), having checked what any parsed head must hold."""
    last = 0
    body = b""
    head = None
    try:
        for c in sorted(cuts) + [len(raw)]:
            piece = raw[last:c]
            last = c
            if head is None:
                head = parser.feed(piece)
            else:
                body += piece
    except error as e:
        assert e.reason  # type: ignore[attr-defined]
        return "error"
    if head is None:
        return None
    assert 100 <= head.status <= 599  # type: ignore[attr-defined]
    for name, value in head.headers:  # type: ignore[attr-defined]
        assert name == name.lower() and name and value == value.strip(" \t")
    return head.status, head.reason, head.headers, head.rest + body  # type: ignore[attr-defined]


def assert_cut_anywhere_same(make_parser: Callable[[], HeadParser], raw: bytes, cuts: list[int],
                             error: type[Exception]) -> None:
    """Parsing ``raw`` cut at ``cuts`` gives what parsing it whole gives."""
    assert feed_head_in_pieces(make_parser(), raw, cuts, error) == feed_head_in_pieces(make_parser(), raw, [], error)


def assert_same_head_at_every_cut(make_parser: Callable[[], HeadParser], raw: bytes, head: tuple) -> None:
    """Fed in two pieces, cut at every offset, ``raw`` gives ``head`` (a ResponseHead) again; when
    the first piece already held the head, what follows it is the rest of the first piece plus
    the second."""
    for cut in range(len(raw) + 1):
        p = make_parser()
        first = p.feed(raw[:cut])
        if first is None:
            second = p.feed(raw[cut:])
            assert second is not None and second == head
        else:
            assert first[:3] == head[:3] and first.rest + raw[cut:] == head[3]  # type: ignore[attr-defined]


def feed_byte_by_byte(make_parser: Callable[[], HeadParser], raw: bytes) -> object:
    """Feed ``raw`` one byte at a time: no head before the last byte; returns what the last gives."""
    p = make_parser()
    for i in range(len(raw) - 1):
        assert p.feed(raw[i:i + 1]) is None
    return p.feed(raw[-1:])


__all__ = ["assert_cut_anywhere_same", "assert_same_head_at_every_cut", "feed_byte_by_byte", "feed_head_in_pieces"]
