"""One error type for every config mistake, carrying each problem with its location."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """Where a token starts: file name (or ``<text>``), 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Problem:
    location: Location | None
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(Exception):
    """A config could not be used. ``problems`` lists every mistake found, each with its place.

    The lexer and parser stop at the first problem (what follows it cannot be trusted); the
    configure pass of a stage collects every problem of every component before giving up.
    """

    def __init__(self, problems: list[Problem] | str, location: Location | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(location, problems)]
        self.problems: list[Problem] = problems
        super().__init__("\n".join(str(p) for p in problems))

    @property
    def location(self) -> Location | None:
        return self.problems[0].location if self.problems else None

    @property
    def message(self) -> str:
        return self.problems[0].message if self.problems else ""
