"""Builds the block tree from tokens.

Grammar (terminals in CAPS)::

    config  = "stage" "{" items "}" EOF
    items   = { PROPERTY "=" value | block }
    block   = IDENT [ STRING ] [ cond ] "{" items "}"      (cond only after rule / case)
    cond    = VARIABLE ( COMPARE patterns | FSCHECK )
    patterns= STRING | "(" STRING { "," STRING } [ "," ] ")"
    value   = term { "+" term }                             (+ joins strings only)
    term    = BOOL | INT | SIZE | DURATION | STRING | CONSTANT | PROPERTY | list | dict
    list    = "(" [ value { "," value } [ "," ] ] ")"
    dict    = "[" [ STRING ":" value { "," STRING ":" value } [ "," ] ] "]"

A property reference (``.def = .abc``) takes the value of a property assigned earlier in this
block or an enclosing one, as Gorox does.
"""

from __future__ import annotations

import os
import re

from .errors import ConfigError, Location, Problem
from .lexer import (BOOL, COMPARE, CONSTANT, DURATION, EOF, EQUAL, FSCHECK, IDENT, INT, PROPERTY, PUNCT,
                    SIZE, STRING, VARIABLE, Lexer, Token, _read_file, Reader)
from .tree import DICT, LIST, Block, Condition, Value
from . import tree

RULE_VARIABLES = ("method", "scheme", "authority", "hostname", "colonPort", "path", "uri",
                  "encodedPath", "queryString", "contentType")
CASE_VARIABLES = ("srcHost", "srcPort", "transport", "hostname")
CONSTANTS = ("baseDir", "logsDir", "tempDir", "varsDir")

# Blocks, lists and dicts nest by recursion; past this depth a config is certainly a mistake,
# and stopping here keeps a hostile file from exhausting Python's stack (RecursionError).
MAX_NESTING = 100

_VALUE_KINDS = {BOOL: tree.BOOL, INT: tree.INT, SIZE: tree.SIZE, DURATION: tree.DURATION, STRING: tree.STRING}


