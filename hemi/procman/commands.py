"""The command codes and reply flags spoken on the admin channel (cmdui) and between the
leader and its workers. Every admin command is a msgx *call*: the leader always replies, so a
client knows whether its command was taken (Gorox's fire-and-forget tells did not)."""

from __future__ import annotations

# Admin commands: client -> leader.
PING = 1
PIDS = 2
INFO = 3
QUIT = 4
STOP = 5
RECONF = 6
REOPEN = 7
REWORK = 8

ADMIN = {"ping": PING, "pids": PIDS, "info": INFO, "quit": QUIT, "stop": STOP,
         "reconf": RECONF, "reopen": REOPEN, "rework": REWORK}
ALIASES = {"reload": "reconf"}  # Gorox 485636d8 called it reload
NAMES = {code: name for name, code in ADMIN.items()}

# Leader -> worker, on the worker channel (QUIT, REOPEN and PING are shared with the above).
START = 32   # call: build and start the first stage; reply when serving (or why not)
ADOPT = 33   # tell: listening sockets follow as SCM_RIGHTS; args name their keys
STATS = 34   # call: counters, per-server figures and recent errors

# Reply flags (HTTP-like so they read well in logs).
OK = 0
MALFORMED = 400
BAD_TOKEN = 401
UNKNOWN = 404
BUSY = 409
FAILED = 500
UNREACHABLE = 503
