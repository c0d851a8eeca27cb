"""The config parser: blocks, every value type, includes, references, concatenation, rule and
case conditions, and every error path with its message and exact ``file:line:column``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hemi.config import Block, ConfigError, parse_file, parse_text
from hemi.config import tree
from hemi.config.errors import Location
from hemi.config.parser import CASE_VARIABLES, MAX_NESTING, RULE_VARIABLES


def parse(text: str, **kw) -> Block:  # type: ignore[no-untyped-def]
    return parse_text(text, **kw)


def props(body: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    """The plain values of the stage's properties for ``stage { body }``."""
    return {k: v.plain() for k, v in parse("stage {\n" + body + "\n}", **kw).props.items()}


def error(text: str, **kw) -> ConfigError:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        parse_text(text, **kw)
    return info.value


def assert_error(text: str, words: list[str], line: int, col: int, file: str = "<text>", **kw) -> ConfigError:  # type: ignore[no-untyped-def]
    err = error(text, **kw)
    for word in words:
        assert word in err.message, (word, err.message)
    assert err.location == Location(file, line, col), (err.location, err.message)
    return err


# -- structure ---------------------------------------------------------------------------------------
def test_stage_blocks_names_and_parents() -> None:
    stage = parse('''stage {
    .a = 1
    app "web" {
        .hostnames = ("*")
        rule "r1" $path ^= "/x" {
            static { }
        }
        rule { .returnCode = 200 }
    }
    clock {}
}''')
    assert (stage.sign, stage.name, stage.cond, stage.loc) == ("stage", None, None, Location("<text>", 1, 1))
    assert stage.parent is None and stage.problems == []
    app, clock = stage.children
    assert (app.sign, app.name, app.loc, app.parent) == ("app", "web", Location("<text>", 3, 5), stage)
    assert (clock.sign, clock.name, clock.children) == ("clock", None, [])
    r1, r2 = app.children
    assert (r1.sign, r1.name, r1.cond.variable, r1.cond.op, r1.cond.patterns) == ("rule", "r1", "path", "^=", ["/x"])
    assert r1.cond.loc == Location("<text>", 5, 25) and r1.cond.var_loc == Location("<text>", 5, 19)
    assert (r2.name, r2.cond, r2.props["returnCode"].data) == (None, None, 200)
    static = r1.children[0]
    assert (static.sign, static.name, static.parent) == ("static", None, r1)
    assert stage.prop_locs["a"] == Location("<text>", 2, 5)
    assert stage.props["a"].loc == Location("<text>", 2, 10)
    assert app.describe() == 'app "web"' and static.describe() == "static"


def test_empty_stage_and_whitespace() -> None:
    assert parse("stage{}").children == []
    assert parse("\n\n  // comment\n stage /* c */ {\n}\n# end\n").props == {}


def test_same_property_twice_overwrites() -> None:
    assert props(".a = 1 .a = 2") == {"a": 2}


def test_block_find_walks_up() -> None:
    stage = parse('stage { .x = 1 app "a" { rule { h { .y = 2 } } } }')
    h = stage.children[0].children[0].children[0]
    assert h.find("x").data == 1 and h.find("y").data == 2 and h.find("z") is None


