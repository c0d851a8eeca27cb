"""The stage lifecycle order, observed with throwaway components of every kind that record each
call: configure and prepare go kind by kind (fixture, runner, backend, mesher, stater, storer,
app, svc, server, cronjob), parent before children; start goes the same kind order, children
before parent; shutdown goes the kinds backwards, parent before children. And a configure
failure anywhere stops the stage before anything is prepared or started."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import pytest

import hemi.contrib  # noqa: F401  (registers app and rule)
from hemi.config import ConfigError
from hemi.config.errors import Location
from hemi.core.component import Component
from hemi.core.registry import register, registry
from hemi.core.stage import Dirs, Stage
from hemi.procman.single import SingleRunner
from hemi.web.app import App
from hemi.web.handlet import Handlet, Reviser, Socklet
from hemi.web.rule import Rule

EVENTS: list[tuple[str, str]] = []
FAIL: dict[str, str] = {}  # component name -> "error" | "raise"


class Recorder(Component):
    """Records every lifecycle call; can be told to fail its configure."""

    def on_configure(self) -> None:
        EVENTS.append(("configure", self.name))
        how = FAIL.get(self.name)
        if how == "error":
            self.error("recorded failure")
        elif how == "raise":
            raise ConfigError("raised failure", Location("<text>", 1, 1))

    def on_prepare(self) -> None:
        EVENTS.append(("prepare", self.name))

    async def on_start(self) -> None:
        EVENTS.append(("start", self.name))

    async def on_shutdown(self) -> None:
        await asyncio.sleep(0)  # a real component awaits something while it drains
        EVENTS.append(("shutdown", self.name))


class RecHandlet(Recorder, Handlet):
    def handle(self, req, resp):  # type: ignore[no-untyped-def]
        return False


class RecReviser(Recorder, Reviser):
    pass


class RecSocklet(Recorder, Socklet):
    pass


TEST_SIGNS = {
    "tFixture": ("fixture", Recorder), "tRunner": ("runner", Recorder), "tBackend": ("backend", Recorder),
    "tMesher": ("mesher", Recorder), "tDealer": ("dealer", Recorder), "tEditor": ("editor", Recorder),
    "tCase": ("case", Recorder), "tStater": ("stater", Recorder), "tStorer": ("storer", Recorder),
    "tSvc": ("svc", Recorder), "tServer": ("server", Recorder), "tCronjob": ("cronjob", Recorder),
    "tHandlet": ("handlet", RecHandlet), "tReviser": ("reviser", RecReviser), "tSocklet": ("socklet", RecSocklet),
}

# Written in an order unlike the lifecycle order, so that the test shows the stage sorts by kind.
CONFIG = '''stage {
    tCronjob "cron" { }
    tServer "server" { }
    tSvc "svc" { }
    app "app" {
        .hostnames = ("*")
        tHandlet "handlet" { }
        tReviser "reviser" { }
        tSocklet "socklet" { }
        rule "rule" {
            tHandlet "ruleHandlet" { }
        }
    }
    tStorer "storer" { }
    tStater "stater" { }
    tMesher "mesher" {
        tDealer "dealer" { }
        tEditor "editor" { }
        tCase "case" {
            tDealer "caseDealer" { }
            tEditor "caseEditor" { }
        }
    }
    tBackend "backend" { }
    tRunner "runner" { }
    tFixture { }
}'''

TOP = ["tFixture", "runner", "backend", "mesher", "stater", "storer", "app", "svc", "server", "cron"]
CHILDREN = {  # parent -> children in file order (the rule and the case own what is written in them)
    "mesher": ["dealer", "editor", "case"], "case": ["caseDealer", "caseEditor"],
    "app": ["handlet", "reviser", "socklet", "rule"], "rule": ["ruleHandlet"],
}


def top_down(name: str) -> list[str]:
    out = [name]
    for child in CHILDREN.get(name, []):
        out += top_down(child)
    return out


def bottom_up(name: str) -> list[str]:
    out: list[str] = []
    for child in CHILDREN.get(name, []):
        out += bottom_up(child)
    return out + [name]


@pytest.fixture(autouse=True)
def test_signs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for sign, (kind, cls) in TEST_SIGNS.items():
        # One subclass per sign: a sign belongs to one class.
        register(sign, kind)(type(sign, (cls,), {}))
    # The built-in app and rule record their calls too.
    for cls in (App, Rule):
        for hook, is_async in (("on_configure", False), ("on_prepare", False), ("on_start", True),
                               ("on_shutdown", True)):
            monkeypatch.setattr(cls, hook, _recording(getattr(cls, hook), hook[3:], is_async))
    EVENTS.clear()
    FAIL.clear()
    yield
    for sign in TEST_SIGNS:
        registry.remove(sign)
    EVENTS.clear()
    FAIL.clear()


def _recording(original, phase: str, is_async: bool):  # type: ignore[no-untyped-def]
    if is_async:
        async def async_wrapper(self):  # type: ignore[no-untyped-def]
            EVENTS.append((phase, self.name))
            await original(self)
        return async_wrapper

    def wrapper(self):  # type: ignore[no-untyped-def]
        EVENTS.append((phase, self.name))
        original(self)
    return wrapper


def phase(name: str) -> list[str]:
    return [who for what, who in EVENTS if what == name]


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    return Dirs.under(str(tmp_path))


def test_every_kind_is_registered_for_the_test() -> None:
    kinds = {registry.lookup(sign)[0] for sign in TEST_SIGNS} | {registry.lookup("app")[0], registry.lookup("rule")[0]}
    assert kinds == {"fixture", "runner", "backend", "mesher", "dealer", "editor", "case", "stater", "storer", "app",
                     "svc", "server", "cronjob", "handlet", "reviser", "socklet", "rule"}


def test_lifecycle_order(dirs: Dirs) -> None:
    stage = Stage.from_text(CONFIG, dirs)
    stage.configure()
    assert phase("configure") == [n for top in TOP for n in top_down(top)]
    assert phase("prepare") == [] and phase("start") == []
    stage.prepare()
    assert phase("prepare") == [n for top in TOP for n in top_down(top)]
    assert phase("start") == []

    async def run() -> None:
        await stage.start()
        assert phase("start") == [n for top in TOP for n in bottom_up(top)]
        assert phase("shutdown") == []
        await stage.shutdown()

    asyncio.run(run())
    down = phase("shutdown")
    assert sorted(down) == sorted(n for top in TOP for n in top_down(top))
    # Kinds go backwards, one kind at a time: each top-level component and all of its
    # descendants shut down before the next kind starts.
    i = 0
    for top in reversed(TOP):
        group = top_down(top)
        segment = down[i:i + len(group)]
        assert segment[0] == top, (top, down)
        assert sorted(segment) == sorted(group), (top, down)
        for parent, children in CHILDREN.items():
            if parent in group:
                for child in children:
                    assert segment.index(parent) < segment.index(child), (parent, child, down)
        i += len(group)
    assert stage.state == "stopped"


def test_shutdown_twice_is_harmless(dirs: Dirs) -> None:
    stage = Stage.from_text(CONFIG, dirs)
    stage.configure()
    stage.prepare()

    async def run() -> None:
        await stage.start()
        await stage.shutdown()
        await stage.shutdown()

    asyncio.run(run())
    assert len(phase("shutdown")) == len(phase("start"))


@pytest.mark.parametrize("how", ["error", "raise"])
@pytest.mark.parametrize("who", ["mesher", "caseDealer", "handlet", "cron", "tFixture"])
def test_a_configure_failure_stops_the_stage_before_anything_is_prepared(dirs: Dirs, who: str, how: str) -> None:
    FAIL[who] = how
    stage = Stage.from_text(CONFIG, dirs)
    with pytest.raises(ConfigError) as info:
        stage.configure()
    message = "recorded failure" if how == "error" else "raised failure"
    assert [p.message.split(" (in")[0] for p in info.value.problems] == [message]
    # Every component was still configured (so every problem is found), and none prepared or started.
    assert phase("configure") == [n for top in TOP for n in top_down(top)]
    assert phase("prepare") == [] and phase("start") == []
    assert stage.state == "new"


def test_the_runner_does_not_start_a_stage_that_fails_to_configure(dirs: Dirs) -> None:
    FAIL["server"] = "error"
    runner = SingleRunner(lambda stage_id: Stage.from_text(CONFIG, dirs, id=stage_id))
    with pytest.raises(ConfigError):
        asyncio.run(runner.run())
    assert phase("configure") and phase("prepare") == [] and phase("start") == []
    assert runner.stage is None
