"""TUI: a small Textual app driven by a machine.

A download simulator: ``s`` starts (or resumes) downloading, ``p`` pauses,
``r`` resets, ``q`` quits. The app does not keep its own flags — the
machine's states are the truth, and the screen shows them:

- ``Downloading`` is an async state: its handler is a task scoped to the
  state that advances the progress, so pausing (which removes
  ``Downloading``) cancels it mid-sleep;
- ``Downloading`` and ``Paused`` remove each other; ``Done`` removes both
  and is added by the download task at 100%;
- a negotiation handler refuses ``Downloading`` once ``Done``;
- every transition asks for a repaint, and repaints are debounced: at most
  one per ``REPAINT`` seconds, whatever the transition rate.

The machine runs in a Textual worker on Textual's asyncio loop (the core runs
on asyncio through anyio). Needs the ``examples`` extra.

Run: python examples/tui.py
"""

from __future__ import annotations

from typing import Any

import anyio
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, ProgressBar, Static

import asyncmachine_trio as am

STEP = 0.05  # seconds per percent
REPAINT = 0.05  # at most one repaint per this many seconds


class DownloadStates(am.States):
    Downloading = am.State(remove=("Paused", "Done"))
    Paused = am.State(remove=("Downloading",))
    Done = am.State(remove=("Downloading", "Paused"))


S = DownloadStates


class Handlers:
    def __init__(self, app: DownloadApp) -> None:
        self.app = app

    def downloading_enter(self, e: am.Event) -> bool:
        return e.machine.not1(S.Done)

    async def downloading_state(self, e: am.Event) -> None:
        """The download: cancelled when Downloading ends (pause)."""
        while self.app.progress < 100:
            await anyio.sleep(STEP)
            self.app.progress += 1
            self.app.request_repaint()
        e.machine.add1(S.Done)


class DownloadApp(App[None]):
    """The app: keys mutate the machine, the screen shows its states."""

    TITLE = "asyncmachine-trio + Textual"
    BINDINGS = [
        Binding("s", "start", "start / resume"),
        Binding("p", "pause", "pause"),
        Binding("r", "reset", "reset"),
        Binding("q", "quit", "quit"),
    ]
    CSS = "#states { padding: 1 2; } ProgressBar { padding: 0 2; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mach: am.Machine | None = None
        self.progress = 0
        self.repaints = 0
        self._repaint_pending = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("starting...", id="states")
        yield ProgressBar(total=100, show_eta=False, id="progress")
        yield Footer()

    def on_mount(self) -> None:
        self.run_worker(self.run_machine(), exclusive=True)

    async def run_machine(self) -> None:
        """The machine lives as long as the app (a worker on Textual's loop)."""
        async with am.open_machine(S, id="download", handlers=Handlers(self)) as mach:
            mach.on_change(lambda *_: self.request_repaint())
            self.mach = mach
            self.request_repaint()
            await anyio.sleep_forever()

    # ----- debounced repaint

    def request_repaint(self) -> None:
        if not self._repaint_pending:
            self._repaint_pending = True
            self.set_timer(REPAINT, self.repaint)

    def repaint(self) -> None:
        self._repaint_pending = False
        self.repaints += 1
        if self.mach is not None:
            self.query_one("#states", Static).update(f"states: {self.mach.string_all()}")
        self.query_one("#progress", ProgressBar).update(progress=self.progress)

    # ----- keys mutate the machine

    def action_start(self) -> None:
        if self.mach is not None:
            self.mach.add1(S.Downloading)

    def action_pause(self) -> None:
        if self.mach is not None and self.mach.is1(S.Downloading):
            self.mach.add1(S.Paused)

    def action_reset(self) -> None:
        if self.mach is not None:
            self.progress = 0
            self.mach.remove([S.Downloading, S.Paused, S.Done])


if __name__ == "__main__":
    DownloadApp().run()