# -- values --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source,kind,plain", [
    ("true", tree.BOOL, True),
    ("false", tree.BOOL, False),
    ("42", tree.INT, 42),
    ("-42", tree.INT, -42),
    ("16K", tree.SIZE, 16 << 10),
    ("1G", tree.SIZE, 1 << 30),
    ("250ms", tree.DURATION, 0.25),
    ("2m", tree.DURATION, 120.0),
    ('"text"', tree.STRING, "text"),
    ("`text`", tree.STRING, "text"),
    ("()", tree.LIST, []),
    ("( )", tree.LIST, []),
    ("(1)", tree.LIST, [1]),
    ("(1,)", tree.LIST, [1]),
    ('(1, "a", true, 2s, 3K)', tree.LIST, [1, "a", True, 2.0, 3072]),
    ('("a", "b",)', tree.LIST, ["a", "b"]),
    ("((1, 2), (), ((3,),))", tree.LIST, [[1, 2], [], [[3]]]),
    ('([ "k": 1 ], [])', tree.LIST, [{"k": 1}, {}]),
    ("[]", tree.DICT, {}),
    ("[ ]", tree.DICT, {}),
    ('[ "a": 1 ]', tree.DICT, {"a": 1}),
    ('[ "a": 1, ]', tree.DICT, {"a": 1}),
    ('[ "a": 1, "b": "x", "c": (1, 2), "d": [ "e": [ "f": true ] ] ]', tree.DICT,
     {"a": 1, "b": "x", "c": [1, 2], "d": {"e": {"f": True}}}),
    ('[ "a": 1, "a": 2 ]', tree.DICT, {"a": 2}),
    ('[ "": 0 ]', tree.DICT, {"": 0}),
    ('[ `x y`: () ]', tree.DICT, {"x y": []}),
])
def test_value_types(source: str, kind: str, plain: object) -> None:
    value = parse("stage { .v = " + source + " }").props["v"]
    assert value.kind == kind
    assert value.plain() == plain
    assert value.loc == Location("<text>", 1, 14)


def test_list_and_dict_elements_keep_their_locations() -> None:
    v = parse('stage {\n .l = (\n  1,\n  [ "k":\n "v" ]\n )\n}').props["l"]
    assert v.loc == Location("<text>", 2, 7)
    assert v.data[0].loc == Location("<text>", 3, 3)
    assert v.data[1].loc == Location("<text>", 4, 3)
    assert v.data[1].data["k"].loc == Location("<text>", 5, 2)


def test_constants() -> None:
    consts = {"baseDir": "/srv", "logsDir": "/srv/log"}
    assert props(".a = %baseDir .b = (%logsDir)", constants=consts) == {"a": "/srv", "b": ["/srv/log"]}
    assert parse("stage { .a = %baseDir }", constants=consts).props["a"].kind == tree.STRING


def test_describe_value_kinds() -> None:
    kinds = parse('stage { .a = (1, 1K, 1s, "s", true, (), []) }').props["a"].data
    assert [v.describe() for v in kinds] == ["an integer", "a size", "a duration", "a string", "a bool",
                                             "a list", "a dict"]


# -- references ----------------------------------------------------------------------------------------
def test_reference_same_block() -> None:
    stage = parse("stage {\n .abc = 5s\n .def = .abc\n}")
    d = stage.props["def"]
    assert (d.kind, d.data, d.loc) == (tree.DURATION, 5.0, Location("<text>", 3, 9))


def test_reference_through_enclosing_blocks() -> None:
    stage = parse('''stage {
    .root = "/srv"
    app "a" {
        .webRoot = .root
        rule {
            fcgiProxy {
                .scriptFilename = .webRoot + "/index.php"
                .copy = .root
            }
        }
    }
}''')
    fcgi = stage.children[0].children[0].children[0]
    assert fcgi.props["scriptFilename"].data == "/srv/index.php"
    assert fcgi.props["copy"].data == "/srv"


def test_reference_keeps_every_kind() -> None:
    p = props('.a = (1, 2) .b = .a .c = [ "k": "v" ] .d = .c .e = true .f = .e .g = 2K .h = .g')
    assert p["b"] == [1, 2] and p["d"] == {"k": "v"} and p["f"] is True and p["h"] == 2048
    stage = parse('stage { .g = 2K .h = .g }')
    assert stage.props["h"].kind == tree.SIZE


def test_reference_inside_list_and_dict() -> None:
    assert props('.a = "x" .b = (.a, [ "k": .a ])') == {"a": "x", "b": ["x", {"k": "x"}]}


def test_reference_to_own_earlier_value() -> None:
    """``.a = .a + "x"`` after ``.a`` was assigned in the same block extends it."""
    assert props('.a = "x" .a = .a + "y"') == {"a": "xy"}


