"""Unit tests of the contrib checkers, rewriter and revisers: their decisions (CIDR, referer
patterns, token buckets, rewrite substitution, Accept-Encoding, gzip framing) and the
configuration mistakes they report."""

from __future__ import annotations

import gzip as gzip_module
import re
from pathlib import Path

import pytest

import hemi.contrib  # noqa: F401  (registers the signs)
from hemi.config.errors import ConfigError
from hemi.contrib.handlets.checkers import AccessTable, RefererMatcher, TokenBuckets, parse_access_entry
from hemi.contrib.handlets.rewriter import RewriteRule, parse_template
from hemi.contrib.revisers.gzip import GzipFilter, TypeSet, accepts_gzip
from hemi.core.stage import Dirs, Stage


def table(allow: list[str], deny: list[str]) -> AccessTable:
    return AccessTable([n for e in allow for n in parse_access_entry(e)],
                       [n for e in deny for n in parse_access_entry(e)])


def problems(config: str, tmp_path: Path) -> list[str]:
    """The configuration problems of an app holding ``config`` inside a rule."""
    text = ('stage { app "a" { .hostnames = ("*") rule { ' + config + ' } }\n'
            'httpxServer "s" { .address = "127.0.0.1:1" .forApps = ("a") } }')
    stage = Stage.from_text(text, Dirs.under(str(tmp_path)))
    try:
        stage.configure()
    except ConfigError as e:
        return [str(p) for p in e.problems]
    return []


# -- accessChecker ------------------------------------------------------------------------------------
class TestAccessTable:
    def test_default_allow_all(self) -> None:
        t = table(["all"], [])
        assert t.allows("10.1.2.3") and t.allows("::1")

    def test_longest_prefix_wins_both_ways(self) -> None:
        t = table(["10.1.0.0/16", "10.1.2.3"], ["10.0.0.0/8", "10.1.2.0/24"])
        assert t.allows("10.1.9.9")        # /16 allow beats /8 deny
        assert not t.allows("10.1.2.4")    # /24 deny beats /16 allow
        assert t.allows("10.1.2.3")        # exact /32 allow beats /24 deny
        assert not t.allows("10.2.0.1")    # only the /8 deny matches
        assert not t.allows("192.168.0.1")  # nothing matches: deny

    def test_deny_all_allow_some(self) -> None:
        t = table(["192.168.1.0/24", "2001:db8::/32"], ["all"])
        assert t.allows("192.168.1.77") and t.allows("2001:db8::5")
        assert not t.allows("192.168.2.1") and not t.allows("2001:db9::1")

    def test_tie_denies(self) -> None:
        # An entry in both lists is a config error; the table still resolves a tie to deny.
        t = table(["all"], ["all"])
        assert not t.allows("1.2.3.4")

    def test_ipv4_mapped_and_non_ip(self) -> None:
        t = table(["all"], ["127.0.0.0/8"])
        assert not t.allows("::ffff:127.0.0.1")
        assert t.allows("::ffff:8.8.8.8")
        assert t.allows("")  # a Unix-socket peer: only "all" speaks
        assert not table(["10.0.0.0/8"], []).allows("")

    def test_cache_is_consistent(self) -> None:
        t = table(["all"], ["10.0.0.1"])
        for _ in range(3):
            assert not t.allows("10.0.0.1")
            assert t.allows("10.0.0.2")

    def test_host_bits_are_ignored(self) -> None:
        assert parse_access_entry("10.1.2.3/8")[0] == parse_access_entry("10.0.0.0/8")[0]

    @pytest.mark.parametrize("bad", ["10.0.0.0/33", "nope", "1.2.3", "::g", ""])
    def test_malformed(self, bad: str) -> None:
        with pytest.raises(ValueError):
            parse_access_entry(bad)

    def test_config_errors_are_located(self, tmp_path: Path) -> None:
        got = problems('accessChecker {\n.allow = ("10.0.0.0/8", "bogus")\n.deny = ("10.0.0.0/8")\n}', tmp_path)
        assert any('"bogus"' in p and ":2:" in p for p in got), got
        assert any("in one list only" in p and ":3:" in p for p in got), got
        assert problems('accessChecker { .deny = ("all") }', tmp_path) == []


