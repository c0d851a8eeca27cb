"""The one registry of signs. A component class registers itself with a decorator on import;
there is no special path for built-ins, so a user's handlet in ``apps/`` is found the same way
``static`` is."""

from __future__ import annotations

from typing import Callable, TypeVar

# Every kind of component, in the order a stage configures, prepares and starts them (the seed's
# diagram read bottom-up); shutdown runs the same list backwards.
STAGE_KINDS = ("fixture", "runner", "backend", "mesher", "stater", "storer", "app", "svc", "server", "cronjob")
INNER_KINDS = ("dealer", "editor", "case", "handlet", "reviser", "socklet", "rule")
KINDS = STAGE_KINDS + INNER_KINDS

# Which kinds may be written inside which. Components inside a rule or case are its children.
CHILD_KINDS: dict[str, tuple[str, ...]] = {
    "stage": STAGE_KINDS,
    "mesher": ("dealer", "editor", "case"),
    "case": ("dealer", "editor"),
    "app": ("handlet", "reviser", "socklet", "rule"),
    "rule": ("handlet", "reviser", "socklet"),
}

# Kinds whose blocks must carry a name, and kinds that are singletons named by their sign.
NAMED_KINDS = frozenset(("runner", "backend", "mesher", "stater", "storer", "app", "svc", "server", "cronjob"))
SINGLETON_KINDS = frozenset(("fixture",))


class SignConflict(Exception):
    """Two classes claim one sign. Raised at import time: a program with a clash must not start."""


class Registry:
    def __init__(self) -> None:
        self._signs: dict[str, tuple[str, type]] = {}
        self._planned: dict[str, tuple[str, str]] = {}

    def add(self, sign: str, kind: str, cls: type) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r} for sign {sign!r}")
        if sign == "stage":  # the root of every config, not a component anyone can provide
            raise SignConflict(f"sign 'stage' is reserved; {cls.__module__}.{cls.__qualname__} cannot take it")
        old = self._signs.get(sign)
        if old is not None and old[1] is not cls:
            raise SignConflict(f"sign {sign!r} is already registered by {old[1].__module__}.{old[1].__qualname__} "
                               f"(a {old[0]}); {cls.__module__}.{cls.__qualname__} cannot take it")
        self._signs[sign] = (kind, cls)

    def remove(self, sign: str) -> None:
        """For tests that register throwaway signs."""
        self._signs.pop(sign, None)

    def plan(self, sign: str, kind: str, where: str) -> None:
        """Declare a sign of the product that is not built yet, so configs naming it get a clear
        "not implemented yet" rather than "unknown"."""
        self._planned[sign] = (kind, where)

    def lookup(self, sign: str) -> tuple[str, type] | None:
        return self._signs.get(sign)

    def planned(self, sign: str) -> tuple[str, str] | None:
        if sign in self._signs:
            return None
        return self._planned.get(sign)

    def signs(self) -> dict[str, tuple[str, type]]:
        return dict(self._signs)


registry = Registry()

C = TypeVar("C", bound=type)


def register(sign: str, kind: str) -> Callable[[C], C]:
    """Class decorator: ``@register("static", "handlet")``."""

    def deco(cls: C) -> C:
        registry.add(sign, kind, cls)
        cls.sign = sign  # type: ignore[attr-defined]
        cls.kind = kind  # type: ignore[attr-defined]
        return cls

    return deco


def _kind_decorator(kind: str) -> Callable[[str], Callable[[C], C]]:
    def by_sign(sign: str) -> Callable[[C], C]:
        return register(sign, kind)

    by_sign.__doc__ = f"Class decorator registering a {kind}: ``@{kind}(\"sign\")``."
    return by_sign


fixture = _kind_decorator("fixture")
runner = _kind_decorator("runner")
backend = _kind_decorator("backend")
mesher = _kind_decorator("mesher")
stater = _kind_decorator("stater")
storer = _kind_decorator("storer")
server = _kind_decorator("server")
cronjob = _kind_decorator("cronjob")
dealer = _kind_decorator("dealer")
editor = _kind_decorator("editor")
handlet = _kind_decorator("handlet")
reviser = _kind_decorator("reviser")
socklet = _kind_decorator("socklet")
