"""``accessDealer``: let a client through to the next dealer, or close its connection, by its
address (``$srcHost``, the real client's after a PROXY protocol header).

    accessDealer { .allow = ("127.0.0.0/8", "10.0.0.0/8") .deny = ("10.9.0.0/16") }
    tcpsProxy { .toBackend = "db" }

A client is denied when it is in a ``.deny`` network, or when ``.allow`` is set and it is in
none of its networks; otherwise it passes (``deal`` returns False and the next dealer runs).
Unix-socket clients have no address: they pass only when ``.allow`` is empty.
"""

from __future__ import annotations

import ipaddress
from typing import Union

from ...core.registry import dealer
from ...net.mesher import Dealer, MeshConn

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def parse_networks(items: list[str]) -> list[Network]:
    """CIDR blocks (or single addresses); ValueError names the bad item."""
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f'holds "{item}", expected an address or a CIDR block such as "10.0.0.0/8"') from None
    return out


@dealer("accessDealer")
class AccessDealer(Dealer):
    def on_configure(self) -> None:
        self.allow: list[Network] = []
        self.deny: list[Network] = []
        for name, target in (("allow", self.allow), ("deny", self.deny)):
            items = self.configure_string_list(name)
            try:
                target.extend(parse_networks(items))
            except ValueError as e:
                self.error(f".{name} {e}", self.block.prop_locs.get(name))
        if not self.allow and not self.deny:
            self.error("has neither .allow nor .deny: it would let every client through")
        self._cache: dict[str, bool] = {}

    def allowed(self, host: str) -> bool:
        verdict = self._cache.get(host)
        if verdict is None:
            verdict = self._decide(host)
            if len(self._cache) < 65536:
                self._cache[host] = verdict
        return verdict

    def _decide(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return not self.allow
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.deny if net.version == ip.version):
            return False
        return not self.allow or any(ip in net for net in self.allow if net.version == ip.version)

    def deal(self, conn: MeshConn) -> bool:
        if self.allowed(conn.src_host):
            return False
        conn.close(f"denied by accessDealer \"{self.name}\"")
        return True
