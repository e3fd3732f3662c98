"""am-dbg's own widgets and text views: the toolbar, the rain view, log levels.

The toolbar is one focusable line of buttons that mirror the debugger
machine's states (a button is drawn reversed while its state is active);
a click or enter runs the button's app action. The rain view draws one line
per transition and one character per state. Neither redraws unless its text
changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import attrs
from textual.binding import Binding, BindingType
from textual.content import Content, Span
from textual.markup import escape
from textual.widgets import Static

from .store import F_CANCELED, MachineData

__all__ = ["RAIN_LEGEND", "Tool", "Toolbar", "levelled", "rain_all_lines", "rain_lines"]


@attrs.frozen
class Tool:
    """A toolbar button: ``label``, the app ``action`` it runs, and whether it is on."""

    id: str
    label: str
    action: str
    on: bool = False


class Toolbar(Static, can_focus=True):
    """A line of buttons; left / right move between them, enter / space press one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "move(-1)", "Previous tool", show=False),
        Binding("right", "move(1)", "Next tool", show=False),
        Binding("enter,space", "press", "Press the tool", show=False),
    ]
    DEFAULT_CSS = """
    Toolbar { height: auto; background: $boost; }
    Toolbar:focus { background: $accent 20%; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__("", **kw)
        self.tools: list[Tool] = []
        self.cursor = 0
        self._key: object = None

    def set_tools(self, tools: Sequence[Tool]) -> None:
        """Show ``tools`` (no repaint when nothing changed)."""
        self.tools = list(tools)
        self.cursor = min(self.cursor, max(0, len(self.tools) - 1))
        self._draw()

    def _draw(self) -> None:
        focused = self.has_focus
        key = (tuple(self.tools), self.cursor if focused else -1)
        if key == self._key:
            return
        self._key = key
        parts = []
        for i, t in enumerate(self.tools):
            style = "reverse" if t.on else ""
            if focused and i == self.cursor:
                style = (style + " underline bold").strip()
            label = f" {escape(t.label)} "
            if style:
                label = f"[{style}]{label}[/]"
            parts.append(f"[@click=app.{t.action}]{label}[/]")
        self.update(Content.from_markup(" ".join(parts)))

    def on_focus(self) -> None:
        self._draw()

    def on_blur(self) -> None:
        self._draw()

    def action_move(self, d: int) -> None:
        """Move the cursor ``d`` buttons (wrapping)."""
        if self.tools:
            self.cursor = (self.cursor + d) % len(self.tools)
            self._draw()

    async def action_press(self) -> None:
        """Run the action of the button under the cursor."""
        if self.tools:
            await self.app.run_action(self.tools[self.cursor].action)

    def tool(self, tool_id: str) -> Tool:
        """The button ``tool_id`` (``KeyError`` naming the known ones)."""
        for t in self.tools:
            if t.id == tool_id:
                return t
        raise KeyError(f"no tool {tool_id!r}; known: {', '.join(t.id for t in self.tools)}")


#: the rain view's characters
RAIN_LEGEND = (
    "rain: one line per transition, one column per state: █ active and touched,"
    " ▒ active, ○ touched, x deactivated, ! called in a canceled transition,"
    " · inactive; underlined: called"
)


def rain_all_lines(
    rows: Sequence[tuple[MachineData, int]], cursor: tuple[str, int], width: int = 12
) -> Content:
    """The rain of every machine: one line per ``(machine, position)`` of ``rows``,
    headed by the machine id (``width`` characters) and the transition number,
    then one cell per state of that machine (states differ between machines, so
    there is no common header). A click on a cell opens that machine, transition
    and state."""
    text: list[str] = []
    spans: list[Span] = []
    at = 0
    for n, (md, pos) in enumerate(rows):
        if n:
            text.append("\n")
            at += 1
        line_start = at
        head = f"{md.id[:width]:<{width}} #{md.offset + pos:<7}"
        text.append(head)
        spans.append(Span(at, at + len(head), f"@click=app.rain_open({md.id!r},{pos},'')"))
        at += len(head)
        for ch, style, i in _cells(md, pos, range(len(md.names))):
            text.append(ch)
            name = md.names[i]
            spans.append(Span(at, at + 1, f"@click=app.rain_open({md.id!r},{pos},{name!r})"))
            spans.append(Span(at, at + 1, style))
            at += 1
        if (md.id, pos) == cursor:
            spans.append(Span(line_start, at, "reverse"))
    return Content("".join(text), spans)


def _cells(md: MachineData, pos: int, states: Iterable[int]) -> Iterable[tuple[str, str, int]]:
    """``(character, style, state index)`` of the rain cells of one transition."""
    tx = md.txs[pos - 1]
    before = md.before_of(pos)
    after = tx.time
    touched = set(tx.touched)
    called = set(tx.called)
    canceled = bool(tx.flags & F_CANCELED)
    for i in states:
        a = i < len(after) and after[i] % 2 == 1
        b = i < len(before) and before[i] % 2 == 1
        if canceled and i in called:
            ch, style = "!", "red"
        elif a and i in touched:
            ch, style = "█", "bold green"
        elif a:
            ch, style = "▒", "green"
        elif b:
            ch, style = "x", "red"
        elif i in touched:
            ch, style = "○", "yellow"
        else:
            ch, style = "·", "#808080"
        if i in called:
            style += " underline"
        yield ch, style, i


def rain_lines(
    md: MachineData,
    positions: Sequence[int],
    cursor: int,
    states: Sequence[int],
    selected: int = -1,
) -> Content:
    """The rain view: one line per position in ``positions``, one cell per state
    index in ``states``; a click on a number goes to that transition, on a cell
    also selects that state. Built from spans, not markup (parsing markup for a
    screenful of links would cost more than the rest of a redraw)."""
    names = md.names
    text: list[str] = [" " * 8 + "".join(names[i][:1] if i < len(names) else "?" for i in states)]
    spans: list[Span] = []
    at = len(text[0])
    for pos in positions:
        text.append("\n")
        at += 1
        line_start = at
        num = f"#{md.offset + pos}".ljust(8)
        text.append(num)
        spans.append(Span(at, at + len(num), f"@click=app.goto_pos({pos})"))
        at += len(num)
        for ch, style, i in _cells(md, pos, states):
            if i == selected:
                style += " on #3a3a3a"
            name = names[i] if i < len(names) else ""
            text.append(ch)
            spans.append(Span(at, at + 1, f"@click=app.rain_click({pos},{name!r})"))
            spans.append(Span(at, at + 1, style))
            at += 1
        if pos == cursor:
            spans.append(Span(line_start, at, "reverse"))
    return Content("".join(text), spans)


def levelled(tx: Any) -> Iterable[tuple[int | None, str]]:
    """``(level, text)`` of a transition's log lines, pre-logs first; ``level`` is
    None for a line that carries none. Levels are read from sequences parallel
    to the lines, ``pre_levels`` / ``levels`` (``b""``: unknown; also accepted as
    ``pre_log_levels`` / ``log_levels``); a line may also be a ``(level, text)``
    pair or an object with ``level`` and ``text``."""
    for lines, names in (
        (tx.pre_logs, ("pre_levels", "pre_log_levels")),
        (tx.logs, ("levels", "log_levels")),
    ):
        levels: Any = None
        for name in names:
            levels = getattr(tx, name, None)
            if levels:
                break
        n = len(levels) if levels else 0
        for k, line in enumerate(lines):
            if isinstance(line, str):
                yield (int(levels[k]) if k < n else None), line
            elif isinstance(line, tuple) and len(line) == 2:
                yield int(line[0]), str(line[1])
            else:
                lvl = getattr(line, "level", None)
                yield (int(lvl) if lvl is not None else None), str(getattr(line, "text", line))
