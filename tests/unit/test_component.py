"""The typed property readers of Component: defaults, checks, ranges, lookups through enclosing
blocks, wrong types, missing required properties, unknown properties with a suggestion, and
every problem of a config reported together, in file order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import hemi.contrib  # noqa: F401  (app and rule are needed below)
from hemi.config import ConfigError
from hemi.config.errors import Location
from hemi.core.component import Component
from hemi.core.registry import register, registry
from hemi.core.stage import Dirs, Stage
from hemi.web.handlet import Handlet

Hook = Callable[[Component], Any]


class Probe(Component):
    """A runner whose on_configure runs the test's hook and keeps what it returned."""

    hook: Hook | None = None

    def on_configure(self) -> None:
        self.got = type(self).hook(self) if type(self).hook else None


class ProbeHandlet(Handlet):
    hook: Hook | None = None

    def on_configure(self) -> None:
        self.got = type(self).hook(self) if type(self).hook else None

    def handle(self, req, resp):  # type: ignore[no-untyped-def]
        return False


@pytest.fixture(autouse=True)
def signs() -> Iterator[None]:
    register("tProbe", "runner")(Probe)
    register("tProbeHandlet", "handlet")(ProbeHandlet)
    yield
    registry.remove("tProbe")
    registry.remove("tProbeHandlet")
    Probe.hook = None
    ProbeHandlet.hook = None


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    return Dirs.under(str(tmp_path))


def build(text: str, dirs: Dirs) -> Stage:
    stage = Stage.from_text(text, dirs)
    stage.configure()
    return stage


def read(body: str, hook: Hook, dirs: Dirs) -> Any:
    """Configure ``tProbe "p" { body }`` and return what ``hook(probe)`` returned."""
    Probe.hook = hook
    stage = build('stage {\n tProbe "p" {\n' + body + "\n }\n}", dirs)
    return stage.get("runner", "p").got  # type: ignore[union-attr]


def problems(body: str, hook: Hook, dirs: Dirs, *, stage_body: str = "") -> list[tuple[int, int, str]]:
    """The (line, column, message) of every problem of ``tProbe "p" { body }``."""
    Probe.hook = hook
    with pytest.raises(ConfigError) as info:
        build("stage {\n" + stage_body + '\n tProbe "p" {\n' + body + "\n }\n}", dirs)
    return [(p.location.line, p.location.col, p.message) for p in info.value.problems]  # type: ignore[union-attr]


# -- bool ----------------------------------------------------------------------------------------------
def test_bool(dirs: Dirs) -> None:
    assert read("", lambda c: c.configure_bool("flag"), dirs) is False
    assert read("", lambda c: c.configure_bool("flag", True), dirs) is True
    assert read(".flag = true", lambda c: c.configure_bool("flag"), dirs) is True
    assert read(".flag = false", lambda c: c.configure_bool("flag", True), dirs) is False


@pytest.mark.parametrize("value,what", [("1", "an integer"), ('"true"', "a string"), ("1s", "a duration"),
                                        ("(true)", "a list"), ("[]", "a dict"), ("1K", "a size")])
def test_bool_wrong_type(dirs: Dirs, value: str, what: str) -> None:
    assert problems(".flag = " + value, lambda c: c.configure_bool("flag"), dirs) == [
        (4, 9, f'.flag is {what}, expected true or false (in tProbe "p")')]


# -- int -------------------------------------------------------------------------------------------------
def test_int(dirs: Dirs) -> None:
    assert read("", lambda c: c.configure_int("n", 7), dirs) == 7
    assert read(".n = 42", lambda c: c.configure_int("n", 7), dirs) == 42
    assert read(".n = -3", lambda c: c.configure_int("n", 7), dirs) == -3
    assert read(".n = 2K", lambda c: c.configure_int("n"), dirs) == 2048  # a size is an integer too
    assert read(".n = 5", lambda c: c.configure_int("n", 1, min=5, max=5), dirs) == 5


