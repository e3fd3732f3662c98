"""Build hook: the compiled core (mypyc) of ``pip install .``.

A wheel built from source on CPython compiles the modules listed in
``pyproject.toml`` (``[tool.hatch.build.targets.wheel.hooks.custom] modules``) with
mypyc, next to their ``.py`` files, when a C compiler and Python's headers are found.
Otherwise, or when the compilation fails, the wheel is the pure package (tagged
``py3-none-any``) and the build log says why (``pip install -v`` shows it).

- ``ASYNCMACHINE_TRIO_PURE=1``: the pure wheel, no compiler tried.
- ``ASYNCMACHINE_TRIO_COMPILE=1``: the compiled core is required: a missing
  compiler or a failed compilation fails the build (the compiled test session must
  test the compiled build, not a pure fallback). ``PURE`` wins over it.
- Editable installs (``pip install -e .``) and the sdist are always pure.

Compilation happens in a temporary copy of the package, so the source tree never holds
extension modules (they would shadow the ``.py`` files of a checkout).
"""

from __future__ import annotations

import inspect
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PURE_ENV = "ASYNCMACHINE_TRIO_PURE"
REQUIRE_ENV = "ASYNCMACHINE_TRIO_COMPILE"
PACKAGE = "asyncmachine_trio"

# what compiling needs besides the build backend: mypyc and the runtime dependencies
# (mypy type-checks the compiled modules against them)
_COMPILE_DEPS = [
    "mypy>=1.16",
    "setuptools>=70",
    "anyio>=4.4",
    "trio>=0.25",
    "attrs>=23.1",
    "cattrs>=23.2",
    "structlog>=24.1",
]

_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify

files = sys.argv[1:]
sys.argv[1:] = ["build_ext", "--inplace"]
setup(
    name="asyncmachine_trio_compiled",
    ext_modules=mypycify(
        ["--follow-imports=silent", "--ignore-missing-imports", *files],
        opt_level="3",
        debug_level="0",
        group_name="asyncmachine_trio",
    ),
)
"""


def _env_on(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


def _log(msg: str) -> None:
    print(f"asyncmachine-trio build: {msg}", file=sys.stderr, flush=True)


def _compiler_missing() -> str:
    """Why no C compiler can build extension modules here ("" when one seems to)."""
    if sys.platform == "win32":
        return ""  # setuptools looks MSVC up itself; a failure falls back to pure
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    if not cc or shutil.which(cc[0]) is None:
        return f"no C compiler ({cc[0] if cc else 'CC'} not found)"
    include = sysconfig.get_paths().get("include", "")
    if not os.path.isfile(os.path.join(include, "Python.h")):
        return f"no Python headers ({include}/Python.h; Debian: python3-dev)"
    return ""


def _editable_requires() -> bool:
    """True while the frontend asks for the requirements of an editable build."""
    return any(f.function == "get_requires_for_build_editable" for f in inspect.stack())


class CompiledCoreHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compiles the core modules with mypyc into the wheel (falls back to pure)."""

    PLUGIN_NAME = "custom"

    def _why_pure(self) -> str:
        """Why this wheel is pure without trying to compile ("": try)."""
        if _env_on(PURE_ENV):
            return f"{PURE_ENV} is set"
        if platform.python_implementation() != "CPython":
            return f"{platform.python_implementation()} is not CPython"
        if _env_on(REQUIRE_ENV):
            return ""  # required: the compilation itself tells what is missing
        return _compiler_missing()

    def dependencies(self) -> list[str]:
        # mypy and the runtime dependencies, in the isolated build environment
        if _editable_requires() or self._why_pure():
            return []
        return list(_COMPILE_DEPS)

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._tmp: str | None = None
        if self.target_name != "wheel" or version == "editable":
            return
        why = self._why_pure()
        if why:
            _log(f"building the pure package: {why}")
            return
        required = _env_on(REQUIRE_ENV)
        modules = list(self.config.get("modules", []))
        try:
            built = self._compile(modules)
        except Exception as e:
            if required:
                raise RuntimeError(
                    f"the compiled core failed to build ({REQUIRE_ENV} is set)"
                ) from e
            _log(f"the compiled core failed to build, building the pure package: {e}")
            self._cleanup()
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["force_include"].update(built)
        _log(f"compiled with mypyc: {', '.join(modules)}")

    def _compile(self, modules: list[str]) -> dict[str, str]:
        """Compile `modules` in a copy of the package; {built file: its path in the wheel}."""
        if not modules:
            raise RuntimeError("no modules listed to compile")
        self._tmp = tempfile.mkdtemp(prefix="am-mypyc-")
        shutil.copytree(
            os.path.join(self.root, PACKAGE),
            os.path.join(self._tmp, PACKAGE),
            ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"),
        )
        files = []
        for mod in modules:
            rel = mod.replace(".", "/") + ".py"
            if not os.path.isfile(os.path.join(self._tmp, rel)):
                raise RuntimeError(f"no module {mod} ({rel})")
            files.append(rel)
        env = dict(os.environ, MYPY_CACHE_DIR=os.path.join(self._tmp, ".mypy_cache"))
        proc = subprocess.run(
            [sys.executable, "-c", _SETUP, *files],
            cwd=self._tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if proc.returncode:
            tail = "\n".join(proc.stdout.splitlines()[-30:])
            raise RuntimeError(f"mypyc exited with {proc.returncode}:\n{tail}")
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        built: dict[str, str] = {}
        for dirpath, _dirs, names in os.walk(self._tmp):
            for name in names:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, self._tmp).replace(os.sep, "/")
                # build/: setuptools' intermediate copies; --inplace put the results in place
                if name.endswith(suffix) and not rel.startswith("build/"):
                    built[path] = rel
        expected = {f[: -len(".py")] + suffix for f in files}  # f: posix paths
        missing = expected - set(built.values())
        if missing:
            raise RuntimeError(f"mypyc built no {', '.join(sorted(missing))}")
        return built

    def _cleanup(self) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        self._tmp = None

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        self._cleanup()
