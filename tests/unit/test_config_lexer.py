"""The config lexer, token by token: every token kind, where each token is (line and column,
also after multi-line strings and comments), and every error the lexer can raise, with its
message and its exact place."""

from __future__ import annotations

import pytest

from hemi.config import ConfigError
from hemi.config.errors import Location
from hemi.config.lexer import (BOOL, COMPARE, CONSTANT, DURATION, EOF, EQUAL, FSCHECK, IDENT, INT, PROPERTY,
                               PUNCT, SIZE, STRING, VARIABLE, Lexer, Token)


def lex(text: str) -> list[Token]:
    tokens = Lexer(text, "<text>", include_dir=None).tokens()
    assert tokens[-1].kind == EOF
    return tokens[:-1]


def one(text: str) -> Token:
    tokens = lex(text)
    assert len(tokens) == 1, tokens
    return tokens[0]


def lex_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Lexer(text, "<text>", include_dir=None).tokens()
    return info.value


# -- single tokens: (source, kind, text, value) ------------------------------------------------------
TOKENS = [
    # strings: both quotes, no escapes, the other quote inside, empty, spanning lines
    ('"abc"', STRING, "abc", "abc"),
    ("`abc`", STRING, "abc", "abc"),
    ('""', STRING, "", ""),
    ("``", STRING, "", ""),
    ('`say "hi"`', STRING, 'say "hi"', 'say "hi"'),
    ('"it`s"', STRING, "it`s", "it`s"),
    ('"a\\nb"', STRING, "a\\nb", "a\\nb"),  # a backslash is just a character
    ('"line1\nline2"', STRING, "line1\nline2", "line1\nline2"),
    ('"  spaced  "', STRING, "  spaced  ", "  spaced  "),
    ('"ünïcödé"', STRING, "ünïcödé", "ünïcödé"),
    # integers, negative integers
    ("0", INT, "0", 0),
    ("42", INT, "42", 42),
    ("007", INT, "007", 7),
    ("-7", INT, "-7", -7),
    ("-0", INT, "-0", 0),
    ("9223372036854775807", INT, "9223372036854775807", (1 << 63) - 1),
    ("-9223372036854775808", INT, "-9223372036854775808", -(1 << 63)),
    ("8388607T", SIZE, "8388607T", (1 << 63) - (1 << 40)),
    # sizes
    ("1K", SIZE, "1K", 1 << 10),
    ("64K", SIZE, "64K", 64 << 10),
    ("16M", SIZE, "16M", 16 << 20),
    ("2G", SIZE, "2G", 2 << 30),
    ("1T", SIZE, "1T", 1 << 40),
    ("-1K", SIZE, "-1K", -1024),
    ("0K", SIZE, "0K", 0),
    # durations (in seconds)
    ("500ms", DURATION, "500ms", 0.5),
    ("0ms", DURATION, "0ms", 0.0),
    ("30s", DURATION, "30s", 30.0),
    ("5m", DURATION, "5m", 300.0),
    ("2h", DURATION, "2h", 7200.0),
    ("1d", DURATION, "1d", 86400.0),
    ("-3s", DURATION, "-3s", -3.0),
    # bools
    ("true", BOOL, "true", True),
    ("false", BOOL, "false", False),
    # identifiers (component signs)
    ("static", IDENT, "static", None),
    ("http1Proxy", IDENT, "http1Proxy", None),
    ("_private", IDENT, "_private", None),
    ("snake_case", IDENT, "snake_case", None),
    ("trueish", IDENT, "trueish", None),
    ("False", IDENT, "False", None),
    ("stage", IDENT, "stage", None),
    # properties, constants, variables
    (".prop", PROPERTY, "prop", None),
    (".maxConnsPerGate", PROPERTY, "maxConnsPerGate", None),
    (".a_1", PROPERTY, "a_1", None),
    ("%baseDir", CONSTANT, "baseDir", None),
    ("%anything", CONSTANT, "anything", None),
    ("$path", VARIABLE, "path", None),
    ("$queryString", VARIABLE, "queryString", None),
    ("$x_y", VARIABLE, "x_y", None),
    # '=' and punctuation
    ("=", EQUAL, "=", None),
    ("{", PUNCT, "{", None),
    ("}", PUNCT, "}", None),
    ("[", PUNCT, "[", None),
    ("]", PUNCT, "]", None),
    ("(", PUNCT, "(", None),
    (")", PUNCT, ")", None),
    (",", PUNCT, ",", None),
    (":", PUNCT, ":", None),
    ("+", PUNCT, "+", None),
]
TOKENS += [(op, COMPARE, op, None) for op in ("==", "^=", "$=", "*=", "~=", "!=", "!^", "!$", "!*", "!~")]
TOKENS += [(op, FSCHECK, op, None) for op in ("-f", "-d", "-e", "-D", "-E", "!f", "!d", "!e")]