def test_int_range(dirs: Dirs) -> None:
    def hook(c: Component) -> tuple[int, int]:
        return c.configure_int("low", 10, min=1), c.configure_int("high", 10, min=1, max=100)

    assert problems(".low = 0\n.high = 101", hook, dirs) == [
        (4, 8, '.low is 0, expected at least 1 (in tProbe "p")'),
        (5, 9, '.high is 101, expected at most 100 (in tProbe "p")')]
    Probe.hook = None


def test_int_out_of_range_gives_the_default(dirs: Dirs) -> None:
    seen: list[int] = []
    Probe.hook = lambda c: seen.append(c.configure_int("n", 10, min=1))
    with pytest.raises(ConfigError):
        build('stage { tProbe "p" { .n = 0 } }', dirs)
    assert seen == [10]


@pytest.mark.parametrize("value,what", [('"5"', "a string"), ("5s", "a duration"), ("true", "a bool"),
                                        ("(5)", "a list")])
def test_int_wrong_type(dirs: Dirs, value: str, what: str) -> None:
    assert problems(".n = " + value, lambda c: c.configure_int("n"), dirs) == [
        (4, 6, f'.n is {what}, expected an integer (in tProbe "p")')]


def test_int_check(dirs: Dirs) -> None:
    def even(v: int) -> str | None:
        return None if v % 2 == 0 else "must be even"

    def strict(v: int) -> None:
        if v > 3:
            raise ValueError("is too big for this")

    assert read(".n = 4", lambda c: c.configure_int("n", check=even), dirs) == 4
    assert problems(".n = 3", lambda c: c.configure_int("n", check=even), dirs) == [
        (4, 6, '.n must be even (in tProbe "p")')]
    assert problems(".n = 4", lambda c: c.configure_int("n", check=strict), dirs) == [
        (4, 6, '.n is too big for this (in tProbe "p")')]


def test_checks_and_ranges_do_not_apply_to_defaults(dirs: Dirs) -> None:
    assert read("", lambda c: c.configure_int("n", 0, min=1, check=lambda v: "never"), dirs) == 0
    assert read("", lambda c: c.configure_string("s", "", check=lambda v: "never"), dirs) == ""


def test_missing_required(dirs: Dirs) -> None:
    def hook(c: Component) -> None:
        c.configure_int("count", required=True)
        c.configure_string("address", None, required=True)
        c.configure_string_list("forApps", required=True)
        c.configure_duration("timeout", required=True)

    # Reported at the component, since the property is nowhere in the file.
    assert problems("", hook, dirs) == [
        (3, 2, 'missing required property .count (an integer) (in tProbe "p")'),
        (3, 2, 'missing required property .address (a string) (in tProbe "p")'),
        (3, 2, 'missing required property .forApps (a list of strings) (in tProbe "p")'),
        (3, 2, 'missing required property .timeout (a duration (e.g. 500ms, 30s, 5m)) (in tProbe "p")')]
    assert read('.count = 1 .address = "x" .forApps = "a" .timeout = 1s', hook, dirs) is None


def test_required_string_default_none(dirs: Dirs) -> None:
    seen: list[object] = []
    Probe.hook = lambda c: seen.append(c.configure_string("address", None, required=True))
    with pytest.raises(ConfigError):
        build('stage { tProbe "p" { } }', dirs)
    assert seen == [None]


