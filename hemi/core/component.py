"""The base of every configurable thing, and its typed property readers.

Property readers look a name up through the enclosing blocks (a property set on the stage is a
default for every component below it), convert and check it, and on a mistake record a problem
with its location on the stage and return the default, so that one configure pass reports every
mistake in the file at once.
"""

from __future__ import annotations

import difflib
import os
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Sequence, TypeVar

from ..config import tree
from ..config.errors import Location, Problem
from ..config.tree import Block, Value

if TYPE_CHECKING:
    from .stage import Stage

T = TypeVar("T")
Check = Callable[[Any], "str | None"]

_MISSING: Any = object()


class Component:
    """A node of a stage: a sign, a name, a parent, properties and a lifecycle.

    Lifecycle, driven by the stage: ``on_configure`` (read properties; no side effects),
    ``on_prepare`` (open files, build tables; no sockets), ``await on_start()`` (begin serving),
    ``await on_shutdown()`` (stop and drain; return when done). Children are configured and
    prepared after their parent and started before it; they are shut down after it.
    """

    sign: ClassVar[str] = ""
    kind: ClassVar[str] = ""

    def __init__(self, name: str, stage: "Stage", parent: "Component | None", block: Block) -> None:
        self.name = name
        self.stage = stage
        self.parent = parent
        self.block = block
        self.children: list[Component] = []
        self._asked: set[str] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.sign} {self.name!r}>"

    def describe(self) -> str:
        return f'{self.sign} "{self.name}"' if self.kind != "fixture" else self.sign

    # -- lifecycle hooks (override) -------------------------------------------------------------
    def on_configure(self) -> None:
        pass

    def on_prepare(self) -> None:
        pass

    def on_check(self) -> None:
        """What ``gorox check`` verifies beyond the config itself, without touching the disk or
        the network: the apps a handlet imports, the certificates a server loads. Raises
        ConfigError (an OSError is reported as one)."""
        pass

    async def on_start(self) -> None:
        pass

    async def on_shutdown(self) -> None:
        pass

    # -- problems ---------------------------------------------------------------------------------
    def error(self, message: str, loc: Location | None = None) -> None:
        """Record a configuration problem of this component; configuring carries on."""
        self.stage.problems.append(Problem(loc or self.block.loc, f"{message} (in {self.describe()})"))

    # -- raw lookup -------------------------------------------------------------------------------
    def find(self, name: str) -> tuple[Value | None, Block | None]:
        """The value of a property here or on an enclosing block, and the block that holds it."""
        self._asked.add(name)
        block: Block | None = self.block
        while block is not None:
            value = block.props.get(name)
            if value is not None:
                self.stage.used_props.add((id(block), name))
                return value, block
            block = block.parent
        return None, None

    def has_prop(self, name: str) -> bool:
        return self.find(name)[0] is not None

    def _read(self, name: str, default: Any, kinds: Sequence[str], what: str, required: bool) -> tuple[Any, Value | None]:
        value, _ = self.find(name)
        if value is None:
            if required:
                self.error(f"missing required property .{name} ({what})")
            return default, None
        if value.kind not in kinds:
            self.error(f".{name} is {value.describe()}, expected {what}", value.loc)
            return default, None
        return value.data, value

    def _checked(self, name: str, result: Any, value: Value | None, default: Any, check: Check | None) -> Any:
        if value is None or check is None:
            return result
        try:
            message = check(result)
        except ValueError as e:
            message = str(e)
        if message:
            self.error(f".{name} {message}", value.loc)
            return default
        return result

    def _ranged(self, name: str, result: Any, value: Value | None, default: Any,
                min: float | None, max: float | None, unit: str = "") -> Any:
        if value is None:
            return result
        if min is not None and result < min:
            self.error(f".{name} is {_show(result, unit)}, expected at least {_show(min, unit)}", value.loc)
            return default
        if max is not None and result > max:
            self.error(f".{name} is {_show(result, unit)}, expected at most {_show(max, unit)}", value.loc)
            return default
        return result

    # -- typed readers ------------------------------------------------------------------------------
    def configure_bool(self, name: str, default: bool = False) -> bool:
        result, _ = self._read(name, default, (tree.BOOL,), "true or false", False)
        return result

    def configure_int(self, name: str, default: int | None = 0, *, min: int | None = None, max: int | None = None,
                      check: Check | None = None, required: bool = False) -> int:
        result, value = self._read(name, default, (tree.INT, tree.SIZE), "an integer", required)
        result = self._ranged(name, result, value, default, min, max)
        return self._checked(name, result, value, default, check)

    def configure_size(self, name: str, default: int | None = 0, *, min: int | None = None, max: int | None = None,
                       check: Check | None = None, required: bool = False) -> int:
        result, value = self._read(name, default, (tree.SIZE, tree.INT), "a size (e.g. 64K, 16M)", required)
        result = self._ranged(name, result, value, default, min, max, " bytes")
        return self._checked(name, result, value, default, check)

    def configure_duration(self, name: str, default: float | None = 0.0, *, min: float | None = None,
                           max: float | None = None, check: Check | None = None, required: bool = False) -> float:
        result, value = self._read(name, default, (tree.DURATION,), "a duration (e.g. 500ms, 30s, 5m)", required)
        result = self._ranged(name, result, value, default, min, max, "s")
        return self._checked(name, result, value, default, check)

    def configure_string(self, name: str, default: str | None = "", *, check: Check | None = None,
                         required: bool = False, choices: Iterable[str] | None = None) -> str:
        result, value = self._read(name, default, (tree.STRING,), "a string", required)
        if value is not None and choices is not None:
            options = tuple(choices)
            if result not in options:
                self.error(f'.{name} is "{result}", expected one of ' + ", ".join(f'"{c}"' for c in options), value.loc)
                return default  # type: ignore[return-value]
        return self._checked(name, result, value, default, check)

    def configure_file(self, name: str, default: str = "", *, required: bool = False) -> str:
        """A path that must name a readable regular file, checked now so that ``gorox check``
        reports a missing certificate or page instead of the server failing at start."""
        path = self.configure_string(name, default, required=required)
        value = self.find(name)[0]
        if path and value is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            self.error(f'.{name} names "{path}", which is not a readable file', value.loc)
            return default
        return path

    def configure_choice(self, name: str, default: str, choices: Iterable[str]) -> str:
        return self.configure_string(name, default, choices=choices)

    def configure_list(self, name: str, default: list | None = None, *, check: Check | None = None,
                       required: bool = False) -> list:
        fallback = list(default) if default is not None else []
        result, value = self._read(name, _MISSING, (tree.LIST,), "a list ( ... )", required)
        if result is _MISSING:
            return fallback
        return self._checked(name, [v.plain() for v in result], value, fallback, check)

    def configure_string_list(self, name: str, default: list[str] | None = None, *, check: Check | None = None,
                              required: bool = False, non_empty: bool = False) -> list[str]:
        # On a mistake the default is returned; a list either way, so callers can iterate it.
        fallback = list(default) if default is not None else []
        result, value = self._read(name, _MISSING, (tree.LIST, tree.STRING), "a list of strings", required)
        if result is _MISSING:
            return fallback
        assert value is not None
        items = [value] if value.kind == tree.STRING else result
        out: list[str] = []
        for item in items:
            if item.kind != tree.STRING:
                self.error(f".{name} holds {item.describe()}, expected only strings", item.loc)
                return fallback
            out.append(item.data)
        if non_empty and not out:
            self.error(f".{name} is empty, expected at least one item", value.loc)
        return self._checked(name, out, value, fallback, check)

    def configure_dict(self, name: str, default: dict | None = None, *, check: Check | None = None,
                       required: bool = False) -> dict:
        fallback = dict(default) if default is not None else {}
        result, value = self._read(name, _MISSING, (tree.DICT,), 'a dict [ "key": value, ... ]', required)
        if result is _MISSING:
            return fallback
        return self._checked(name, {k: v.plain() for k, v in result.items()}, value, fallback, check)

    def configure_string_dict(self, name: str, default: dict[str, str] | None = None, *,
                              check: Check | None = None, required: bool = False) -> dict[str, str]:
        fallback = dict(default) if default is not None else {}
        result, value = self._read(name, _MISSING, (tree.DICT,), 'a dict of strings [ "key": "value", ... ]', required)
        if result is _MISSING:
            return fallback
        out: dict[str, str] = {}
        for key, item in result.items():
            if item.kind != tree.STRING:
                self.error(f'.{name}["{key}"] is {item.describe()}, expected a string', item.loc)
                return fallback
            out[key] = item.data
        return self._checked(name, out, value, fallback, check)

    def configure_value(self, name: str) -> Value | None:
        """The raw value, for properties with a shape of their own (e.g. backend nodes)."""
        return self.find(name)[0]

    # -- used by the stage after configuring ----------------------------------------------------
    def suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, sorted(self._asked), n=1)
        return f"; did you mean .{close[0]}?" if close else ""


def _show(number: float, unit: str) -> str:
    """``0.5s`` rather than ``0.5`` or ``1.0s``: durations read as they are written."""
    return (f"{number:g}" if isinstance(number, float) else str(number)) + unit