# -- refererChecker -----------------------------------------------------------------------------------
class TestRefererMatcher:
    m = RefererMatcher(["example.com", "*.example.org", "www.example.*", "cdn.net/images/", "~\\.test/ok"])

    @pytest.mark.parametrize("rest,ok", [
        ("example.com/page", True),
        ("EXAMPLE.com:8080/page", True),
        ("example.com", True),
        ("example.com?x=1", True),
        ("www.example.com/", True),
        ("a.b.example.org/x", True),
        ("example.org/x", False),      # *.example.org needs a subdomain
        ("www.example.net/x", True),
        ("www.example/x", False),
        ("cdn.net/images/a.png", True),
        ("cdn.net/other/a.png", False),
        ("site.test/ok/page", True),
        ("site.TEST/OK", True),        # regexes are case-insensitive
        ("evil.com/example.com", False),
        ("example.com.evil.com/", False),
        ("[::1]:80/x", False),
    ])
    def test_patterns(self, rest: str, ok: bool) -> None:
        assert self.m.matches(rest) is ok

    @pytest.mark.parametrize("bad", ["a.*.com", "~(", "*", "/path"])
    def test_bad_patterns(self, bad: str) -> None:
        with pytest.raises(ValueError):
            RefererMatcher([bad])

    def test_checker_none_and_blocked(self, tmp_path: Path) -> None:
        text = ('stage { app "a" { .hostnames = ("*") rule { refererChecker "r" { .serverNames = ("a.com") '
                '.none = true } } }\nhttpxServer "s" { .address = "127.0.0.1:1" .forApps = ("a") } }')
        stage = Stage.from_text(text, Dirs.under(str(tmp_path)))
        stage.configure()
        checker = stage.get("app", "a").rules[0].handlets[0]  # type: ignore[union-attr]
        assert checker.allows(None)
        assert not checker.allows("android-app://x")   # .blocked is false
        assert checker.allows("HTTPS://a.com/")
        assert not checker.allows("http://b.com/")
        assert not checker.allows("")

    def test_config_errors(self, tmp_path: Path) -> None:
        got = problems('refererChecker { .serverNames = ("ok.com", "~[") }', tmp_path)
        assert any("bad regular expression" in p for p in got), got
        assert any(".serverNames" in p for p in problems("refererChecker { }", tmp_path))


# -- limitChecker -------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestTokenBuckets:
    def test_burst_then_refill(self) -> None:
        clock = FakeClock()
        b = TokenBuckets(rate=2, burst=3, max_keys=10, clock=clock)
        assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
        wait = b.take("a")
        assert wait == pytest.approx(0.5)
        assert b.take("b") == 0.0          # other clients have their own bucket
        clock.now += 0.5
        assert b.take("a") == 0.0          # one token back after 1/rate seconds
        assert b.take("a") > 0
        clock.now += 100
        assert [b.take("a") for _ in range(4)].count(0.0) == 3  # refills to burst, not beyond

    def test_rejected_requests_do_not_earn_tokens(self) -> None:
        clock = FakeClock()
        b = TokenBuckets(rate=1, burst=1, max_keys=10, clock=clock)
        assert b.take("a") == 0.0
        for _ in range(5):
            clock.now += 0.1
            assert b.take("a") > 0
        clock.now += 0.5
        assert b.take("a") == 0.0

    def test_evicts_the_stalest(self) -> None:
        clock = FakeClock()
        b = TokenBuckets(rate=1, burst=1, max_keys=2, clock=clock)
        b.take("a")
        b.take("b")
        b.take("a")         # a is now the freshest
        b.take("c")         # evicts b
        assert len(b) == 2
        assert b.take("b") == 0.0   # b starts over with a full bucket
        assert b.take("c") > 0      # c survived (b's return evicted a)

    def test_config(self, tmp_path: Path) -> None:
        assert problems("limitChecker { .rate = 5 .burst = 20 .maxClients = 3 }", tmp_path) == []
        assert any(".rate" in p for p in problems("limitChecker { .rate = 0 }", tmp_path))


