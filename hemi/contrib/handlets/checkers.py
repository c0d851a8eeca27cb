"""Checker handlets: each looks at a request and either lets it through (``handle`` returns
False, so the next handlet runs) or answers it itself: a redirect (hostnameChecker,
httpsChecker), 403 (accessChecker, refererChecker) or 429 (limitChecker).

The decisions live in small classes with no I/O (:class:`AccessTable`, :class:`RefererMatcher`,
:class:`TokenBuckets`) so they are unit-tested without a server, and so that a request costs a
dict lookup or two rather than any parsing of the configuration.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Iterable

from ...config.tree import LIST, STRING, Value
from ...core.registry import handlet
from ...core.memo import remember
from ...web.handlet import Handlet

if TYPE_CHECKING:
    from ...web.exchange import Request, Response

_DEFAULT_PORTS = {"http": ":80", "https": ":443"}
_BAD_HOST_CHARS = frozenset(" /?#@\\\"'<>\t\r\n\x00")


def _check_host(text: str, *, port_allowed: bool) -> str | None:
    """None when ``text`` is a usable hostname (or host:port), else why not."""
    if not text:
        return "is empty, expected a hostname"
    if any(c in _BAD_HOST_CHARS for c in text):
        return f'is "{text}", expected a hostname{" with an optional :port" if port_allowed else ""} and nothing else'
    host = text
    if text.startswith("["):  # an IPv6 literal keeps its brackets
        end = text.find("]")
        if end < 0:
            return f'is "{text}", an IPv6 literal without its closing "]"'
        host, rest = text[:end + 1], text[end + 1:]
    else:
        host, sep, port = text.partition(":")
        rest = sep + port
    if rest:
        if not port_allowed:
            return f'is "{text}", expected a hostname without a port (the port of the request is kept)'
        if not (rest.startswith(":") and rest[1:].isdigit()):
            return f'is "{text}", expected host or host:port'
    if not host or host == "[]":
        return f'is "{text}", expected a hostname'
    return None


def _redirect(resp: "Response", location: str, permanent: bool) -> bool:
    resp.redirect(location, 301 if permanent else 302)
    return True


def _forbid(resp: "Response") -> bool:
    resp.send_error(403)
    return True


# -- hostnameChecker, httpsChecker ------------------------------------------------------------------
@handlet("hostnameChecker")
class HostnameChecker(Handlet):
    """Send every request for another hostname of the app to its one canonical hostname
    (e.g. ``example.com`` -> ``www.example.com``), keeping scheme, port and URI."""

    def on_configure(self) -> None:
        self.hostname = self.configure_string(
            "hostname", "", required=True, check=lambda v: _check_host(v, port_allowed=False)).lower()
        self.permanent = self.configure_bool("permanent", False)

    def handle(self, req: "Request", resp: "Response") -> bool:
        if req.hostname == self.hostname:
            return False
        port = req.colon_port
        if port == _DEFAULT_PORTS.get(req.scheme):
            port = ""
        return _redirect(resp, f"{req.scheme}://{self.hostname}{port}{req.uri}", self.permanent)


@handlet("httpsChecker")
class HttpsChecker(Handlet):
    """Send plain-HTTP requests to the same URI over HTTPS, on ``.authority`` if set (use it
    when HTTPS is not on port 443), else on the request's hostname and the default port."""

    def on_configure(self) -> None:
        self.authority = self.configure_string(
            "authority", "", check=lambda v: _check_host(v, port_allowed=True) if v else None).lower()
        self.permanent = self.configure_bool("permanent", False)

    def handle(self, req: "Request", resp: "Response") -> bool:
        if req.scheme == "https":
            return False
        host = self.authority or req.hostname
        if not host:  # an HTTP/1.0 request without Host: there is nowhere to send it
            resp.send_error(400, "no Host to redirect to")
            return True
        return _redirect(resp, f"https://{host}{req.uri}", self.permanent)


# -- accessChecker ------------------------------------------------------------------------------------
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_ALL: tuple[Network, ...] = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def parse_access_entry(entry: str) -> tuple[Network, ...]:
    """``all``, an IP address (a /32 or /128) or a CIDR, as networks; ValueError if none of these.
    Host bits after the mask are ignored (``10.1.2.3/8`` is ``10.0.0.0/8``), as in nginx."""
    text = entry.strip()
    if text.lower() == "all":
        return _ALL
    try:
        return (ipaddress.ip_network(text, strict=False),)
    except ValueError:
        raise ValueError(f'holds "{entry}", expected "all", an IP address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32') from None


