"""The HTML directory listing that ``static`` sends for a directory without an index file
when ``.autoIndex`` is on.

Names come from the file system, so every one is treated as hostile: HTML-escaped for the
text, percent-encoded (from its raw bytes) for the link, and a name that is not valid UTF-8 is
shown with replacement characters instead of failing the page. Dot-files are left out, as
nginx does, so ``.git`` or ``.htpasswd`` are not advertised.
"""

from __future__ import annotations

import os
import stat
import time
from html import escape
from typing import NamedTuple
from urllib.parse import quote

__all__ = ["Listed", "scan_directory", "render_listing"]


class Listed(NamedTuple):
    """One row of a listing: the raw name, whether it is a directory, size and mtime
    (``None`` when the entry cannot be stat'ed, e.g. a dangling symlink)."""

    name: str
    is_dir: bool
    size: int | None
    mtime: float | None


def scan_directory(path: str) -> list[Listed]:
    """The visible entries of a directory, directories first, then by name. Raises OSError
    like :func:`os.scandir` when the directory cannot be read."""
    rows: list[Listed] = []
    with os.scandir(path) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            try:
                st = entry.stat()  # follows symlinks: a link to a directory lists as one
            except OSError:
                rows.append(Listed(entry.name, False, None, None))
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            rows.append(Listed(entry.name, is_dir, None if is_dir else st.st_size, st.st_mtime))
    rows.sort(key=lambda r: (not r.is_dir, r.name))
    return rows


def _shown(name: str) -> str:
    """A file-system name as text a UTF-8 page can carry (undecodable bytes -> U+FFFD)."""
    return escape(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def _href(name: str, is_dir: bool) -> str:
    # From the raw bytes, so any name (even non-UTF-8) links to itself; "./" keeps a name
    # such as "a:b" from being read as a URL scheme.
    return "./" + quote(os.fsencode(name), safe="") + ("/" if is_dir else "")


def _when(mtime: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(mtime)) if mtime is not None else "-"


def render_listing(url_path: str, rows: list[Listed]) -> str:
    """The page for directory ``url_path`` (decoded, ending in "/"), with a parent link unless
    it is the root."""
    title = _shown(url_path)
    out = [
        '<!doctype html><html><head><meta charset="utf-8">',
        f"<title>Index of {title}</title>",
        "<style>body{font-family:sans-serif}td{padding:0 1em 0 0}td.s{text-align:right}</style>",
        f"</head><body><h1>Index of {title}</h1><table>",
        "<tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>",
    ]
    if url_path != "/":
        out.append('<tr><td><a href="../">../</a></td><td class="s">-</td><td>-</td></tr>')
    for row in rows:
        label = _shown(row.name) + ("/" if row.is_dir else "")
        size = "-" if row.size is None else str(row.size)
        out.append(f'<tr><td><a href="{escape(_href(row.name, row.is_dir))}">{label}</a></td>'
                   f'<td class="s">{size}</td><td>{_when(row.mtime)}</td></tr>')
    out.append("</table><hr><p>Powered by Gorox</p></body></html>")
    return "".join(out)
