"""Public signatures read well in ``help()``: no anonymous sentinels, typed options."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import asyncmachine_trio as am
from asyncmachine_trio import helpers, rpc, states


def _public_callables() -> Iterator[tuple[str, Callable[..., Any]]]:
    for mod in (am, helpers, rpc, states):
        for name in getattr(mod, "__all__", dir(mod)):
            obj = getattr(mod, name, None)
            if name.startswith("_") or not callable(obj):
                continue
            yield f"{mod.__name__}.{name}", obj
            if inspect.isclass(obj):
                for meth_name, meth in vars(obj).items():
                    if not meth_name.startswith("_") and inspect.isfunction(meth):
                        yield f"{mod.__name__}.{name}.{meth_name}", meth


def test_no_anonymous_defaults() -> None:
    bad = []
    for name, fn in _public_callables():
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            continue
        for p in sig.parameters.values():
            if p.default is not p.empty and " object at 0x" in repr(p.default):
                bad.append(f"{name}({p.name}={p.default!r})")
    assert bad == []


# what mypyc does not keep (docs/getting-started.md, the compiled core): a compiled class
# shows no signature when a default is not a literal (Machine's are not), compiled
# code carries no docstrings and its methods no __annotations__. `nox -s tests` checks
# these on the pure build.
PURE_ONLY = pytest.mark.skipif(
    am.compiled, reason="compiled build: mypyc keeps no signature, docstring or annotations"
)


@PURE_ONLY
def test_machine_defaults_are_named() -> None:
    sig = inspect.signature(am.Machine)
    assert repr(sig.parameters["handler_timeout"].default) == "<default>"
    assert "handler_timeout" in (am.Machine.__doc__ or "")


@pytest.mark.parametrize(
    ("wrapper", "target"),
    [
        pytest.param(am.open_machine, am.Machine, marks=PURE_ONLY),
        (rpc.open_server, rpc.Server),
        (rpc.open_mux, rpc.Mux),
    ],
)
def test_open_helpers_show_the_options_they_take(wrapper: Callable[..., Any], target: type) -> None:
    shown = inspect.signature(wrapper).parameters
    assert list(shown) == list(inspect.signature(target).parameters)
    assert all(p.kind is not p.VAR_KEYWORD or p.name == "server_kwargs" for p in shown.values())


def test_machine_methods_are_defined_on_the_class() -> None:
    # the methods Machine delegates to its modules are its own typed defs
    for name in ("when", "when_not", "when_time", "can_add", "eval", "bind_handlers", "is_queued"):
        fn = vars(am.Machine)[name]
        assert fn.__qualname__ == f"Machine.{name}"
        assert am.compiled or "return" in fn.__annotations__  # see PURE_ONLY


@pytest.mark.trio
async def test_open_machine_passes_every_option() -> None:
    async with am.open_machine({"A": am.State()}, id="opts", handler_timeout=None) as mach:
        assert mach.id == "opts"
        assert mach.handler_timeout is None
