"""Property tests: whatever the text, reading a config fails only with ConfigError.

Three sources of text: arbitrary characters; sequences of the language's own tokens (which get
much deeper into the parser and the stage builder); and random mutations of a valid config.
The same texts are then built into a Stage and configured with every built-in component
registered, which must also fail with nothing but ConfigError.
"""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hemi.contrib  # noqa: F401  (registers every built-in sign)
from hemi.config import ConfigError, parse_text
from hemi.core.stage import Dirs, Stage

VALID = '''stage {
    .readTimeout = 30s
    clock {}
    fcache { .smallFileSize = 64K .cacheTimeout = 2s }
    app "web" {
        .hostnames = ("*", "*.example.com", "www.example.*")
        .webRoot = %baseDir + "/www"
        .settings = [ "a": "b", "c": "d", ]
        rule "api" $path ^= ("/api/", "/v1/") {
            .returnCode = 200
            .returnText = "ok"
        }
        rule $path ~= "\\.php$" { .returnCode = 403 }
        rule $path -f { .logAccess = false }
        rule { .returnCode = 404 .returnType = `text/plain` }
    }
    httpxServer "main" {
        .address = "127.0.0.1:18080"
        .forApps = ("web")
        .maxConnsPerGate = 100
        .numGates = 2
        .maxHeadSize = 16K
    }
}
'''

TOKENS = ["stage", "{", "}", "(", ")", "[", "]", ",", ":", "+", "=", "==", "^=", "$=", "*=", "~=", "!=",
          "!^", "!$", "!*", "!~", "-f", "-d", "-e", "-D", "-E", "!f", "!d", "!e", "true", "false", "0", "-1",
          "99999", "16K", "1T", "500ms", "3s", "5m", "2h", "1d", '"x"', '""', '"*"', '"127.0.0.1:0"', '"("',
          "`y`", ".hostnames", ".webRoot", ".address", ".forApps", ".returnCode", ".returnText", ".a", ".b",
          "%baseDir", "%nope", "$path", "$method", "$srcHost", "$nope", "app", "rule", "case", "svc",
          "httpxServer", "clock", "fcache", "resolv", "static", "favicon", "gzipReviser", "http1Proxy",
          "tcpsMesher", "nope", '"web"', '"main"', "# c\n", "// c\n", "/* c */", "<x.conf>", "\n", "\x00"]

DIRS = Dirs.under(tempfile.mkdtemp(prefix="gorox-fuzz-"))
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_config_errors(text: str) -> None:
    """Parse the text, then build and configure a stage from it: ConfigError or success only."""
    try:
        parse_text(text, constants=DIRS.constants())
    except ConfigError as e:
        assert e.problems and all(p.message for p in e.problems)
    try:
        Stage.from_text(text, DIRS).configure()
    except ConfigError as e:
        assert e.problems and all(p.message for p in e.problems)


def test_the_valid_config_is_valid() -> None:
    stage = Stage.from_text(VALID, DIRS)
    stage.configure()
    assert stage.get("app", "web") is not None


@SETTINGS
@given(st.text())
@example("")
@example("stage {")
@example("stage { .a = " + "(" * 3000)
@example("stage { " + "x { " * 3000)
@example("stage { .a = 1²")
@example("stage { .a = " + "9" * 5000 + " }")
def test_arbitrary_text(text: str) -> None:
    only_config_errors(text)


@SETTINGS
@given(st.text(alphabet=st.characters(codec="ascii")).map(lambda s: "stage {" + s))
def test_arbitrary_ascii_after_stage(text: str) -> None:
    only_config_errors(text)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map(" ".join))
def test_token_soup(text: str) -> None:
    only_config_errors("stage { " + text)
    only_config_errors("stage { " + text + " }")


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """VALID with a few random edits: deletions, insertions of tokens or characters, swaps."""
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        n = len(text)
        i = draw(st.integers(0, n))
        op = draw(st.sampled_from(["delete", "insert_token", "insert_text", "duplicate", "swap"]))
        if op == "delete":
            j = draw(st.integers(i, min(n, i + 40)))
            text = text[:i] + text[j:]
        elif op == "insert_token":
            text = text[:i] + " " + draw(st.sampled_from(TOKENS)) + " " + text[i:]
        elif op == "insert_text":
            text = text[:i] + draw(st.text(max_size=5)) + text[i:]
        elif op == "duplicate":
            j = draw(st.integers(i, min(n, i + 80)))
            text = text[:j] + text[i:j] + text[j:]
        else:
            j = draw(st.integers(0, n))
            a, b = sorted((i, j))
            text = text[:a] + text[b:] + text[a:b] if a != b else text
    return text


