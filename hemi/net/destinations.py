"""Allow and deny lists for the destinations of a proxy (socksServer's CONNECT and UDP).

A pattern is a network (``"10.0.0.0/8"``, ``"::1/128"``, or one address ``"127.0.0.1"``), a
host name (``"example.com"``, exact), a domain wildcard (``"*.example.com"``: every name
under it, not the name itself) or ``"*"`` (everything).

Order of judgement, so that a name cannot be used to sneak past an address rule:

1. a name the client asked for that matches a ``deny`` name pattern is refused before any DNS;
2. after resolving, an address in a ``deny`` network is refused (``evil.example`` resolving to
   127.0.0.1 does not get past ``deny 127.0.0.0/8``);
3. with an ``allow`` list, the destination must match it: by its name, or by the address.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Patterns:
    """One list (allow or deny), compiled."""

    __slots__ = ("networks", "names", "suffixes", "everything", "empty")

    def __init__(self, patterns: Iterable[str]) -> None:
        """Raises ValueError naming the first bad pattern."""
        self.networks: list[Network] = []
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        self.everything = False
        for text in patterns:
            p = text.strip().lower()
            if p == "*":
                self.everything = True
                continue
            if p.startswith("*."):
                rest = p[2:]
                if not _is_name(rest):
                    raise ValueError(f'"{text}" is not a domain wildcard like "*.example.com"')
                self.suffixes.append("." + rest)
                continue
            try:
                self.networks.append(ipaddress.ip_network(p.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if "/" in p or not _is_name(p):
                raise ValueError(f'"{text}" is neither a network (CIDR), an address, nor a host name')
            self.names.add(p.rstrip("."))
        self.empty = not (self.networks or self.names or self.suffixes or self.everything)

    def match_name(self, name: str) -> bool:
        if self.everything:
            return True
        name = name.lower().rstrip(".")
        if name in self.names:
            return True
        return any(name.endswith(s) for s in self.suffixes)

    def match_ip(self, ip: str) -> bool:
        if self.everything:
            return True
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        return any(addr in net for net in self.networks)


def _is_name(text: str) -> bool:
    if not text or len(text) > 253:
        return False
    return all(part and len(part) <= 63 and all(c.isalnum() or c in "-_" for c in part)
               for part in text.rstrip(".").split("."))


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


class Destinations:
    """``allow`` and ``deny`` together. An empty allow list allows what deny does not refuse."""

    __slots__ = ("allow", "deny")

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self.allow = Patterns(allow)
        self.deny = Patterns(deny)

    @property
    def open(self) -> bool:
        """No rule at all: every destination is allowed (checks can be skipped)."""
        return self.allow.empty and self.deny.empty

    def name_denied(self, name: str) -> bool:
        """Step 1: refuse a name before resolving it (IP literals are judged by ``usable``)."""
        return not is_ip(name) and self.deny.match_name(name)

    def usable(self, name: str, ips: Iterable[str]) -> list[str]:
        """Steps 1-3 for a destination asked for as ``name`` (a name or an IP literal) that
        resolved to ``ips`` (for a literal, itself): the addresses that may be dialled, in
        order; empty means refused."""
        if self.name_denied(name):
            return []
        out = [ip for ip in ips if not self.deny.match_ip(ip)]
        if self.allow.empty or (not is_ip(name) and self.allow.match_name(name)):
            return out
        return [ip for ip in out if self.allow.match_ip(ip)]


__all__ = ["Destinations", "Patterns", "is_ip"]
