"""Meshers, cases, dealers and editors: layer 4, whatever the transport.

A mesher listens (TCP, TLS, unix sockets, or UDP for ``udpsMesher``) and hands every new
connection, or UDP session, to :meth:`Mesher.dispatch`, which walks the mesher's ``case``
blocks in order::

    tcpsMesher "front" {
        .address = ":8443"
        case "api" $hostname == "api.example.com" { countingEditor {} tcpsProxy { .toBackend = "api" } }
        case $srcHost ^= "10." { accessDealer { .deny = ("10.9.0.0/16") } echoDealer {} }
        case { helloDealer {} }          # a case without a condition matches everything
    }

For the first case whose condition holds, the case's editors are hooked onto the connection
(they see every byte from then on) and its dealers run in order until one *takes* the
connection (``deal`` returns True). A dealer that passes (False, e.g. ``accessDealer`` letting
a client through) hands the connection to the next dealer; when every dealer of a case passes,
the next matching case is tried, with the editors already hooked staying hooked (Gorox's
semantics). A connection no case takes is closed and logged.

This module knows nothing of sockets. A transport (``hemi.net.tcps``, a UDP mesher) provides:

* a :class:`MeshConn` subclass: the connection as dealers see it (addresses, ``send``,
  ``close``, where received bytes go);
* a :class:`Mesher` subclass: gates and the accept path, calling ``dispatch``;
* the variables cases test, as attributes of the conn: ``src_host``, ``src_port``,
  ``transport``, ``hostname`` (see :data:`CASE_GETTERS`).

Fixes against Gorox (spec net_rpc.md §8): conditional cases work (Gorox's getters were nil);
dealers and editors written directly in a mesher are shared components that cases name with
``.dealers`` / ``.editors`` (Gorox crashed on them); editors are really called; the access log,
``readTimeout`` and ``writeTimeout`` are used; TLS meshers can load a certificate; connection ids
are unique per mesher; a connection is closed and counted exactly once.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from typing import Any, Callable, ClassVar

from ..config.tree import Condition
from ..core.component import Component
from ..core.logs import AccessLog
from ..core.registry import register
from ..web.rule import compile_compare
from .server import Gated
from .tls import server_context

log = logging.getLogger("hemi.net.mesher")

# What a case condition can test, read from the connection (or UDP session). Shared by every
# transport: the conn classes keep these four attributes up to date.
CASE_GETTERS: dict[str, Callable[[Any], str]] = {
    "srcHost": lambda c: c.src_host,
    "srcPort": lambda c: c.src_port,
    "transport": lambda c: c.transport_name,
    "hostname": lambda c: c.hostname,
}


class MeshConn:
    """One client connection (or UDP session) of a mesher, as cases, dealers and editors see it.

    The transport sets ``src_host``/``src_port``/``transport_name``/``hostname`` before
    dispatching. Dealers then write with :meth:`send` (output editors run first), take the
    received bytes with :meth:`attach` (``on_data`` / ``on_eof``; input editors run first: see
    :meth:`received`), and end with :meth:`close`. Bytes that arrived before a dealer took the
    connection (a peeked TLS ClientHello, data after a PROXY header) wait in :attr:`early`
    (already through the hooked editors) and are handed to ``on_data`` by :meth:`attach`.

    ``log_fields`` collects ``key=value`` words that editors and dealers add to the access log
    line written when the connection closes; ``reason`` says why it closed if not normally.
    """

    __slots__ = ("mesher", "id", "src_host", "src_port", "transport_name", "hostname", "started", "case",
                 "dealer", "editors", "edit_state", "log_fields", "reason", "early", "on_data", "on_eof",
                 "bytes_in", "bytes_out", "input_ended", "closed", "__weakref__")

    def __init__(self, mesher: "Mesher", transport_name: str) -> None:
        self.mesher = mesher
        self.id = mesher.next_conn_id()
        self.src_host = ""
        self.src_port = ""
        self.transport_name = transport_name
        self.hostname = ""
        self.started = time.monotonic()
        self.case: Case | None = None
        self.dealer: Dealer | None = None
        self.editors: list[Editor] = []
        self.edit_state: dict[Editor, Any] = {}   # per-connection state of each hooked editor
        self.log_fields: list[str] = []
        self.reason = ""
        self.early = b""
        self.on_data: Callable[[bytes], None] | None = None
        self.on_eof: Callable[[], None] | None = None
        self.bytes_in = 0      # counted by the transport, for the access log
        self.bytes_out = 0
        self.input_ended = False   # the client sent EOF (or the UDP session ended)
        self.closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id} {self.describe()}>"

    def describe(self) -> str:
        src = f"{self.src_host}:{self.src_port}" if self.src_port else (self.src_host or "unix")
        return f"{src} {self.transport_name}" + (f" sni={self.hostname}" if self.hostname else "")

    # -- editors -------------------------------------------------------------------------------------
    def hook(self, editor: "Editor") -> None:
        """Hook ``editor`` (once); bytes already received and not yet handed to a dealer pass
        through it now, so every editor sees every input byte exactly once."""
        if editor in self.editors:
            return
        self.editors.append(editor)
        editor.on_open(self)
        if self.early:
            self.early = editor.on_input(self, self.early)

    def edit_input(self, data: bytes) -> bytes:
        """Bytes from the client, through every hooked editor in order."""
        for editor in self.editors:
            data = editor.on_input(self, data)
        return data

    def edit_output(self, data: bytes) -> bytes:
        """Bytes to the client, through the hooked editors in reverse order (a filter chain)."""
        for editor in reversed(self.editors):
            data = editor.on_output(self, data)
        return data

    # -- what dealers use --------------------------------------------------------------------------------
    def take_early(self) -> bytes:
        """The bytes received before dispatch (already edited), for a dealer that forwards them
        itself instead of through ``attach``; they are now the caller's."""
        data, self.early = self.early, b""
        return data

    def attach(self, on_data: Callable[[bytes], None], on_eof: Callable[[], None] | None = None) -> None:
        """Take the client's bytes from now on: what arrived already is delivered at once, and
        an EOF that came already is reported too."""
        self.on_data = on_data
        self.on_eof = on_eof
        if self.early:
            on_data(self.take_early())
        if self.input_ended and on_eof is not None and not self.closed:
            on_eof()

    def received(self, data: bytes) -> None:
        """Called by the transport for each chunk from the client."""
        if self.editors:
            data = self.edit_input(data)
            if not data:
                return
        handler = self.on_data
        if handler is None:
            self.early += data
        else:
            handler(data)

    def send(self, data: bytes) -> None:
        """Write to the client (after the output editors)."""
        raise NotImplementedError

    def send_eof(self) -> None:
        """No more bytes to the client (TCP half-close); the connection stays open for reading."""
        raise NotImplementedError

    def close(self, reason: str = "") -> None:
        """Close (after sending what is buffered). ``reason`` goes to the access log; unless it
        starts with ``"ok"`` (a normal end, e.g. ``"ok: closed for shutdown"``) it is a problem
        and also goes to the error log as a warning. The first reason given wins."""
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    # -- called by the transport exactly once, when the connection is gone ------------------------------
    def finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        for editor in self.editors:
            try:
                editor.on_close(self)
            except Exception:  # an editor bug must not lose the access log line or the accounting
                log.exception("editor %s failed on close of %r", editor.describe(), self)
        self.mesher.log_access(self)