# -- rewriter -----------------------------------------------------------------------------------------
class TestRewriter:
    def test_template_parsing(self) -> None:
        rx = re.compile(r"^/(?P<a>x)/(y)$")
        parts = parse_template(r"/p/\2/\g<a>/\g<1>/\\/\0", rx)
        assert [p if isinstance(p, str) else p.ref for p in parts] == ["/p/", 2, "/", "a", "/", 1, "/\\/", 0]
        for bad in (r"\3", r"\g<zz>", r"\q", r"\g<1"):
            with pytest.raises(ValueError):
                parse_template(bad, rx)

    def test_internal_rewrite(self) -> None:
        r = RewriteRule.build(r"^/old/(.*)$", r"/new/\1")
        assert r.apply("/old/a/b.html", "?q=1") == ("/new/a/b.html", "?q=1")
        assert r.apply("/other", "") is None

    def test_groups_are_encoded(self) -> None:
        r = RewriteRule.build(r"^/u/(.*)$", r"/users/\1")
        assert r.apply("/u/a b?c%", "") == ("/users/a%20b%3Fc%25", "")
        q = RewriteRule.build(r"^/s/(.*)$", r"/search?q=\1")
        assert q.apply("/s/a&b=c", "?page=2") == ("/search", "?q=a%26b%3Dc&page=2")

    def test_query_handling(self) -> None:
        keep = RewriteRule.build(r"^/a$", "/b")
        drop = RewriteRule.build(r"^/a$", "/b?")
        assert keep.apply("/a", "?x=1") == ("/b", "?x=1")
        assert drop.apply("/a", "?x=1") == ("/b", "")

    def test_redirect_flags(self) -> None:
        assert RewriteRule.build("^/x$", "https://example.com/y", "permanent").status == 301
        assert RewriteRule.build("^/x$", "/y", "redirect").status == 302
        assert RewriteRule.build("^/x$", "/y").status == 0

    @pytest.mark.parametrize("args", [("(", "/x"), ("^/x$", "relative"), ("^/x$", "/y", "last"),
                                      ("^/(x)$", r"/\2"), ("^/x$", "/%zz")])
    def test_bad_rules(self, args: tuple[str, ...]) -> None:
        with pytest.raises(ValueError):
            RewriteRule.build(*args)

    def test_config(self, tmp_path: Path) -> None:
        ok = ('rewriter { .rules = (("^/a$", "/b"), ["regex": "^/c$", "replacement": "/d", "flag": "redirect"]) }')
        assert problems(ok, tmp_path) == []
        got = problems('rewriter {\n.rules = (\n("(", "/x"),\n("a"),\n["regex": "x"]) }', tmp_path)
        assert any("bad regex" in p and ":3:" in p for p in got), got
        assert any(":4:" in p for p in got), got
        assert any(":5:" in p for p in got), got
        assert any(".rules" in p for p in problems("rewriter { }", tmp_path))


# -- headReviser ----------------------------------------------------------------------------------------
def test_head_reviser_config(tmp_path: Path) -> None:
    assert problems('headReviser { .addResponse = ["x-a": "1"] .delRequest = ("cookie") }', tmp_path) == []
    assert any("framing" in p for p in problems('headReviser { .addResponse = ["content-length": "1"] }', tmp_path))
    assert any("valid header name" in p for p in problems('headReviser { .delRequest = ("a b") }', tmp_path))
    assert any("connection writes" in p for p in problems('headReviser { .delResponse = ("date") }', tmp_path))


# -- gzipReviser ----------------------------------------------------------------------------------------
class TestGzip:
    @pytest.mark.parametrize("values,ok", [
        ([], False),
        (["gzip"], True),
        (["deflate, gzip;q=0.5"], True),
        (["gzip;q=0"], False),
        (["gzip; q=0.000"], False),
        (["br", "gzip"], True),
        (["*"], True),
        (["*;q=0"], False),
        (["gzip;q=0, *"], False),       # explicit gzip;q=0 beats *
        (["identity"], False),
        (["x-gzip"], True),
        (["GZIP;Q=1"], True),
        (["gzip;q=bogus"], False),
    ])
    def test_accept_encoding(self, values: list[str], ok: bool) -> None:
        assert accepts_gzip(values) is ok

    def test_types(self) -> None:
        ts = TypeSet(["text/html", "application/", "image/*"])
        assert "text/html; charset=utf-8" in ts
        assert "TEXT/HTML" in ts
        assert "text/plain" not in ts
        assert "application/json" in ts and "image/png" in ts
        assert None not in ts

    def test_filter_streams_valid_gzip(self) -> None:
        f = GzipFilter(6)
        data = [b"hello " * 100, b"", b"world" * 50]
        pieces = [f.feed(d) for d in data]
        assert pieces[0] and pieces[1] == b""  # a fed piece comes out at once (sync flush)
        out = b"".join(pieces) + f.end()
        assert gzip_module.decompress(out) == b"".join(data)

    def test_config(self, tmp_path: Path) -> None:
        assert problems('gzipReviser { .compressLevel = 9 .minLength = 1K .onContentTypes = ("text/") }', tmp_path) == []
        assert any(".compressLevel" in p for p in problems("gzipReviser { .compressLevel = 10 }", tmp_path))
        assert any("media type" in p for p in problems('gzipReviser { .onContentTypes = ("html") }', tmp_path))
