"""Shared test handlers: a recording handler object for any schema."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import asyncmachine_trio as am


def events_for(states: Iterable[str]) -> dict[str, str]:
    """method name -> event name for every handler of ``states``."""
    states = list(states)
    out = {"any_enter": "AnyEnter", "any_state": "AnyState"}
    for s in states:
        sn = am.snake(s)
        for suffix in ("Enter", "Exit", "State", "End"):
            out[f"{sn}_{suffix.lower()}"] = s + suffix
        for t in states:
            out[f"{sn}_{am.snake(t)}"] = s + t
    return out


class Rec:
    """A handler object recording calls; behaviour per event name."""

    def __init__(
        self,
        states: Iterable[str],
        *,
        only: Iterable[str] | None = None,
        reject: Iterable[str] = (),
        raise_: Iterable[str] = (),
        actions: dict[str, Callable[[am.Event], Any]] | None = None,
    ) -> None:
        self.calls: list[str] = []
        self.events: list[am.Event] = []
        self.reject = set(reject)
        self.raise_ = set(raise_)
        self.actions = actions or {}
        only_set = set(only) if only is not None else None
        for meth, ev in events_for(states).items():
            if only_set is None or ev in only_set:
                setattr(self, meth, self._make(ev))

    def _make(self, ev: str) -> Callable[[am.Event], Any]:
        def handler(e: am.Event) -> Any:
            self.calls.append(ev)
            self.events.append(e)
            action = self.actions.get(ev)
            if action is not None:
                ret = action(e)
                if ret is not None:
                    return ret
            if ev in self.raise_:
                raise ValueError(f"{ev} panic")
            return False if ev in self.reject else None

        return handler
