"""Development sessions: `nox` (the default sessions below) is what CI runs."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nox

# the suite runs twice: against the pure package (tests) and the compiled core (mypyc)
nox.options.sessions = ["tests", "tests_compiled", "lint", "typecheck", "verifytypes", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = None  # the interpreter nox runs on

# the share of the public API whose types a checker sees fully (pyright --verifytypes)
VERIFYTYPES_MIN = 0.95

# every extra but pubsub: py-libp2p brings trio-typing, whose outdated trio-stubs would
# shadow trio's own inline types for mypy and pyright (libp2p itself is not type-checked)
TYPED = ".[rpc,dbg,otel,prometheus,vis,cli,examples,nats,mcp]"


# the build the tests check they run against (tests/test_build.py)
BUILD_ENV = "ASYNCMACHINE_TRIO_TEST_BUILD"


def _workers() -> list[str]:
    """pytest-xdist's worker processes: ``AM_TEST_WORKERS`` (default 2; 0 runs in-process).

    Two workers halve the suite's time on two cores: most tests wait on sockets,
    subprocesses and timers rather than compute.
    """
    return ["-n", os.environ.get("AM_TEST_WORKERS", "2")]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest, hypothesis, conformance vectors, examples).

    Against the editable install, which is always the pure package.
    """
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *_workers(), *session.posargs, env={BUILD_ENV: "pure"})


@nox.session(python=PYTHON)
def tests_compiled(session: nox.Session) -> None:
    """The test suite against the compiled build (mypyc), installed from its wheel.

    Builds the wheel ``pip install .`` builds with ``ASYNCMACHINE_TRIO_COMPILE=1`` (the
    compiled core required: a missing compiler or a failed compilation fails the session
    rather than testing the pure fallback), installs it
    (not editable) and runs pytest in a copy of the tree without the package sources,
    so the tests import the installed compiled modules (tests/test_build.py checks).
    """
    tmp = Path(session.create_tmp())
    wheels = tmp / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    session.run(
        "python",
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--wheel-dir",
        str(wheels),
        ".",
        env={"ASYNCMACHINE_TRIO_COMPILE": "1"},
    )
    (wheel,) = wheels.glob("asyncmachine_trio-*.whl")
    session.install(f"{wheel}[test]")
    session.install("--force-reinstall", "--no-deps", str(wheel))
    tree = tmp / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(
        ".",
        tree,
        ignore=shutil.ignore_patterns(
            ".git", ".nox", "asyncmachine_trio", "site", "__pycache__", "*.so", ".*cache"
        ),
    )
    # every test but the pubsub modules': their time is py-libp2p's (Noise, yamux, a
    # second of CPU per peer), they run no compiled code the rest of the suite does not
    # run, and their liveness bounds are the suite's most load-sensitive; the tests
    # session runs them
    skip = [f"--ignore={p}" for p in sorted(Path("tests").glob("test_pubsub*.py"))]
    with session.chdir(tree):
        # python -m: the copy's root on sys.path (tests import tests.*), no sources there
        session.run(
            "python",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *_workers(),
            *(session.posargs or skip),
            env={BUILD_ENV: "compiled"},
        )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check."""
    session.install("ruff>=0.5")
    session.run(
        "ruff",
        "check",
        "asyncmachine_trio",
        "tests",
        "examples",
        "benchmarks",
        "noxfile.py",
        "mkdocs_hooks.py",
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
        "mkdocs_hooks.py",
    )


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, and on the API as a user's code sees it."""
    session.install(
        "-e",
        TYPED,
        "opentelemetry-sdk>=1.20",
        "opentelemetry-exporter-otlp-proto-http>=1.20",
        "pytest>=8",  # the pytest plugins are typed against it
        "mypy>=1.10",
    )
    session.run("mypy", "--strict", "asyncmachine_trio", "tests/typing/check_api.py")


