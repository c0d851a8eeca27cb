"""Which listening sockets a config needs, and how the leader hands them to a worker.

A socket is named by its key ``(str(address), gate index)``, the key of
``hemi.net.gate.ListenerPool``. The leader binds each key once; workers adopt the sockets (over
the channel, as SCM_RIGHTS) and their gates accept from them without ever binding.
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING, Iterable

from ..net.address import Address
from ..net.gate import Key, listeners
from . import commands as C
from .channel import MAX_FDS
from .msgx import Message

if TYPE_CHECKING:
    from ..core.stage import Stage
    from .channel import Channel


def listen_addresses(stage: "Stage") -> list[tuple[Address, int]]:
    """Every (address, gate index) the servers and meshers of a configured stage listen on.
    A component may say so itself with a ``listen_keys()`` method (one that listens on
    something other than ``.address`` x ``.numGates``)."""
    out: list[tuple[Address, int]] = []
    for kind in ("mesher", "server"):
        for comp in stage.by_kind[kind].values():
            custom = getattr(comp, "listen_keys", None)
            if callable(custom):
                out += custom()
                continue
            addr = getattr(comp, "address", None)
            if isinstance(addr, Address):
                out += [(addr, i) for i in range(int(getattr(comp, "num_gates", 1) or 1))]
    return out


def bind_all(stage: "Stage") -> dict[Key, socket.socket]:
    """Bind (or find) and pin every socket the stage needs in this process's pool."""
    return {(str(addr), i): listeners.pin(addr, i) for addr, i in listen_addresses(stage)}


def encode_keys(keys: Iterable[Key]) -> str:
    return json.dumps([[a, i] for a, i in keys])


def decode_keys(text: str) -> set[Key]:
    return {(str(a), int(i)) for a, i in json.loads(text or "[]")}


async def hand_over(channel: "Channel", socks: dict[Key, socket.socket]) -> None:
    """Send the sockets as ADOPT tells (several if there are more than one record can carry)."""
    items = list(socks.items())
    for start in range(0, len(items), MAX_FDS):
        chunk = items[start:start + MAX_FDS]
        await channel.tell(Message(C.ADOPT, args={"keys": encode_keys(k for k, _ in chunk)}), [s for _, s in chunk])


def adopt(args: dict[str, str], socks: list[socket.socket]) -> None:
    """Worker side of ``hand_over``: seed this process's pool."""
    keys = json.loads(args.get("keys", "[]"))
    if len(keys) != len(socks):
        for s in socks:
            s.close()
        raise ValueError(f"ADOPT names {len(keys)} sockets but carries {len(socks)}")
    for (addr, index), sock in zip(keys, socks):
        listeners.adopt((str(addr), int(index)), sock)
