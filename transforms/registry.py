"""The registry of steps: YAML ``kind``/``method`` to a step class.

Steps register themselves with :func:`register`. The registry is the only way a
spec or a fitted artifact names a step, so loading never imports code by name.

>>> from transforms import registry
>>> registry.lookup("scale", "standard").cls.__name__
'StandardScaler'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from transforms.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from transforms.base import Step

S = TypeVar("S", bound="type[Step]")


@dataclass(frozen=True)
class Entry:
    """One ``kind``/``method``: the class and the parameters the method fixes."""

    kind: str
    method: str
    cls: type[Step]
    fixed: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_ENTRIES: dict[tuple[str, str], Entry] = {}


def register(kind: str, method: str, description: str, **fixed: Any) -> Callable[[S], S]:
    """Class decorator: make ``cls`` the step for ``kind``/``method``.

    ``fixed`` are parameters the method implies, e.g. ``strategy="median"`` for
    ``impute/median``; several methods may share one class.
    """

    def deco(cls: S) -> S:
        key = (kind, method)
        if key in _ENTRIES:
            raise RuntimeError(f"step {kind}/{method} registered twice")
        _ENTRIES[key] = Entry(kind, method, cls, dict(fixed), description)
        return cls

    return deco


def entries() -> list[Entry]:
    """Every registered step, in registration order."""
    return list(_ENTRIES.values())


def kinds() -> list[str]:
    """Every registered kind."""
    return list(dict.fromkeys(k for k, _ in _ENTRIES))


def lookup(kind: str, method: str) -> Entry:
    """The entry for ``kind``/``method``; a :class:`ConfigError` suggests a fix."""
    if kind not in kinds():
        raise ConfigError(f"unknown step kind '{kind}'{did_you_mean(kind, kinds())}; known: {', '.join(kinds())}")
    entry = _ENTRIES.get((kind, method))
    if entry is None:
        methods = [m for k, m in _ENTRIES if k == kind]
        raise ConfigError(
            f"unknown method '{method}' for kind '{kind}'{did_you_mean(str(method), methods)}; "
            f"known: {', '.join(methods)}"
        )
    return entry


def entry_for(step: Step) -> Entry:
    """The entry an instance belongs to (its class, and fixed params that match)."""
    for entry in _ENTRIES.values():
        if type(step) is entry.cls and all(getattr(step, k) == v for k, v in entry.fixed.items()):
            return entry
    raise ConfigError(f"{type(step).__name__} with these parameters is not a registered step")
