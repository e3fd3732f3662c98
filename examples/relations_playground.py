"""Relations playground: a quiz — which states end up active?

Each puzzle is a small schema and a few mutations. Guess the answer, then run
the file: it prints the question, the machine's answer and why. The schemas
are the relations quiz of asyncmachine-go's README, so the answers are the
same in both libraries.

Run: python examples/relations_playground.py
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import asyncmachine_trio as am


class Puzzle(NamedTuple):
    name: str
    schema: dict[str, am.State]
    mutate: Callable[[am.Machine], object]
    question: str
    why: str


PUZZLES = [
    Puzzle(
        "FooBar",
        {"Foo": am.State(require=("Bar",)), "Bar": am.State()},
        lambda m: m.add1("Foo"),
        "add Foo. Is Foo active?",
        "Require is a condition: Foo needs Bar, nobody added Bar, so the whole "
        "transition is canceled.",
    ),
    Puzzle(
        "FileProcessed",
        {
            "ProcessingFile": am.State(remove=("FileProcessed",)),
            "FileProcessed": am.State(remove=("ProcessingFile",)),
            "InProgress": am.State(auto=True, require=("ProcessingFile",)),
        },
        lambda m: (m.add1("ProcessingFile"), m.add1("FileProcessed")),
        "add ProcessingFile, then FileProcessed. Is InProgress active?",
        "InProgress (Auto) came with ProcessingFile; FileProcessed removes "
        "ProcessingFile, and a state whose requirement goes away goes with it.",
    ),
    Puzzle(
        "DryWaterWet",
        {
            "Wet": am.State(require=("Water",)),
            "Dry": am.State(remove=("Water",)),
            "Water": am.State(add=("Wet",), remove=("Dry",)),
        },
        lambda m: (m.add1("Dry"), m.add1("Water"), m.add1("Dry")),
        "add Dry, Water, Dry. Is Wet active?",
        "Water added Wet; the second Dry removes Water, and Wet requires Water.",
    ),
    Puzzle(
        "RemoveByAdd",
        {"A": am.State(add=("B",)), "B": am.State(remove=("C",)), "C": am.State()},
        lambda m: (m.add1("C"), m.add1("A")),
        "add C, then A. Is C active?",
        "A adds B and B removes C: a state removes others even when it was not the one called.",
    ),
    Puzzle(
        "AddOptionalRemoveMandatory",
        {"A": am.State(add=("B",)), "B": am.State(), "C": am.State(remove=("B",))},
        lambda m: m.add(["A", "C"]),
        "add A and C together. Is B active?",
        "Add is optional, Remove is mandatory: C removing B wins over A adding it.",
    ),
    Puzzle(
        "Mutex",
        {
            "A": am.State(remove=("A", "B", "C")),
            "B": am.State(remove=("A", "B", "C")),
            "C": am.State(remove=("A", "B", "C")),
        },
        lambda m: (m.add1("A"), m.add1("B"), m.add1("C")),
        "add A, B, C one by one. Which one is active?",
        "States that remove each other form a mutex (a state never removes "
        "itself): the last one added wins.",
    ),
    Puzzle(
        "Quiz",
        {
            "A": am.State(add=("B",)),
            "B": am.State(require=("D",), add=("C",)),
            "C": am.State(),
            "D": am.State(remove=("C",)),
            "E": am.State(add=("D",)),
        },
        lambda m: m.add(["A", "E"]),
        "add A and E together. Which states are active?",
        "E adds D, so B's requirement holds and B is added by A; B adds C but D "
        "removes C, and Remove beats Add.",
    ),
]


def solve(puzzle: Puzzle) -> list[str]:
    """Run one puzzle; return its active states."""
    mach = am.Machine(puzzle.schema, id=puzzle.name)
    puzzle.mutate(mach)
    return [s for s in mach.state_names if mach.is1(s)]


def main() -> list[str]:
    lines = []
    for puzzle in PUZZLES:
        active = solve(puzzle)
        lines.append(f"{puzzle.name}: {puzzle.question}")
        lines.append(f"  active: {' '.join(active) or '(none)'} - {puzzle.why}")
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