@nox.session(python=PYTHON)
def verifytypes(session: nox.Session) -> None:
    """Type completeness of the public API as users see it (pyright --verifytypes).

    Fails below VERIFYTYPES_MIN; prints the symbols that lack a declared type. Then
    pyright checks tests/typing/check_api.py (mypy does in ``typecheck``).
    """
    session.install("-e", TYPED, "pyright")
    out = session.run(
        "pyright",
        "--verifytypes",
        "asyncmachine_trio",
        "--ignoreexternal",
        "--outputjson",
        silent=True,
        success_codes=[0, 1],  # 1: some symbol is incomplete; the score decides
    )
    report = json.loads(str(out))["typeCompleteness"]
    score = float(report["completenessScore"])
    for sym in report["symbols"]:
        if (sym["isTypeAmbiguous"] or not sym["isTypeKnown"]) and sym["diagnostics"]:
            session.log(f"{sym['name']}: {sym['diagnostics'][0]['message'].splitlines()[0]}")
    session.log(f"type completeness: {score:.1%} (gate {VERIFYTYPES_MIN:.0%})")
    if score < VERIFYTYPES_MIN:
        session.error(f"type completeness {score:.1%} is below {VERIFYTYPES_MIN:.0%}")
    # the user-side checks under pyright too: each "type: ignore" there must be needed
    session.run("pyright", "-p", "tests/typing/pyrightconfig.json", "tests/typing/check_api.py")


#: console scripts of [project.scripts]
SCRIPTS = ("am-gen", "am-vis", "arpc", "am-relay", "am-dbg")


@nox.session(python=PYTHON)
def scripts(session: nox.Session) -> None:
    """Every console script answers --help and --version after `pip install .[all]`."""
    session.install(".[all]")
    for script in SCRIPTS:
        session.run(script, "--help", silent=True)
        session.run(script, "--version")
    session.run("python", "-m", "asyncmachine_trio")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs, --strict: broken links and references fail).

    `nox -s docs -- serve` previews it on http://127.0.0.1:8000 instead.
    """
    session.install("-e", ".[docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", "--strict", *session.posargs[1:])
    else:
        session.run("mkdocs", "build", "--strict", "--site-dir", "site", *session.posargs)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """The benchmark on every CPython 3.10-3.13 found, pure and compiled (not run by CI).

    One table, a column per interpreter and build, ratios to transitions measured in
    the same run (benchmarks/multi.py: it keeps a virtualenv per interpreter and build
    in .nox/bench-multi/). Arguments after `--` go to `python -m benchmarks.multi`
    (e.g. `nox -s bench -- --quick`, `-- --python 3.13 --builds compiled`).
    """
    session.run(sys.executable, "-m", "benchmarks.multi", *session.posargs)


@nox.session(python=PYTHON)
def bench_one(session: nox.Session) -> None:
    """Benchmarks against all the peers on one interpreter, pure (not run by CI).

    Prints one table (and the aRPC and NATS sections, benchmarks/rpc_bench.py and
    benchmarks/nats_bench.py) and writes
    benchmarks/results/<date>.json; arguments after `--` go to `python -m benchmarks.run`
    (e.g. `nox -s bench_one -- --quick`).
    """
    session.install(
        "-e",
        ".[rpc,dbg,otel,prometheus,nats]",
        "opentelemetry-sdk",
        "transitions",
        "python-statemachine",
        "automat",
        "sismic",
        "trio-websocket",  # the echo baseline of the aRPC section
    )
    session.run("python", "-m", "benchmarks.run", *session.posargs)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """A long fuzz session of the aRPC frame decoder (atheris, 1,000,000 inputs; not CI).

    Arguments after `--` go to libFuzzer (e.g. `nox -s fuzz -- -atheris_runs=5000000`).
    """
    session.install("-e", ".[rpc]", "atheris")
    args = session.posargs or ["-atheris_runs=1000000", "-max_len=4096"]
    session.run("python", "tests/fuzz_wire.py", *args)