@pytest.mark.parametrize("text,words,line,col", [
    ("stage {\n .def = .abc\n}", ["found reference to .abc", "expected a property assigned before this line"], 2, 9),
    ("stage {\n .def = .abc\n .abc = 1\n}", ["found reference to .abc"], 2, 9),
    ('stage {\n app "a" { .x = 1 }\n .y = .x\n}', ["found reference to .x"], 3, 7),
    ("stage {\n .a = .a\n}", ["found .a referring to itself", "expected another property"], 2, 7),
    ('stage {\n .a = 1\n app "x" { .a = .a }\n}', ["found .a referring to itself"], 3, 17),
    ('stage {\n .a = (1, .a)\n}', ["found .a referring to itself"], 2, 11),
])
def test_reference_errors(text: str, words: list[str], line: int, col: int) -> None:
    assert_error(text, words, line, col)


# -- concatenation -----------------------------------------------------------------------------------------
def test_concatenation() -> None:
    p = props('.a = "x" + "y" .b = `1` + "2" + `3` .c = %baseDir + "/www" .d = .a + .b + "!"'
              ' .e = ("p" + "q", [ "k": "r" + .a ]) .f = %baseDir + %baseDir',
              constants={"baseDir": "/b"})
    assert p == {"a": "xy", "b": "123", "c": "/b/www", "d": "xy123!", "e": ["pq", {"k": "rxy"}], "f": "/b/b"}


def test_concatenation_keeps_left_location() -> None:
    assert parse('stage { .a = "x" +\n "y" }').props["a"].loc == Location("<text>", 1, 14)


@pytest.mark.parametrize("text,words,line,col", [
    ('stage { .a = 1 + "x" }', ["found '+' after an integer", "expected '+' only between strings"], 1, 16),
    ('stage { .a = true + "x" }', ["found '+' after a bool"], 1, 19),
    ('stage { .a = ("x") + "y" }', ["found '+' after a list"], 1, 20),
    ('stage { .a = [] + "y" }', ["found '+' after a dict"], 1, 17),
    ('stage { .a = 1s + "y" }', ["found '+' after a duration"], 1, 17),
    ('stage { .a = 2K + "y" }', ["found '+' after a size"], 1, 17),
    ('stage { .a = "x" + 1 }', ["found an integer after '+'", "expected a string"], 1, 20),
    ('stage { .a = "x" + 5m }', ["found a duration after '+'", "expected a string"], 1, 20),
    ('stage { .a = "x" + ("y") }', ["found a list after '+'"], 1, 20),
    ('stage { .a = "x" + "y" + false }', ["found a bool after '+'"], 1, 26),
    ('stage { .n = 1 .a = "x" + .n }', ["found an integer after '+'"], 1, 27),
    ('stage { .n = 1 .a = .n + "x" }', ["found '+' after an integer"], 1, 24),
    ('stage { .a = "x" + }', ["found '}'", "expected a value for .a"], 1, 20),
])
def test_concatenation_errors(text: str, words: list[str], line: int, col: int) -> None:
    assert_error(text, words, line, col)


# -- conditions --------------------------------------------------------------------------------------------
def rule_cond(cond: str, sign: str = "rule") -> tree.Condition:
    stage = parse('stage { app "a" { ' + sign + " " + cond + " { } } }")
    return stage.children[0].children[0].cond


@pytest.mark.parametrize("op", ["==", "^=", "$=", "*=", "~=", "!=", "!^", "!$", "!*", "!~"])
@pytest.mark.parametrize("sign", ["rule", "case"])
def test_every_compare_operator_with_one_pattern_and_a_list(sign: str, op: str) -> None:
    var = "path" if sign == "rule" else "srcHost"
    c = rule_cond(f'${var} {op} "/a"', sign)
    assert (c.variable, c.op, c.patterns) == (var, op, ["/a"])
    c = rule_cond(f'${var} {op} ("/a", "/b",)', sign)
    assert c.patterns == ["/a", "/b"]
    c = rule_cond(f'"named" ${var} {op} ("/a")', sign)
    assert c.patterns == ["/a"]


@pytest.mark.parametrize("var", RULE_VARIABLES)
def test_every_rule_variable(var: str) -> None:
    assert rule_cond(f'${var} == "x"').variable == var