# -- size --------------------------------------------------------------------------------------------------
def test_size(dirs: Dirs) -> None:
    assert read("", lambda c: c.configure_size("s", 64 << 10), dirs) == 65536
    assert read(".s = 16M", lambda c: c.configure_size("s"), dirs) == 16 << 20
    assert read(".s = 1T", lambda c: c.configure_size("s"), dirs) == 1 << 40
    assert read(".s = 1000", lambda c: c.configure_size("s"), dirs) == 1000
    assert problems(".s = 2K", lambda c: c.configure_size("s", 1, min=1, max=1024), dirs) == [
        (4, 6, '.s is 2048 bytes, expected at most 1024 bytes (in tProbe "p")')]
    assert problems(".s = 0K", lambda c: c.configure_size("s", 1, min=1), dirs) == [
        (4, 6, '.s is 0 bytes, expected at least 1 bytes (in tProbe "p")')]
    assert problems('.s = "1K"', lambda c: c.configure_size("s"), dirs) == [
        (4, 6, '.s is a string, expected a size (e.g. 64K, 16M) (in tProbe "p")')]


# -- duration ---------------------------------------------------------------------------------------------
def test_duration(dirs: Dirs) -> None:
    assert read("", lambda c: c.configure_duration("t", 60.0), dirs) == 60.0
    assert read(".t = 500ms", lambda c: c.configure_duration("t"), dirs) == 0.5
    assert read(".t = 2m", lambda c: c.configure_duration("t"), dirs) == 120.0
    assert read(".t = 1d", lambda c: c.configure_duration("t"), dirs) == 86400.0
    assert problems(".t = 500ms", lambda c: c.configure_duration("t", 5.0, min=1.0), dirs) == [
        (4, 6, '.t is 0.5s, expected at least 1s (in tProbe "p")')]
    assert problems(".t = 2h", lambda c: c.configure_duration("t", 5.0, max=3600.0), dirs) == [
        (4, 6, '.t is 7200s, expected at most 3600s (in tProbe "p")')]
    assert problems(".t = 30", lambda c: c.configure_duration("t"), dirs) == [
        (4, 6, '.t is an integer, expected a duration (e.g. 500ms, 30s, 5m) (in tProbe "p")')]


# -- string and choices -------------------------------------------------------------------------------------
def test_string(dirs: Dirs) -> None:
    assert read("", lambda c: c.configure_string("s"), dirs) == ""
    assert read("", lambda c: c.configure_string("s", "dflt"), dirs) == "dflt"
    assert read('.s = "a" + "b"', lambda c: c.configure_string("s"), dirs) == "ab"
    assert problems(".s = 1", lambda c: c.configure_string("s"), dirs) == [
        (4, 6, '.s is an integer, expected a string (in tProbe "p")')]
    assert problems('.s = ""', lambda c: c.configure_string("s", "x", check=lambda v: None if v else "is empty"),
                    dirs) == [(4, 6, '.s is empty (in tProbe "p")')]


def test_string_choice(dirs: Dirs) -> None:
    modes = ("reverse", "forward")
    assert read("", lambda c: c.configure_string("mode", "reverse", choices=modes), dirs) == "reverse"
    assert read('.mode = "forward"', lambda c: c.configure_string("mode", "reverse", choices=modes), dirs) == "forward"
    assert read('.mode = "forward"', lambda c: c.configure_choice("mode", "reverse", modes), dirs) == "forward"
    assert problems('.mode = "sideways"', lambda c: c.configure_choice("mode", "reverse", modes), dirs) == [
        (4, 9, '.mode is "sideways", expected one of "reverse", "forward" (in tProbe "p")')]
    assert problems(".mode = 1", lambda c: c.configure_choice("mode", "reverse", modes), dirs) == [
        (4, 9, '.mode is an integer, expected a string (in tProbe "p")')]


# -- lists ----------------------------------------------------------------------------------------------------
def test_list(dirs: Dirs) -> None:
    assert read("", lambda c: c.configure_list("l"), dirs) == []
    assert read("", lambda c: c.configure_list("l", [1]), dirs) == [1]
    assert read('.l = (1, "a", (2s), [ "k": true ])', lambda c: c.configure_list("l"), dirs) == [
        1, "a", [2.0], {"k": True}]
    assert problems('.l = "a"', lambda c: c.configure_list("l"), dirs) == [
        (4, 6, '.l is a string, expected a list ( ... ) (in tProbe "p")')]
    assert problems(".l = (1, 2, 3)", lambda c: c.configure_list("l", check=lambda v: "is too long" if len(v) > 2 else None),
                    dirs) == [(4, 6, '.l is too long (in tProbe "p")')]


