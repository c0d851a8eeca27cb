"""Cookie and Set-Cookie handling (RFC 6265).

Parsing is lenient because the Cookie header holds whatever browsers and scripts stored,
and one odd cookie must not cost the request its other cookies.  Rendering is strict
because a Set-Cookie we emit with a stray ``;`` or CR/LF would let attacker-influenced
values inject attributes or headers.
"""

from __future__ import annotations

import re

from .httpdate import format_http_date

__all__ = ["parse_cookie_header", "render_set_cookie"]

_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# cookie-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
_COOKIE_OCTETS = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset('",;\\')
_CTL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SAME_SITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


def parse_cookie_header(value: str) -> list[tuple[str, str]]:
    """Split a ``Cookie`` header into ``(name, value)`` pairs, in order, duplicates kept.

    Values lose one pair of surrounding DQUOTEs.  Pairs without ``=``, with a name that is
    not a token, or with control characters are skipped.  Never raises.
    """
    out: list[tuple[str, str]] = []
    if not isinstance(value, str):
        return out
    for item in value.split(";"):
        eq = item.find("=")
        if eq < 0:
            continue
        name = item[:eq].strip(" \t")
        if not name or not _TCHARS.issuperset(name):
            continue
        val = item[eq + 1 :].strip(" \t")
        if len(val) >= 2 and val[0] == '"' and val[-1] == '"':
            val = val[1:-1]
        if _CTL_RE.search(val):
            continue
        out.append((name, val))
    return out


def _check_attr(what: str, value: str) -> None:
    if ";" in value or _CTL_RE.search(value):
        raise ValueError(f"invalid cookie {what}: {value!r}")


def render_set_cookie(
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    expires: float | None = None,
    path: str | None = None,
    domain: str | None = None,
    secure: bool = False,
    http_only: bool = False,
    same_site: str | None = None,
) -> str:
    """Render a ``Set-Cookie`` field value; raises ValueError for anything unsafe.

    ``name`` must be a token and ``value`` cookie-octets (optionally DQUOTE-wrapped):
    encode arbitrary data (e.g. base64url) before calling.  A negative ``max_age`` becomes
    ``Max-Age=0`` (delete now), as RFC 6265 treats both alike but some clients mishandle
    negatives.  ``same_site`` is matched case-insensitively and emitted canonically.
    """
    if not name or not _TCHARS.issuperset(name):
        raise ValueError(f"invalid cookie name: {name!r}")
    inner = value[1:-1] if len(value) >= 2 and value[0] == '"' and value[-1] == '"' else value
    if not _COOKIE_OCTETS.issuperset(inner):
        raise ValueError(f"invalid cookie value: {value!r}")
    parts = [f"{name}={value}"]
    if path is not None:
        _check_attr("path", path)
        parts.append(f"Path={path}")
    if domain is not None:
        _check_attr("domain", domain)
        parts.append(f"Domain={domain}")
    if expires is not None:
        parts.append(f"Expires={format_http_date(expires)}")
    if max_age is not None:
        parts.append(f"Max-Age={max(int(max_age), 0)}")
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    if same_site is not None:
        canonical = _SAME_SITE.get(same_site.lower())
        if canonical is None:
            raise ValueError(f"invalid SameSite: {same_site!r} (want Strict, Lax or None)")
        parts.append(f"SameSite={canonical}")
    return "; ".join(parts)