@pytest.mark.parametrize("var", CASE_VARIABLES)
def test_every_case_variable(var: str) -> None:
    assert rule_cond(f'${var} == "x"', "case").variable == var


def test_variable_lists() -> None:
    assert RULE_VARIABLES == ("method", "scheme", "authority", "hostname", "colonPort", "path", "uri",
                              "encodedPath", "queryString", "contentType")
    assert set(CASE_VARIABLES) >= {"srcHost", "srcPort", "transport", "hostname"}


@pytest.mark.parametrize("op", ["-f", "-d", "-e", "-D", "-E", "!f", "!d", "!e"])
def test_every_file_test_on_path_in_rules(op: str) -> None:
    c = rule_cond(f"$path {op}")
    assert (c.variable, c.op, c.patterns) == ("path", op, [])


def test_regex_patterns_compile() -> None:
    assert rule_cond(r'$path ~= ("^/a/(\d+)$", "[xy]")').patterns == [r"^/a/(\d+)$", "[xy]"]


def test_bad_regex_is_fine_for_non_regex_operators() -> None:
    assert rule_cond('$path == "("').patterns == ["("]


@pytest.mark.parametrize("text,words,line,col", [
    # unknown variables, for rules and cases
    ('stage { app "a" {\n rule $nope == "x" {} } }', ["found unknown rule variable $nope", "expected one of $method",
                                                       "$contentType"], 2, 7),
    ('stage { app "a" {\n rule $srcHost == "x" {} } }', ["found unknown rule variable $srcHost"], 2, 7),
    ('stage { m "m" {\n case $path == "x" {} } }', ["found unknown case variable $path", "expected one of $srcHost"], 2, 7),
    # conditions only on rule and case
    ('stage { app "a" {\n static $path == "x" {} } }', ["found condition $path on 'static'",
                                                         "expected conditions only on rule and case"], 2, 9),
    ('stage {\n app "a" $path == "x" {} }', ["found condition $path on 'app'"], 2, 10),
    # file tests: only on $path, only in rules
    ('stage { app "a" {\n rule $uri -f {} } }', ["found file test -f on $uri", "expected $path"], 2, 12),
    ('stage { app "a" {\n rule $method !e {} } }', ["found file test !e on $method", "expected $path"], 2, 15),
    ('stage { m "m" {\n case $srcHost -d {} } }', ["found file test -d in a case", "expected a comparison"], 2, 16),
    # operators and patterns
    ('stage { app "a" {\n rule $path "x" {} } }', ['found string "x"', "expected a comparison operator (== ^= $= *= ~= "
                                                    "!= !^ !$ !* !~) or a file test (-f -d -e -D -E !f !d !e)"], 2, 13),
    ('stage { m "m" {\n case $srcHost {} } }', ["found '{'", "expected a comparison operator"], 2, 16),
    ('stage { app "a" {\n rule $path = "x" {} } }', ["found '='", "expected a comparison operator"], 2, 13),
    ('stage { app "a" {\n rule $path == {} } }', ["found '{'", 'expected a string pattern or a list of them'], 2, 16),
    ('stage { app "a" {\n rule $path == 1 {} } }', ["found integer '1'", "expected a string pattern or a list"], 2, 16),
    ('stage { app "a" {\n rule $path == %x {} } }', ["found constant '%x'", "expected a string pattern"], 2, 16),
    ('stage { app "a" {\n rule $path == () {} } }', ["found ')'", "expected a string pattern"], 2, 17),
    ('stage { app "a" {\n rule $path == ("a" "b") {} } }', ['found string "b"', "expected ',' or ')' in the pattern list"], 2, 21),
    ('stage { app "a" {\n rule $path == ("a", 1) {} } }', ["found integer '1'", "expected a string pattern or ')'"], 2, 22),
    ('stage { app "a" {\n rule $path == ("a",,) {} } }', ["found ','", "expected a string pattern or ')'"], 2, 21),
    ('stage { app "a" {\n rule $path == ("a"', ["found end of file", "expected ',' or ')' in the pattern list"], 2, 20),
    # empty patterns and bad regular expressions
    ('stage { app "a" {\n rule $path == "" {} } }', ["found an empty pattern", "expected a non-empty string"], 2, 16),
    ('stage { app "a" {\n rule $path ^= ("/a", ``) {} } }', ["found an empty pattern"], 2, 23),
    ('stage { m "m" {\n case $srcHost != "" {} } }', ["found an empty pattern"], 2, 19),
    ('stage { app "a" {\n rule $path ~= "(" {} } }', ['found a bad regular expression "("', "missing )"], 2, 16),
    ('stage { app "a" {\n rule $path !~ ("ok", "[z-a]") {} } }', ['found a bad regular expression "[z-a]"'], 2, 23),
    ('stage { m "m" {\n case $srcHost ~= "*" {} } }', ['found a bad regular expression "*"'], 2, 19),
    # what may follow rule / case
    ('stage { app "a" {\n rule 5 {} } }', ["found integer '5'", "expected a name, a condition ($variable OP pattern) "
                                                                "or '{' after rule"], 2, 7),
    ('stage { m "m" {\n case "n" "m" {} } }', ['found string "m"', "or '{' after case"], 2, 11),
    ('stage { app "a" {\n rule $path -f "x" {} } }', ['found string "x"', "or '{' after rule"], 2, 16),
])
def test_condition_errors(text: str, words: list[str], line: int, col: int) -> None:
    assert_error(text, words, line, col)


