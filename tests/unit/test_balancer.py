"""Balancers are pure: feed them candidate nodes, count the picks."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest

from hemi.net.balancer import BALANCERS, IPHash, LeastUsed, Random, RoundRobin, make_balancer


@dataclass(eq=False)
class N:
    name: str
    weight: int = 1
    in_use: int = 0


def picks(balancer, nodes, n, ip=""):  # type: ignore[no-untyped-def]
    return Counter(balancer.pick(nodes, ip).name for _ in range(n))


def test_registry_names() -> None:
    assert set(BALANCERS) == {"roundRobin", "ipHash", "random", "leastUsed"}
    assert isinstance(make_balancer("roundRobin"), RoundRobin)
    with pytest.raises(KeyError):
        make_balancer("nope")


@pytest.mark.parametrize("cls", [RoundRobin, IPHash, Random, LeastUsed])
def test_empty_and_single(cls) -> None:  # type: ignore[no-untyped-def]
    b = cls()
    assert b.pick([], "1.2.3.4") is None
    only = N("a", 3)
    assert all(b.pick([only], "1.2.3.4") is only for _ in range(5))


def test_round_robin_is_exact_and_smooth() -> None:
    nodes = [N("a", 5), N("b", 1), N("c", 1)]
    rr = RoundRobin()
    seq = "".join(rr.pick(nodes).name for _ in range(7))
    assert seq == "aabacaa"  # nginx's example: spread out, not aaaaabc
    assert picks(rr, nodes, 700) == {"a": 500, "b": 100, "c": 100}


def test_round_robin_unweighted_rotates() -> None:
    nodes = [N("a"), N("b"), N("c")]
    rr = RoundRobin()
    assert "".join(rr.pick(nodes).name for _ in range(6)) == "abcabc"


def test_round_robin_over_a_subset() -> None:
    a, b, c = N("a", 2), N("b", 1), N("c", 1)
    rr = RoundRobin()
    assert picks(rr, [a, b, c], 400) == {"a": 200, "b": 100, "c": 100}
    # b is out: the others keep their ratio, exactly, over every full cycle
    assert picks(rr, [a, c], 300) == {"a": 200, "c": 100}


def test_random_follows_weights() -> None:
    nodes = [N("a", 3), N("b", 1)]
    b = Random(random.Random(7))
    got = picks(b, nodes, 4000)
    assert abs(got["a"] / 4000 - 0.75) < 0.03


def test_ip_hash_is_stable_and_weighted() -> None:
    nodes = [N("a", 1), N("b", 1), N("c", 2)]
    h = IPHash()
    ips = [f"10.0.{i // 256}.{i % 256}" for i in range(4000)]
    first = {ip: h.pick(nodes, ip).name for ip in ips}
    again = IPHash()  # a fresh instance (another worker process) agrees
    assert all(again.pick(nodes, ip).name == name for ip, name in first.items())
    share = Counter(first.values())
    assert abs(share["c"] / 4000 - 0.5) < 0.04
    assert abs(share["a"] / 4000 - 0.25) < 0.04


def test_ip_hash_is_consistent_when_a_node_leaves() -> None:
    a, b, c = N("a"), N("b"), N("c")
    h = IPHash()
    ips = [f"192.168.{i // 256}.{i % 256}" for i in range(2000)]
    before = {ip: h.pick([a, b, c], ip) for ip in ips}
    after = {ip: h.pick([a, c], ip) for ip in ips}
    for ip in ips:
        if before[ip] is not b:
            assert after[ip] is before[ip]  # only b's clients move
    back = {ip: h.pick([a, b, c], ip) for ip in ips}
    assert back == before


def test_least_used_prefers_idle_then_heavier() -> None:
    a, b, c = N("a", 1, 3), N("b", 1, 1), N("c", 2, 1)
    lu = LeastUsed()
    assert lu.pick([a, b, c]) is c  # b and c have one each; c weighs more
    c.in_use = 5
    assert lu.pick([a, b, c]) is b


def test_least_used_shares_among_equals() -> None:
    nodes = [N("a"), N("b"), N("c")]
    assert picks(LeastUsed(), nodes, 300) == {"a": 100, "b": 100, "c": 100}
