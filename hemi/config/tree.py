"""What the parser produces: values, conditions and blocks. Plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import Location, Problem

# Value kinds. Sizes stay distinct from plain integers so `.maxContentSize = 10` can be told
# apart from `10M` in messages, but every integer accessor accepts both.
BOOL, INT, SIZE, DURATION, STRING, LIST, DICT = "bool", "integer", "size", "duration", "string", "list", "dict"


@dataclass(slots=True)
class Value:
    kind: str
    data: Any  # bool | int | float (seconds, for durations) | str | list[Value] | dict[str, Value]
    loc: Location

    def plain(self) -> Any:
        """The Python value with nested Values unwrapped."""
        if self.kind == LIST:
            return [v.plain() for v in self.data]
        if self.kind == DICT:
            return {k: v.plain() for k, v in self.data.items()}
        return self.data

    def describe(self) -> str:
        return {INT: "an integer", SIZE: "a size", DURATION: "a duration", STRING: "a string",
                BOOL: "a bool", LIST: "a list", DICT: "a dict"}[self.kind]


@dataclass(slots=True)
class Condition:
    """``$variable OP patterns`` or ``$path -f`` (a file test, with no patterns)."""

    variable: str
    op: str
    patterns: list[str]
    loc: Location
    var_loc: Location


@dataclass(slots=True)
class Block:
    """``sign ["name"] [condition] { .prop = value ... child blocks ... }``."""

    sign: str
    name: str | None
    cond: Condition | None
    loc: Location
    props: dict[str, Value] = field(default_factory=dict)
    prop_locs: dict[str, Location] = field(default_factory=dict)
    children: list[Block] = field(default_factory=list)
    parent: Block | None = None
    # On the root block only: problems that did not stop the parse (an include file that cannot
    # be read), for the stage to report together with every other mistake.
    problems: list[Problem] = field(default_factory=list)

    def find(self, name: str) -> Value | None:
        """Look a property up here, then in each enclosing block (Gorox's ``Find``)."""
        block: Block | None = self
        while block is not None:
            value = block.props.get(name)
            if value is not None:
                return value
            block = block.parent
        return None

    def describe(self) -> str:
        return f'{self.sign} "{self.name}"' if self.name else self.sign
