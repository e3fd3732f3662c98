"""Which build of the package runs: pure, or the compiled core (mypyc).

``nox -s tests`` runs the suite against the editable install (pure) and
``nox -s tests_compiled`` against the compiled wheel; each sets
``ASYNCMACHINE_TRIO_TEST_BUILD`` so these tests fail when the suite ran against the
other build (e.g. the source tree shadowing the installed compiled package).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import asyncmachine_trio as am
from asyncmachine_trio.__main__ import build, compiled_modules

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = os.environ.get("ASYNCMACHINE_TRIO_TEST_BUILD", "")


def listed_modules() -> list[str]:
    """The modules pyproject.toml lists for the compiled build."""
    text = (ROOT / "pyproject.toml").read_text()
    # tomllib is 3.11+: the list is simple enough for a pattern
    block = re.search(r"hooks\.custom\][^\[]*modules = \[(.*?)\]", text, re.S)
    assert block is not None
    mods = re.findall(r'"([\w.]+)"', block.group(1))
    assert len(mods) > 5
    return mods


def is_extension(name: str) -> bool:
    mod = importlib.import_module(name)
    return isinstance(mod.__loader__, importlib.machinery.ExtensionFileLoader)


def test_compiled_flag_matches_the_loaded_modules() -> None:
    loaded = [m for m in listed_modules() if is_extension(m)]
    assert am.compiled == bool(loaded)
    # all or nothing: a wheel never mixes compiled and pure core modules
    assert loaded in ([], listed_modules())
    for name in listed_modules():
        importlib.import_module(name)
    assert set(loaded) <= set(compiled_modules())
    assert build() == (
        "pure Python" if not loaded else f"compiled (mypyc): {len(loaded)} core modules"
    )


def test_cli_reports_the_build() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "asyncmachine_trio"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    line = out.splitlines()[1]
    assert line.startswith("build: ")
    assert ("compiled (mypyc)" in line) == am.compiled


@pytest.mark.skipif(EXPECTED != "compiled", reason="the suite runs against the pure build")
def test_running_the_compiled_build() -> None:
    assert am.compiled, f"expected the compiled build, imported {am.__file__}"
    assert not Path(am.__file__).resolve().is_relative_to(ROOT), "the source tree shadows it"
    assert [m for m in listed_modules() if not is_extension(m)] == []


@pytest.mark.skipif(EXPECTED != "pure", reason="the suite runs against the compiled build")
def test_running_the_pure_build() -> None:
    assert not am.compiled
    assert all(not is_extension(m) for m in listed_modules())


def test_subclasses_and_weak_references_work_on_either_build() -> None:
    """What the compiled build needs (interpreted subclasses, no weakref to Machine)."""

    class Sub(am.Machine):
        def extra(self) -> str:
            return f"sub {self.id}"

    class Rec(am.Tracer):
        def __init__(self) -> None:
            self.ended = 0

        def transition_end(self, tx: am.Transition) -> None:
            self.ended += 1

    rec = Rec()
    m = Sub({"A": {}}, id="s", tracers=[rec])
    m.add1("A")
    assert m.extra() == "sub s" and m.is1("A") and rec.ended == 1

    from asyncmachine_trio.machine.attached import PerMachine, machine_ref

    per: PerMachine[int] = PerMachine()
    assert per.get(m) is None and m not in per
    per[m] = 1
    assert per.setdefault(m, 2) == 1 and m in per and per.pop(m) == 1
    ref = machine_ref(m)
    assert ref() is m
    del m
    import gc

    gc.collect()
    assert ref() is None