@pytest.mark.parametrize("source,kind,text,value", TOKENS, ids=[t[0] for t in TOKENS])
def test_token(source: str, kind: str, text: str, value: object) -> None:
    tok = one(source)
    assert (tok.kind, tok.text) == (kind, text)
    if value is not None:
        assert tok.value == value and type(tok.value) is type(value)
    assert tok.loc == Location("<text>", 1, 1)


@pytest.mark.parametrize("source,kind,text,value", TOKENS, ids=[t[0] for t in TOKENS])
def test_token_location_after_indent(source: str, kind: str, text: str, value: object) -> None:
    """Each token is found after blanks and a line break, with its column counted from 1."""
    tokens = lex("x\n \t " + source + " y")
    assert [t.kind for t in tokens] == [IDENT, kind, IDENT]
    assert tokens[1].loc == Location("<text>", 2, 4)
    extra_lines = source.count("\n")
    assert tokens[2].loc.line == 2 + extra_lines


def test_sequence_without_spaces() -> None:
    tokens = lex('rule $path^=("/a","/b"){.x=1+2}')
    assert [(t.kind, t.text) for t in tokens] == [
        (IDENT, "rule"), (VARIABLE, "path"), (COMPARE, "^="), (PUNCT, "("), (STRING, "/a"), (PUNCT, ","),
        (STRING, "/b"), (PUNCT, ")"), (PUNCT, "{"), (PROPERTY, "x"), (EQUAL, "="), (INT, "1"), (PUNCT, "+"),
        (INT, "2"), (PUNCT, "}")]


def test_dollar_equal_is_an_operator_not_a_variable() -> None:
    assert [(t.kind, t.text) for t in lex("$path $= $a")] == [(VARIABLE, "path"), (COMPARE, "$="), (VARIABLE, "a")]


def test_double_equal_then_equal() -> None:
    assert [(t.kind, t.text) for t in lex("===")] == [(COMPARE, "=="), (EQUAL, "=")]


def test_file_test_followed_by_brace_or_space() -> None:
    assert [(t.kind, t.text) for t in lex("-f{!e}")] == [(FSCHECK, "-f"), (PUNCT, "{"), (FSCHECK, "!e"), (PUNCT, "}")]


def test_number_then_minus_number() -> None:
    assert [(t.kind, t.value) for t in lex("5-3")] == [(INT, 5), (INT, -3)]


def test_every_token_records_its_file() -> None:
    tokens = Lexer(".a = 1", "conf/x.conf", include_dir=None).tokens()
    assert {t.loc.file for t in tokens} == {"conf/x.conf"}


def test_empty_text_is_just_eof() -> None:
    tokens = Lexer("", "<text>", include_dir=None).tokens()
    assert [(t.kind, t.loc) for t in tokens] == [(EOF, Location("<text>", 1, 1))]


def test_eof_location_is_after_the_last_line() -> None:
    tokens = Lexer("a\nbb\n  ", "<text>", include_dir=None).tokens()
    assert tokens[-1].loc == Location("<text>", 3, 3)


