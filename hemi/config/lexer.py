"""Turns config text into tokens. Includes (``<path>``) are expanded here, so the parser sees
one token stream whose tokens still name the file they came from."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from .errors import ConfigError, Location, Problem

# Token kinds.
IDENT, STRING, INT, SIZE, DURATION, BOOL = "identifier", "string", "integer", "size", "duration", "bool"
PROPERTY, CONSTANT, VARIABLE, COMPARE, FSCHECK, EQUAL, PUNCT, EOF = (
    "property", "constant", "variable", "operator", "file test", "'='", "punctuation", "end of file")

COMPARE_OPS = ("==", "^=", "$=", "*=", "~=", "!=", "!^", "!$", "!*", "!~")
FSCHECK_OPS = ("-f", "-d", "-e", "-D", "-E", "!f", "!d", "!e")
SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
PUNCTS = "{}[](),:+"
DIGITS = "0123456789"  # not str.isdigit(): that accepts '²' and other digits int() refuses
INT_MAX = (1 << 63) - 1  # integers and sizes are signed 64-bit, as in Gorox


@dataclass(slots=True)
class Token:
    kind: str
    text: str  # the token's meaning: string contents, property name without '.', operator...
    value: object
    loc: Location

    def describe(self) -> str:
        if self.kind in (PUNCT, EQUAL):
            return f"'{self.text}'"
        if self.kind == EOF:
            return "end of file"
        if self.kind == STRING:
            shown = self.text if len(self.text) <= 30 else self.text[:27] + "..."
            return f'string "{shown}"'
        prefix = {PROPERTY: ".", CONSTANT: "%", VARIABLE: "$"}.get(self.kind, "")
        return f"{self.kind} '{prefix}{self.text}'"


def _is_ident_start(c: str) -> bool:
    return c.isascii() and (c.isalpha() or c == "_")


def _is_ident_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "_")


Reader = Callable[[str], str]


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


class Lexer:
    """Scans one file or text. ``including`` is the chain of files being read, for cycle checks."""

    def __init__(self, text: str, file: str, *, include_dir: str | None,
                 including: tuple[str, ...] = (), reader: Reader = _read_file,
                 problems: list[Problem] | None = None) -> None:
        self.text = text
        self.file = file
        self.include_dir = include_dir
        self.including = including
        self.reader = reader
        # Include files that cannot be read are recorded here and lexing goes on: the rest of
        # the text is still sound, so every other mistake can be reported in the same run.
        self.problems: list[Problem] = [] if problems is None else problems
        self.pos = 0
        self.line = 1
        self.line_start = 0

    def loc(self, pos: int | None = None) -> Location:
        p = self.pos if pos is None else pos
        return Location(self.file, self.line, p - self.line_start + 1)

    def fail(self, message: str, loc: Location | None = None) -> ConfigError:
        return ConfigError(message, loc or self.loc())

    def _newlines(self, start: int, end: int) -> None:
        """Advance the line counter over text[start:end] (strings and comments may span lines)."""
        count = self.text.count("\n", start, end)
        if count:
            self.line += count
            self.line_start = self.text.rindex("\n", start, end) + 1

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        text, n = self.text, len(self.text)
        while True:
            # Skip blanks and comments.
            while self.pos < n:
                c = text[self.pos]
                if c == "\n":
                    self.pos += 1
                    self.line += 1
                    self.line_start = self.pos
                elif c in " \t\r\f\v":
                    self.pos += 1
                elif c == "#" or text.startswith("//", self.pos):
                    end = text.find("\n", self.pos)
                    self.pos = n if end < 0 else end
                elif text.startswith("/*", self.pos):
                    end = text.find("*/", self.pos + 2)
                    if end < 0:
                        raise self.fail("found an unterminated comment '/*', expected '*/' before the end of file")
                    self._newlines(self.pos, end)
                    self.pos = end + 2
                else:
                    break
            if self.pos >= n:
                out.append(Token(EOF, "", None, self.loc()))
                return out
            start = self.pos
            loc = self.loc()
            c = text[start]
            if c in "\"`":
                end = text.find(c, start + 1)
                if end < 0:
                    raise self.fail(f"found an unterminated string, expected a closing {c}", loc)
                body = text[start + 1:end]
                self._newlines(start, end)
                self.pos = end + 1
                out.append(Token(STRING, body, body, loc))
            elif c in DIGITS or (c == "-" and start + 1 < n and text[start + 1] in DIGITS):
                out.append(self._number(loc))
            elif c in PUNCTS:
                self.pos += 1
                out.append(Token(PUNCT, c, None, loc))
            elif c == "<":
                out.extend(self._include(loc))
            elif c == "=":
                if text.startswith("==", start):
                    self.pos += 2
                    out.append(Token(COMPARE, "==", None, loc))
                else:
                    self.pos += 1
                    out.append(Token(EQUAL, "=", None, loc))
            elif c in "^$*~" and text.startswith("=", start + 1):
                self.pos += 2
                out.append(Token(COMPARE, c + "=", None, loc))
            elif c == "!":
                two = text[start:start + 2]
                if two in COMPARE_OPS:
                    self.pos += 2
                    out.append(Token(COMPARE, two, None, loc))
                elif two in FSCHECK_OPS and not (start + 2 < n and _is_ident_char(text[start + 2])):
                    self.pos += 2
                    out.append(Token(FSCHECK, two, None, loc))
                else:
                    raise self.fail(f"found '{two}', expected an operator (one of {' '.join(COMPARE_OPS[5:])} !f !d !e)", loc)
            elif c == "-":
                two = text[start:start + 2]
                if two in FSCHECK_OPS and not (start + 2 < n and _is_ident_char(text[start + 2])):
                    self.pos += 2
                    out.append(Token(FSCHECK, two, None, loc))
                else:
                    raise self.fail(f"found '{two}', expected a file test (-f -d -e -D -E) or a number", loc)
            elif c in ".%$":
                self.pos += 1
                name_start = self.pos
                while self.pos < n and _is_ident_char(text[self.pos]):
                    self.pos += 1
                name = text[name_start:self.pos]
                what = {".": "property", "%": "constant", "$": "variable"}[c]
                if not name or not _is_ident_start(name[0]):
                    raise self.fail(f"found '{c}' without a name, expected a {what} name after it", loc)
                kind = {".": PROPERTY, "%": CONSTANT, "$": VARIABLE}[c]
                out.append(Token(kind, name, None, loc))
            elif _is_ident_start(c):
                while self.pos < n and _is_ident_char(text[self.pos]):
                    self.pos += 1
                word = text[start:self.pos]
                if word in ("true", "false"):
                    out.append(Token(BOOL, word, word == "true", loc))
                else:
                    out.append(Token(IDENT, word, None, loc))
            elif c in "&|":
                raise self.fail(f"found '{text[start:start + 2]}', expected one condition: compound conditions (&& ||) are not supported; use several rules", loc)
            else:
                shown = repr(c) if c.isprintable() else f"character U+{ord(c):04X}"
                raise self.fail(f"found unexpected {shown}, expected a property, a value, a component or a comment", loc)

    def _number(self, loc: Location) -> Token:
        text, n = self.text, len(self.text)
        start = self.pos
        if text[self.pos] == "-":
            self.pos += 1
        while self.pos < n and text[self.pos] in DIGITS:
            self.pos += 1
        digits = text[start:self.pos]
        unit_start = self.pos
        while self.pos < n and _is_ident_char(text[self.pos]):
            self.pos += 1
        unit = text[unit_start:self.pos]
        shown = (digits if len(digits) <= 24 else digits[:21] + "...") + unit
        if unit and unit not in SIZE_UNITS and unit not in DURATION_UNITS:
            raise self.fail(f"found '{shown}', expected an integer, a size (K M G T) or a duration (ms s m h d)", loc)
        # A number past 64 bits is a mistake; checking the length first also keeps int() from
        # converting thousands of digits (which Python refuses past 4300).
        number = int(digits) if len(digits) <= 20 else INT_MAX + 1
        if not -INT_MAX - 1 <= number * SIZE_UNITS.get(unit, 1) <= INT_MAX:
            raise self.fail(f"found '{shown}', expected a number between -2^63 and 2^63-1", loc)
        if not unit:
            return Token(INT, digits, number, loc)
        if unit in SIZE_UNITS:
            return Token(SIZE, digits + unit, number * SIZE_UNITS[unit], loc)
        return Token(DURATION, digits + unit, number * DURATION_UNITS[unit], loc)

    def _include(self, loc: Location) -> list[Token]:
        text = self.text
        end = text.find(">", self.pos + 1)
        newline = text.find("\n", self.pos + 1)
        if end < 0 or (0 <= newline < end):
            raise self.fail("found '<' without a closing '>' on the same line, expected an include <path>", loc)
        raw = text[self.pos + 1:end].strip()
        self.pos = end + 1
        if not raw:
            raise self.fail("found an empty include '<>', expected a file path", loc)
        if self.include_dir is None:
            raise self.fail(f"found include <{raw}>, but includes need a file to be relative to (text was given)", loc)
        if "\0" in raw:
            raise self.fail("found a NUL character in an include path, expected a file path", loc)
        path = os.path.normpath(os.path.join(self.include_dir, raw))
        real = os.path.realpath(path)
        if real in self.including:
            chain = " -> ".join(list(self.including) + [real])
            raise self.fail(f"found an include cycle, expected each file to be included once in a chain: {chain}", loc)
        try:
            content = self.reader(path)
        except OSError as e:
            self.problems.append(Problem(loc, f"cannot include <{raw}>: {e.strerror or e}"))
            return []
        except UnicodeDecodeError:
            self.problems.append(Problem(loc, f"cannot include <{raw}>: not UTF-8 text"))
            return []
        sub = Lexer(content, path, include_dir=os.path.dirname(path),
                    including=self.including + (real,), reader=self.reader, problems=self.problems)
        tokens = sub.tokens()
        tokens.pop()  # the included file's EOF
        return tokens