@SETTINGS
@given(mutated())
def test_mutated_valid_config(text: str) -> None:
    only_config_errors(text)


# -- well-formed configs with arbitrary components, properties and values ------------------------------
# These get past the parser every time, so they exercise what components do with odd values.
PROPS = ["hostnames", "webRoot", "address", "forApps", "returnCode", "returnText", "returnType", "logAccess",
         "handlets", "revisers", "socklets", "settings", "accessLog", "file404", "tlsMode", "tlsCertificate",
         "tlsPrivateKey", "numGates", "maxConnsPerGate", "readTimeout", "writeTimeout", "smallFileSize",
         "cacheTimeout", "maxSmallFiles", "maxLargeFiles", "indexFile", "autoIndex", "mimeTypes", "defaultType",
         "developerMode", "compressLevel", "minLength", "onContentTypes", "allow", "deny", "rate", "burst",
         "hostname", "permanent", "authority", "serverNames", "none", "blocked", "maxContentSize", "maxHeadSize",
         "maxEntries", "forceScheme", "adjustScheme", "serverName", "maxUploadContentSize", "rank", "x"]
SCALARS = st.one_of(st.booleans(), st.integers(-(1 << 63) + 1, (1 << 63) - 1).map(str),
                    st.sampled_from(["0", "1", "-1", "64K", "1T", "0K", "500ms", "0s", "1d", "-5s"]),
                    st.sampled_from(["", "*", "x", "/", "127.0.0.1:0", ":0", "a.com", "*.a.com", "gzip", "all",
                                     "10.0.0.0/8", "::1", "text/html", "/nonexistent", "reverse"]).map(lambda s: f'"{s}"'),
                    st.text(max_size=8).filter(lambda s: '"' not in s).map(lambda s: f'"{s}"'))
VALUES = st.recursive(
    SCALARS.map(lambda v: "true" if v is True else "false" if v is False else v),
    lambda inner: st.one_of(st.lists(inner, max_size=4).map(lambda xs: "(" + ", ".join(xs) + ")"),
                            st.dictionaries(st.sampled_from(['"a"', '"b"', '"html"', '""']), inner, max_size=3)
                            .map(lambda d: "[" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "]")),
    max_leaves=6)
CONDITIONS = st.one_of(
    st.just(""),
    st.tuples(st.sampled_from(["$path", "$method", "$hostname", "$srcHost", "$uri"]),
              st.sampled_from(["==", "^=", "~=", "!~", "!=", "-f", "!d"]),
              st.sampled_from(['"/a"', '("/a", "b")', '"x"', '"[a-"'])).map(
        lambda t: f"{t[0]} {t[1]}" if t[1] in ("-f", "!d") else " ".join(t)))
INNER_SIGNS = ["static", "favicon", "accessChecker", "limitChecker", "hostnameChecker", "httpsChecker",
               "refererChecker", "gzipReviser", "headReviser", "http1Proxy", "nope", "rule"]
STAGE_SIGNS = ["httpxServer", "clock", "fcache", "resolv", "tcpsMesher", "echoServer", "svc", "static", "nope"]
PROP = st.tuples(st.sampled_from(PROPS), VALUES).map(lambda t: f".{t[0]} = {t[1]}")
NAME = st.sampled_from(["", '"a"', '"b"', '"main"'])


def render(sign: str, name: str, cond: str, items: list[str]) -> str:
    return f"{sign} {name} {cond} {{\n" + "\n".join(items) + "\n}"


LEAF = st.builds(render, st.sampled_from(INNER_SIGNS), NAME, st.just(""), st.lists(PROP, max_size=4))
RULE = st.builds(render, st.just("rule"), NAME, CONDITIONS, st.lists(st.one_of(PROP, LEAF), max_size=5))
APP = st.builds(render, st.just("app"), NAME, st.just(""), st.lists(st.one_of(PROP, LEAF, RULE), max_size=6))
OTHER = st.builds(render, st.sampled_from(STAGE_SIGNS), NAME, st.just(""), st.lists(st.one_of(PROP, LEAF), max_size=4))
BLOCKS = st.one_of(APP, OTHER)


@SETTINGS
@given(st.lists(BLOCKS, max_size=4), st.lists(st.tuples(st.sampled_from(PROPS), VALUES), max_size=3))
def test_well_formed_configs_with_odd_values(blocks: list[str], stage_props: list[tuple[str, str]]) -> None:
    text = "stage {\n" + "\n".join(f".{k} = {v}" for k, v in stage_props) + "\n" + "\n".join(blocks) + "\n}"
    only_config_errors(text)


@pytest.mark.parametrize("index", range(0, len(VALID), 7))
def test_every_truncation_of_the_valid_config(index: int) -> None:
    only_config_errors(VALID[:index])