# -- line numbers after multi-line strings and comments -------------------------------------------------
@pytest.mark.parametrize("source,line,col", [
    ('"a\nb\nc" .x', 3, 4),
    ('`a\n\n\n` .x', 4, 3),
    ('"a\r\nb" .x', 2, 4),
    ("/* a\n b */ .x", 2, 7),
    ("/*\n\n\n*/.x", 4, 3),
    ("# hash comment\n.x", 2, 1),
    ("// line comment\n  .x", 2, 3),
    ("#\n#\n//\n.x", 4, 1),
    ("/* one line */ .x", 1, 16),
    ("/**/.x", 1, 5),
    ("/* a * / b */.x", 1, 14),
    ('"/* not a comment */" .x', 1, 23),
    ('"# not a comment" .x', 1, 19),
    (".a = 1 // trailing\n.x", 2, 1),
    (".a = 1 # trailing\n.x", 2, 1),
    ("/* nested /* is not special */ .x", 1, 32),
])
def test_location_after_multiline_strings_and_comments(source: str, line: int, col: int) -> None:
    last = lex(source)[-1]
    assert (last.kind, last.text) == (PROPERTY, "x")
    assert (last.loc.line, last.loc.col) == (line, col)


@pytest.mark.parametrize("source", ["# only a comment", "// only a comment", "/* only\n a comment */", "   \n\t\r\n"])
def test_comments_and_blanks_produce_no_tokens(source: str) -> None:
    assert lex(source) == []


def test_comment_markers_inside_strings_are_text() -> None:
    assert one('"a // b # c /* d */"').text == "a // b # c /* d */"


def test_slash_star_slash_is_not_a_complete_comment() -> None:
    """Unlike Gorox, ``/*/`` does not close the comment it opens: the closing mark is ``*/``."""
    err = lex_error("/*/ .x")
    assert "unterminated comment" in err.message