# -- every other parse error ------------------------------------------------------------------------------
@pytest.mark.parametrize("text,words,line,col", [
    # the top
    ("", ["found end of file", "expected 'stage {' at the top of the config"], 1, 1),
    ("// nothing\n", ["found end of file", "expected 'stage {'"], 2, 1),
    ('app "a" {}', ["found identifier 'app'", "expected 'stage {' at the top"], 1, 1),
    (".a = 1", ["found property '.a'", "expected 'stage {'"], 1, 1),
    ("{}", ["found '{'", "expected 'stage {'"], 1, 1),
    ("stage", ["found end of file", "expected '{' after stage"], 1, 6),
    ('stage "s" {}', ['found string "s"', "expected '{' after stage"], 1, 7),
    ("stage {}\nstage {}", ["found identifier 'stage'", "expected end of file after the closing '}' of stage"], 2, 1),
    ("stage {} }", ["found '}'", "expected end of file after the closing '}' of stage"], 1, 10),
    # unclosed blocks name where they were opened
    ("stage {\n .a = 1\n", ["found end of file", "expected '}' to close stage opened at <text>:1:1"], 3, 1),
    ('stage {\n app "x" {\n  rule {', ["found end of file", "expected '}' to close rule opened at <text>:3:3"], 3, 9),
    ('stage {\n app "x" {\n }', ["expected '}' to close stage opened at <text>:1:1"], 3, 3),
    # items of a block
    ('stage {\n "x"\n}', ['found string "x"', "expected a property (.name = value), a component or '}' in stage"], 2, 2),
    ("stage {\n 1 }", ["found integer '1'", "expected a property (.name = value), a component or '}' in stage"], 2, 2),
    ('stage { app "a" {\n = } }', ["found '='", "or '}' in app \"a\""], 2, 2),
    ("stage { x {\n ( } }", ["found '('", "or '}' in x"], 2, 2),
    ("stage {\n $path == \"x\" {} }", ["found variable '$path'", "expected a property"], 2, 2),
    ("stage {\n -f }", ["found file test '-f'", "expected a property"], 2, 2),
    # components
    ('stage {\n app "" {} }', ["found an empty name for app", "expected a non-empty string"], 2, 6),
    ('stage {\n app "a" }', ["found '}'", "expected a name (a string) or '{' after component 'app'"], 2, 10),
    ('stage {\n app "a" "b" {} }', ['found string "b"', "after component 'app'"], 2, 10),
    ("stage {\n static .x = 1 }", ["found property '.x'", "after component 'static'"], 2, 9),
    # assignments
    ("stage {\n .a 1 }", ["found integer '1'", "expected '=' after property .a"], 2, 5),
    ("stage {\n .a }", ["found '}'", "expected '=' after property .a"], 2, 5),
    ("stage {\n .a == 1 }", ["found operator '=='", "expected '=' after property .a"], 2, 5),
    ("stage {\n .static { } }", ["found '{' after property .static", "expected '='", "no leading dot"], 2, 10),
    # values
    ("stage {\n .a = }", ["found '}'", "expected a value for .a (a string, number, size, duration, bool, list, dict, "
                                       "%constant or .property)"], 2, 7),
    ("stage {\n .a = = 1 }", ["found '='", "expected a value for .a"], 2, 7),
    ("stage {\n .a = static }", ["found identifier 'static'", "expected a value for .a"], 2, 7),
    ("stage {\n .a = $path }", ["found variable '$path'", "expected a value for .a"], 2, 7),
    ("stage {\n .a = -f }", ["found file test '-f'", "expected a value"], 2, 7),
    ("stage {\n .a = {} }", ["found '{'", "expected a value"], 2, 7),
    ("stage {\n .a = ", ["found end of file", "expected a value for .a"], 2, 7),
    ("stage {\n .a = %nope }", ["found unknown constant %nope", "expected no constant (none are defined here)"], 2, 7),
    # lists
    ("stage {\n .a = (1 2) }", ["found integer '2'", "expected ',' or ')' in the list"], 2, 10),
    ("stage {\n .a = (1,,) }", ["found ','", "expected a value for .a"], 2, 10),
    ("stage {\n .a = (,) }", ["found ','", "expected a value for .a"], 2, 8),
    ("stage {\n .a = (1, }", ["found '}'", "expected a value for .a"], 2, 11),
    ("stage {\n .a = (1", ["found end of file", "expected ',' or ')' in the list"], 2, 9),
    ("stage {\n .a = (1 ] }", ["found ']'", "expected ',' or ')' in the list"], 2, 10),
    # dicts
    ("stage {\n .a = [1: 2] }", ["found integer '1'", "expected a string key or ']' in the dict"], 2, 8),
    ("stage {\n .a = [.k: 2] }", ["found property '.k'", "expected a string key"], 2, 8),
    ('stage {\n .a = ["k" 1] }', ["found integer '1'", "expected ':' after the dict key \"k\""], 2, 12),
    ('stage {\n .a = ["k" = 1] }', ["found '='", "expected ':' after the dict key"], 2, 12),
    ('stage {\n .a = ["k": ] }', ["found ']'", "expected a value for .a"], 2, 13),
    ('stage {\n .a = ["k": 1 "j": 2] }', ['found string "j"', "expected ',' or ']' in the dict"], 2, 15),
    ('stage {\n .a = ["k": 1,, ] }', ["found ','", "expected a string key or ']'"], 2, 15),
    ('stage {\n .a = ["k": 1', ["found end of file", "expected ',' or ']' in the dict"], 2, 14),
    ('stage {\n .a = ["k": 1) }', ["found ')'", "expected ',' or ']' in the dict"], 2, 14),
])
def test_parse_errors(text: str, words: list[str], line: int, col: int) -> None:
    err = assert_error(text, words, line, col)
    assert len(err.problems) == 1


