"""Per-machine values of companion modules, kept on the machine itself.

In place of ``weakref.WeakKeyDictionary`` and ``weakref.ref`` on machines: the
compiled build's ``Machine`` (mypyc) cannot be weakly referenced. A value lives as
long as its machine, as with a weak key; :func:`machine_ref` is a weak reference
through a small anchor object the machine holds.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

__all__ = ["PerMachine", "machine_ref"]

V = TypeVar("V")
M = TypeVar("M")


def _store(mach: object) -> dict[object, Any]:
    # every Machine (and subclass) has it, set in Machine.__init__
    return cast("dict[object, Any]", mach._attached)  # type: ignore[attr-defined]


class PerMachine(Generic[V]):
    """A mapping machine -> value stored in the machine (``Machine._attached``)."""

    __slots__ = ("_key",)

    def __init__(self) -> None:
        self._key = object()

    def get(self, mach: object) -> V | None:
        """The value of `mach`, None when it has none."""
        return cast("V | None", _store(mach).get(self._key))

    def __contains__(self, mach: object) -> bool:
        return self._key in _store(mach)

    def __setitem__(self, mach: object, value: V) -> None:
        _store(mach)[self._key] = value

    def pop(self, mach: object, default: V | None = None) -> V | None:
        """Remove and return the value of `mach` (`default` when it has none)."""
        return cast("V | None", _store(mach).pop(self._key, default))

    def setdefault(self, mach: object, default: V) -> V:
        """The value of `mach`, set to `default` first when it has none."""
        return cast("V", _store(mach).setdefault(self._key, default))


class _Anchor:
    """Held by its machine only; weakly referenced in place of the machine."""

    __slots__ = ("__weakref__", "mach")

    def __init__(self, mach: object) -> None:
        self.mach = mach


_ANCHOR = object()


def machine_ref(mach: M) -> Callable[[], M | None]:
    """A weak reference to `mach`: call it for the machine, None once it is collected."""
    store = _store(mach)
    anchor = store.get(_ANCHOR)
    if anchor is None:
        anchor = store[_ANCHOR] = _Anchor(mach)
    ref = weakref.ref(anchor)

    def deref() -> M | None:
        a = ref()
        return cast("M", a.mach) if a is not None else None

    return deref