class Mesher(Gated):
    """Properties, cases and the access log every mesher shares (Gorox's Server_ + mesher_).

    ``.address``, gates, connection limits, timeouts, the sweeper and the drain at shutdown come
    from :class:`~hemi.net.server.Gated`, as for servers. Subclasses build a :class:`MeshConn`
    for each connection (``protocol_factory``) and call :meth:`dispatch`; one that opens other
    gates overrides ``on_start`` and ``on_shutdown``, the latter ending with
    ``super().on_shutdown()`` (which closes the access log).
    """

    kind = "mesher"
    # Names a transport gives ``$transport``; checked against case conditions at configure.
    transports: ClassVar[tuple[str, ...]] = ()

    def on_configure(self) -> None:
        super().on_configure()  # .address, gates, connection limits, read and write timeouts
        self.tls_mode = self.configure_bool("tlsMode", False)
        self.tls_certificate = self.configure_file("tlsCertificate")
        self.tls_private_key = self.configure_file("tlsPrivateKey")
        if bool(self.tls_certificate) != bool(self.tls_private_key):
            self.error(".tlsCertificate and .tlsPrivateKey go together; set both or neither")
        if self.tls_mode and not self.tls_certificate:
            self.error("is in TLS mode (.tlsMode = true) but has no .tlsCertificate and .tlsPrivateKey")
        self.access_log_path = self._configure_access_log()
        self.access_log: AccessLog | None = None
        self.cases: list[Case] = [c for c in self.children if isinstance(c, Case)]
        self.dealers: dict[str, Dealer] = {c.name: c for c in self.children if isinstance(c, Dealer)}
        self.editors: dict[str, Editor] = {c.name: c for c in self.children if isinstance(c, Editor)}
        if not self.cases:
            self.error("has no case: every connection would be closed (add case { ... } with a dealer)")
        self._conn_ids = 0

    def _configure_access_log(self) -> str | None:
        """``.accessLog``: true (default: <logsDir>/<name>.access.log), false, or a file path."""
        path: str | None = os.path.join(self.stage.dirs.logs, f"{self.name}.access.log")
        value = self.configure_value("accessLog")
        if value is not None:
            if value.kind == "bool":
                path = path if value.data else None
            elif value.kind == "string" and value.data:
                path = value.data
            else:
                self.error(".accessLog is " + value.describe() + ", expected true, false or a file path", value.loc)
        return path

    def on_bind(self) -> None:
        # (Runs before the cases bind their .dealers / .editors: go by the names.)
        named = {n for case in self.cases for n in (*case._dealer_names, *case._editor_names)}
        for comp in (*self.dealers.values(), *self.editors.values()):
            if comp.name not in named:
                self.error(f"holds {comp.describe()} outside any case, and no case names it in .dealers "
                           f"or .editors; it would never run", comp.block.loc)

    def on_prepare(self) -> None:
        if self.access_log_path:
            self.access_log = AccessLog(self.access_log_path)

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        if self.access_log is not None:
            self.access_log.close()
            self.access_log = None

    # -- TLS ---------------------------------------------------------------------------------------
    def tls_context(self) -> ssl.SSLContext:
        """The server context for ``.tlsMode``. The SNI name the client sent is kept on the
        SSL object (``sni_name``) for ``$hostname``."""
        ctx = server_context(self.tls_certificate, self.tls_private_key, self)

        def remember(sslobj: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
            try:
                sslobj.sni_name = (name or "").lower()
            except AttributeError:
                pass

        ctx.sni_callback = remember  # type: ignore[assignment]
        return ctx

    # -- cases -------------------------------------------------------------------------------------
    @property
    def uses_hostname(self) -> bool:
        """Whether some case tests ``$hostname`` (a TCP mesher then peeks the ClientHello)."""
        return any(c.block.cond is not None and c.block.cond.variable == "hostname" for c in self.cases)

    def next_conn_id(self) -> int:
        self._conn_ids += 1
        self.connections_total += 1
        return self._conn_ids

    def dispatch(self, conn: MeshConn) -> bool:
        """Run the cases on ``conn``; True when a dealer took it. Otherwise the connection is
        closed here, with the reason logged."""
        matched = False
        for case in self.cases:
            matcher = case.matcher
            if matcher is not None and not matcher(conn):
                continue
            matched = True
            conn.case = case
            for editor in case.editors:
                conn.hook(editor)
            for dealer in case.dealers:
                conn.dealer = dealer
                try:
                    if dealer.deal(conn):
                        return True
                except Exception:
                    log.exception("%s failed on %r", dealer.describe(), conn)
                    conn.close("error: dealer failed")
                    return True
                if conn.closed:
                    return True
        conn.dealer = None
        conn.close("no dealer took the connection" if matched else "no case matched")
        return False

    # -- logging -------------------------------------------------------------------------------------
    def log_access(self, conn: MeshConn) -> None:
        """One line per connection: time, id, client, transport, SNI, case, dealer, bytes in and
        out, duration, then what editors and dealers added, then why it closed."""
        reason = conn.reason or "ok"
        if not reason.startswith("ok"):
            log.warning('%s "%s": connection #%d from %s closed: %s', self.sign, self.name, conn.id,
                        conn.describe(), reason)
        access_log = self.access_log
        if access_log is None:
            return
        src = f"{conn.src_host}:{conn.src_port}" if conn.src_port else (conn.src_host or "unix")
        extra = (" " + " ".join(conn.log_fields)) if conn.log_fields else ""
        access_log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} #{conn.id} {src} {conn.transport_name} "
                         f"sni={conn.hostname or '-'} case={conn.case.name if conn.case else '-'} "
                         f"dealer={conn.dealer.name if conn.dealer else '-'} in={conn.bytes_in} "
                         f"out={conn.bytes_out} time={time.monotonic() - conn.started:.3f}s{extra} "
                         f'reason="{reason}"\n')


