"""Bounded caches of things computed before: parsed heads, encoded pairs, balancer scores...

The hot paths remember what repeats (a client's headers, an upstream's head, a server's few
variable names), so each cache must stay bounded whatever the traffic. The policy is the
cheapest one that does: a full cache is emptied and starts a new generation. What is common
now comes back at once; nothing per entry is tracked, so a hit costs one dict lookup.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store ``value`` under ``key`` in ``cache`` of at most ``limit`` entries; return it."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


class Memo(dict, Generic[K, V]):  # type: ignore[type-arg]
    """``memo[key]`` is ``make(key)``, computed on the first miss and remembered (bounded by
    ``limit``) when ``keep(key, value)`` says it is worth it (long values rarely repeat).
    Hits are plain dict lookups in C; only a miss runs Python."""

    __slots__ = ("make", "keep", "limit")

    def __init__(self, make: Callable[[K], V], limit: int, keep: Callable[[K, V], bool] | None = None) -> None:
        super().__init__()
        self.make = make
        self.keep = keep
        self.limit = limit

    def __missing__(self, key: K) -> V:
        value = self.make(key)
        if self.keep is None or self.keep(key, value):
            remember(self, key, value, self.limit)
        return value


__all__ = ["Memo", "remember"]
