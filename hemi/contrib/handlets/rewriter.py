"""The ``rewriter`` handlet: regular-expression rewrites of the request path, either internal
(later rewrite rules, handlets and app rules see the new path) or as a redirect.

    rewriter {
        .rules = (
            ("^/old/(.*)$", "/new/\\1"),                       // internal: the path becomes /new/...
            ("^/blog/(?P<slug>[^/]+)$", "/posts/\\g<slug>", "permanent"),   // 301
            ["regex": "^/go$", "replacement": "https://example.com/", "flag": "redirect"],  // 302
        )
    }

A rule matches when its regex is found in the decoded, normalised path (``$path``: what the
app's rules see too, so ``/a/../x`` or ``%2e`` tricks cannot dodge a rule). The whole path is
then replaced by the replacement with its groups filled in (as nginx's ``rewrite``; anchor the
regex and capture what you keep). Group values are percent-encoded when filled in. A ``?`` in
the replacement starts a new query string, to which the request's own query is appended (a
trailing ``?`` drops it); without one, the request's query is kept. An internal rewrite's
result is normalised again (``..`` cannot climb above the root).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from ...config.errors import Location
from ...config.tree import DICT, LIST, STRING, Value
from ...core.registry import handlet
from ...web.errors import HTTPError
from ...web.handlet import Handlet
from ...web.paths import decode_path

if TYPE_CHECKING:
    from ...web.exchange import Request, Response

# What may stay unencoded when a group is filled in: pchar sub-delims in a path; fewer in a
# query, where & = + separate and encode fields.
PATH_SAFE = "/:@!$&'()*+,;=~"
QUERY_SAFE = "/:@!$'()*,;~"
FLAGS = {"": 0, "redirect": 302, "permanent": 301}

@dataclass(frozen=True, slots=True)
class GroupRef:
    """A group of the match to fill in: its number (0 is the whole match) or name."""

    ref: int | str


def parse_template(text: str, regex: re.Pattern[str]) -> list[str | GroupRef]:
    """Split a replacement into literals and group references (``\\1``..``\\99``, ``\\g<n>``,
    ``\\g<name>``; ``\\\\`` is a backslash). ValueError names what is wrong."""
    parts: list[str | GroupRef] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "\\":
            literal.append(c)
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt == "\\":
            literal.append("\\")
            i += 2
            continue
        if nxt.isdigit():
            j = i + 2 if not text[i + 2:i + 3].isdigit() else i + 3
            ref: int | str = int(text[i + 1:j])
            i = j
        elif nxt == "g" and text[i + 2:i + 3] == "<":
            end = text.find(">", i + 3)
            if end < 0:
                raise ValueError(f'has an unterminated \\g< at {i + 1} in "{text}"')
            name = text[i + 3:end]
            ref = int(name) if name.isdigit() else name
            i = end + 1
        else:
            raise ValueError(f'has an unknown escape \\{nxt} in "{text}" (use \\1, \\g<name> or \\\\)')
        if isinstance(ref, int) and not 0 <= ref <= regex.groups:
            raise ValueError(f'refers to group {ref} in "{text}", but the regex has {regex.groups} group(s)')
        if isinstance(ref, str) and ref not in regex.groupindex:
            raise ValueError(f'refers to group "{ref}" in "{text}", but the regex has no group of that name')
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(GroupRef(ref))
    if literal:
        parts.append("".join(literal))
    return parts


def _expand(parts: list[str | GroupRef], m: re.Match[str], safe: str) -> str:
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        else:
            out.append(quote(m.group(p.ref) or "", safe=safe))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class RewriteRule:
    """One compiled rule: regex, the replacement split into its path and query parts, and the
    redirect status (0 for an internal rewrite)."""

    regex: re.Pattern[str]
    path: list[str | GroupRef]
    query: list[str | GroupRef] | None  # None: the replacement has no "?", keep the request's query
    status: int

    @classmethod
    def build(cls, regex: str, replacement: str, flag: str = "") -> "RewriteRule":
        """Compile a rule; ValueError says what is wrong."""
        if flag not in FLAGS:
            raise ValueError(f'has flag "{flag}", expected "redirect" (302) or "permanent" (301), or none')
        try:
            rx = re.compile(regex)
        except re.error as e:
            raise ValueError(f'has a bad regex "{regex}": {e}') from None
        if any(c in replacement for c in "\r\n\x00"):
            raise ValueError("has a control character in its replacement")
        path_text, q, query_text = replacement.partition("?")
        path = parse_template(path_text, rx)
        query = parse_template(query_text, rx) if q else None
        status = FLAGS[flag]
        if not status:
            if not path_text.startswith("/"):
                raise ValueError(f'rewrites to "{replacement}", expected a path starting with "/" '
                                 '(use the "redirect" or "permanent" flag to send the client elsewhere)')
            try:
                decode_path("".join(p if isinstance(p, str) else "x" for p in path))
            except HTTPError as e:
                raise ValueError(f'rewrites to "{replacement}", which is not a valid path: {e.reason}') from None
        return cls(rx, path, query, status)

    def apply(self, path: str, query_string: str) -> tuple[str, str] | None:
        """(encoded path or location, query string with its "?") if the rule matches ``path``."""
        m = self.regex.search(path)
        if m is None:
            return None
        target = _expand(self.path, m, PATH_SAFE)
        if self.query is None:
            return target, query_string
        query = _expand(self.query, m, QUERY_SAFE)
        if not query:  # a trailing "?" drops the request's query
            return target, ""
        if query_string:
            query += "&" + query_string[1:]
        return target, "?" + query


@handlet("rewriter")
class Rewriter(Handlet):
    """Applies its ``.rules`` in order: internal rewrites change the path and go on; the first
    matching redirect rule answers 301/302. Returns False unless it redirected."""

    def on_configure(self) -> None:
        self.rules: list[RewriteRule] = []
        self.configure_list("rules", required=True)  # marks the property used, reports a non-list
        value = self.configure_value("rules")
        if value is None or value.kind != LIST:
            return
        if not value.data:
            self.error(".rules is empty, expected at least one rule", value.loc)
        for item in value.data:
            fields = self._fields(item)
            if fields is None:
                continue
            try:
                self.rules.append(RewriteRule.build(*fields))
            except ValueError as e:
                self.error(f".rules: the rule {e}", item.loc)

    def _fields(self, item: Value) -> tuple[str, ...] | None:
        """(regex, replacement[, flag]) from a list or a dict item; None after reporting."""
        loc: Location = item.loc
        if item.kind == LIST:
            if not 2 <= len(item.data) <= 3 or any(v.kind != STRING for v in item.data):
                self.error('.rules holds a list that is not ("regex", "replacement"[, "redirect" or "permanent"])', loc)
                return None
            return tuple(v.data for v in item.data)
        if item.kind == DICT:
            keys = set(item.data)
            unknown = keys - {"regex", "replacement", "flag"}
            if unknown or not {"regex", "replacement"} <= keys or any(v.kind != STRING for v in item.data.values()):
                self.error('.rules holds a dict that is not ["regex": "...", "replacement": "..."(, "flag": "...")]', loc)
                return None
            return item.data["regex"].data, item.data["replacement"].data, item.data.get("flag", Value(STRING, "", loc)).data
        self.error(f'.rules holds {item.describe()}, expected a list ("regex", "replacement"[, flag]) or a dict', loc)
        return None

    def handle(self, req: "Request", resp: "Response") -> bool:
        path, query = req.path, req.query_string
        changed = False
        for rule in self.rules:
            result = rule.apply(path, query)
            if result is None:
                continue
            target, query = result
            if rule.status:
                resp.redirect(target + query, rule.status)
                return True
            path = decode_path(target)
            changed = True
        if changed:
            rewrite_request(req, path, query)
        return False


def rewrite_request(req: "Request", path: str, query_string: str) -> None:
    """Point a request at a new (decoded, normalised) path and query, dropping what was derived
    from the old ones."""
    req.path = path
    req.encoded_path = quote(path, safe=PATH_SAFE)
    if query_string != req.query_string:
        req.query_string = query_string
        req._query = None
    req.fs_cache = None
