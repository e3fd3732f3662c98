"""Every public name has a docstring, and a place in the API reference (docs/reference/).

The public API: the names ``asyncmachine_trio/__init__.py`` and
``asyncmachine_trio/rpc/__init__.py`` re-export (``from .x import Name as Name``)
and the ``__all__`` of the other public modules. For a public class, every
public method and property it defines needs a docstring too, unless it
overrides a documented one (the reference shows the inherited docstring); the
members of a Protocol that mirrors ``am.Machine`` (``helpers.MachineApi``) are
documented on ``am.Machine``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import asyncmachine_trio as am

ROOT = Path(__file__).resolve().parent.parent

# pure-only: mypyc keeps no docstrings on the classes and functions it compiles (the
# reference is built from the sources; `nox -s tests` checks them on the pure build)
pytestmark = pytest.mark.skipif(
    am.compiled, reason="compiled build: mypyc drops the docstrings of compiled code"
)
REFERENCE = ROOT / "docs" / "reference"

# module -> how its public names are declared
REEXPORTING = ["asyncmachine_trio", "asyncmachine_trio.rpc"]
WITH_ALL = [
    "asyncmachine_trio.helpers",
    "asyncmachine_trio.states",
    "asyncmachine_trio.states.pipes",
    "asyncmachine_trio.history",
    "asyncmachine_trio.testing",
    "asyncmachine_trio.node",
    "asyncmachine_trio.pubsub",
    "asyncmachine_trio.telemetry",
    "asyncmachine_trio.graph",
    "asyncmachine_trio.vis",
]


def reexported(module: ModuleType) -> list[str]:
    """Names imported as ``from .x import Name as Name`` by ``module``'s source."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    return [
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.level >= 1
        for alias in node.names
        if alias.asname == alias.name
    ]


def public_names() -> list[tuple[str, str]]:
    """``(module, name)`` for every public name."""
    out = []
    for mod_name in REEXPORTING:
        out += [(mod_name, n) for n in reexported(importlib.import_module(mod_name))]
    for mod_name in WITH_ALL:
        out += [(mod_name, n) for n in importlib.import_module(mod_name).__all__]
    return out


PUBLIC = public_names()


def is_documented_elsewhere(cls: type, name: str) -> bool:
    """``cls.name`` overrides a documented member, or mirrors a documented ``am.Machine`` one."""
    for base in cls.__mro__[1:]:
        member = vars(base).get(name)
        if member is not None and member_doc(member):
            return True
    if getattr(cls, "_is_protocol", False):
        return bool(member_doc(getattr(am.Machine, name, None)))
    return False


def member_doc(member: Any) -> str | None:
    if isinstance(member, property):
        return member.fget.__doc__ if member.fget else None
    return getattr(getattr(member, "__func__", member), "__doc__", None)


def undocumented_members(cls: type) -> list[str]:
    missing = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        func = getattr(member, "__func__", member)
        if not (inspect.isfunction(func) or isinstance(member, property)):
            continue
        if not member_doc(member) and not is_documented_elsewhere(cls, name):
            missing.append(name)
    return missing


def test_the_public_api_is_found() -> None:
    names = {f"{m}.{n}" for m, n in PUBLIC}
    assert {"asyncmachine_trio.Machine", "asyncmachine_trio.rpc.Client"} <= names
    assert {"asyncmachine_trio.helpers.fan_out_in", "asyncmachine_trio.testing.assert_is"} <= names
    assert len(names) > 250


@pytest.mark.parametrize("module", [*REEXPORTING, *WITH_ALL])
def test_public_modules_have_docstrings(module: str) -> None:
    assert (importlib.import_module(module).__doc__ or "").strip()


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for mod_name, name in PUBLIC:
        obj = getattr(importlib.import_module(mod_name), name)
        if inspect.ismodule(obj) or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants are documented where they are listed
        if not (obj.__doc__ or "").strip():
            missing.append(f"{mod_name}.{name}")
    assert missing == []


def test_every_public_member_has_a_docstring() -> None:
    missing = []
    for mod_name, name in PUBLIC:
        obj = getattr(importlib.import_module(mod_name), name)
        if inspect.isclass(obj):
            missing += [f"{mod_name}.{name}.{m}" for m in undocumented_members(obj)]
    assert missing == []


def test_checker_catches_a_missing_docstring() -> None:
    class Base:
        def documented(self) -> None:
            """Documented."""

    class Child(Base):
        def documented(self) -> None:  # inherits the docstring
            pass

        def bare(self) -> None:
            pass

        @property
        def prop(self) -> int:
            return 1

    assert undocumented_members(Child) == ["bare", "prop"]


def test_every_public_name_is_in_the_reference() -> None:
    """The core and rpc pages list their names one by one; add new ones to the right section."""
    pages = {p.stem: p.read_text() for p in REFERENCE.glob("*.md")}
    missing = []
    for mod_name, name in PUBLIC:
        if inspect.ismodule(getattr(importlib.import_module(mod_name), name)):
            continue  # a module has its own page
        page = {"asyncmachine_trio": "core", "asyncmachine_trio.rpc": "rpc"}.get(mod_name)
        if page and f"::: {mod_name}.{name}\n" not in pages[page]:
            missing.append(f"{name} (docs/reference/{page}.md)")
    assert missing == []
    # the other modules are rendered whole, from their __all__
    for mod_name in WITH_ALL:
        page = mod_name.split(".")[1]
        if mod_name.endswith(".pipes"):
            page = "states"
        assert f"::: {mod_name}\n" in pages[page], mod_name
