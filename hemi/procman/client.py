"""``gorox ACTION``: send one command to the running leader and print its reply.

The leader is found at ``-cmdui ADDR`` if given, else at the address the leader running with
this base directory wrote in ``<vars>/gorox.cmdui`` (so ``-base DIR`` is enough; there is no
blind fallback to the default address, which may be another leader's). The token is read from
``<vars>/gorox.token``. Exit status: 0 when the leader did it, 1 otherwise.
"""

from __future__ import annotations

import json
import socket
import sys

from ..core.stage import Dirs
from ..net.address import parse_address
from . import commands as C
from . import msgx
from .daemon import RunFiles
from .msgx import Message
from .token import read_token, token_path

TIMEOUT = 180.0  # a reconf waits for every worker to build its new stage
MAX_REPLY = 16 << 20


def find_leader(dirs: Dirs, program: str, cmdui: str | None) -> str | None:
    """``-cmdui`` if given, else the address the leader running with this base wrote."""
    if cmdui:
        return cmdui
    try:
        with open(RunFiles(dirs, program).addr_path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def call(address: str, token: str, name: str, timeout: float = TIMEOUT) -> Message:
    """One call to the leader (OSError if it cannot be reached, MsgxError on a bad reply)."""
    addr = parse_address(address, default_host="127.0.0.1")
    with socket.create_connection((addr.host, addr.port), timeout=timeout) as sock:
        sock.sendall(msgx.encode(Message(C.ADMIN[name], args={"token": token})))
        head = _recv_exactly(sock, msgx.HEADER.size)
        comd, nargs, flag, is_call, size = msgx.parse_header(head, MAX_REPLY)
        return msgx.decode_body(comd, nargs, flag, is_call, _recv_exactly(sock, size))


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise msgx.MsgxError("the leader closed the connection before replying")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def main(action: str, dirs: Dirs, *, program: str, cmdui: str | None, as_json: bool = False) -> int:
    name = C.ALIASES.get(action, action)
    address = find_leader(dirs, program, cmdui)
    if address is None:
        print(f"{program}: no leader answers for base {dirs.base}: it has no {RunFiles(dirs, program).addr_path} "
              f"(give -cmdui ADDR to reach a leader elsewhere)", file=sys.stderr)
        return 1
    path = token_path(dirs, program)
    try:
        token = read_token(path)
    except OSError as e:
        print(f"{program}: cannot read the admin token {path}: {e.strerror}; "
              f"is a leader running with -base {dirs.base}?", file=sys.stderr)
        return 1
    try:
        reply = call(address, token, name)
    except OSError as e:
        print(f"{program}: no leader answers at {address}: {e}", file=sys.stderr)
        return 1
    except msgx.MsgxError as e:
        print(f"{program}: bad reply from the leader at {address}: {e}", file=sys.stderr)
        return 1
    if reply.flag != C.OK:
        print(f"{program}: {action}: {reply.get('error') or 'failed with flag %d' % reply.flag}", file=sys.stderr)
        return 1
    if as_json and "json" in reply.args:
        print(json.dumps(json.loads(reply.args["json"]), indent=2))
        return 0
    for key, value in reply.args.items():
        if key != "json":
            print(f"{key}: {value}")
    return 0
