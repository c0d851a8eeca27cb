"""Load balancers: which node of a backend gets the next connection.

Pure: a balancer sees the candidate nodes (already filtered to the available ones that were not
tried yet) and returns one; it opens nothing and never waits. What it needs of a node is
``weight`` (an int > 0), ``in_use`` (connections checked out now) and ``name`` (a stable key,
the same in every worker process, so ipHash sends one client to one node whichever worker
accepts it). Balancers keep their own state; nodes are never modified by them.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random as _random
from itertools import accumulate
from typing import Any, Protocol, Sequence, TypeVar

from ..core.memo import remember


class Weighted(Protocol):
    weight: int
    in_use: int
    name: str


N = TypeVar("N", bound=Weighted)


class Balancer:
    """``pick(candidates, client_ip)`` -> one of ``candidates`` (None only when it is empty)."""

    sign = ""

    def pick(self, candidates: Sequence[N], client_ip: str = "") -> N | None:
        raise NotImplementedError


class RoundRobin(Balancer):
    """Smooth weighted round robin, as nginx does it (ngx_http_upstream_get_peer): each pick,
    every candidate gains its weight; the richest wins and pays the total. Weights 5,1,1 give
    a a b a c a a — spread out, not bunched — and over sum(weights) picks each node is chosen
    exactly ``weight`` times. Works on any subset, so a node that is out simply stops gaining."""

    sign = "roundRobin"

    def __init__(self) -> None:
        self._current: dict[Any, int] = {}

    def pick(self, candidates: Sequence[N], client_ip: str = "") -> N | None:
        if len(candidates) == 1:
            return candidates[0]
        current = self._current
        best: N | None = None
        best_cw = 0
        total = 0
        for node in candidates:
            w = node.weight
            total += w
            cw = current.get(node, 0) + w
            current[node] = cw
            if best is None or cw > best_cw:
                best, best_cw = node, cw
        if best is not None:
            current[best] = best_cw - total
        return best


class IPHash(Balancer):
    """Weighted rendezvous hashing on the client IP: every (ip, node) pair gets a score from a
    stable hash and the best score wins. A client keeps its node while that node is available;
    when a node leaves, only its own clients move (consistent), and they come back when it
    returns. Scores are ``-weight / ln(u)`` with u uniform in (0, 1), which makes each node's
    share proportional to its weight."""

    sign = "ipHash"

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], float] = {}

    def _score(self, ip: str, node: Weighted) -> float:
        key = (ip, node.name)
        score = self._cache.get(key)
        if score is None:
            digest = hashlib.blake2b(f"{ip}|{node.name}".encode(), digest_size=8).digest()
            u = (int.from_bytes(digest, "big") + 1) / (2 ** 64 + 2)  # strictly inside (0, 1)
            score = remember(self._cache, key, -node.weight / math.log(u), 65536)
        return score

    def pick(self, candidates: Sequence[N], client_ip: str = "") -> N | None:
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        return max(candidates, key=lambda n: self._score(client_ip, n))


class Random(Balancer):
    """Weighted random choice."""

    sign = "random"

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._rng = rng or _random.Random()

    def pick(self, candidates: Sequence[N], client_ip: str = "") -> N | None:
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        cum = list(accumulate(n.weight for n in candidates))
        return candidates[bisect.bisect_right(cum, self._rng.random() * cum[-1])]


class LeastUsed(Balancer):
    """The candidate with the fewest connections in use; among equals the heavier weight, and
    among nodes equal in both, the next one after the last pick (so idle nodes share the load
    instead of the first one taking everything)."""

    sign = "leastUsed"

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, candidates: Sequence[N], client_ip: str = "") -> N | None:
        n = len(candidates)
        if n <= 1:
            return candidates[0] if candidates else None
        self._turn += 1
        start = self._turn % n
        best: N | None = None
        for i in range(n):
            node = candidates[(start + i) % n]
            if best is None or node.in_use < best.in_use or (
                    node.in_use == best.in_use and node.weight > best.weight):
                best = node
        return best


BALANCERS: dict[str, type[Balancer]] = {cls.sign: cls for cls in (RoundRobin, IPHash, Random, LeastUsed)}


def make_balancer(sign: str) -> Balancer:
    """A new balancer by its config name; KeyError for an unknown one."""
    return BALANCERS[sign]()