def test_list_default_is_a_copy(dirs: Dirs) -> None:
    default = [1]
    got = read("", lambda c: c.configure_list("l", default), dirs)
    got.append(2)
    assert default == [1]


def test_string_list(dirs: Dirs) -> None:
    assert read("", lambda c: c.configure_string_list("l"), dirs) == []
    assert read("", lambda c: c.configure_string_list("l", ["x"]), dirs) == ["x"]
    assert read('.l = ("a", "b",)', lambda c: c.configure_string_list("l"), dirs) == ["a", "b"]
    assert read('.l = "only"', lambda c: c.configure_string_list("l"), dirs) == ["only"]
    assert read(".l = ()", lambda c: c.configure_string_list("l", ["x"]), dirs) == []
    assert problems('.l = ("a",\n 2)', lambda c: c.configure_string_list("l"), dirs) == [
        (5, 2, '.l holds an integer, expected only strings (in tProbe "p")')]
    assert problems(".l = ()", lambda c: c.configure_string_list("l", non_empty=True), dirs) == [
        (4, 6, '.l is empty, expected at least one item (in tProbe "p")')]
    assert problems(".l = 5", lambda c: c.configure_string_list("l"), dirs) == [
        (4, 6, '.l is an integer, expected a list of strings (in tProbe "p")')]


def test_string_list_check_failure_gives_a_list(dirs: Dirs) -> None:
    """On a failed check the reader returns the default, and never None: callers iterate it."""
    seen: list[object] = []
    Probe.hook = lambda c: seen.append(c.configure_string_list("l", check=lambda v: "is bad"))
    with pytest.raises(ConfigError):
        build('stage { tProbe "p" { .l = ("a") } }', dirs)
    assert seen == [[]]


# -- dicts --------------------------------------------------------------------------------------------------------
def test_dict(dirs: Dirs) -> None:
    assert read("", lambda c: c.configure_dict("d"), dirs) == {}
    assert read("", lambda c: c.configure_dict("d", {"a": 1}), dirs) == {"a": 1}
    assert read('.d = [ "a": 1, "b": ("x"), "c": [ "d": 2s ] ]', lambda c: c.configure_dict("d"), dirs) == {
        "a": 1, "b": ["x"], "c": {"d": 2.0}}
    assert problems(".d = ()", lambda c: c.configure_dict("d"), dirs) == [
        (4, 6, '.d is a list, expected a dict [ "key": value, ... ] (in tProbe "p")')]
    assert problems('.d = [ "a": 1 ]', lambda c: c.configure_dict("d", check=lambda v: "needs b" if "b" not in v else None),
                    dirs) == [(4, 6, '.d needs b (in tProbe "p")')]


def test_string_dict(dirs: Dirs) -> None:
    assert read("", lambda c: c.configure_string_dict("d"), dirs) == {}
    assert read('.d = [ "a": "1", "b": "2" ]', lambda c: c.configure_string_dict("d"), dirs) == {"a": "1", "b": "2"}
    assert problems('.d = [ "a": "1",\n "b": 2 ]', lambda c: c.configure_string_dict("d"), dirs) == [
        (5, 7, '.d["b"] is an integer, expected a string (in tProbe "p")')]
    assert problems('.d = "a"', lambda c: c.configure_string_dict("d"), dirs) == [
        (4, 6, '.d is a string, expected a dict of strings [ "key": "value", ... ] (in tProbe "p")')]
    seen: list[object] = []
    Probe.hook = lambda c: seen.append(c.configure_string_dict("d", check=lambda v: "is bad"))
    with pytest.raises(ConfigError):
        build('stage { tProbe "p" { .d = [ "a": "b" ] } }', dirs)
    assert seen == [{}]