@register("case", "case")
class Case(Component):
    """``case ["name"] [$var OP patterns] { editors... dealers... }`` inside a mesher.

    Its dealers and editors are its own children, in order, or the mesher-level ones it names
    with ``.dealers = ("name", ...)`` and ``.editors = (...)`` (which lets several cases share
    one configured dealer)."""

    def on_configure(self) -> None:
        self._dealer_names = self.configure_string_list("dealers")
        self._editor_names = self.configure_string_list("editors")
        self.dealers: list[Dealer] = [c for c in self.children if isinstance(c, Dealer)]
        self.editors: list[Editor] = [c for c in self.children if isinstance(c, Editor)]
        self.matcher: Callable[[MeshConn], bool] | None = None
        cond = self.block.cond
        mesher = self.parent
        if cond is not None and cond.variable == "transport" and isinstance(mesher, Mesher) and mesher.transports:
            for p in cond.patterns:
                if cond.op in ("==", "!=") and p not in mesher.transports:
                    self.error(f'tests $transport against "{p}", but {mesher.sign} has only '
                               + ", ".join(f'"{t}"' for t in mesher.transports), cond.loc)

    def on_bind(self) -> None:
        mesher = self.parent
        assert isinstance(mesher, Mesher)
        for names, own, table, kind in ((self._dealer_names, self.dealers, mesher.dealers, "dealer"),
                                        (self._editor_names, self.editors, mesher.editors, "editor")):
            if names and own:
                self.error(f".{kind}s names mesher-level {kind}s and the case also holds its own; use one way")
                continue
            for name in names:
                comp = table.get(name)
                if comp is None:
                    self.error(f'.{kind}s names "{name}", but {mesher.describe()} has no {kind} of that name',
                               self.block.prop_locs.get(kind + "s"))
                else:
                    own.append(comp)  # type: ignore[arg-type]
        if not self.dealers:
            self.error("has no dealer: connections it matches would be closed")

    def on_prepare(self) -> None:
        self.matcher = compile_case(self.block.cond)


