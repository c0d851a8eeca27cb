"""Running in the background: ``-daemon`` re-executes gorox in a new session with stdin on
/dev/null and stdout/stderr appended to ``<logs>/gorox.out`` and ``.err``, then waits until the
leader says it serves (or why it cannot), so ``gorox -daemon`` exits 0 only when serving.

Also the files a running leader leaves under ``data/var``: the pid file and the address of its
admin channel (so ``gorox ACTION -base DIR`` finds a leader started with ``-cmdui host:0``).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from ..core.stage import Dirs

ENV = "_GOROX_DAEMON_"
READY_TIMEOUT = 60.0


def stdio_paths(dirs: Dirs, program: str) -> tuple[str, str]:
    return os.path.join(dirs.logs, f"{program}.out"), os.path.join(dirs.logs, f"{program}.err")


def detach(argv: list[str], dirs: Dirs, program: str, env: dict[str, str]) -> int:
    """Start the leader in the background and report whether it came up."""
    out_path, err_path = stdio_paths(dirs, program)
    dirs.create()
    r, w = os.pipe()
    with open(out_path, "ab") as out, open(err_path, "ab") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=(w,),
                                env={**env, ENV: str(w)}, start_new_session=True)
    os.close(w)
    message = _read_all(r, READY_TIMEOUT)
    os.close(r)
    if message.startswith("ok"):
        print(f"{program}: leader {proc.pid} serving in the background; output in {out_path} and {err_path}")
        return 0
    if proc.poll() is None and not message:
        print(f"{program}: the leader (pid {proc.pid}) did not report ready in {READY_TIMEOUT:.0f}s; "
              f"see {err_path}", file=sys.stderr)
        return 1
    reason = message.strip().removeprefix("error: ") or f"see {err_path}"
    print(f"{program}: the leader could not start: {reason}", file=sys.stderr)
    return 1


def _read_all(fd: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


class Readiness:
    """The leader's side of the pipe (a no-op when not started by ``detach``)."""

    def __init__(self) -> None:
        fd = os.environ.pop(ENV, "")
        self.fd = int(fd) if fd.isdigit() else -1
        self.daemon = self.fd >= 0
        if self.daemon:
            os.set_inheritable(self.fd, False)

    def report(self, message: str) -> None:
        if self.fd < 0:
            return
        try:
            os.write(self.fd, message.encode("utf-8", "replace"))
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1


def reopen_stdio(out_path: str, err_path: str) -> int:
    """Point stdout/stderr at fresh files (logrotate moved the old ones away)."""
    count = 0
    for path, target in ((out_path, 1), (err_path, 2)):
        if not path:
            continue
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            continue
        sys.stdout.flush() if target == 1 else sys.stderr.flush()
        os.dup2(fd, target)
        os.close(fd)
        count += 1
    return count


class RunFiles:
    """``<vars>/<program>.pid`` and ``<vars>/<program>.cmdui`` of the running leader."""

    def __init__(self, dirs: Dirs, program: str) -> None:
        self.pid_path = os.path.join(dirs.vars, f"{program}.pid")
        self.addr_path = os.path.join(dirs.vars, f"{program}.cmdui")

    def running_pid(self) -> int | None:
        """The pid of a live leader recorded here, if any (a stale file is ignored)."""
        try:
            pid = int(open(self.pid_path).read().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            return pid
        return pid if b"gorox" in cmdline else None

    def write(self, cmdui: str) -> None:
        _write_atomic(self.addr_path, cmdui + "\n")
        _write_atomic(self.pid_path, f"{os.getpid()}\n")

    def remove(self) -> None:
        """Remove both files, if they are still ours (a newer leader may have replaced them)."""
        try:
            mine = open(self.pid_path).read().strip() == str(os.getpid())
        except OSError:
            mine = False
        if mine:
            for path in (self.pid_path, self.addr_path):
                try:
                    os.unlink(path)
                except OSError:
                    pass


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
