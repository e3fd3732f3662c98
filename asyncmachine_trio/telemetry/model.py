"""The observation model: one record per machine schema, one per transition.

Every exporter and every receiver works on these attrs classes. Clocks are
*index vectors*: ``time_before[i]`` is the tick of ``state_names[i]`` of the
machine's latest :class:`SchemaRecord` (an odd tick means active). Field order
is the wire order of protocol v2 (see ``docs/telemetry.md``); new fields are
only ever appended, with a default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ..machine.logging import log_args_mapper
from ..machine.mutation import MutationType
from ..machine.transition import StepType

if TYPE_CHECKING:
    from ..machine.machine import Machine
    from ..machine.schema import State
    from ..machine.transition import Step, Transition

__all__ = [
    "MUTATION_TYPES",
    "STEP_FLAGS",
    "SchemaRecord",
    "StateRecord",
    "StepRecord",
    "TxRecord",
    "schema_record",
    "strip_log_prefix",
    "tx_record",
]

#: mutation types on the wire (the reference's numbering)
MUTATION_TYPES: dict[MutationType, int] = {
    MutationType.ADD: 0,
    MutationType.REMOVE: 1,
    MutationType.SET: 2,
    MutationType.EVAL: 3,
}
MUTATION_NAMES: dict[int, MutationType] = {v: k for k, v in MUTATION_TYPES.items()}

#: step kinds on the wire: the reference's bit flags
STEP_FLAGS: dict[StepType, int] = {
    StepType.RELATION: 1,
    StepType.HANDLER: 2,
    StepType.SET: 4,
    StepType.REMOVE: 8,
    StepType.REMOVE_NOT_ACTIVE: 16,
    StepType.REQUESTED: 32,
    StepType.CANCEL: 64,
    StepType.UNKNOWN: 0,
}


def _strs(v: Sequence[str] | None) -> list[str] | None:
    return None if v is None else list(v)


_S = TypeVar("_S", bound="StateRecord")


@attrs.define(slots=True)
class StateRecord:
    """One state of a schema; relations are ``None`` when not given."""

    name: str
    auto: bool = False
    multi: bool = False
    require: list[str] | None = None
    add: list[str] | None = None
    remove: list[str] | None = None
    after: list[str] | None = None
    tags: list[str] = attrs.Factory(list)

    @classmethod
    def of(cls: type[_S], name: str, s: State) -> _S:
        """The record of ``s`` named ``name``."""
        return cls(
            name,
            s.auto,
            s.multi,
            _strs(s.require),
            _strs(s.add),
            _strs(s.remove),
            _strs(s.after),
            list(s.tags),
        )

    def state(self) -> State:
        """The :class:`~asyncmachine_trio.State` this record describes."""
        from ..machine.schema import State

        return State(
            auto=self.auto,
            multi=self.multi,
            require=self.require,
            add=self.add,
            remove=self.remove,
            after=self.after,
            tags=tuple(self.tags),
        )


@attrs.define(slots=True)
class SchemaRecord:
    """A machine's identity and schema (sent first, and again on every change).

    ``time`` / ``queue_tick`` / ``machine_tick`` are the machine's clocks when
    the record was made, so a receiver that joins late starts from the right
    time. ``time_ns`` is the machine's wall clock (Unix nanoseconds).
    """

    machine_id: str
    parent_id: str = ""
    tags: list[str] = attrs.Factory(list)
    state_names: list[str] = attrs.Factory(list)
    states: list[StateRecord] = attrs.Factory(list)
    groups: dict[str, list[int]] = attrs.Factory(dict)
    groups_order: list[str] = attrs.Factory(list)
    time: list[int] = attrs.Factory(list)
    queue_tick: int = 0
    machine_tick: int = 0
    time_ns: int = 0

    def state_index(self) -> dict[str, int]:
        """State name → index in the clock vectors."""
        return {n: i for i, n in enumerate(self.state_names)}


@attrs.define(slots=True)
class StepRecord:
    """One step of the relation resolution (only when the machine logs steps).

    ``type`` is a bit flag (:data:`STEP_FLAGS`); states are names (``""`` when
    none); ``relation`` is ``add`` / ``require`` / ``remove`` / ``after`` or ``""``.
    """

    type: int
    from_state: str = ""
    to_state: str = ""
    relation: str = ""
    is_final: bool = False
    is_enter: bool = False
    is_self: bool = False

    @classmethod
    def of(cls, s: Step) -> StepRecord:
        """The record of the transition step ``s``."""
        return cls(
            STEP_FLAGS.get(s.type, 0),
            s.from_state,
            s.to_state,
            str(s.relation) if s.relation else "",
            s.is_final,
            s.is_enter,
            s.is_self,
        )


@attrs.define(slots=True)
class TxRecord:
    """One transition, as observed when it ended.

    ``seq`` counts the transitions of one machine sent by one exporter, from 1:
    a gap means records were dropped. ``type`` is :data:`MUTATION_TYPES`;
    ``called`` are state indexes; ``args`` are the mutation args as the
    machine's args mapper renders them for log lines. ``time_before`` /
    ``time_after`` are the clocks (``time_after == time_before`` for canceled
    transitions and checks). ``queue_tick`` / ``machine_tick`` / ``queue_len``
    are read when the transition ended. ``log_entries`` are the lines the
    machine logged during the transition, ``pre_log_entries`` those logged
    since the previous one (without the ``[id] `` prefix). ``time_ns`` is the
    machine's wall clock at the end (Unix nanoseconds). ``source_*`` name the
    machine / transition / machine time a piped or remote mutation came from.
    ``log_levels`` / ``pre_log_levels`` hold one byte per line of
    ``log_entries`` / ``pre_log_entries``: its
    :class:`~asyncmachine_trio.LogLevel` (``b""`` from older clients: levels
    unknown). ``mut_queue_tick`` is the queue tick the mutation was given when
    it was queued (0: prepended, such as auto mutations, or unknown).
    """

    machine_id: str
    seq: int
    id: str
    type: int
    called: list[int]
    args: dict[str, str] = attrs.Factory(dict)
    accepted: bool = True
    is_auto: bool = False
    is_check: bool = False
    is_queued: bool = False
    time_before: list[int] = attrs.Factory(list)
    time_after: list[int] = attrs.Factory(list)
    queue_tick: int = 0
    machine_tick: int = 0
    queue_len: int = 0
    steps: list[StepRecord] = attrs.Factory(list)
    log_entries: list[str] = attrs.Factory(list)
    pre_log_entries: list[str] = attrs.Factory(list)
    time_ns: int = 0
    source_machine: str = ""
    source_tx: str = ""
    source_time: int = 0
    log_levels: bytes = b""
    pre_log_levels: bytes = b""
    mut_queue_tick: int = 0

    @property
    def mutation_type(self) -> MutationType | None:
        """``type`` as a :class:`MutationType` (None for an unknown number)."""
        return MUTATION_NAMES.get(self.type)

    def added(self) -> list[int]:
        """Indexes of states this transition activated (re-entered Multi states too)."""
        out: list[int] = []
        for i, (b, a) in enumerate(zip(self.time_before, self.time_after, strict=False)):
            if a % 2 and a != b:
                out.append(i)
        return out

    def removed(self) -> list[int]:
        """Indexes of states this transition deactivated."""
        return [
            i
            for i, (b, a) in enumerate(zip(self.time_before, self.time_after, strict=False))
            if b % 2 and not a % 2
        ]

    def time_sum(self) -> int:
        """Sum of the ticks after the transition (the reference's machine time)."""
        return sum(self.time_after)


# ----- building records from a live machine

_PREFIX = re.compile(r"^\[[^\]\s]{1,5}\] ")


def strip_log_prefix(line: str, machine_id: str) -> str:
    """A log line without the machine's ``[<first 5 chars of id>] `` prefix."""
    head = f"[{machine_id[:5]}] "
    if line.startswith(head):
        return line[len(head) :]
    return line


def schema_record(mach: Machine) -> SchemaRecord:
    """The :class:`SchemaRecord` of ``mach`` now."""
    schema = mach.schema
    names = list(mach.state_names)
    groups, order = mach.groups()
    return SchemaRecord(
        machine_id=mach.id,
        parent_id=mach.parent_id,
        tags=mach.tags,
        state_names=names,
        states=[StateRecord.of(n, schema[n]) for n in names],
        groups=groups,
        groups_order=order,
        time=list(mach.time()),
        queue_tick=mach.queue_tick(),
        machine_tick=mach.machine_tick(),
        time_ns=time_ns(),
    )


_default_mapper = log_args_mapper()
ArgsMapper = Callable[[Mapping[str, Any]], dict[str, str]]


def tx_record(
    tx: Transition,
    seq: int,
    *,
    time: int = 0,
    queue_tick: int | None = None,
    machine_tick: int | None = None,
    args_mapper: ArgsMapper | None = None,
) -> TxRecord:
    """The :class:`TxRecord` of an ended transition.

    ``queue_tick`` / ``machine_tick`` default to the machine's current ones;
    ``args_mapper`` to the machine's (or the default list of logged names).
    """
    m = tx.machine
    mut = tx.mutation
    index = m._index
    mid = m.id
    args = mut.args
    mapped: dict[str, str] = {}
    if args:
        mapper = args_mapper or m._args_mapper or _default_mapper
        mapped = mapper(args)
    src = mut.source
    before = tx._before
    after = tx._after if tx._after is not None else before
    levels = tx.log_levels
    pre_levels = tx.pre_log_levels
    return TxRecord(
        mid,
        seq,
        tx.id,
        MUTATION_TYPES.get(mut.type, 0),
        [index[s] for s in mut.called if s in index],
        mapped,
        tx.is_accepted,
        mut.is_auto,
        mut.is_check,
        False,
        list(before),
        list(after),
        m._queue_tick if queue_tick is None else queue_tick,
        m._machine_tick if machine_tick is None else machine_tick,
        tx.queue_len,
        [StepRecord.of(s) for s in tx._steps] if tx._steps else [],
        [strip_log_prefix(s, mid) for s in tx.log_entries],
        [strip_log_prefix(s, mid) for s in tx.pre_log_entries],
        time or time_ns(),
        src.mach_id if src is not None else "",
        src.tx_id if src is not None else "",
        src.mach_time if src is not None else 0,
        bytes(levels) if levels else b"",
        bytes(pre_levels) if pre_levels else b"",
        mut.queue_tick,
    )


for _cls in (StateRecord, SchemaRecord, StepRecord, TxRecord):
    attrs.resolve_types(_cls)