def compile_case(cond: Condition | None) -> Callable[[MeshConn], bool] | None:
    """The predicate of a case condition; None for a general case (matches everything)."""
    if cond is None:
        return None
    return compile_compare(CASE_GETTERS[cond.variable], cond.op, cond.patterns)


class Dealer(Component):
    """The base of dealers: components that handle a connection.

    ``deal(conn)`` returns True when it took the connection (processing ends: it now owns the
    connection and closes it when done), False to pass it to the next dealer of the case.
    ``deal`` is synchronous; a dealer that must wait (dial an upstream) starts that and
    returns True at once."""

    kind = "dealer"

    def deal(self, conn: MeshConn) -> bool:
        raise NotImplementedError


class Editor(Component):
    """The base of editors: components that observe or rewrite the bytes of a connection.

    Hooked editors see each chunk from the client (``on_input``, in case order) before the
    dealer, and each chunk to the client (``on_output``, in reverse order) before it is sent;
    they return the bytes to pass on (the same object to only observe; b"" to hold them back).
    Per-connection state goes in ``conn.edit_state[self]``, set up in ``on_open``. ``on_close``
    runs once, before the access log line is written, so an editor can add
    ``conn.log_fields``."""

    kind = "editor"

    def on_open(self, conn: MeshConn) -> None:
        pass

    def on_input(self, conn: MeshConn, data: bytes) -> bytes:
        return data

    def on_output(self, conn: MeshConn, data: bytes) -> bytes:
        return data

    def on_close(self, conn: MeshConn) -> None:
        pass


__all__ = ["CASE_GETTERS", "Case", "Dealer", "Editor", "MeshConn", "Mesher", "compile_case"]
