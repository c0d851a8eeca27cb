"""Listening and dialing addresses as written in configs: ``"host:port"``, ``":port"``,
``"[::1]:port"``, and unix-domain socket paths (anything starting with ``/`` or ``@``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Address:
    host: str          # "" = all interfaces; no brackets for IPv6
    port: int          # 0 for unix sockets
    path: str | None = None  # unix socket path

    @property
    def colon_port(self) -> str:
        """":8080" — what Gorox calls colonPort (taken from the *last* colon, so IPv6 works)."""
        return f":{self.port}" if self.path is None else ""

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text: str, *, default_host: str = "") -> Address:
    """Parse a config address; raise ValueError with a message fit for a config error."""
    text = text.strip()
    if not text:
        raise ValueError("is empty, expected host:port or a unix socket path")
    if text.startswith(("/", "@", "./", "unix:")):
        path = text[5:] if text.startswith("unix:") else text
        return Address("", 0, path)
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1:].startswith(":"):
            raise ValueError(f'"{text}" is not [ipv6]:port')
        host, port_text = text[1:end], text[end + 2:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f'"{text}" has no port, expected host:port such as ":8080" or "127.0.0.1:8080"')
        if ":" in host:
            raise ValueError(f'"{text}" looks like IPv6 without brackets, expected [addr]:port')
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f'"{text}" has a bad port, expected 0..65535')
    return Address(host or default_host, int(port_text))
