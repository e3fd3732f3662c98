"""NFA: a nondeterministic finite automaton run by a multi-state machine.

The automaton accepts binary strings that end in ``10`` (``101010``,
``0110``, ``10``) over the states ``Q0`` (start, loops on any symbol), ``Q1``
(just read a ``1``) and ``Q2`` (accepting, read ``10``). Reading ``1`` in
``Q0`` goes to ``Q0`` *and* ``Q1``: a DFA simulation would track sets of
states by hand, here the set of active machine states *is* the set of
current NFA states.

Each symbol is a mutation of the Multi state ``Input`` (Multi: it can be
added again while active); its handler computes the next set and ``set``s
it. ``Accepted`` is an Auto state requiring ``Q2``.

Run: python examples/nfa.py [INPUT ...]
"""

from __future__ import annotations

import sys

import asyncmachine_trio as am

NFA_STATES = ("Q0", "Q1", "Q2")
# the transition relation: (state, symbol) -> next states
DELTA: dict[tuple[str, str], tuple[str, ...]] = {
    ("Q0", "0"): ("Q0",),
    ("Q0", "1"): ("Q0", "Q1"),
    ("Q1", "0"): ("Q2",),
}


class NfaStates(am.States):
    Q0 = am.State()
    Q1 = am.State()
    Q2 = am.State()
    Input = am.State(multi=True)
    Accepted = am.State(auto=True, require=("Q2",))


class Handlers:
    def input_enter(self, e: am.Event) -> bool:
        return e.args.get("symbol") in ("0", "1")

    def input_state(self, e: am.Event) -> None:
        mach, symbol = e.machine, e.args["symbol"]
        current = mach.active_states(list(NFA_STATES))
        nxt = {q for s in current for q in DELTA.get((s, symbol), ())}
        # exactly the next NFA states (Input and Accepted end too)
        mach.set([q for q in NFA_STATES if q in nxt])


def accepts(word: str) -> tuple[bool, list[str]]:
    """Run ``word``; return whether it is accepted and the active states after each symbol."""
    mach = am.Machine(NfaStates, id="nfa", handlers=Handlers())
    mach.add1("Q0")
    trace = []
    for symbol in word:
        if mach.add1("Input", {"symbol": symbol}) is am.Result.CANCELED:
            raise ValueError(f"not a binary string: {word!r}")
        trace.append(f"{symbol}: {' '.join(mach.active_states())}")
    return mach.is1("Accepted"), trace


def main(words: list[str] | None = None) -> list[str]:
    lines = []
    for word in words or ["101010", "0110", "1011", "10", "1", ""]:
        ok, trace = accepts(word)
        lines.append(f"{word!r:9} {'accepted' if ok else 'rejected'}  [{' | '.join(trace)}]")
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main(sys.argv[1:] or None)