# -- raw values ---------------------------------------------------------------------------------------------------
def test_configure_value_and_has_prop(dirs: Dirs) -> None:
    def hook(c: Component) -> tuple:
        v = c.configure_value("nodes")
        return v.kind, v.plain(), v.loc, c.has_prop("nodes"), c.has_prop("other"), c.configure_value("other")

    kind, plain, loc, has, has_other, other = read('.nodes = ([ "address": "a:1" ])', hook, dirs)
    assert (kind, plain, loc, has, has_other, other) == ("list", [{"address": "a:1"}], Location("<text>", 3, 10),
                                                        True, False, None)


# -- lookups through enclosing blocks -------------------------------------------------------------------------------
def test_stage_property_is_a_default_below(dirs: Dirs) -> None:
    Probe.hook = lambda c: (c.configure_duration("readTimeout", 60.0), c.configure_int("numGates", 1))
    stage = build('stage {\n .readTimeout = 10s\n .numGates = 4\n tProbe "a" { }\n tProbe "b" { .numGates = 2 } }', dirs)
    assert stage.get("runner", "a").got == (10.0, 4)  # type: ignore[union-attr]
    assert stage.get("runner", "b").got == (10.0, 2)  # type: ignore[union-attr]


def test_lookup_through_app_and_rule(dirs: Dirs) -> None:
    ProbeHandlet.hook = lambda c: (c.configure_string("webRoot"), c.configure_int("level"), c.configure_string("where"),
                                   c.configure_string("mine"))
    stage = build('''stage {
    .where = "stage"
    app "a" {
        .hostnames = ("*")
        .webRoot = "/srv"
        .level = 1
        rule "r" {
            .level = 2
            tProbeHandlet "h1" { .mine = "h1" }
        }
        tProbeHandlet "h2" { }
        rule { .returnCode = 204 }
    }
}''', dirs)
    app = stage.get("app", "a")
    h1 = app.rules[0].handlets[0]  # type: ignore[union-attr]
    h2 = app.handlets["h2"]  # type: ignore[union-attr]
    assert h1.got == ("/srv", 2, "stage", "h1")
    assert h2.got == ("/srv", 1, "stage", "")


def test_wrong_type_found_on_an_ancestor_points_at_the_ancestor(dirs: Dirs) -> None:
    assert problems("", lambda c: c.configure_duration("readTimeout", 1.0), dirs, stage_body=" .readTimeout = 10") == [
        (2, 17, '.readTimeout is an integer, expected a duration (e.g. 500ms, 30s, 5m) (in tProbe "p")')]


def test_siblings_do_not_see_each_other(dirs: Dirs) -> None:
    Probe.hook = lambda c: c.configure_int("n", -1)
    with pytest.raises(ConfigError) as info:
        build('stage { tProbe "a" { .n = 5 } tProbe "b" { .m = 1 } }', dirs)
    assert [p.message for p in info.value.problems] == ['found unknown property .m in tProbe "b"']


# -- unknown properties -------------------------------------------------------------------------------------------------
def test_unknown_property_with_a_suggestion(dirs: Dirs) -> None:
    def hook(c: Component) -> None:
        c.configure_size("maxContentSize", 1)
        c.configure_duration("readTimeout", 1.0)

    assert problems(".maxContentSiz = 1K\n.readTimout = 1s\n.zzz = 1", hook, dirs) == [
        (4, 1, 'found unknown property .maxContentSiz in tProbe "p"; did you mean .maxContentSize?'),
        (5, 1, 'found unknown property .readTimout in tProbe "p"; did you mean .readTimeout?'),
        (6, 1, 'found unknown property .zzz in tProbe "p"')]


