"""The admin channel (cmdui): msgx calls over TCP on a loopback address, one reply per call.

Every call carries the ``token`` argument (``<vars>/gorox.token``). A wrong or missing token,
an unknown command or a malformed message gets a reply saying so, with flag 401, 404 or 400;
the connection is then closed, and the leader carries on. A connection may carry several calls,
one after the other; it is closed after 10 s of silence (and a reply not taken in 10 s is
dropped).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import TYPE_CHECKING

from ..net.address import parse_address
from . import commands as C
from . import msgx
from .msgx import Message
from .token import token_matches

if TYPE_CHECKING:
    from .leader import Leader

log = logging.getLogger("hemi.procman")

READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
MAX_REQUEST = 64 << 10


class CmdUI:
    def __init__(self, leader: "Leader", token: str) -> None:
        self.leader = leader
        self.token = token
        self.server: asyncio.AbstractServer | None = None

    async def start(self, address: str) -> str:
        """Listen on ``address`` (``host:port``); returns the bound address (port 0 picks one)."""
        addr = parse_address(address, default_host="127.0.0.1")
        if addr.path is not None:
            raise ValueError("expected host:port")
        try:
            if not ipaddress.ip_address(addr.host).is_loopback:
                log.warning("the admin channel listens on %s, which is not a loopback address", address)
        except ValueError:
            pass
        self.server = await asyncio.start_server(self._serve, addr.host, addr.port, reuse_address=True)
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    msg = await asyncio.wait_for(msgx.read_message(reader, MAX_REQUEST), READ_TIMEOUT)
                except msgx.MsgxError as e:
                    log.warning("cmdui: malformed message from %s: %s", _peer(writer), e)
                    await _send(writer, Message(0, C.MALFORMED, {"error": f"malformed message: {e}"}, call=False))
                    return
                except (asyncio.TimeoutError, ConnectionError):
                    return
                if msg is None:
                    return
                reply = await self.handle(msg, _peer(writer))
                await _send(writer, reply)
                if reply.flag in (C.MALFORMED, C.BAD_TOKEN):
                    return
        finally:
            writer.close()

    async def handle(self, msg: Message, peer: str = "") -> Message:
        def answer(flag: int, args: dict[str, str]) -> Message:
            return Message(msg.comd, flag, args, call=False)

        given = msg.args.get("token")
        if given is None:
            log.warning("cmdui: a command without a token from %s", peer)
            return answer(C.BAD_TOKEN, {"error": "missing token"})
        if not token_matches(given, self.token):
            log.warning("cmdui: a command with a wrong token from %s", peer)
            return answer(C.BAD_TOKEN, {"error": "wrong token"})
        name = C.NAMES.get(msg.comd)
        if name is None:
            return answer(C.UNKNOWN, {"error": f"unknown command {msg.comd}"})
        try:
            flag, args = await self.leader.command(name)
        except Exception as e:  # a bug must not take the admin channel down
            log.exception("cmdui: %s failed", name)
            flag, args = C.FAILED, {"error": f"{name} failed: {e}"}
        return answer(flag, args)


async def _send(writer: asyncio.StreamWriter, msg: Message) -> None:
    try:
        writer.write(msgx.encode(msg))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
    except (ConnectionError, asyncio.TimeoutError):
        pass


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
