"""The stage: every component of one configuration, and their lifecycle.

Building creates a component for each block (unknown signs, misplaced blocks and duplicate
names are problems); configuring runs every ``on_configure`` and reports *all* problems
together before anything is prepared; preparing and starting go bottom-up in the order of the
seed's diagram (fixtures, runners, backends, meshers, staters, storers, apps, svcs, servers,
cronjobs), and shutdown goes top-down, each parent waiting for its children.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
from dataclasses import dataclass
from typing import Iterator

from ..config import parse_file, parse_text
from ..config.errors import ConfigError, Location, Problem
from ..config.tree import Block
from .component import Component
from .registry import CHILD_KINDS, NAMED_KINDS, SINGLETON_KINDS, STAGE_KINDS, registry

log = logging.getLogger("hemi.stage")

# Fixtures every stage has, configured or not.
DEFAULT_FIXTURES = ("clock", "fcache", "resolv")


@dataclass(frozen=True, slots=True)
class Dirs:
    """The four directories a config can name as %baseDir %logsDir %tempDir %varsDir."""

    base: str
    logs: str
    temp: str
    vars: str

    @classmethod
    def under(cls, base: str) -> "Dirs":
        base = os.path.abspath(base)
        return cls(base, os.path.join(base, "data", "log"), os.path.join(base, "data", "tmp"),
                   os.path.join(base, "data", "var"))

    def constants(self, config_file: str | None = None) -> dict[str, str]:
        out = {"baseDir": self.base, "logsDir": self.logs, "tempDir": self.temp, "varsDir": self.vars}
        if config_file is not None:
            # Our addition to Gorox's four: the directory of the main config file, so a config can
            # name files beside it whatever the base directory is.
            out["confDir"] = os.path.dirname(os.path.abspath(config_file))
        return out

    def create(self) -> None:
        for d in (self.logs, self.temp, self.vars):
            os.makedirs(d, exist_ok=True)


class Stage(Component):
    """Owns all components of one configuration. ``id`` grows by one on every reload."""

    sign = "stage"
    kind = "stage"

    def __init__(self, block: Block, dirs: Dirs, *, id: int = 0, config_file: str | None = None) -> None:
        self.problems: list[Problem] = list(block.problems)  # e.g. an include that cannot be read
        self.used_props: set[tuple[int, str]] = set()
        self.dirs = dirs
        self.id = id
        self.config_file = config_file
        super().__init__("stage", self, None, block)
        self.by_kind: dict[str, dict[str, Component]] = {kind: {} for kind in STAGE_KINDS}
        self.state = "new"
        # Set when a reload retires this stage: idle keep-alive connections may still bring one
        # request for this long (answered with "connection: close") instead of being closed
        # under a client that is sending it.
        self.idle_grace = 0.0
        self._build(self, block)
        for sign in DEFAULT_FIXTURES:
            if sign not in self.by_kind["fixture"] and registry.lookup(sign):
                self._create(self, Block(sign, None, None, block.loc, parent=block), sign)
        # Problems found while building are reported by configure(), together with the
        # problems of every component that could be built.

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str, dirs: Dirs, *, id: int = 0) -> "Stage":
        block = parse_file(path, constants=dirs.constants(path), strict=False)
        return cls(block, dirs, id=id, config_file=os.path.abspath(path))

    @classmethod
    def from_text(cls, text: str, dirs: Dirs, *, id: int = 0, file: str = "<text>") -> "Stage":
        include_dir = os.path.dirname(os.path.abspath(file)) if file != "<text>" else None
        block = parse_text(text, file=file, constants=dirs.constants(), include_dir=include_dir, strict=False)
        return cls(block, dirs, id=id)

    def describe(self) -> str:
        return "stage"

    def _build(self, owner: Component, block: Block) -> None:
        counter = 0
        seen: dict[tuple[str, str], Location] = {}
        allowed = CHILD_KINDS.get(owner.kind, ())
        for child in block.children:
            found = registry.lookup(child.sign)
            if found is None:
                planned = registry.planned(child.sign)
                if planned is not None:
                    kind, where = planned
                    self.problems.append(Problem(child.loc, f"{kind} '{child.sign}' is not implemented yet ({where})"))
                    continue
                known = [s for s, (k, _) in registry.signs().items() if k in allowed]
                close = difflib.get_close_matches(child.sign, known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.problems.append(Problem(child.loc, f"found unknown component '{child.sign}' in {owner.describe()}, "
                                                        f"expected one of its kinds: {', '.join(allowed) or 'none'}{hint}"))
                continue
            kind, _cls = found
            if kind not in allowed:
                self.problems.append(Problem(child.loc, f"found {kind} '{child.sign}' in {owner.describe()}, expected it "
                                                        f"inside {' or '.join(k for k, v in CHILD_KINDS.items() if kind in v)}"))
                continue
            if kind in SINGLETON_KINDS:
                if child.name is not None:
                    self.problems.append(Problem(child.loc, f"found a name on {child.sign}, expected none: it is a singleton"))
                    continue
                name = child.sign
            elif kind in NAMED_KINDS:
                if child.name is None:
                    self.problems.append(Problem(child.loc, f'found {child.sign} without a name, expected {child.sign} "name" {{ ... }}'))
                    continue
                name = child.name
            elif child.name is not None:
                name = child.name
            elif owner.kind in ("rule", "case") or kind in ("rule", "case"):
                counter += 1
                name = f"{child.sign}#{counter}"
            else:
                name = child.sign
            key = (kind, name)
            if key in seen:
                self.problems.append(Problem(child.loc, f"found a second {kind} named \"{name}\" in {owner.describe()}, "
                                                        f"expected unique names (the first is at {seen[key]})"))
                continue
            seen[key] = child.loc
            self._create(owner, child, name)

    def _create(self, owner: Component, block: Block, name: str) -> None:
        kind, cls = registry.lookup(block.sign)  # type: ignore[misc]
        comp = cls(name, self, owner, block)
        owner.children.append(comp)
        if owner is self:
            self.by_kind[kind][name] = comp
        self._build(comp, block)

    # -- lookups ------------------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> Component | None:
        return self.by_kind[kind].get(name)

    def fixture(self, sign: str) -> Component:
        return self.by_kind["fixture"][sign]

    @property
    def clock(self):  # type: ignore[no-untyped-def]
        return self.by_kind["fixture"]["clock"]

    @property
    def fcache(self):  # type: ignore[no-untyped-def]
        return self.by_kind["fixture"]["fcache"]

    @property
    def resolv(self):  # type: ignore[no-untyped-def]
        return self.by_kind["fixture"]["resolv"]

    def in_order(self) -> Iterator[Component]:
        """Top-level components in start order."""
        for kind in STAGE_KINDS:
            yield from self.by_kind[kind].values()

    # -- lifecycle ----------------------------------------------------------------------------------
    def configure(self) -> None:
        """Configure every component; raise one ConfigError listing every problem found."""
        self.on_configure()
        for comp in self.in_order():
            _walk_configure(comp)
        self._check_unknown_props(self.block, self)
        self._check_shared_addresses()
        self._bind()
        if self.problems:
            # Report in file order: that is how a person fixes a config.
            self.problems.sort(key=lambda p: (p.location.file, p.location.line, p.location.col)
                               if p.location else ("", 0, 0))
            raise ConfigError(self.problems)
        self.state = "configured"

    def on_configure(self) -> None:
        pass

    def _bind(self) -> None:
        """Second pass: components that refer to others by name resolve them now, when every
        component is configured. A component implements ``on_bind`` for that."""
        for comp in _walk(self):
            hook = getattr(comp, "on_bind", None)
            if hook is not None and comp is not self:
                hook()

    def _check_shared_addresses(self) -> None:
        """Two servers or meshers of one transport on one address is a mistake the kernel would
        not report: every gate binds with SO_REUSEPORT, so both would listen and each would get
        part of the other's connections or datagrams."""
        seen: dict[tuple, Component] = {}
        for comp in self.in_order():
            address = getattr(comp, "address", None)
            kind = getattr(comp, "socket_kind", None)
            if address is None or kind is None:
                continue
            key = (kind, address.host, address.port, address.path)
            first = seen.setdefault(key, comp)
            if first is not comp:
                value, _ = comp.find("address")
                loc = value.loc if value is not None else comp.block.loc
                where = f" (line {first.block.loc.line})" if first.block.loc else ""
                self.problems.append(Problem(loc, f"{comp.describe()} has .address {address}, which {first.describe()}"
                                                  f"{where} already listens on"))

    def _check_unknown_props(self, block: Block, comp: Component) -> None:
        for name, loc in block.prop_locs.items():
            if (id(block), name) not in self.used_props:
                self.problems.append(Problem(loc, f"found unknown property .{name} in {comp.describe()}{comp.suggest(name)}"))
        by_block = {id(c.block): c for c in comp.children}
        for child in block.children:
            sub = by_block.get(id(child))
            if sub is not None:
                self._check_unknown_props(child, sub)

    def prepare(self) -> None:
        self.dirs.create()
        for comp in self.in_order():
            _walk_prepare(comp)
        self.state = "prepared"

    async def start(self) -> None:
        for comp in self.in_order():
            await _walk_start(comp)
        self.state = "running"

    def check(self) -> None:
        """After :meth:`configure`, for ``gorox check``: every component's ``on_check`` (apps
        imported, certificates loaded); every failure is reported, with its place, as one
        ConfigError. Nothing is created on disk and nothing listens."""
        problems = []
        for comp in self.in_order():
            for c in _walk(comp):
                try:
                    c.on_check()
                except ConfigError as e:
                    problems.extend(e.problems)
                except OSError as e:
                    problems.extend(_prepare_error(c, e).problems)
        if problems:
            raise ConfigError(problems)

    async def launch(self) -> None:
        """Configure, prepare and start, in one go; a start that fails shuts down what did start
        before the error propagates (ConfigError, OSError for a port taken...)."""
        self.configure()
        self.prepare()
        try:
            await self.start()
        except BaseException:
            await self.shutdown()
            raise

    async def shutdown(self) -> None:
        """Shut kinds down top-down; components of one kind shut down concurrently."""
        if self.state in ("stopping", "stopped"):
            return
        self.state = "stopping"
        for kind in reversed(STAGE_KINDS):
            comps = list(self.by_kind[kind].values())
            if comps:
                results = await asyncio.gather(*(_walk_shutdown(c) for c in comps), return_exceptions=True)
                for comp, result in zip(comps, results):
                    if isinstance(result, BaseException):
                        log.error("shutting down %s failed: %r", comp.describe(), result)
        self.state = "stopped"


def _walk(comp: Component) -> Iterator[Component]:
    yield comp
    for child in comp.children:
        yield from _walk(child)


def _walk_configure(comp: Component) -> None:
    try:
        comp.on_configure()
    except ConfigError as e:
        comp.stage.problems.extend(e.problems)
    for child in comp.children:
        _walk_configure(child)


def _prepare_error(comp: Component, e: OSError) -> ConfigError:
    """A file or socket error while preparing (or checking) ``comp``, at its block."""
    return ConfigError(f"cannot prepare {comp.describe()}: {e}", comp.block.loc)


def _walk_prepare(comp: Component) -> None:
    try:
        comp.on_prepare()
    except OSError as e:
        raise _prepare_error(comp, e) from e
    for child in comp.children:
        _walk_prepare(child)


async def _walk_start(comp: Component) -> None:
    for child in comp.children:
        await _walk_start(child)
    await comp.on_start()


async def _walk_shutdown(comp: Component) -> None:
    await comp.on_shutdown()
    if comp.children:
        await asyncio.gather(*(_walk_shutdown(c) for c in comp.children))