def test_unknown_stage_property_nobody_reads(dirs: Dirs) -> None:
    Probe.hook = lambda c: c.configure_int("numGates", 1)
    with pytest.raises(ConfigError) as info:
        build('stage {\n .numGate = 1\n .numGates = 2\n tProbe "p" { } }', dirs)
    assert [(str(p.location), p.message) for p in info.value.problems] == [
        ("<text>:2:2", "found unknown property .numGate in stage")]


def test_unknown_property_in_a_handlet_inside_a_rule(dirs: Dirs) -> None:
    ProbeHandlet.hook = lambda c: c.configure_bool("autoIndex")
    with pytest.raises(ConfigError) as info:
        build('stage {\n app "a" {\n .hostnames = ("*")\n rule {\n tProbeHandlet { .autoIndx = true }\n } } }', dirs)
    assert [(str(p.location), p.message) for p in info.value.problems] == [
        ("<text>:5:18", 'found unknown property .autoIndx in tProbeHandlet "tProbeHandlet#1"; did you mean .autoIndex?')]


# -- problems, all together ------------------------------------------------------------------------------------------------
def test_every_problem_is_reported_together_sorted_by_location(dirs: Dirs) -> None:
    def hook(c: Component) -> None:
        c.configure_int("n", 1, min=1)
        c.configure_string("s")
        if c.name == "first":
            c.error("a problem of my own")
            c.error("a problem with a place", Location("<text>", 3, 1))

    Probe.hook = hook
    text = '''stage {
    tProbe "first" { .s = 1 }
    nope "x" { }
    tProbe "second" {
        .n = 0
        .extra = 1
    }
    tProbe "second" { }
}'''
    with pytest.raises(ConfigError) as info:
        build(text, dirs)
    got = [(str(p.location), p.message) for p in info.value.problems]
    assert got == [
        ("<text>:2:5", 'a problem of my own (in tProbe "first")'),
        ("<text>:2:27", '.s is an integer, expected a string (in tProbe "first")'),
        ("<text>:3:1", 'a problem with a place (in tProbe "first")'),
        ("<text>:3:5", "found unknown component 'nope' in stage, expected one of its kinds: fixture, runner, backend, "
                       "mesher, stater, storer, app, svc, server, cronjob"),
        ("<text>:5:14", '.n is 0, expected at least 1 (in tProbe "second")'),
        ("<text>:6:9", 'found unknown property .extra in tProbe "second"'),
        ("<text>:8:5", 'found a second runner named "second" in stage, expected unique names (the first is at <text>:4:5)'),
    ]
    assert str(info.value).splitlines()[0] == '<text>:2:5: a problem of my own (in tProbe "first")'


def test_raised_config_error_is_collected_with_the_rest(dirs: Dirs) -> None:
    def hook(c: Component) -> None:
        if c.name == "a":
            raise ConfigError("cannot go on", Location("<text>", 1, 1))
        c.configure_int("n")

    Probe.hook = hook
    with pytest.raises(ConfigError) as info:
        build('stage {\n tProbe "a" { }\n tProbe "b" { .n = "x" } }', dirs)
    assert [(str(p.location), p.message) for p in info.value.problems] == [
        ("<text>:1:1", "cannot go on"),
        ("<text>:3:20", '.n is a string, expected an integer (in tProbe "b")')]


def test_describe_and_repr(dirs: Dirs) -> None:
    stage = build('stage { tProbe "p" { } clock { } }', dirs)
    p = stage.get("runner", "p")
    assert p.describe() == 'tProbe "p"' and repr(p) == "<Probe tProbe 'p'>"  # type: ignore[union-attr]
    assert stage.clock.describe() == "clock" and stage.describe() == "stage"