class Parser:
    def __init__(self, tokens: list[Token], constants: dict[str, str]) -> None:
        self.tokens = tokens
        self.i = 0
        self.constants = constants
        self.depth = 0

    # -- token helpers -------------------------------------------------------------------------
    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != EOF:
            self.i += 1
        return tok

    def fail(self, tok: Token, expected: str) -> ConfigError:
        return ConfigError(f"found {tok.describe()}, expected {expected}", tok.loc)

    def expect_punct(self, ch: str, what: str | None = None) -> Token:
        tok = self.next()
        if tok.kind != PUNCT or tok.text != ch:
            raise self.fail(tok, what or f"'{ch}'")
        return tok

    def enter(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ConfigError(f"found {tok.describe()} nested more than {MAX_NESTING} levels deep, "
                              "expected a flatter config", tok.loc)

    def is_punct(self, ch: str) -> bool:
        tok = self.peek()
        return tok.kind == PUNCT and tok.text == ch

    # -- structure -----------------------------------------------------------------------------
    def parse(self) -> Block:
        tok = self.next()
        if tok.kind != IDENT or tok.text != "stage":
            raise self.fail(tok, "'stage {' at the top of the config")
        stage = Block("stage", None, None, tok.loc)
        self.expect_punct("{", "'{' after stage")
        self.items(stage)
        tok = self.next()
        if tok.kind != EOF:
            raise self.fail(tok, "end of file after the closing '}' of stage")
        return stage

    def items(self, block: Block) -> None:
        while True:
            tok = self.peek()
            if tok.kind == PUNCT and tok.text == "}":
                self.next()
                return
            if tok.kind == PROPERTY:
                self.assign(block)
            elif tok.kind == IDENT:
                block.children.append(self.block(block))
            elif tok.kind == EOF:
                raise ConfigError(f"found end of file, expected '}}' to close {block.describe()} opened at {block.loc}", tok.loc)
            else:
                raise self.fail(tok, f"a property (.name = value), a component or '}}' in {block.describe()}")

    def block(self, parent: Block) -> Block:
        sign_tok = self.next()
        name: str | None = None
        if self.peek().kind == STRING:
            name_tok = self.next()
            name = name_tok.text
            if not name:
                raise ConfigError(f"found an empty name for {sign_tok.text}, expected a non-empty string", name_tok.loc)
        cond: Condition | None = None
        if self.peek().kind == VARIABLE:
            cond = self.condition(sign_tok)
        block = Block(sign_tok.text, name, cond, sign_tok.loc, parent=parent)
        tok = self.next()
        if tok.kind != PUNCT or tok.text != "{":
            if sign_tok.text in ("rule", "case"):
                raise self.fail(tok, f"a name, a condition ($variable OP pattern) or '{{' after {sign_tok.text}")
            raise self.fail(tok, f"a name (a string) or '{{' after component '{sign_tok.text}'")
        self.enter(sign_tok)
        self.items(block)
        self.depth -= 1
        return block

    def condition(self, sign_tok: Token) -> Condition:
        var = self.next()
        if sign_tok.text not in ("rule", "case"):
            raise ConfigError(f"found condition ${var.text} on '{sign_tok.text}', expected conditions only on rule and case", var.loc)
        known = RULE_VARIABLES if sign_tok.text == "rule" else CASE_VARIABLES
        if var.text not in known:
            raise ConfigError(f"found unknown {sign_tok.text} variable ${var.text}, expected one of "
                              + " ".join("$" + v for v in known), var.loc)
        op_tok = self.next()
        if op_tok.kind == FSCHECK:
            if sign_tok.text != "rule":
                raise ConfigError(f"found file test {op_tok.text} in a case, expected a comparison (file tests are for rules)", op_tok.loc)
            if var.text != "path":
                raise ConfigError(f"found file test {op_tok.text} on ${var.text}, expected $path (only paths can be tested against the file system)", op_tok.loc)
            return Condition(var.text, op_tok.text, [], op_tok.loc, var.loc)
        if op_tok.kind != COMPARE:
            raise self.fail(op_tok, "a comparison operator (== ^= $= *= ~= != !^ !$ !* !~)" +
                            (" or a file test (-f -d -e -D -E !f !d !e)" if sign_tok.text == "rule" else ""))
        patterns: list[tuple[str, Location]] = []
        tok = self.next()
        if tok.kind == STRING:
            patterns.append((tok.text, tok.loc))
        elif tok.kind == PUNCT and tok.text == "(":
            while True:
                tok = self.next()
                if tok.kind == PUNCT and tok.text == ")" and patterns:
                    break
                if tok.kind != STRING:
                    raise self.fail(tok, "a string pattern" if not patterns else "a string pattern or ')'")
                patterns.append((tok.text, tok.loc))
                tok = self.next()
                if tok.kind == PUNCT and tok.text == ")":
                    break
                if tok.kind != PUNCT or tok.text != ",":
                    raise self.fail(tok, "',' or ')' in the pattern list")
        else:
            raise self.fail(tok, "a string pattern or a list of them (\"a\", \"b\")")
        for text, loc in patterns:
            if not text:
                raise ConfigError("found an empty pattern, expected a non-empty string", loc)
            if op_tok.text in ("~=", "!~"):
                try:
                    re.compile(text)
                except re.error as e:
                    raise ConfigError(f"found a bad regular expression \"{text}\": {e}", loc) from None
        return Condition(var.text, op_tok.text, [p for p, _ in patterns], op_tok.loc, var.loc)

    # -- values --------------------------------------------------------------------------------
    def assign(self, block: Block) -> None:
        prop = self.next()
        eq = self.next()
        if eq.kind != EQUAL:
            if eq.kind == PUNCT and eq.text == "{":
                raise ConfigError(f"found '{{' after property .{prop.text}, expected '=' (component signs have no leading dot)", eq.loc)
            raise self.fail(eq, f"'=' after property .{prop.text}")
        value = self.value(block, prop)
        block.props[prop.text] = value
        block.prop_locs[prop.text] = prop.loc

    def value(self, block: Block, prop: Token) -> Value:
        left = self.term(block, prop)
        while self.is_punct("+"):
            plus = self.next()
            if left.kind != tree.STRING:
                raise ConfigError(f"found '+' after {left.describe()}, expected '+' only between strings", plus.loc)
            right = self.term(block, prop)
            if right.kind != tree.STRING:
                raise ConfigError(f"found {right.describe()} after '+', expected a string", right.loc)
            left = Value(tree.STRING, left.data + right.data, left.loc)
        return left

    def term(self, block: Block, prop: Token) -> Value:
        tok = self.next()
        kind = _VALUE_KINDS.get(tok.kind)
        if kind is not None:
            return Value(kind, tok.value, tok.loc)
        if tok.kind == CONSTANT:
            if tok.text not in self.constants:
                known = " ".join("%" + c for c in sorted(self.constants))
                raise ConfigError(f"found unknown constant %{tok.text}, expected "
                                  + (f"one of {known}" if known else "no constant (none are defined here)"), tok.loc)
            return Value(tree.STRING, self.constants[tok.text], tok.loc)
        if tok.kind == PROPERTY:
            if tok.text == prop.text and prop.text not in block.props:
                # `.x = .x` would find an ancestor's .x; Gorox calls that self-reference an error.
                raise ConfigError(f"found .{tok.text} referring to itself, expected another property", tok.loc)
            found = block.find(tok.text)
            if found is None:
                raise ConfigError(f"found reference to .{tok.text}, expected a property assigned before this line in this block or an enclosing one", tok.loc)
            return Value(found.kind, found.data, tok.loc)
        if tok.kind == PUNCT and tok.text == "(":
            self.enter(tok)
            items: list[Value] = []
            while not self.is_punct(")"):
                items.append(self.value(block, prop))
                if self.is_punct(","):
                    self.next()
                elif not self.is_punct(")"):
                    raise self.fail(self.peek(), "',' or ')' in the list")
            self.next()
            self.depth -= 1
            return Value(LIST, items, tok.loc)
        if tok.kind == PUNCT and tok.text == "[":
            self.enter(tok)
            entries: dict[str, Value] = {}
            while not self.is_punct("]"):
                key = self.next()
                if key.kind != STRING:
                    raise self.fail(key, "a string key or ']' in the dict")
                self.expect_punct(":", f"':' after the dict key \"{key.text}\"")
                entries[key.text] = self.value(block, prop)
                if self.is_punct(","):
                    self.next()
                elif not self.is_punct("]"):
                    raise self.fail(self.peek(), "',' or ']' in the dict")
            self.next()
            self.depth -= 1
            return Value(DICT, entries, tok.loc)
        raise self.fail(tok, f"a value for .{prop.text} (a string, number, size, duration, bool, list, dict, %constant or .property)")


def parse_text(text: str, *, file: str = "<text>", constants: dict[str, str] | None = None,
               include_dir: str | None = None, reader: Reader = _read_file, strict: bool = True) -> Block:
    """Parse config text. Includes resolve against ``include_dir`` (None forbids them).

    An include file that cannot be read does not stop the parse. With ``strict`` (the default)
    such problems raise ConfigError at the end; without it they are left on the root block's
    ``problems`` for the caller (the stage) to report along with everything else it finds.
    """
    including = (os.path.realpath(file),) if file != "<text>" else ()
    lexer = Lexer(text, file, include_dir=include_dir, including=including, reader=reader)
    try:
        block = Parser(lexer.tokens(), constants or {}).parse()
    except ConfigError as e:
        if lexer.problems:
            raise ConfigError(_in_order(lexer.problems + e.problems)) from None
        raise
    if lexer.problems and strict:
        raise ConfigError(_in_order(lexer.problems))
    block.problems = _in_order(lexer.problems)
    return block


def _in_order(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.location.file, p.location.line, p.location.col)
                  if p.location else ("", 0, 0))


def parse_file(path: str, *, constants: dict[str, str] | None = None, reader: Reader = _read_file,
               strict: bool = True) -> Block:
    try:
        text = reader(path)
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise ConfigError(f"cannot read config file {path}: {getattr(e, 'strerror', None) or e}") from None
    return parse_text(text, file=path, constants=constants, include_dir=os.path.dirname(os.path.abspath(path)),
                      reader=reader, strict=strict)
