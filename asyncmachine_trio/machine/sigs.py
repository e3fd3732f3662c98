"""Wrappers that take another callable's parameters, typed and shown by ``help()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["params_of"]

P = ParamSpec("P")
R = TypeVar("R")


def params_of(source: Callable[P, object]) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """Give the decorated ``fn(*args, **kwargs)`` the parameters of ``source``.

    Type checkers see ``source``'s parameters (a class: its ``__init__``'s), so a
    misspelled option is an error before the program runs; ``help()`` and
    ``inspect.signature`` show them with their defaults.
    """

    def decorate(fn: Callable[..., R]) -> Callable[P, R]:
        returns = inspect.signature(fn).return_annotation
        try:
            signature = inspect.signature(source).replace(return_annotation=returns)
        except ValueError:
            # a class compiled with mypyc (the compiled build) has no signature to show
            return fn
        setattr(fn, "__signature__", signature)
        return fn

    return decorate
