"""Path watcher: keep the list of executables on ``PATH`` up to date (watchfiles).

Every directory on ``PATH`` (or the ones given) is scanned once, then watched
with `watchfiles <https://watchfiles.helpmanual.io/>`_; a change in a
directory rescans it and reports the executables that appeared or went away.

- ``Watching`` is an async state: its ``async def watching_state`` handler
  runs the ``watchfiles.awatch`` loop as a task scoped to the state, so
  removing ``Watching`` (or ``Start``) stops the watcher.
- ``Scanning`` is a Multi state: one activation per directory to rescan, even
  while another scan is active; its negotiation handler refuses directories
  that are not watched.
- ``Ready`` is added once the watcher runs (its first idle timeout).
- ``Updated`` (Multi) carries what changed in its args.

Needs the ``examples`` extra (``pip install 'asyncmachine-trio[examples]'``).

Run: python examples/path_watcher.py [DIR ...]   (Ctrl+C to stop)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import trio
import watchfiles

import asyncmachine_trio as am

Say = Callable[[str], None]


class WatcherStates(am.States):
    Start = am.State(add=("Watching",))
    Watching = am.State(require=("Start",))
    Scanning = am.State(multi=True, require=("Start",))
    Ready = am.State(require=("Watching",))
    Updated = am.State(multi=True)


S = WatcherStates


def executables(directory: str) -> set[str]:
    """Names of the executable files in ``directory`` (empty if it is gone)."""
    try:
        with os.scandir(directory) as entries:
            return {e.name for e in entries if e.is_file() and os.access(e.path, os.X_OK)}
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return set()


class Watcher:
    """The handlers, and the current list: ``self.found[dir]``."""

    def __init__(self, dirs: Sequence[str], say: Say, *, step_ms: int = 50) -> None:
        self.dirs = [str(Path(d).resolve()) for d in dirs]
        self.say = say
        self.step_ms = step_ms
        self.found: dict[str, set[str]] = {d: set() for d in self.dirs}
        self.existing: list[str] = []

    def all(self) -> set[str]:
        """Every executable found, in any watched directory."""
        return set().union(*self.found.values())

    def start_state(self, e: am.Event) -> None:
        self.existing = [d for d in self.dirs if os.path.isdir(d)]
        for d in self.dirs:
            e.machine.add1(S.Scanning, {"dir": d})
        self.say(f"watching {len(self.dirs)} directories")

    def scanning_enter(self, e: am.Event) -> bool:
        """Negotiation: only watched directories are scanned."""
        return e.args.get("dir") in self.found

    def scanning_state(self, e: am.Event) -> None:
        d = e.args["dir"]
        now = executables(d)
        added, removed = now - self.found[d], self.found[d] - now
        self.found[d] = now
        if added or removed:
            e.machine.add1(
                S.Updated, {"dir": d, "added": sorted(added), "removed": sorted(removed)}
            )

    def updated_state(self, e: am.Event) -> None:
        if e.machine.is1(S.Ready):
            for name in e.args["added"]:
                self.say(f"+ {name} ({e.args['dir']})")
            for name in e.args["removed"]:
                self.say(f"- {name} ({e.args['dir']})")

    async def watching_state(self, e: am.Event) -> None:
        """The watch loop: a task scoped to Watching."""
        mach = e.machine
        async for changes in watchfiles.awatch(
            *self.existing,
            recursive=False,
            debounce=self.step_ms,
            step=self.step_ms,
            rust_timeout=self.step_ms * 2,
            yield_on_timeout=True,
        ):
            if not changes:  # an idle timeout: the watcher is running
                if mach.not1(S.Ready):
                    mach.add1(S.Ready)
                    self.say(f"ready: {len(self.all())} executables")
                continue
            for d in sorted({str(Path(path).parent) for _, path in changes}):
                mach.add1(S.Scanning, {"dir": d})


async def watch(dirs: Sequence[str], say: Say = print) -> None:
    """Watch ``dirs`` until cancelled."""
    async with am.open_machine(S, id="path-watcher", handlers=Watcher(dirs, say)) as mach:
        mach.add1(S.Start)
        await anyio.sleep_forever()


def main(argv: Sequence[str] | None = None) -> int:
    dirs = list(argv or os.environ.get("PATH", "").split(os.pathsep))
    try:
        trio.run(watch, [d for d in dirs if d])
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
