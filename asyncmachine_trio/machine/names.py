"""``StateNames``: a sequence of state names that a type checker tells from a ``str``.

A ``str`` is itself a ``Sequence[str]``, so ``mach.add("Foo")`` would type-check
with ``Sequence[str]`` parameters (and name the states ``F``, ``o``, ``o``). The
protocol below matches lists, tuples and other sequences but not ``str``, whose
``__contains__`` only accepts a ``str`` (semantics §3.1). At runtime a bare
``str`` raises :class:`ArgumentError` as well.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar, overload

__all__ = ["SequenceNotStr", "StateNames"]

T_co = TypeVar("T_co", covariant=True)


class SequenceNotStr(Protocol[T_co]):
    """A read-only sequence that is not a ``str`` (the same protocol as ``Sequence``)."""

    @overload
    def __getitem__(self, index: int, /) -> T_co: ...
    @overload
    def __getitem__(self, index: slice, /) -> Sequence[T_co]: ...
    def __contains__(self, value: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[T_co]: ...
    def index(self, value: Any, start: int = 0, stop: int = ..., /) -> int: ...
    def count(self, value: Any, /) -> int: ...
    def __reversed__(self) -> Iterator[T_co]: ...


#: state names as a list or tuple (not a bare ``str``: use the ``*1`` methods for one)
StateNames: TypeAlias = SequenceNotStr[str]
