"""FSM: the classic turnstile as a finite-state machine (no event loop needed).

``Locked`` and ``Unlocked`` remove each other, so exactly one is active. The
inputs are mutations: a coin adds ``Unlocked``, a push adds ``Locked``. A
negotiation handler refuses a coin that is too small, and ``Unlocked`` counts
the passes through the clock: every activation ticks it, so
``mach.tick("Unlocked") // 2`` passes have completed.

Run: python examples/fsm.py
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncmachine_trio as am

PRICE = 1


class TurnstileStates(am.States):
    Locked = am.State(remove=("Unlocked",))
    Unlocked = am.State(remove=("Locked",))


S = TurnstileStates


class Handlers:
    def unlocked_enter(self, e: am.Event) -> bool:
        """A coin below the price is refused."""
        return int(e.args.get("coin", 0)) >= PRICE


def new_turnstile() -> am.Machine:
    mach = am.Machine(S, id="turnstile", handlers=Handlers())
    mach.add1(S.Locked)
    return mach


def feed(mach: am.Machine, inputs: Sequence[str]) -> list[str]:
    """Apply ``inputs`` ("coin:N" or "push"); return one line per input."""
    lines = []
    for text in inputs:
        if text.startswith("coin:"):
            result = mach.add1(S.Unlocked, {"coin": int(text[5:])})
        elif text == "push":
            result = mach.add1(S.Locked)
        else:
            raise ValueError(f"unknown input {text!r} (coin:N or push)")
        lines.append(f"{text:7} {result.name.lower():8} -> {mach.switch([S.Locked, S.Unlocked])}")
    return lines


def main() -> list[str]:
    mach = new_turnstile()
    lines = feed(mach, ["push", "coin:0", "coin:1", "coin:1", "push", "push", "coin:2", "push"])
    lines.append(f"passes: {mach.tick(S.Unlocked) // 2}")
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
