"""One transition as a sequence diagram: Mermaid text or plain ASCII.

Participants are the states a transition touched (called ones first); each
step is an arrow: relations between two states (require / add / remove /
after), handlers and (de)activations as self-arrows. A transition recorded
with ``Machine(log_steps=True)`` gives every resolution step; without steps
(or from a history record) the called, activated and deactivated states are
drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from ..machine.errors import ArgumentError
from ..machine.schema import ANY
from ..machine.transition import Step, StepType, Transition

__all__ = ["SeqStep", "TxSequence", "ascii_sequence", "mermaid_sequence", "sequence_of"]


@attrs.frozen
class SeqStep:
    """One arrow: ``source`` to ``target`` (the same for a self-arrow), its label and kind."""

    source: str
    target: str
    label: str
    #: require, add, remove, after, handler, activate, deactivate, called, cancel
    kind: str


@attrs.frozen
class TxSequence:
    """A transition reduced to participants, steps and header lines."""

    title: str
    participants: tuple[str, ...]
    steps: tuple[SeqStep, ...]
    notes: tuple[str, ...] = ()


def _from_step(s: Step) -> SeqStep:
    src = s.from_state or ANY
    tgt = s.to_state or src
    if s.type is StepType.RELATION:
        return SeqStep(src, tgt, s.relation, s.relation)
    if s.type is StepType.HANDLER:
        if s.is_self:
            return SeqStep(src, tgt, f"{s.from_state}{s.to_state}", "handler")
        name = s.to_state or s.from_state or ANY
        if s.is_final:
            suffix = "State" if s.is_enter else "End"
        else:
            suffix = "Enter" if s.is_enter else "Exit"
        return SeqStep(name, name, f"{name}{suffix}", "handler")
    name = s.to_state or s.from_state or ANY
    return SeqStep(name, name, str(s.type) or "step", str(s.type) or "step")


def _from_transition(tx: Transition) -> TxSequence:
    called = list(tx.called_states)
    steps: list[SeqStep] = [_from_step(s) for s in tx.steps]
    if not steps:
        steps = [SeqStep(c, c, "called", "called") for c in called]
        steps += [SeqStep(s, s, "activate", "activate") for s in tx.enters]
        steps += [SeqStep(s, s, "deactivate", "deactivate") for s in tx.exits]
        if not tx.is_accepted:
            steps.append(SeqStep(ANY, ANY, "cancel", "cancel"))
    result = "accepted" if tx.is_accepted else "canceled"
    auto = " (auto)" if tx.is_auto else ""
    title = f"[{tx.type}] {' '.join(called)}{auto}: {result}"
    t_before, t_after = sum(tx.time_before), sum(tx.time_after)
    notes = [f"tx#{tx.id} on {tx.machine.id}", f"time {t_before} -> {t_after}"]
    src = tx.mutation.source
    if src is not None:
        notes.append(f"source {src.mach_id}/{src.tx_id}/t{src.mach_time}")
    return TxSequence(title, _participants(called, steps), tuple(steps), tuple(notes))


def _participants(called: Sequence[str], steps: Sequence[SeqStep]) -> tuple[str, ...]:
    seen: dict[str, None] = dict.fromkeys(called)
    for st in steps:
        seen.setdefault(st.source)
        seen.setdefault(st.target)
    return tuple(seen)


def _from_record(record: Any, names: Sequence[str]) -> TxSequence:
    time = record.time
    tx = record.transition
    called = list(tx.called) if tx is not None else []
    steps = [SeqStep(c, c, "called", "called") for c in called]
    if len(names) != len(time.m_time_tracked):
        raise ArgumentError(
            f"the record tracks {len(time.m_time_tracked)} states, {len(names)} names given"
            " (pass history.tracked_states)"
        )
    for name, after, diff in zip(names, time.m_time_tracked, time.m_time_tracked_diff, strict=True):
        if diff == 0:
            continue
        if diff % 2 == 0:
            steps.append(SeqStep(name, name, "activate (multi)", "activate"))
        elif after % 2 == 1:
            steps.append(SeqStep(name, name, "activate", "activate"))
        else:
            steps.append(SeqStep(name, name, "deactivate", "deactivate"))
    result = "accepted" if tx is None or tx.is_accepted else "canceled"
    title = f"[{time.mut_type}] {' '.join(called)}: {result}".replace("]  :", "]:")
    notes = [f"record #{time.id} at {time.h_time.isoformat()}", f"time sum {time.m_time_sum}"]
    if tx is not None:
        notes.insert(0, f"tx#{tx.transition_id}")
    return TxSequence(title, _participants(called, steps), tuple(steps), tuple(notes))


def _from_tx_record(rec: Any, names: Sequence[str]) -> TxSequence:
    from ..telemetry.model import STEP_FLAGS

    kinds = {v: k for k, v in STEP_FLAGS.items()}

    def name(i: int) -> str:
        if not 0 <= i < len(names):
            raise ArgumentError(f"state index {i} outside the {len(names)} names given")
        return names[i]

    called = [name(i) for i in rec.called]
    steps = [
        _from_step(
            Step(
                kinds.get(st.type, StepType.UNKNOWN),
                st.from_state,
                st.to_state,
                st.relation,
                is_final=st.is_final,
                is_enter=st.is_enter,
                is_self=st.is_self,
            )
        )
        for st in rec.steps
    ]
    if not steps:
        steps = [SeqStep(c, c, "called", "called") for c in called]
        steps += [SeqStep(name(i), name(i), "activate", "activate") for i in rec.added()]
        steps += [SeqStep(name(i), name(i), "deactivate", "deactivate") for i in rec.removed()]
        if not rec.accepted:
            steps.append(SeqStep(ANY, ANY, "cancel", "cancel"))
    mtype = rec.mutation_type
    result = "accepted" if rec.accepted else "canceled"
    auto = " (auto)" if rec.is_auto else ""
    title = f"[{mtype or rec.type}] {' '.join(called)}{auto}: {result}"
    notes = [
        f"tx#{rec.id} on {rec.machine_id} (#{rec.seq})",
        f"time {sum(rec.time_before)} -> {sum(rec.time_after)}",
    ]
    if rec.source_machine:
        notes.append(f"source {rec.source_machine}/{rec.source_tx}/t{rec.source_time}")
    return TxSequence(title, _participants(called, steps), tuple(steps), tuple(notes))


def sequence_of(source: Any, names: Sequence[str] | None = None) -> TxSequence:
    """A :class:`TxSequence` from a transition or a record of one.

    ``source`` is an :class:`am.Transition`, a history ``MemoryRecord`` (with
    ``names``: the history's ``tracked_states``) or a telemetry ``TxRecord`` (with
    ``names``: its machine's ``SchemaRecord.state_names``).
    """
    if isinstance(source, TxSequence):
        return source
    if isinstance(source, Transition):
        return _from_transition(source)
    if hasattr(source, "time_before") and hasattr(source, "called"):
        if names is None:
            raise ArgumentError("a TxRecord needs names= (its schema record's state_names)")
        return _from_tx_record(source, names)
    if hasattr(source, "time") and hasattr(source, "transition"):
        if names is None:
            raise ArgumentError("a history record needs names= (the history's tracked_states)")
        return _from_record(source, names)
    raise ArgumentError(
        "expected an am.Transition, a history record or a telemetry TxRecord,"
        f" got {type(source).__name__}"
    )


_MM_ARROW = {
    "require": "->>",
    "add": "->>",
    "remove": "-x",
    "after": "-->>",
    "handler": "->>",
    "activate": "->>",
    "deactivate": "--x",
    "deactivate-passive": "--x",
    "called": "-)",
    "cancel": "-x",
}


def _mm_id(name: str, i: int) -> str:
    return name if name.isidentifier() and name.lower() not in {"end", "participant"} else f"p{i}"


def mermaid_sequence(seq: TxSequence) -> str:
    """Mermaid ``sequenceDiagram`` text."""
    ids = {p: _mm_id(p, i) for i, p in enumerate(seq.participants)}
    out = ["sequenceDiagram", f"    title {seq.title}"]
    for p, pid in ids.items():
        out.append(f"    participant {pid}" if pid == p else f"    participant {pid} as {p}")
    if seq.notes and seq.participants:
        first, last = ids[seq.participants[0]], ids[seq.participants[-1]]
        span = first if first == last else f"{first},{last}"
        out.append(f"    note over {span}: {'<br/>'.join(seq.notes)}")
    for st in seq.steps:
        out.append(
            f"    {ids[st.source]}{_MM_ARROW.get(st.kind, '->>')}{ids[st.target]}: {st.label}"
        )
    return "\n".join(out) + "\n"


def ascii_sequence(seq: TxSequence) -> str:
    """Plain-text rendering: a column per participant, a row per step."""
    parts = list(seq.participants)
    if not parts:
        return "\n".join([seq.title, *seq.notes, "(no steps)"]) + "\n"
    longest = max((len(s.label) for s in seq.steps if s.source != s.target), default=0)
    gap = max(max(len(p) for p in parts) + 2, longest + 6, 12)
    cols = {p: 1 + max(len(parts[0]) // 2, 0) + i * gap for i, p in enumerate(parts)}
    self_width = max((len(s.label) for s in seq.steps if s.source == s.target), default=0)
    width = max(cols.values()) + max(len(parts[-1]), self_width + 6) + 2

    def lifelines() -> list[str]:
        row = [" "] * width
        for c in cols.values():
            row[c] = "|"
        return row

    def put(row: list[str], at: int, text: str) -> None:
        for i, ch in enumerate(text):
            if 0 <= at + i < len(row):
                row[at + i] = ch

    head = [" "] * width
    for p, c in cols.items():
        put(head, max(c - len(p) // 2, 0), p)
    lines = [seq.title, *seq.notes, "", "".join(head).rstrip(), "".join(lifelines()).rstrip()]
    for st in seq.steps:
        row = lifelines()
        a, b = cols[st.source], cols[st.target]
        fill = "." if st.kind == "after" else "-"
        head_ch = "x" if st.kind in ("remove", "deactivate", "cancel") else ">"
        if a == b:
            put(row, a, f"|{fill}{fill}+ {st.label}")
            lines.append("".join(row).rstrip())
            row = lifelines()
            put(row, a, f"|<{fill}+" if head_ch == ">" else f"x{fill}{fill}+")
        else:
            lo, hi = min(a, b), max(a, b)
            body = [fill] * (hi - lo - 1)
            label = f" {st.label} "
            start = max((len(body) - len(label)) // 2, 0)
            body[start : start + len(label)] = list(label)[: len(body)]
            if a < b:
                body[-1] = head_ch
            else:
                body[0] = "<" if head_ch == ">" else "x"
            put(row, lo + 1, "".join(body))
        lines.append("".join(row).rstrip())
    lines.append("".join(lifelines()).rstrip())
    return "\n".join(lines) + "\n"