def test_known_constants_are_listed_in_the_error() -> None:
    assert_error("stage {\n .a = %nope }", ["found unknown constant %nope", "expected one of %baseDir %logsDir"], 2, 7,
                 constants={"logsDir": "/l", "baseDir": "/b"})


@pytest.mark.parametrize("opener,middle,closer,where", [("(", "1", ")", ".a = "), ('["k": ', "1", "]", ".a = "),
                                                        ("x { ", "", "}", "")])
def test_nesting_limit(opener: str, middle: str, closer: str, where: str) -> None:
    """Nesting is limited, so that a hostile file cannot exhaust the stack (RecursionError)."""
    ok = "stage { " + where + opener * (MAX_NESTING - 1) + middle + closer * (MAX_NESTING - 1) + " }"
    parse(ok)
    deep = "stage { " + where + opener * 5000 + middle + closer * 5000 + " }"
    err = error(deep)
    assert "nested more than 100 levels deep" in err.message and "expected a flatter config" in err.message
    assert err.location is not None and err.location.line == 1


# -- includes ------------------------------------------------------------------------------------------------
def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_include_relative_to_the_including_file(tmp_path: Path) -> None:
    main = write(tmp_path / "main.conf", 'stage {\n .a = 1\n <apps/web.conf>\n .z = 26\n}')
    write(tmp_path / "apps" / "web.conf", 'app "web" {\n  <rules.conf>\n}')
    write(tmp_path / "apps" / "rules.conf", '// the rules\nrule {\n .returnCode = 204\n}')
    write(tmp_path / "rules.conf", "this file must not be used")
    stage = parse_file(str(main))
    app = stage.children[0]
    assert (app.sign, app.name) == ("app", "web")
    assert app.loc == Location(str(tmp_path / "apps" / "web.conf"), 1, 1)
    rule = app.children[0]
    assert rule.loc == Location(str(tmp_path / "apps" / "rules.conf"), 2, 1)
    assert rule.props["returnCode"].loc == Location(str(tmp_path / "apps" / "rules.conf"), 3, 16)
    # the including file's own tokens after the include keep their place
    assert stage.props["z"].loc == Location(str(main), 4, 7)


