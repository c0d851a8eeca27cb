"""CGI/1.1 meta-variables (RFC 3875 §4.1) of a request, as FastCGI params and uwsgi vars.

Both gateways send the same list, built here once: :func:`cgi_vars` takes what differs per
gateway (how the path splits into SCRIPT_NAME and PATH_INFO, the script file, extra variables)
and adds the request's own facts and its headers as ``HTTP_*``.

Names and values are bytes, ready for the codecs: decoded text (paths) as UTF-8, and what came
from the wire (target, query, host, header values) in its exact wire form. Headers the
application must not see are left out:

* framing and hop-by-hop headers (``Connection`` and every header it names, ``Keep-Alive``,
  ``TE``, ``Transfer-Encoding``, ``Upgrade``, ``Proxy-Connection``): the gateway re-frames the
  body (``CONTENT_LENGTH``), so a ``Transfer-Encoding: chunked`` would describe bytes the
  application never gets;
* ``Content-Length`` and ``Content-Type``: they are ``CONTENT_LENGTH`` and ``CONTENT_TYPE``;
* ``Proxy``: ``HTTP_PROXY`` is read as the outbound proxy setting by many HTTP libraries
  ("httpoxy", CVE-2016-5385), so it is never sent;
* any header whose name contains ``_``: ``X_Forwarded_For`` and ``X-Forwarded-For`` both
  become ``HTTP_X_FORWARDED_FOR``, so a client could smuggle a value past a front proxy that
  filtered the ``-`` spelling. nginx and Apache drop them too.

Repeated headers are joined into one variable (``, ``; ``; `` for Cookie), as CGI has one value
per name.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Final, Sequence

from ...core.memo import remember
from . import HOP_BY_HOP, connection_options

if TYPE_CHECKING:
    from ..exchange import Request

Var = tuple[bytes, bytes]

__all__ = ["Var", "cgi_vars", "http_var_name", "server_address"]

# Request headers that never become HTTP_* variables (see the module docstring).
_SKIPPED: Final = HOP_BY_HOP | {"content-length", "content-type", "proxy", "http2-settings"}

_NAMES: dict[str, bytes | None] = {}
_NAMES_MAX: Final = 2048   # bounds the cache against clients that invent header names


def http_var_name(name: str) -> bytes | None:
    """``HTTP_ACCEPT_LANGUAGE`` for ``accept-language``; None for a header that is not passed.

    ``name`` is lower-case, as the HTTP codec gives it. Cached: a server sees few distinct names.
    """
    var = _NAMES.get(name, b"")
    if var != b"":
        return var
    if name in _SKIPPED or "_" in name:
        var = None
    else:
        var = b"HTTP_" + name.upper().replace("-", "_").encode("latin-1")
    return remember(_NAMES, name, var, _NAMES_MAX)


_GATE_ADDRESSES: "weakref.WeakKeyDictionary[Any, tuple[bytes, bytes]]" = weakref.WeakKeyDictionary()
_last_gate: Any = None                      # the one-gate server's answer, without a dict lookup
_last_address: tuple[bytes, bytes] = (b"", b"0")


def server_address(req: "Request") -> tuple[bytes, bytes]:
    """(SERVER_ADDR, SERVER_PORT): the local end of the client's connection.

    A gate bound to one address answers from the gate (cached); a wildcard gate (``:8080``)
    asks the connection's socket, since the address depends on the interface the client used.
    """
    global _last_gate, _last_address
    stream = req.stream
    gate = getattr(stream, "gate", None)
    if gate is not None:
        if gate is _last_gate:
            return _last_address
        found = _GATE_ADDRESSES.get(gate)
        if found is None:
            bound = gate.bound
            if bound.path is not None:
                found = (b"", b"0")
            elif bound.host and bound.host not in ("0.0.0.0", "::"):
                found = (bound.host.encode(), str(bound.port).encode())
            if found is not None:
                _GATE_ADDRESSES[gate] = found
        if found is not None:
            _last_gate, _last_address = gate, found
            return found
    transport = getattr(stream, "transport", None)
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[0]).encode(), str(sockname[1]).encode()
    return b"", b"0"


def cgi_vars(req: "Request", *, script_name: str, path_info: str, document_root: bytes,
             content_length: int | None, extra: Sequence[Var] = ()) -> list[Var]:
    """The meta-variables of ``req`` for a gateway, request headers last, as bytes.

    ``content_length`` is what the gateway will actually send as the body (None: no body, the
    variable is then left out as RFC 3875 §4.1.2 asks); ``extra`` (e.g. SCRIPT_FILENAME,
    REDIRECT_STATUS) goes after the standard variables. Decoded paths are sent as UTF-8; what
    came from the wire (target, query, host, headers) keeps its bytes (latin-1 round trip).
    """
    server_addr, server_port = server_address(req)
    peer = req.peer
    query = req.query_string
    server = req.server
    out: list[Var] = [
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", server.server_name.encode() if server is not None else b"gorox"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1" if req.version == "1.1" else ("HTTP/" + req.version).encode()),
        (b"SERVER_NAME", req.hostname.encode("latin-1")),
        (b"SERVER_ADDR", server_addr),
        (b"SERVER_PORT", server_port),
        (b"REQUEST_METHOD", req.method.encode()),
        (b"REQUEST_SCHEME", req.scheme.encode()),
        (b"REQUEST_URI", (req.encoded_path + query).encode("latin-1")),
        (b"DOCUMENT_URI", req.path.encode()),
        (b"DOCUMENT_ROOT", document_root),
        (b"SCRIPT_NAME", script_name.encode()),
        (b"PATH_INFO", path_info.encode()),
        (b"QUERY_STRING", query[1:].encode("latin-1") if query else b""),
        (b"REMOTE_ADDR", peer[0].encode()),
        (b"REMOTE_PORT", str(peer[1]).encode()),
    ]
    if req.scheme == "https":
        out.append((b"HTTPS", b"on"))
    if content_length is not None:
        out.append((b"CONTENT_LENGTH", str(content_length).encode()))
    ctype = req.header("content-type")
    if ctype:
        out.append((b"CONTENT_TYPE", ctype.encode("latin-1", "replace")))
    if extra:
        out += extra
    _add_headers(req.headers, out)
    return out


def _add_headers(headers: list[tuple[str, str]], out: list[Var]) -> None:
    drop: frozenset[str] | None = None
    for name, value in headers:
        if name == "connection":   # the headers it names are hop-by-hop too (RFC 9110 §7.6.1)
            options = connection_options(value)
            drop = drop | options if drop else options
    seen: dict[bytes, int] | None = None
    for name, value in headers:
        var = _NAMES.get(name, b"")
        if var == b"":
            var = http_var_name(name)
        if var is None or (drop is not None and name in drop):
            continue
        if seen is None:
            seen = {}
        index = seen.get(var)
        data = value.encode("latin-1", "replace")
        if index is None:
            seen[var] = len(out)
            out.append((var, data))
        else:  # a repeated header: one variable, values joined in order
            prev = out[index][1]
            out[index] = (var, prev + (b"; " if name == "cookie" else b", ") + data)  # type: ignore[operator]
