"""A sans-IO, incremental reader of the commands a Redis client sends (RESP2/RESP3 requests).

Clients send each command as an array of bulk strings (``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``)
or, typed by hand, as an inline line (``PING\\r\\n``). ``RespReader.feed(bytes)`` returns the
commands completed by those bytes; it never holds a whole value in memory: each argument is
kept up to ``keep`` bytes (the rest is counted and skipped), so a 100 MB ``SET`` costs the same
as a small one. Malformed input raises :class:`RespError`; the reader is then unusable (a
viewer stops looking, the bytes still flow).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE = 64 << 10        # an inline command or a length line longer than this is an error
MAX_ARGS = 1 << 20


class RespError(Exception):
    """Not a RESP request stream."""


@dataclass(frozen=True, slots=True)
class RespCommand:
    args: tuple[bytes, ...]       # each cut to ``keep`` bytes
    sizes: tuple[int, ...]        # the real size of each argument

    @property
    def name(self) -> str:
        return self.args[0].decode("latin-1").upper() if self.args else ""

    def render(self, max_args: int = 8) -> str:
        """``GET "key"``: the name, then up to ``max_args`` quoted arguments, cut ones marked."""
        parts = [self.name]
        for arg, size in zip(self.args[1:max_args + 1], self.sizes[1:max_args + 1]):
            text = arg.decode("utf-8", "backslashreplace").replace("\\", "\\\\").replace('"', '\\"')
            text = text.replace("\r", "\\r").replace("\n", "\\n")
            parts.append(f'"{text}"' + (f"...({size} bytes)" if size > len(arg) else ""))
        if len(self.args) > max_args + 1:
            parts.append(f"...(+{len(self.args) - max_args - 1} args)")
        return " ".join(parts)


class RespReader:
    """See the module docstring. States: a line (``*N``, ``$N`` or inline), or inside a bulk."""

    def __init__(self, keep: int = 64) -> None:
        self.keep = keep
        self._line = bytearray()      # a line being gathered
        self._left_args = 0           # bulk strings still expected in the current array
        self._bulk_left = -1          # bytes of the current bulk still to come (+2 for CRLF); -1: none
        self._bulk = bytearray()
        self._bulk_size = 0
        self._args: list[bytes] = []
        self._sizes: list[int] = []

    def feed(self, data: bytes) -> list[RespCommand]:
        out: list[RespCommand] = []
        view = memoryview(data)
        i, n = 0, len(data)
        while i < n:
            if self._bulk_left >= 0:
                take = min(self._bulk_left, n - i)
                body_left = self._bulk_left - 2       # bytes of value (not CRLF) still to come
                if body_left > 0:
                    keep_room = self.keep - len(self._bulk)
                    if keep_room > 0:
                        self._bulk += view[i:i + min(take, body_left, keep_room)]
                self._bulk_left -= take
                i += take
                if self._bulk_left == 0:
                    self._bulk_left = -1
                    self._end_arg(bytes(self._bulk), self._bulk_size, out)
                continue
            end = data.find(b"\n", i)
            if end < 0:
                self._line += view[i:]
                if len(self._line) > MAX_LINE:
                    raise RespError("line too long")
                break
            self._line += view[i:end + 1]
            i = end + 1
            if len(self._line) > MAX_LINE:
                raise RespError("line too long")
            line = bytes(self._line).rstrip(b"\r\n")
            self._line.clear()
            self._on_line(line, out)
        return out

    def _on_line(self, line: bytes, out: list[RespCommand]) -> None:
        if self._left_args:
            if not line.startswith(b"$"):
                raise RespError(f"expected a bulk string, got {line[:20]!r}")
            size = _number(line[1:])
            if size < 0:
                raise RespError("negative bulk length in a request")
            self._bulk.clear()
            self._bulk_size = size
            self._bulk_left = size + 2
            if size == 0:  # still has its CRLF to skip
                pass
            return
        if line.startswith(b"*"):
            count = _number(line[1:])
            if count <= 0:
                return            # "*0" / "*-1": an empty request, nothing to log
            if count > MAX_ARGS:
                raise RespError(f"{count} arguments is too many")
            self._left_args = count
            self._args, self._sizes = [], []
            return
        if not line.strip():
            return
        if line[:1] in b"$+-:_,#(!=%~>|":
            raise RespError(f"unexpected {line[:1]!r} at the start of a request")
        words = line.split()
        out.append(RespCommand(tuple(w[:self.keep] for w in words), tuple(len(w) for w in words)))

    def _end_arg(self, value: bytes, size: int, out: list[RespCommand]) -> None:
        self._args.append(value)
        self._sizes.append(size)
        self._left_args -= 1
        if self._left_args == 0:
            out.append(RespCommand(tuple(self._args), tuple(self._sizes)))
            self._args, self._sizes = [], []


def _number(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise RespError(f"bad number {text[:20]!r}") from None


__all__ = ["RespCommand", "RespError", "RespReader"]