def test_include_with_parent_dir_and_absolute_path(tmp_path: Path) -> None:
    shared = write(tmp_path / "shared" / "props.conf", ".shared = true")
    main = write(tmp_path / "conf" / "main.conf", f"stage {{ <../shared/props.conf> .x = 1 <{shared}> }}")
    assert {k: v.data for k, v in parse_file(str(main)).props.items()} == {"shared": True, "x": 1}


def test_include_from_text_with_include_dir(tmp_path: Path) -> None:
    write(tmp_path / "p.conf", ".p = 1")
    assert parse_text("stage { <p.conf> }", include_dir=str(tmp_path)).props["p"].data == 1


def test_the_same_file_included_twice_is_not_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "rule.conf", "rule { }")
    main = write(tmp_path / "main.conf", 'stage { app "a" { <rule.conf> <rule.conf> } }')
    assert len(parse_file(str(main)).children[0].children) == 2


def test_error_inside_an_included_file_names_that_file(tmp_path: Path) -> None:
    inc = write(tmp_path / "sub" / "inc.conf", "\n\n  .a = (1 2)")
    main = write(tmp_path / "main.conf", "stage {\n <sub/inc.conf>\n}")
    err = error(main.read_text(), file=str(main), include_dir=str(tmp_path))
    assert err.location == Location(str(inc), 3, 11)
    assert "found integer '2'" in err.message
    with pytest.raises(ConfigError) as info:
        parse_file(str(main))
    assert info.value.location == Location(str(inc), 3, 11)


def test_lex_error_inside_an_included_file(tmp_path: Path) -> None:
    inc = write(tmp_path / "inc.conf", '.a = 1\n.b = "open')
    main = write(tmp_path / "main.conf", "stage { <inc.conf> }")
    with pytest.raises(ConfigError) as info:
        parse_file(str(main))
    assert info.value.location == Location(str(inc), 2, 6)
    assert "unterminated string" in info.value.message


def test_include_cycle_names_the_chain(tmp_path: Path) -> None:
    a = write(tmp_path / "a.conf", "stage {\n <b.conf>\n}")
    b = write(tmp_path / "b.conf", "// b\n<c.conf>")
    c = write(tmp_path / "c.conf", "\n\n   <a.conf>")
    with pytest.raises(ConfigError) as info:
        parse_file(str(a))
    err = info.value
    assert "include cycle" in err.message
    assert f"{a} -> {b} -> {c} -> {a}" in err.message
    assert err.location == Location(str(c), 3, 4)


def test_file_including_itself(tmp_path: Path) -> None:
    a = write(tmp_path / "a.conf", "stage {\n  <a.conf>\n}")
    with pytest.raises(ConfigError) as info:
        parse_file(str(a))
    assert "include cycle" in info.value.message and f"{a} -> {a}" in info.value.message
    assert info.value.location == Location(str(a), 2, 3)


