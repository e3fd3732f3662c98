"""Development sessions: `nox -s tests lint typecheck` is what CI runs."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = None  # the interpreter nox runs on


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest, hypothesis, conformance vectors, examples)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check."""
    session.install("ruff>=0.5")
    session.run(
        "ruff", "check", "asyncmachine_trio", "tests", "examples", "benchmarks", "noxfile.py"
    )
    session.run(
        "ruff",
        "format",
        "--check",
        "asyncmachine_trio",
        "tests",
        "examples",
        "benchmarks",
        "noxfile.py",
    )


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[rpc,nats,mcp]", "mypy>=1.10")
    session.run("mypy", "--strict", "asyncmachine_trio")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against the peers, one library per fresh interpreter (not run by CI).

    Prints one table (and the aRPC and NATS sections, benchmarks/rpc_bench.py and
    benchmarks/nats_bench.py) and writes
    benchmarks/results/<date>.json; arguments after `--` go to `python -m benchmarks.run`
    (e.g. `nox -s bench -- --quick`).
    """
    session.install("-e", ".[rpc,nats]", "transitions", "python-statemachine", "automat", "sismic")
    session.run("python", "-m", "benchmarks.run", *session.posargs)
