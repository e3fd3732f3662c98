"""Wire messages of a topic: msgpack maps with a ``type`` field.

Six message types (the reference's): ``info`` (machines of peers: schema, state
order, clock, tags, parent), ``updates`` (clocks), ``gossip`` (time sums, for
gap detection), ``reqinfo`` and ``requpdates`` (requests naming peers) and
``bye`` (a peer leaves). A machine is addressed by ``(peer id, index)``, the
index being its position in the peer's exposed list.

:func:`decode` checks everything it reads (types, sizes, counts) and raises
:class:`~asyncmachine_trio.pubsub.PubsubDecodeError` for anything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import msgpack

import asyncmachine_trio as am

from .errors import PubsubDecodeError

__all__ = [
    "ByeMsg",
    "GossipMsg",
    "InfoMsg",
    "Limits",
    "MachInfo",
    "Message",
    "ReqInfoMsg",
    "ReqUpdatesMsg",
    "SchemaCache",
    "UpdatesMsg",
    "decode",
    "encode",
]

#: peer id -> machine index -> time sum
Gossips = dict[str, dict[int, int]]

_MAX_TICK = 2**63 - 1


@attrs.frozen
class Limits:
    """Size limits of received messages (anything larger is a decode error)."""

    #: bytes of one message
    max_msg_size: int = 1024 * 1024
    #: peers named in one message
    max_peers: int = 1000
    #: machines of one peer
    max_machines: int = 256
    #: states of one machine
    max_states: int = 1000
    #: characters of a name (peer id, machine id, state, tag)
    max_name: int = 256
    #: tags of one machine
    max_tags: int = 64


@attrs.frozen
class MachInfo:
    """What a peer announces about one exposed machine."""

    id: str
    schema: dict[str, am.State]
    states: list[str]
    time: list[int]
    tags: list[str] = attrs.field(factory=list)
    parent: str = ""

    @property
    def sum(self) -> int:
        """The time sum (the sum of all ticks): what ``gossip`` compares."""
        return sum(self.time)


@attrs.frozen
class InfoMsg:
    """``info``: machines of peers (the sender's own and forwarded ones) and gossip."""

    peers: dict[str, dict[int, MachInfo]]
    gossips: Gossips = attrs.field(factory=dict)


@attrs.frozen
class UpdatesMsg:
    """``updates``: clocks of machines, peer id -> index -> ticks."""

    clocks: dict[str, dict[int, list[int]]]


@attrs.frozen
class GossipMsg:
    """``gossip``: what the sender knows, peer id -> index -> time sum."""

    gossips: Gossips


@attrs.frozen
class ReqInfoMsg:
    """``reqinfo``: asks for the ``info`` of these peers."""

    peers: list[str]


@attrs.frozen
class ReqUpdatesMsg:
    """``requpdates``: asks for the clocks of these peers' machines."""

    peers: list[str]


@attrs.frozen
class ByeMsg:
    """``bye``: the sender leaves; the last clocks of its machines (index -> ticks)."""

    clocks: dict[int, list[int]] = attrs.field(factory=dict)


Message = InfoMsg | UpdatesMsg | GossipMsg | ReqInfoMsg | ReqUpdatesMsg | ByeMsg

_REL = ("require", "add", "remove", "after")


def _state_out(s: am.State) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if s.auto:
        out["auto"] = True
    if s.multi:
        out["multi"] = True
    for rel in _REL:
        v = getattr(s, rel)
        if v is not None:
            out[rel] = list(v)
    if s.tags:
        out["tags"] = list(s.tags)
    return out


def _info_out(i: MachInfo) -> dict[str, Any]:
    return {
        "id": i.id,
        "schema": {n: _state_out(s) for n, s in i.schema.items()},
        "states": i.states,
        "time": i.time,
        "tags": i.tags,
        "parent": i.parent,
    }


def encode(msg: Message) -> bytes:
    """One message as msgpack bytes."""
    body: dict[str, Any]
    if isinstance(msg, InfoMsg):
        body = {
            "type": "info",
            "peers": {
                p: {idx: _info_out(i) for idx, i in machs.items()} for p, machs in msg.peers.items()
            },
            "gossips": msg.gossips,
        }
    elif isinstance(msg, UpdatesMsg):
        body = {"type": "updates", "clocks": msg.clocks}
    elif isinstance(msg, GossipMsg):
        body = {"type": "gossip", "gossips": msg.gossips}
    elif isinstance(msg, ReqInfoMsg):
        body = {"type": "reqinfo", "peers": msg.peers}
    elif isinstance(msg, ReqUpdatesMsg):
        body = {"type": "requpdates", "peers": msg.peers}
    else:
        body = {"type": "bye", "clocks": msg.clocks}
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


# ----- decoding


class SchemaCache:
    """Machine schemas already checked, by machine id, so that a repeated one is not.

    Every ``info`` carries whole schemas, and a topic receives the same ones many
    times (a newcomer's welcome repeats every machine the topic knows, to every
    peer). :func:`decode` given a cache compares a received schema with the one
    it checked last for that machine id (a plain equality of the decoded data,
    done in C) and reuses the checked result when they are equal; anything else is
    checked in full, as without a cache. At most ``size`` machine ids are kept,
    holding at most ``max_names`` names in all (states, relation targets and tags:
    a peer cannot make the cache hold more than that); the oldest go first, and a
    schema with more names than that is not kept.
    """

    def __init__(self, size: int = 4096, max_names: int = 65536) -> None:
        for what, v in (("size", size), ("max_names", max_names)):
            if type(v) is not int or v < 1:
                raise ValueError(f"SchemaCache {what} must be a positive int, got {v!r}")
        self.size = size
        self.max_names = max_names
        #: machine id -> (state order, schema as received, schema as checked, names)
        self._seen: dict[str, tuple[Any, Any, dict[str, am.State], int]] = {}
        self._names = 0

    def get(self, mach_id: str, states: Any, raw: Any) -> dict[str, am.State] | None:
        """The checked schema if ``states`` and ``raw`` equal the last ones seen."""
        hit = self._seen.get(mach_id)
        if hit is not None and hit[0] == states and hit[1] == raw:
            return dict(hit[2])
        return None

    def put(self, mach_id: str, states: Any, raw: Any, schema: dict[str, am.State]) -> None:
        """Remember a schema just checked."""
        names = len(schema) + sum(
            len(getattr(s, rel) or ()) for s in schema.values() for rel in (*_REL, "tags")
        )
        seen = self._seen
        old = seen.pop(mach_id, None)
        if old is not None:
            self._names -= old[3]
        if names > self.max_names:
            return
        while seen and (len(seen) >= self.size or self._names + names > self.max_names):
            self._names -= seen.pop(next(iter(seen)))[3]
        seen[mach_id] = (states, raw, dict(schema), names)
        self._names += names


class _Reader:
    def __init__(self, limits: Limits, peer: str, schemas: SchemaCache | None = None) -> None:
        self.limits = limits
        self.peer = peer
        self.schemas = schemas

    def fail(self, what: str) -> PubsubDecodeError:
        return PubsubDecodeError(f"malformed pubsub message: {what}", peer=self.peer)

    def r_map(self, v: Any, what: str, limit: int) -> Mapping[Any, Any]:
        if not isinstance(v, dict):
            raise self.fail(f"{what} must be a map, got {type(v).__name__}")
        if len(v) > limit:
            raise self.fail(f"{what} has {len(v)} entries (limit {limit})")
        return v

    def r_list(self, v: Any, what: str, limit: int) -> Sequence[Any]:
        if not isinstance(v, list):
            raise self.fail(f"{what} must be a list, got {type(v).__name__}")
        if len(v) > limit:
            raise self.fail(f"{what} has {len(v)} items (limit {limit})")
        return v

    def r_str(self, v: Any, what: str, *, empty: bool = False) -> str:
        if not isinstance(v, str):
            raise self.fail(f"{what} must be a string, got {type(v).__name__}")
        if len(v) > self.limits.max_name or (not v and not empty):
            raise self.fail(f"{what} has a bad length ({len(v)})")
        return v

    def r_strs(self, v: Any, what: str, limit: int) -> list[str]:
        return [self.r_str(x, what) for x in self.r_list(v, what, limit)]

    def r_int(self, v: Any, what: str) -> int:
        if type(v) is not int or not 0 <= v <= _MAX_TICK:
            raise self.fail(f"{what} must be a non-negative integer, got {v!r:.40}")
        return v

    def r_index(self, v: Any) -> int:
        idx = self.r_int(v, "a machine index")
        if idx >= self.limits.max_machines:
            raise self.fail(f"machine index {idx} (limit {self.limits.max_machines})")
        return idx

    def r_ticks(self, v: Any) -> list[int]:
        return [self.r_int(t, "a tick") for t in self.r_list(v, "a clock", self.limits.max_states)]

    def r_peers(self, v: Any) -> list[str]:
        return self.r_strs(v, "peer ids", self.limits.max_peers)

    def r_gossips(self, v: Any) -> Gossips:
        lim = self.limits
        out: Gossips = {}
        for p, machs in self.r_map(v, "gossips", lim.max_peers).items():
            m = self.r_map(machs, "gossip of a peer", lim.max_machines)
            out[self.r_str(p, "a peer id")] = {
                self.r_index(i): self.r_int(s, "a time sum") for i, s in m.items()
            }
        return out

    def r_state(self, name: str, v: Any) -> am.State:
        d = self.r_map(v, f"state {name}", 8)
        unknown = set(d) - {"auto", "multi", "tags", *_REL}
        if unknown:
            raise self.fail(f"state {name} has unknown fields {sorted(map(repr, unknown))}")
        for flag in ("auto", "multi"):
            if flag in d and not isinstance(d[flag], bool):
                raise self.fail(f"{flag} of state {name} must be a bool")
        rels = {
            rel: tuple(self.r_strs(d[rel], f"{rel} of {name}", self.limits.max_states))
            for rel in _REL
            if rel in d
        }
        tags = tuple(self.r_strs(d.get("tags", []), f"tags of {name}", self.limits.max_tags))
        return am.State(
            auto=bool(d.get("auto", False)), multi=bool(d.get("multi", False)), tags=tags, **rels
        )

    def r_info(self, v: Any) -> MachInfo:
        lim = self.limits
        d = self.r_map(v, "machine info", 16)
        mach_id = self.r_str(d.get("id"), "a machine id")
        raw_states: Any = d.get("states")
        raw_schema: Any = d.get("schema")
        cache = self.schemas
        schema = cache.get(mach_id, raw_states, raw_schema) if cache is not None else None
        if schema is not None:
            states = list(raw_states)
        else:
            states = self.r_strs(raw_states, "states", lim.max_states)
            raw_schema = self.r_map(raw_schema, "schema", lim.max_states)
            if sorted(states) != sorted(raw_schema) or len(set(states)) != len(states):
                raise self.fail(f"the states of machine {mach_id} do not match its schema")
            schema = {n: self.r_state(n, raw_schema[n]) for n in states}
            if cache is not None:
                cache.put(mach_id, raw_states, raw_schema, schema)
        time = self.r_ticks(d.get("time"))
        if len(time) != len(states):
            raise self.fail(f"machine {mach_id}: {len(time)} ticks for {len(states)} states")
        tags = self.r_strs(d.get("tags", []), "tags", lim.max_tags)
        parent = self.r_str(d.get("parent", ""), "a parent id", empty=True)
        return MachInfo(mach_id, schema, states, time, tags, parent)


def decode(
    data: bytes,
    *,
    peer: str = "",
    limits: Limits | None = None,
    schemas: SchemaCache | None = None,
) -> Message:
    """Decode and check one message; :class:`PubsubDecodeError` names ``peer``.

    ``schemas`` skips checking a machine schema equal to one checked before.
    """
    lim = limits or Limits()
    r = _Reader(lim, peer, schemas)
    if len(data) > lim.max_msg_size:
        raise r.fail(f"{len(data)} bytes (limit {lim.max_msg_size})")
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as err:  # msgpack raises many types on garbage
        raise r.fail(f"not msgpack ({type(err).__name__})") from None
    body = r.r_map(raw, "a message", 8)
    kind = body.get("type")
    if kind == "info":
        peers: dict[str, dict[int, MachInfo]] = {}
        for p, machs in r.r_map(body.get("peers"), "peers", lim.max_peers).items():
            m = r.r_map(machs, "machines of a peer", lim.max_machines)
            peers[r.r_str(p, "a peer id")] = {r.r_index(i): r.r_info(info) for i, info in m.items()}
        return InfoMsg(peers, r.r_gossips(body.get("gossips", {})))
    if kind == "updates":
        clocks: dict[str, dict[int, list[int]]] = {}
        for p, machs in r.r_map(body.get("clocks"), "clocks", lim.max_peers).items():
            m = r.r_map(machs, "clocks of a peer", lim.max_machines)
            clocks[r.r_str(p, "a peer id")] = {r.r_index(i): r.r_ticks(t) for i, t in m.items()}
        return UpdatesMsg(clocks)
    if kind == "gossip":
        return GossipMsg(r.r_gossips(body.get("gossips")))
    if kind == "reqinfo":
        return ReqInfoMsg(r.r_peers(body.get("peers")))
    if kind == "requpdates":
        return ReqUpdatesMsg(r.r_peers(body.get("peers")))
    if kind == "bye":
        m = r.r_map(body.get("clocks", {}), "clocks", lim.max_machines)
        return ByeMsg({r.r_index(i): r.r_ticks(t) for i, t in m.items()})
    raise r.fail(f"unknown message type {kind!r:.40}")