def test_cycle_through_a_symlink_is_found(tmp_path: Path) -> None:
    a = write(tmp_path / "a.conf", "stage { <link.conf> }")
    os.symlink(a, tmp_path / "link.conf")
    with pytest.raises(ConfigError) as info:
        parse_file(str(a))
    assert "include cycle" in info.value.message


def test_missing_include_file(tmp_path: Path) -> None:
    main = write(tmp_path / "main.conf", "stage {\n .a = 1\n   <nope.conf>\n}")
    with pytest.raises(ConfigError) as info:
        parse_file(str(main))
    err = info.value
    assert err.message == "cannot include <nope.conf>: No such file or directory"
    assert err.location == Location(str(main), 3, 4)


def test_missing_includes_do_not_stop_the_parse(tmp_path: Path) -> None:
    """Every unreadable include is reported, with a syntax error found later in the file."""
    main = write(tmp_path / "main.conf", "stage {\n <x.conf>\n <y.conf>\n .a = \n}")
    with pytest.raises(ConfigError) as info:
        parse_file(str(main))
    assert [(str(p.location), p.message.split(":")[0]) for p in info.value.problems] == [
        (f"{main}:2:2", "cannot include <x.conf>"),
        (f"{main}:3:2", "cannot include <y.conf>"),
        (f"{main}:5:1", "found '}', expected a value for .a (a string, number, size, duration, bool, list, dict, %constant or .property)"),
    ]


def test_missing_include_left_for_the_caller_when_not_strict(tmp_path: Path) -> None:
    main = write(tmp_path / "main.conf", "stage {\n <x.conf>\n .a = 1\n}")
    stage = parse_file(str(main), strict=False)
    assert stage.props["a"].data == 1
    assert [(str(p.location), p.message) for p in stage.problems] == [
        (f"{main}:2:2", "cannot include <x.conf>: No such file or directory")]


def test_include_of_a_directory_and_of_binary_data(tmp_path: Path) -> None:
    (tmp_path / "dir.conf").mkdir()
    (tmp_path / "bin.conf").write_bytes(b"\xff\xfe\x00")
    main = write(tmp_path / "main.conf", "stage {\n <dir.conf>\n <bin.conf>\n}")
    with pytest.raises(ConfigError) as info:
        parse_file(str(main))
    assert [(p.location.line, p.message) for p in info.value.problems] == [
        (2, "cannot include <dir.conf>: Is a directory"),
        (3, "cannot include <bin.conf>: not UTF-8 text")]


def test_include_path_with_nul(tmp_path: Path) -> None:
    main = write(tmp_path / "main.conf", "stage { <a\x00b> }")
    with pytest.raises(ConfigError) as info:
        parse_file(str(main))
    assert "NUL character in an include path" in info.value.message


def test_include_not_allowed_without_a_file() -> None:
    assert_error("stage {\n <x.conf> }", ["found include <x.conf>", "includes need a file"], 2, 2)


def test_unreadable_main_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_file(str(tmp_path / "missing.conf"))
    assert info.value.message == f"cannot read config file {tmp_path / 'missing.conf'}: No such file or directory"
    assert info.value.location is None
    (tmp_path / "bin.conf").write_bytes(b"\xff")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        parse_file(str(tmp_path / "bin.conf"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        parse_file(str(tmp_path) + "/a\x00b")


def test_custom_reader(tmp_path: Path) -> None:
    files = {"/v/main.conf": "stage { <inc.conf> }", "/v/inc.conf": ".a = 7"}

    def reader(path: str) -> str:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return files[path]

    assert parse_file("/v/main.conf", reader=reader).props["a"].data == 7


def test_config_error_lists_problems_and_formats_them() -> None:
    err = error("stage {\n .a = }")
    assert err.problems[0].location == Location("<text>", 2, 7)
    assert str(err) == "<text>:2:7: " + err.message
    plain = ConfigError("no place")
    assert (plain.location, plain.message, str(plain)) == (None, "no place", "no place")
