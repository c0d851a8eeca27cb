"""Small dealers: ``echoDealer`` (echo every byte until the client ends) and ``helloDealer``
("hello, world!" and close). Transport-neutral: they use only the MeshConn API."""

from __future__ import annotations

from ...core.registry import dealer
from ...net.mesher import Dealer, MeshConn


@dealer("echoDealer")
class EchoDealer(Dealer):
    """Sends back what the client sends; half-closes when the client does. Back-pressure: the
    connection stops reading while its own writes back up (it is its own peer)."""

    def deal(self, conn: MeshConn) -> bool:
        if hasattr(conn, "peer"):
            conn.peer = conn  # type: ignore[attr-defined]
        conn.attach(conn.send, conn.send_eof)
        return True


@dealer("helloDealer")
class HelloDealer(Dealer):
    """Gorox's greeting: 13 bytes, no newline, then close."""

    GREETING = b"hello, world!"

    def deal(self, conn: MeshConn) -> bool:
        conn.send(self.GREETING)
        conn.close()
        return True