# -- the registry ------------------------------------------------------------------------------------------------------
def test_a_sign_belongs_to_one_class() -> None:
    from hemi.core.registry import SignConflict

    class Other(Component):
        pass

    with pytest.raises(SignConflict, match="'tProbe' is already registered by .*Probe"):
        register("tProbe", "cronjob")(Other)
    with pytest.raises(SignConflict, match="'static' is already registered"):
        register("static", "handlet")(Other)
    with pytest.raises(SignConflict, match="'stage' is reserved"):
        register("stage", "handlet")(Other)
    register("tProbe", "runner")(Probe)  # the same class again (a module imported twice) is fine
    assert registry.lookup("tProbe") == ("runner", Probe)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown component kind 'widget'"):
        register("tWidget", "widget")(Probe)
    assert registry.lookup("tWidget") is None


def test_planned_signs_say_not_implemented_until_registered(dirs: Dirs) -> None:
    registry.plan("tSoon", "runner", "planned in a test")
    try:
        with pytest.raises(ConfigError) as info:
            build('stage {\n tSoon "s" { .anything = 1 } }', dirs)
        assert [(str(p.location), p.message) for p in info.value.problems] == [
            ("<text>:2:2", "runner 'tSoon' is not implemented yet (planned in a test)")]
        register("tSoon", "runner")(type("Soon", (Probe,), {}))
        assert registry.planned("tSoon") is None
        build('stage { tSoon "s" { } }', dirs)
    finally:
        registry.remove("tSoon")
        registry._planned.pop("tSoon", None)


def test_misplaced_and_misnamed_components(dirs: Dirs) -> None:
    with pytest.raises(ConfigError) as info:
        build('''stage {
    static { }
    app "a" { .hostnames = ("*") tProbe "p" { } rule { rule { } } }
    tProbe { }
    clock "c" { }
    app "a" { .hostnames = ("*") }
    tProbeHandlet { }
}''', dirs)
    assert [(str(p.location), p.message) for p in info.value.problems] == [
        ("<text>:2:5", "found handlet 'static' in stage, expected it inside app or rule"),
        ("<text>:3:34", "found runner 'tProbe' in app \"a\", expected it inside stage"),
        ("<text>:3:56", "found rule 'rule' in rule \"rule#1\", expected it inside app"),
        ("<text>:4:5", 'found tProbe without a name, expected tProbe "name" { ... }'),
        ("<text>:5:5", "found a name on clock, expected none: it is a singleton"),
        ("<text>:6:5", 'found a second app named "a" in stage, expected unique names (the first is at <text>:3:5)'),
        ("<text>:7:5", "found handlet 'tProbeHandlet' in stage, expected it inside app or rule"),
    ]


def test_two_listeners_of_one_transport_on_one_address_are_refused(tmp_path: Path) -> None:
    """SO_REUSEPORT would let both bind and split the traffic between them without a word."""
    text = """stage {
    udpsMesher "a" {
        .address = "127.0.0.1:5300"
        case { udpsProxy { .toBackend = "b" } }
    }
    udpsMesher "b2" {
        .address = "127.0.0.1:5300"
        case { udpsProxy { .toBackend = "b" } }
    }
    udpsBackend "b" { .nodes = ( [ "address": "127.0.0.1:53" ] ) }
    echoServer "tcp" { .address = "127.0.0.1:5300" }
    echoServer "other" { .address = "127.0.0.1:5301" }
}
"""
    with pytest.raises(ConfigError) as info:
        Stage.from_text(text, Dirs.under(str(tmp_path)), file="g.conf").configure()
    problems = info.value.problems
    assert len(problems) == 1, problems
    msg = str(problems[0])
    assert "g.conf:7" in msg and 'udpsMesher "b2"' in msg and 'udpsMesher "a" (line 2)' in msg, msg
    # A UDP mesher and a TCP server on one port do not share anything: accepted.
    Stage.from_text(text.replace('udpsMesher "b2" {\n        .address = "127.0.0.1:5300"',
                                 'udpsMesher "b2" {\n        .address = "127.0.0.1:5302"'),
                    Dirs.under(str(tmp_path)), file="g.conf").configure()
