"""Request-target helpers: splitting, percent-decoding and normalising paths, so that every
consumer (rules, static files, apps) sees one canonical path and ``..`` can never climb above
the root."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from ..core.memo import Memo
from .errors import HTTPError


def split_target(target: str) -> tuple[str, str]:
    """("/a/b", "?x=1") from "/a/b?x=1" (the query keeps its '?', as Gorox's $queryString)."""
    q = target.find("?")
    if q < 0:
        return target, ""
    return target[:q], target[q:]


def decode_path(encoded: str) -> str:
    """Percent-decode (UTF-8) and normalise a path: collapse ``//``, drop ``.``, resolve ``..``
    without going above ``/``; keep a trailing ``/``. Raises HTTPError(400) for NUL, bad
    escapes or invalid UTF-8."""
    if "%" in encoded:
        if "%00" in encoded:
            raise HTTPError(400, "malformed path")
        i = encoded.find("%")
        while i >= 0:
            h = encoded[i + 1:i + 3]
            if len(h) != 2 or not all(c in "0123456789abcdefABCDEF" for c in h):
                raise HTTPError(400, "bad percent-encoding in path")
            i = encoded.find("%", i + 3)
        try:
            path = unquote_to_bytes(encoded).decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, "path is not UTF-8") from None
    else:
        path = encoded
    if "\x00" in path:
        raise HTTPError(400, "malformed path")
    if not path.startswith("/"):
        path = "/" + path
    if "//" not in path and "/." not in path and "\\" not in path:
        return path
    trailing = path.endswith("/") or path.endswith("/.") or path.endswith("/..")
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    result = "/" + "/".join(out)
    if trailing and result != "/":
        result += "/"
    return result


def _origin_form(target: str) -> tuple[str, str, str]:
    encoded, query = split_target(target)
    return encoded, query, decode_path(encoded)


MAX_REMEMBERED_TARGET = 256
# An origin-form target ("/a/b?x=1") -> (encoded path, query with its '?', decoded path). A
# site's hot URLs repeat, so each is split and decoded once; a bad one raises every time.
origin_form = Memo(_origin_form, 4096, lambda target, _: len(target) <= MAX_REMEMBERED_TARGET).__getitem__