class AccessTable:
    """Allow/deny decisions by longest prefix: the most specific matching entry wins (an exact
    address is a /32 or /128, ``all`` is a /0); equal specificity denies; no match denies.

    Per IP version, one dict per prefix length maps the masked address to the verdict, so a
    decision is at most one dict lookup per distinct prefix length in the lists.
    """

    CACHE_SIZE = 4096

    def __init__(self, allow: Iterable[Network], deny: Iterable[Network]) -> None:
        tables: dict[int, dict[int, dict[int, bool]]] = {4: {}, 6: {}}
        for verdict, nets in ((True, allow), (False, deny)):  # deny second: it wins a tie
            for net in nets:
                bits = net.max_prefixlen
                key = int(net.network_address) >> (bits - net.prefixlen)
                tables[net.version].setdefault(net.prefixlen, {})[key] = verdict
        self._tables = {version: sorted(by_len.items(), reverse=True) for version, by_len in tables.items()}
        self._cache: dict[str, bool] = {}

    def allows(self, ip: str) -> bool:
        verdict = self._cache.get(ip)
        if verdict is None:
            verdict = remember(self._cache, ip, self._decide(ip), self.CACHE_SIZE)
        return verdict

    def _decide(self, ip: str) -> bool:
        try:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            # Not an IP (a Unix-socket peer): only "all" can speak about it.
            return next((table.get(0, False) for plen, table in self._tables[4] if plen == 0), False)
        if addr.version == 6 and addr.ipv4_mapped is not None:  # a v4 client on a dual-stack socket
            addr = addr.ipv4_mapped
        n, bits = int(addr), addr.max_prefixlen
        for plen, table in self._tables[addr.version]:
            verdict = table.get(n >> (bits - plen))
            if verdict is not None:
                return verdict
        return False


@handlet("accessChecker")
class AccessChecker(Handlet):
    """Allow or deny clients by address (``.allow``/``.deny`` lists of ``all``, IPs and CIDRs);
    a denied client gets 403, an allowed one goes on to the next handlet."""

    def on_configure(self) -> None:
        allow_given = self.has_prop("allow")
        allow = self._networks("allow", ["all"])
        deny = self._networks("deny", [])
        if allow_given:
            seen = {net for _, nets in allow for net in nets}
            for value, nets in deny:
                if any(net in seen for net in nets):
                    self.error(f'.deny holds "{value.data}", which .allow holds too: an entry must be in one list only',
                               value.loc)
        self.table = AccessTable((n for _, nets in allow for n in nets), (n for _, nets in deny for n in nets))

    def _networks(self, name: str, default: list[str]) -> list[tuple[Value, tuple[Network, ...]]]:
        """Each entry of a list property with its parsed networks; problems are located at the entry."""
        self.configure_string_list(name, default)  # type checks and marks the property used
        value = self.configure_value(name)
        if value is None:
            loc = self.block.loc
            items = [Value(STRING, d, loc) for d in default]
        elif value.kind == LIST:
            items = [v for v in value.data if v.kind == STRING]
        elif value.kind == STRING:
            items = [value]
        else:
            return []
        out = []
        for item in items:
            try:
                out.append((item, parse_access_entry(item.data)))
            except ValueError as e:
                self.error(f".{name} {e}", item.loc)
        return out

    def handle(self, req: "Request", resp: "Response") -> bool:
        if self.table.allows(req.client_ip):
            return False
        return _forbid(resp)


