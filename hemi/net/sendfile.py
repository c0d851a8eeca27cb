"""Zero-copy file sending on an asyncio transport.

uvloop has no ``loop.sendfile``. We send with ``os.sendfile`` on a duplicate of the socket's
descriptor (so the event loop's own registration of the socket is untouched), waiting for
writability with ``add_writer`` on the duplicate. The transport's own buffer is flushed first so
bytes stay in order. TLS transports, and anything without a real socket, get a read/write loop.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Awaitable, Callable

CHUNK = 256 << 10


async def _flush(transport: Any, timeout: float) -> None:
    """Wait until the transport has handed every buffered byte to the kernel (the head usually
    went out at once; this waits only behind a slow reader)."""
    if transport.get_write_buffer_size() == 0:
        return
    deadline = asyncio.get_running_loop().time() + timeout
    while transport.get_write_buffer_size() and not transport.is_closing():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the client reads nothing (writeTimeout)")
        await asyncio.sleep(0.001 if transport.get_write_buffer_size() < 65536 else 0.005)


async def send_file(transport: Any, fd: int, offset: int, count: int,
                    drain: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    """Send ``count`` bytes of ``fd`` from ``offset``. ``timeout`` bounds each wait for the
    client to make room (Gorox's writeTimeout); TimeoutError when it passes."""
    sock = transport.get_extra_info("socket")
    if sock is None or transport.get_extra_info("sslcontext") is not None or transport.get_extra_info("ssl_object") is not None:
        await _copy(transport, fd, offset, count, drain)
        return
    await _flush(transport, timeout)
    if transport.is_closing():
        raise ConnectionResetError("client went away")
    loop = asyncio.get_running_loop()
    out = os.dup(sock.fileno())
    try:
        end = offset + count
        while offset < end:
            try:
                sent = os.sendfile(out, fd, offset, min(end - offset, 1 << 30))
            except BlockingIOError:
                waiter = loop.create_future()
                loop.add_writer(out, lambda: waiter.done() or waiter.set_result(None))
                try:
                    await asyncio.wait_for(waiter, timeout)
                except asyncio.TimeoutError:
                    raise TimeoutError("the client reads nothing (writeTimeout)") from None
                finally:
                    loop.remove_writer(out)
                if transport.is_closing():
                    raise ConnectionResetError("client went away")
                continue
            except OSError as e:
                if e.errno in (22, 38, 95):  # EINVAL/ENOSYS/EOPNOTSUPP: the file cannot be sent this way
                    await _copy(transport, fd, offset, end - offset, drain)
                    return
                raise ConnectionResetError(str(e)) from None
            if sent == 0:
                raise EOFError("file shrank while being sent")
            offset += sent
    finally:
        os.close(out)


async def _copy(transport: Any, fd: int, offset: int, count: int, drain: Callable[[], Awaitable[None]]) -> None:
    end = offset + count
    while offset < end:
        chunk = os.pread(fd, min(CHUNK, end - offset), offset)
        if not chunk:
            raise EOFError("file shrank while being sent")
        offset += len(chunk)
        if transport.is_closing():
            raise ConnectionResetError("client went away")
        transport.write(chunk)
        await drain()
