"""The ``resolv`` fixture: asynchronous name resolution with a TTL cache, shared by every
backend, outgate and forward proxy of a stage, so a busy proxy does not ask the resolver for
the same name on every connection."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

from .component import Component
from .registry import fixture


@fixture("resolv")
class Resolv(Component):
    def on_configure(self) -> None:
        self.ttl = self.configure_duration("cacheTimeout", 60.0, min=0.0)
        self.max_entries = self.configure_int("maxEntries", 10000, min=1)
        self._cache: dict[tuple[str, int, int], tuple[float, list[tuple[int, str]]]] = {}
        self._inflight: dict[tuple[str, int, int], asyncio.Future] = {}

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_UNSPEC) -> list[tuple[int, str]]:
        """Addresses of ``host`` as (family, ip) pairs; IP literals are returned at once.
        Concurrent lookups of one name share a single query. Raises OSError on failure."""
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
            return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, str(ip))]
        except ValueError:
            pass
        key = (host.lower(), port, family)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._inflight[key] = future
        try:
            infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
            result = list(dict.fromkeys((fam, sockaddr[0]) for fam, _, _, _, sockaddr in infos))
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key] = (now + self.ttl, result)
            future.set_result(result)
            return result
        except BaseException as e:
            future.set_exception(e if isinstance(e, Exception) else OSError(str(e)))
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key]

    def cached(self) -> int:
        return len(self._cache)