# -- refererChecker -----------------------------------------------------------------------------------
class RefererMatcher:
    """Matches a Referer (without its ``http://``/``https://``) against server-name patterns:
    ``example.com``, ``*.example.com`` (any subdomain), ``www.example.*`` (any ending),
    ``~regex`` (searched in the whole Referer after the scheme, case-insensitively); the first
    three may end with a ``/path`` prefix that the Referer's path must start with. Hosts compare
    case-insensitively and the Referer's port is ignored."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.exact: dict[str, list[str]] = {}
        self.suffixes: list[tuple[str, str]] = []
        self.prefixes: list[tuple[str, str]] = []
        self.regexes: list[re.Pattern[str]] = []
        for pattern in patterns:
            self.add(pattern)

    def add(self, pattern: str) -> None:
        """Add one pattern; ValueError says what is wrong with it."""
        if pattern.startswith("~"):
            try:
                self.regexes.append(re.compile(pattern[1:], re.IGNORECASE))
            except re.error as e:
                raise ValueError(f'holds "{pattern}", a bad regular expression: {e}') from None
            return
        slash = pattern.find("/")
        host, path = (pattern, "") if slash < 0 else (pattern[:slash], pattern[slash:])
        host = host.lower()
        if not host:
            raise ValueError(f'holds "{pattern}", expected a server name before the path')
        stars = host.count("*")
        if host.startswith("*.") and stars == 1 and len(host) > 2:
            self.suffixes.append((host[1:], path))
        elif host.endswith(".*") and stars == 1 and len(host) > 2:
            self.prefixes.append((host[:-1], path))
        elif stars:
            raise ValueError(f'holds "{pattern}": a wildcard may only be a leading "*." or a trailing ".*"')
        else:
            self.exact.setdefault(host, []).append(path)

    def matches(self, rest: str) -> bool:
        """``rest`` is the Referer after its scheme: ``host[:port][/path][?query]``."""
        end = len(rest)
        for sep in "/?#":
            i = rest.find(sep)
            if 0 <= i < end:
                end = i
        hostport, path = rest[:end], rest[end:]
        if hostport.startswith("["):
            host = hostport[:hostport.find("]") + 1]
        else:
            host = hostport.partition(":")[0]
        host = host.lower()
        if not path.startswith("/"):
            path = "/" + path
        paths = self.exact.get(host)
        if paths is not None and any(path.startswith(p) for p in paths):
            return True
        for suffix, p in self.suffixes:
            if host.endswith(suffix) and path.startswith(p):
                return True
        for prefix, p in self.prefixes:
            if host.startswith(prefix) and path.startswith(p):
                return True
        return any(rx.search(rest) for rx in self.regexes)


@handlet("refererChecker")
class RefererChecker(Handlet):
    """Let through requests whose Referer names one of ``.serverNames`` (against hotlinking),
    plus requests without a Referer if ``.none`` and with a Referer that is not an http(s) URL
    (stripped by a firewall or proxy) if ``.blocked``; the others get 403."""

    def on_configure(self) -> None:
        patterns = self.configure_string_list("serverNames", required=True, non_empty=True)
        self.allow_none = self.configure_bool("none", False)
        self.allow_blocked = self.configure_bool("blocked", False)
        self.matcher = RefererMatcher(())
        value = self.configure_value("serverNames")
        locs = [v.loc for v in value.data] if value is not None and value.kind == LIST else []
        for i, pattern in enumerate(patterns):
            try:
                self.matcher.add(pattern)
            except ValueError as e:
                self.error(f".serverNames {e}", locs[i] if i < len(locs) else None)

    def allows(self, referer: str | None) -> bool:
        if referer is None:
            return self.allow_none
        lower = referer[:8].lower()
        if lower.startswith("http://"):
            return self.matcher.matches(referer[7:])
        if lower.startswith("https://"):
            return self.matcher.matches(referer[8:])
        return self.allow_blocked

    def handle(self, req: "Request", resp: "Response") -> bool:
        if self.allows(req.header("referer")):
            return False
        return _forbid(resp)


# -- limitChecker -------------------------------------------------------------------------------------
class TokenBuckets:
    """One token bucket per key: ``burst`` tokens at most, refilled at ``rate`` per second; a
    request takes one token. At most ``max_keys`` buckets are kept: a new key evicts the one
    seen least recently (whose bucket is the likeliest to be full anyway)."""

    def __init__(self, rate: float, burst: int, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, last refill]

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """0.0 when the request may go ahead, else the seconds until a token is back."""
        now = self.clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
            bucket = buckets[key] = [float(self.burst), now]
        else:
            buckets.move_to_end(key)
            bucket[0] = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / self.rate


@handlet("limitChecker")
class LimitChecker(Handlet):
    """Rate-limit each client address: ``.rate`` requests a second with bursts of ``.burst``;
    over the limit, 429 with Retry-After. The buckets live in each worker process."""

    def on_configure(self) -> None:
        self.rate = self.configure_int("rate", 10, min=1)
        self.burst = self.configure_int("burst", self.rate, min=1)
        self.max_clients = self.configure_int("maxClients", 100000, min=1)
        self.buckets = TokenBuckets(self.rate, self.burst, self.max_clients)

    def handle(self, req: "Request", resp: "Response") -> bool:
        wait = self.buckets.take(req.client_ip)
        if not wait:
            return False
        resp.add_header("retry-after", str(max(1, math.ceil(wait))))
        resp.send_error(429)
        return True