# -- errors: (source, words in the message, line, column) ----------------------------------------------
ERRORS = [
    # strings and comments that never end: the place is where they start
    ('.a = "abc', ['unterminated string', 'expected a closing "'], 1, 6),
    (".a = `abc\n\n", ["unterminated string", "expected a closing `"], 1, 6),
    ('.a = "x"\n  "open', ["unterminated string"], 2, 3),
    ("x /* abc", ["unterminated comment '/*'", "expected '*/'"], 1, 3),
    ("x\n  /* a\n b", ["unterminated comment"], 2, 3),
    # operators
    ("$a !x", ["found '!x'", "expected an operator", "!="], 1, 4),
    ("$a !D", ["found '!D'", "expected an operator"], 1, 4),
    ("$a !E", ["found '!E'", "expected an operator"], 1, 4),
    ("!", ["found '!'", "expected an operator"], 1, 1),
    ("$a !fx", ["found '!f'", "expected an operator"], 1, 4),
    ("-x", ["found '-x'", "expected a file test (-f -d -e -D -E) or a number"], 1, 1),
    ("-", ["found '-'", "expected a file test"], 1, 1),
    ("  -F", ["found '-F'", "expected a file test"], 1, 3),
    ("$path -fx", ["found '-f'", "expected a file test"], 1, 7),
    ("$path -e_", ["found '-e'", "expected a file test"], 1, 7),
    ("$a && $b", ["found '&&'", "compound conditions (&& ||) are not supported"], 1, 4),
    ("$a || $b", ["found '||'", "compound conditions"], 1, 4),
    ("&", ["found '&'", "compound conditions"], 1, 1),
    # property, constant and variable marks without a name
    (".", ["found '.' without a name", "expected a property name"], 1, 1),
    (".a = .", ["found '.' without a name", "expected a property name"], 1, 6),
    (". a", ["found '.' without a name"], 1, 1),
    (".1a", ["found '.' without a name"], 1, 1),
    ("%", ["found '%' without a name", "expected a constant name"], 1, 1),
    ("%1", ["found '%' without a name", "expected a constant name"], 1, 1),
    ("$", ["found '$' without a name", "expected a variable name"], 1, 1),
    ("rule $ {", ["found '$' without a name", "expected a variable name"], 1, 6),
    # numbers
    ("10x", ["found '10x'", "expected an integer, a size (K M G T) or a duration (ms s m h d)"], 1, 1),
    ("8k", ["found '8k'", "expected an integer, a size"], 1, 1),
    ("1KB", ["found '1KB'", "expected an integer, a size"], 1, 1),
    ("3S", ["found '3S'", "a duration (ms s m h d)"], 1, 1),
    ("10sec", ["found '10sec'"], 1, 1),
    ("1e5", ["found '1e5'"], 1, 1),
    ("0x10", ["found '0x10'"], 1, 1),
    ("1.5s", ["found '.' without a name"], 1, 2),
    ("9223372036854775808", ["found '9223372036854775808'", "expected a number between -2^63 and 2^63-1"], 1, 1),
    ("-9223372036854775809", ["found '-9223372036854775809'", "expected a number between"], 1, 1),
    ("8388608T", ["found '8388608T'", "expected a number between"], 1, 1),  # 2^23 * 2^40
    ("99999999999999999999999d", ["found '99999999999999999999999d'", "expected a number between"], 1, 1),
    ("  " + "9" * 5000, ["found '999999999999999999999...'", "expected a number between"], 1, 3),
    # characters that start no token
    ("@", ["found unexpected '@'", "expected a property, a value, a component or a comment"], 1, 1),
    ("'single'", ["found unexpected \"'\""], 1, 1),
    ("a;", ["found unexpected ';'"], 1, 2),
    ("a\n\n   ?", ["found unexpected '?'"], 3, 4),
    ("\x00", ["found unexpected character U+0000"], 1, 1),
    ("\x7f", ["found unexpected character U+007F"], 1, 1),
    ("é", ["found unexpected 'é'"], 1, 1),
    ("1²", ["found unexpected '²'"], 1, 2),
    ("٣", ["found unexpected '٣'"], 1, 1),
    ("\\", ["found unexpected '\\\\'"], 1, 1),
    # includes in text mode and malformed includes
    ("<a.conf>", ["found include <a.conf>", "includes need a file"], 1, 1),
    ("x <a.conf", ["found '<' without a closing '>'", "expected an include <path>"], 1, 3),
    ("<a.conf\n>", ["found '<' without a closing '>' on the same line"], 1, 1),
    ("<>", ["found an empty include '<>'", "expected a file path"], 1, 1),
    ("< \t >", ["found an empty include"], 1, 1),
]


@pytest.mark.parametrize("source,words,line,col", ERRORS, ids=[repr(e[0])[:40] for e in ERRORS])
def test_lexer_error(source: str, words: list[str], line: int, col: int) -> None:
    err = lex_error(source)
    assert len(err.problems) == 1
    for word in words:
        assert word in err.message, (word, err.message)
    assert err.location == Location("<text>", line, col)
    assert str(err) == f"<text>:{line}:{col}: {err.message}"


def test_error_location_names_the_file() -> None:
    with pytest.raises(ConfigError) as info:
        Lexer('\n\n  "x', "/etc/gorox/a.conf", include_dir=None).tokens()
    assert str(info.value).startswith("/etc/gorox/a.conf:3:3: found an unterminated string")


def test_describe_tokens_for_messages() -> None:
    """The words the parser uses to say what it found."""
    shown = [t.describe() for t in lex('{ = "s" .p %c $v static 1 2K 3s true == -f')]
    assert shown == ["'{'", "'='", 'string "s"', "property '.p'", "constant '%c'", "variable '$v'",
                     "identifier 'static'", "integer '1'", "size '2K'", "duration '3s'", "bool 'true'",
                     "operator '=='", "file test '-f'"]
    long = one('"' + "x" * 40 + '"').describe()
    assert long == 'string "' + "x" * 27 + '..."'
