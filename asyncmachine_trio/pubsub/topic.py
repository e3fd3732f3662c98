"""The topic: one peer's membership of a gossipsub topic, as a machine of :class:`TopicStates`.

A :class:`Topic` exposes local machines (announced with their schema, state
order, clock, tags and parent) and mirrors the machines other peers expose as
read-only :class:`~asyncmachine_trio.pubsub.Mirror` machines. There is no
server and no leader: every peer sends its own ``info`` once it has joined,
``updates`` when its machines change (collected every heartbeat), and now and
then ``gossip`` (time sums of a few known machines). A peer that sees a gossiped
machine it does not know asks for it (``reqinfo``); one whose gossiped sum is
ahead of its mirror asks for clocks (``requpdates``). Clocks only move forward
by time sum. Every delay scales with ``TopicConfig.multiplayer``.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

import asyncmachine_trio as am

from ..states.connected import add_err_connecting
from . import wire
from .errors import PubsubDecodeError, PubsubError
from .mirror import Mirror
from .states import TopicStates

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["Topic", "TopicConfig", "open_topic"]

S = TopicStates

#: the default listen address: TCP on loopback, a free port
LOOPBACK_TCP = "/ip4/127.0.0.1/tcp/0"


@attrs.define
class TopicConfig:
    """Tuning of a topic; the defaults are the reference's.

    Every delay is a base value times ``multiplayer`` (default 5): the heartbeat
    is ``heartbeat_freq * multiplayer`` (5 s), requests for missing peers or
    updates go out at most every ``multiplayer`` seconds and not again for the
    same peer within ``5 * multiplayer``; ``info`` waits a random delay up to
    ``2 * send_info_debounce * multiplayer`` (coalescing requests) and the first
    one ``0.02-0.58 * multiplayer`` after joining. At most ``max_msgs_per_win``
    messages leave per ``multiplayer``-second window (more are dropped and
    counted). Lower ``multiplayer`` for a small, fast network (tests use 0.2).
    """

    #: scales every delay
    multiplayer: float = 5.0
    #: heartbeat period before scaling (seconds)
    heartbeat_freq: float = 1.0
    #: received messages are dropped while the topic machine's queue is longer
    max_queue_len: int = 10
    #: peers gossiped about per gossip message
    gossip_amount: int = 5
    #: the topic as a whole gossips about once per ``gossip_every`` heartbeats (the
    #: reference: 1): each peer gossips when a random timer runs out (up to
    #: ``gossip_every`` heartbeats times the peers it knows), and every gossip it sees
    #: (an ``info`` carries gossip too) restarts the timer; raise it with a low
    #: ``multiplayer`` to keep gossip from
    #: crowding out the messages that carry changes
    gossip_every: int = 1
    #: messages sent per window (``multiplayer`` seconds)
    max_msgs_per_win: int = 10
    #: topic peers needed for ``Ready``
    connections_to_ready: int = 5
    #: ``SendInfo`` debounce before scaling (seconds)
    send_info_debounce: float = 0.5
    #: received messages per ``ProcessMsgs``
    batch_size: int = 50
    #: peers per ``reqinfo`` / ``requpdates``
    max_requested: int = 5
    #: a gap (a peer or clock we miss) is requested only once it has lasted this long
    #: (before scaling, seconds): what is missing is usually on its way, and asking
    #: early makes every answer one more broadcast
    request_grace: float = 5.0
    #: size limits of received messages
    limits: wire.Limits = attrs.field(factory=wire.Limits)
    #: bootstrap dials in parallel
    max_dials: int = 10
    #: give up connecting after this many seconds (``ErrConnecting`` in between)
    connect_timeout: float = 30.0
    #: gossipsub's own per-peer limit of received messages per second
    router_rate_limit: float = 1000.0
    #: gossipsub's mesh heartbeat (seconds)
    gossipsub_heartbeat: float = 1.0
    #: gossipsub's mesh degree: the peers a message is forwarded to (D). A peer with
    #: fewer than ``mesh_degree_low`` mesh peers adds some, up to D; one with more than
    #: ``mesh_degree_high`` drops some, down to D (libp2p's usual: 6, 4, 12). Every mesh
    #: link carries every message once or twice, and each delivery costs py-libp2p
    #: milliseconds of CPU, so the default D is 3 (at least 2): fewer duplicates for a
    #: hop more, and still two paths from every peer. Keep ``mesh_degree_high`` above
    #: the connections a hub has (a star's centre): a leaf pruned from the hub's mesh
    #: waits out gossipsub's backoff (60 s) to join again
    mesh_degree: int = 3
    #: see ``mesh_degree``
    mesh_degree_low: int = 2
    #: see ``mesh_degree``
    mesh_degree_high: int = 12
    #: messages waiting to be published (more are dropped and counted)
    outbox_size: int = 1024
    #: messages waiting to be sent to one peer (py-libp2p's default, 32, loses bursts)
    peer_queue_size: int = 1024
    #: the stream muxer proposed first on TCP (``"yamux"`` or ``"mplex"``; both are
    #: offered). py-libp2p's mplex costs about 40% less CPU per message than its yamux
    #: (which sends a window update per read), but resets a stream whose reader falls
    #: 5 s behind and has not passed the malformed-peer test (see docs/pubsub.md)
    muxer: str = "yamux"


@attrs.define(eq=False)
class _Peer:
    id: str
    machines: dict[int, Mirror] = attrs.field(factory=dict)
    infos: dict[int, wire.MachInfo] = attrs.field(factory=dict)
    # clocks that arrived before the info (index -> ticks)
    stash: dict[int, list[int]] = attrs.field(factory=dict)
    left: bool = False

    def mark_left(self) -> None:
        """The peer said ``bye``: mark it and all its mirrors in one step, for good."""
        self.left = True
        for m in self.machines.values():
            m._mark_left()


class Topic:
    """One peer of a topic (see the module doc).

    ``listen_addrs`` are multiaddrs (TCP ``/ip4/127.0.0.1/tcp/0``, QUIC
    ``/ip4/127.0.0.1/udp/0/quic-v1``); ``bootstrap`` are peers to dial, each
    ``.../p2p/<peer id>`` (another topic's :attr:`addrs`); a topic without
    bootstrap peers waits to be dialed. ``expose`` are local machines to
    announce (more with :meth:`expose`; their order is their address).

    Run it with ``await nursery.start(topic.run)`` or :func:`open_topic`.
    """

    def __init__(
        self,
        name: str,
        *,
        listen_addrs: Sequence[str] = (LOOPBACK_TCP,),
        bootstrap: Sequence[str] = (),
        expose: Sequence[am.Machine] = (),
        config: TopicConfig | None = None,
        log_level: am.LogLevel | int = am.LogLevel.NOTHING,
    ) -> None:
        if not name:
            raise PubsubError("a topic needs a name")
        if isinstance(listen_addrs, str) or isinstance(bootstrap, str):
            raise PubsubError("listen_addrs and bootstrap are lists of multiaddrs")
        #: the topic's name (the gossipsub topic id)
        self.name = name
        #: configuration
        self.config = config or TopicConfig()
        if self.config.muxer not in ("mplex", "yamux"):
            raise PubsubError(f"unknown muxer {self.config.muxer!r} (mplex or yamux)")
        c = self.config
        if not 1 <= c.mesh_degree_low <= c.mesh_degree <= c.mesh_degree_high:
            raise PubsubError(
                "mesh degrees must satisfy 1 <= mesh_degree_low <= mesh_degree <= mesh_degree_high,"
                f" got {c.mesh_degree_low}, {c.mesh_degree}, {c.mesh_degree_high}"
            )
        self.listen_addrs = list(listen_addrs)
        self.bootstrap = list(bootstrap)
        #: the topic machine (:class:`TopicStates`)
        self.mach = am.Machine(
            TopicStates,
            id=f"ps-{name}-{secrets.token_hex(3)}",
            tags=[f"pubsub:{name}"],
            handlers=_TopicHandlers(self),
            log_level=log_level,
            # a batch of messages can take longer than the default 0.1 s on a busy
            # host; a timeout would revert it and lose the batch
            handler_timeout=None,
        )
        #: our libp2p peer id (base58; set when started)
        self.peer_id = ""
        #: our listening multiaddrs with ``/p2p/<peer id>`` (set when started)
        self.addrs: list[str] = []
        #: malformed messages received, by peer id
        self.malformed: Counter[str] = Counter()
        #: messages sent, by type (``"dropped"``: over the rate limit or outbox)
        self.sent: Counter[str] = Counter()
        #: messages received and decoded, by type (``"dropped"``: the machine was busy)
        self.received: Counter[str] = Counter()
        self._exposed: list[am.Machine] = []
        self._sent_sums: list[int] = []
        # schemas already checked: the infos of a topic repeat them (see wire.SchemaCache)
        self._schemas = wire.SchemaCache()
        self._peers: dict[str, _Peer] = {}
        self._topic_peers: set[str] = set()
        # peer id -> machine indexes we miss (empty: the whole peer)
        self._missing_peers: dict[str, set[int]] = {}
        # peer id -> machine index -> the time sum we know exists
        self._missing_updates: dict[str, dict[int, int]] = {}
        # peer id -> when the gap was first seen (requests wait ``request_grace``)
        self._missing_peers_since: dict[str, float] = {}
        self._missing_updates_since: dict[str, float] = {}
        # peer id -> (when last requested by anyone, our attempts): requests back off
        self._requested_info: dict[str, tuple[float, int]] = {}
        self._requested_updates: dict[str, tuple[float, int]] = {}
        self._last_req_info = -math.inf
        self._last_req_updates = -math.inf
        self._win = -1
        self._win_count = 0
        # peer id -> when its info was last asked for (while an answer is pending);
        # the quick batch (own first info, welcomes, the picked answerer) and the
        # slow one (a peer answering for itself when another peer was picked)
        self._info_pending: dict[bool, dict[str, float]] = {}
        # when info about a peer last went over the topic (sent or received)
        self._info_seen: dict[str, float] = {}
        self._changed = trio.Event()
        # when we gossip, unless someone else's gossip comes first (see _gossip_later)
        self._gossip_due = math.inf
        # another peer named us (our machines are known): until then our info is
        # re-sent, backed off (see _first_info)
        self._heard = False
        self._resending = False
        self._first_info_sent = False
        # newcomers whose first info we saw and no one has named since: our next
        # gossip (or info) names them, telling them they were heard
        self._newcomers: set[str] = set()
        self._host: Host | None = None
        self._bye_sent = False
        self._nursery: trio.Nursery | None = None
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[bytes](
            self.config.outbox_size
        )
        for m in expose:
            self.expose(m)

    # ----- public API

    def expose(self, mach: am.Machine) -> int:
        """Announce ``mach`` to the topic; returns its index (its address, never reused)."""
        if not isinstance(mach, am.Machine) or isinstance(mach, Mirror):
            raise PubsubError(f"only local machines can be exposed, got {mach!r}")
        if mach in self._exposed:
            raise PubsubError(f"machine {mach.id} is already exposed")
        self._exposed.append(mach)
        self._sent_sums.append(sum(mach.time()))
        if self.mach.is1(S.Joined):
            self.mach.add1(S.SendInfo, {"peer_ids": [self.peer_id]})
            if not self._resending and self._nursery is not None:
                self._nursery.start_soon(self._first_info, False)
        return len(self._exposed) - 1

    @property
    def exposed(self) -> list[am.Machine]:
        """The exposed local machines, in index order."""
        return list(self._exposed)

    @property
    def peers(self) -> list[str]:
        """Ids of the peers whose machines we know (including peers that left)."""
        return list(self._peers)

    @property
    def topic_peers(self) -> list[str]:
        """Ids of the peers currently subscribed to the topic (libp2p's view)."""
        return sorted(self._topic_peers)

    def list_machines(
        self,
        *,
        id: str | None = None,
        id_regexp: str | re.Pattern[str] | None = None,
        id_contains: str | None = None,
        peer_id: str | None = None,
        parent_id: str | None = None,
        include_left: bool = True,
    ) -> list[Mirror]:
        """Mirrors of other peers' machines, filtered (all filters must match).

        ``id`` / ``id_regexp`` / ``id_contains`` match the machine's id on its
        peer (``mirror.remote_id``), ``parent_id`` its parent's id there;
        ``include_left=False`` leaves out machines of peers that said ``bye``.
        Peers come in the order they were first heard of, the machines of one
        peer in the order it exposes them.
        """
        rx = re.compile(id_regexp) if isinstance(id_regexp, str) else id_regexp
        out = []
        for p in self._peers.values():
            if (peer_id is not None and p.id != peer_id) or (p.left and not include_left):
                continue
            for _idx, m in sorted(p.machines.items()):
                if id is not None and m.remote_id != id:
                    continue
                if rx is not None and not rx.search(m.remote_id):
                    continue
                if id_contains is not None and id_contains not in m.remote_id:
                    continue
                if parent_id is not None and m.remote_parent != parent_id:
                    continue
                out.append(m)
        return out

    async def wait_until(self, fn: Callable[[Topic], bool]) -> None:
        """Wait until ``fn(topic)`` is true; checked on every change of mirrors or peers
        and on every malformed message (:attr:`malformed`).

        Use with a timeout (``trio.fail_after``).
        """
        while not fn(self):
            await self._changed.wait()

    async def wait_machines(self, n: int) -> list[Mirror]:
        """Wait until at least ``n`` mirrors exist; returns them."""
        await self.wait_until(lambda t: len(t.list_machines()) >= n)
        return self.list_machines()

    # ----- running

    async def run(self, *, task_status: trio.TaskStatus[Topic] = trio.TASK_STATUS_IGNORED) -> None:
        """Start, connect, join and serve until cancelled or :meth:`aclose`.

        With ``nursery.start(topic.run)`` it returns once ``Joined``.
        """
        from ._host import open_host

        cfg = self.config
        mach = self.mach
        if mach.is1(S.Start):
            raise PubsubError(f"topic {mach.id} is already running")
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            async with open_host(
                self.name,
                self.listen_addrs,
                router_rate_limit=cfg.router_rate_limit,
                gossipsub_heartbeat=cfg.gossipsub_heartbeat,
                muxer=cfg.muxer,
                degree=(cfg.mesh_degree, cfg.mesh_degree_low, cfg.mesh_degree_high),
                peer_queue_size=cfg.peer_queue_size,
            ) as host:
                self._host = host
                host.pubsub.on_bad_stream = self._bad_stream
                self.peer_id = host.peer_id
                self.addrs = host.addrs
                mach.set_tags([*mach.tags, f"peer:{host.peer_id}"])
                mach.add1(S.Start)
                try:
                    await self._connect(host)
                    mach.add1(S.Joining)
                    try:
                        await host.join()
                    except Exception as err:
                        mach.add_err_state(S.ErrJoining, err)
                        raise
                    mach.add1(S.Joined)
                    self._gossip_later()
                    nursery.start_soon(self._read_loop, host)
                    nursery.start_soon(self._publish_loop, host)
                    nursery.start_soon(self._heartbeat_loop)
                    nursery.start_soon(self._watch_loop, host)
                    if self._exposed:
                        nursery.start_soon(self._first_info)
                    task_status.started(self)
                    await trio.sleep_forever()
                finally:
                    mach.remove([S.Start, S.Connected, S.Joined, S.Joining])
                    self._host = None
                    nursery.cancel_scope.cancel()

    async def _connect(self, host: Host) -> None:
        cfg = self.config
        mach = self.mach
        mach.add1(S.Connecting)
        if not self.bootstrap:
            mach.add1(S.Connected)
            return
        limiter = trio.CapacityLimiter(cfg.max_dials)
        errors: list[Exception] = []
        ok = 0

        async def dial(addr: str) -> None:
            nonlocal ok
            async with limiter:
                try:
                    with trio.fail_after(cfg.connect_timeout):
                        await host.dial(addr)
                    ok += 1
                except (Exception, trio.TooSlowError) as err:
                    errors.append(err)

        with trio.move_on_after(cfg.connect_timeout) as scope:
            while True:
                errors.clear()
                async with trio.open_nursery() as n:
                    for a in self.bootstrap:
                        n.start_soon(dial, a)
                if ok:
                    break
                add_err_connecting(mach, errors[0] if errors else PubsubError("no peer"))
                await trio.sleep(self._heartbeat_period())
                mach.add1(S.Connecting)
        if scope.cancelled_caught:
            raise PubsubError(
                f"topic {self.name}: no bootstrap peer answered in {cfg.connect_timeout}s"
                f" ({errors[0] if errors else 'timeout'})"
            )
        if mach.is1(S.ErrConnecting):
            mach.remove([S.ErrConnecting, am.EXCEPTION])
        mach.add1(S.Connected)

    def _heartbeat_period(self) -> float:
        return self.config.heartbeat_freq * self.config.multiplayer

    async def _first_info(self, send: bool = True) -> None:
        """Send our first info, then re-send it until another peer names us.

        A lost first info would leave us unknown for good: nobody asks about a
        peer nobody has heard of, and our gossip (which names us) seldom goes
        first. Re-sends wait ``2, 4, 8, 16, 16, ...`` times ``request_grace``
        (counted while someone is in our mesh and nothing we sent is queued)
        and stop once a message of another peer names us (gossip, an info, a
        request or updates).
        """
        self._resending = True
        m = self.config.multiplayer
        if send:
            await trio.sleep(random.uniform(0.02 * m, 0.58 * m))
            self.mach.add1(S.SendInfo, {"peer_ids": [self.peer_id]})
        grace = self.config.request_grace * m
        step = self._heartbeat_period()
        tries = 0
        while True:
            tries += 1
            # the delay only runs while our info can travel: someone is in our
            # mesh and nothing we sent is still queued (a peer alone in its
            # topic does not pile up infos)
            delay = grace * 2 ** min(tries, 4)
            while delay > 0:
                await trio.sleep(step)
                if self._heard:
                    return
                host = self._host
                if (
                    host is not None
                    and host.mesh_size() > 0
                    and not self._outbox_send.statistics().current_buffer_used
                ):
                    delay -= step
            self.mach.log("nobody named us yet: info re-sent")
            self.mach.add1(S.SendInfo, {"peer_ids": [self.peer_id]})

    async def _heartbeat_loop(self) -> None:
        while True:
            await trio.sleep(self._heartbeat_period())
            self.mach.add1(S.Heartbeat)

    async def _watch_loop(self, host: Host) -> None:
        # libp2p's topic membership -> PeerJoined / PeerLeft, woken by libp2p's
        # subscription changes; once a second anyway for the stray peers (and in
        # case a libp2p upgrade stops calling the hooks)
        period = 1.0
        while True:
            host.grow_queues(self.config.peer_queue_size)
            if self._nursery is not None:
                for p in host.stray_peers():
                    self._nursery.start_soon(host.register_peer, p)
            now = set(host.topic_peers())
            for p in sorted(now - self._topic_peers):
                self._topic_peers.add(p)
                self.mach.add1(S.PeerJoined, {"peer_id": p})
            for p in sorted(self._topic_peers - now):
                self._topic_peers.discard(p)
                self.mach.add1(S.PeerLeft, {"peer_id": p})
            await host.wait_membership(period)

    async def _read_loop(self, host: Host) -> None:
        cfg = self.config
        own = host.peer_id_bytes
        while True:
            first = await host.receive()
            batch = [first]
            while len(batch) < cfg.batch_size:
                try:
                    batch.append(host.receive_nowait())
                except trio.WouldBlock:
                    break
            msgs = [(m.from_id, m.data) for m in batch if m.from_id != own]
            if not msgs:
                continue
            if self.mach.queue_len() > cfg.max_queue_len:
                self.received["dropped"] += len(msgs)
                continue
            self.mach.add1(S.ProcessMsgs, {"msgs": msgs})

    async def _publish_loop(self, host: Host) -> None:
        async for data in self._outbox_recv:
            await host.wait_mesh()
            try:
                await host.publish(data)
            except Exception as err:
                self.sent["failed"] += 1
                self.mach.log(f"publish failed: {err!r}")

    async def aclose(self) -> None:
        """Say ``bye`` (other peers mark our machines' mirrors as left) and stop."""
        host = self._host
        if host is not None:
            await self._bye(host)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _bye(self, host: Host) -> None:
        if self._bye_sent or not self._exposed or not self.mach.is1(S.Joined):
            return
        self._bye_sent = True
        if host.mesh_size() == 0:
            return
        clocks = {i: list(m.time()) for i, m in enumerate(self._exposed)}
        with trio.move_on_after(1):
            await host.publish(wire.encode(wire.ByeMsg(clocks)))
            self.sent["bye"] += 1
            # let the streams carry it before the host closes
            await trio.sleep(0.2)

    # ----- message handling (called by the handlers)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _send(self, msg: wire.Message, kind: str) -> None:
        self.mach.add1(S.SendMsg, {"msg": wire.encode(msg), "type": kind})

    def _do_send(self, data: bytes, kind: str) -> None:
        cfg = self.config
        win = int(trio.current_time() / cfg.multiplayer)
        if win != self._win:
            self._win = win
            self._win_count = 0
        if self._win_count >= cfg.max_msgs_per_win:
            self.sent["dropped"] += 1
            return
        try:
            self._outbox_send.send_nowait(data)
        except trio.WouldBlock:
            self.sent["dropped"] += 1
            return
        self._win_count += 1
        self.sent[kind] += 1

    def _bad_stream(self, peer: str, err: Exception) -> None:
        self._malformed_from(peer)
        self.mach.log(f"the pubsub stream of {peer} was reset: {type(err).__name__}: {err}")

    def _malformed_from(self, peer: str) -> None:
        self.malformed[peer] += 1
        self._notify()  # wait_until() conditions may watch the counters

    def _process(self, msgs: list[tuple[bytes, bytes]]) -> None:
        from ._host import peer_id_str

        mach = self.mach
        limits = self.config.limits
        for raw_from, data in msgs:
            try:
                peer = peer_id_str(raw_from)
            except Exception:
                peer = raw_from.hex()[:64]
            try:
                msg = wire.decode(data, peer=peer, limits=limits, schemas=self._schemas)
            except PubsubDecodeError as err:
                self._malformed_from(peer)
                mach.log(str(err))
                mach.add1(S.MsgReceived, {"peer_id": peer, "data": data})
                continue
            if not self._heard and self._names_us(msg):
                self._heard = True
            if isinstance(msg, wire.InfoMsg):
                self.received["info"] += 1
                mach.add1(S.MsgInfo, {"peer_id": peer, "msg": msg})
                self._check_gossips(msg.gossips, peer)
                if len(msg.gossips) > 1:
                    self._gossip_later()
            elif isinstance(msg, wire.UpdatesMsg):
                self.received["updates"] += 1
                mach.add1(S.MsgUpdates, {"peer_id": peer, "msg": msg})
            elif isinstance(msg, wire.GossipMsg):
                self.received["gossip"] += 1
                self._check_gossips(msg.gossips, peer)
                self._gossip_later()
            elif isinstance(msg, wire.ReqInfoMsg):
                self.received["reqinfo"] += 1
                mach.add1(S.MsgReqInfo, {"peer_id": peer, "msg": msg})
            elif isinstance(msg, wire.ReqUpdatesMsg):
                self.received["requpdates"] += 1
                mach.add1(S.MsgReqUpdates, {"peer_id": peer, "msg": msg})
            else:
                self.received["bye"] += 1
                mach.add1(S.MsgBye, {"peer_id": peer, "msg": msg})

    def _names_us(self, msg: wire.Message) -> bool:
        """Whether another peer's message shows that it knows us."""
        me = self.peer_id
        if isinstance(msg, wire.InfoMsg):
            return me in msg.peers or me in msg.gossips
        if isinstance(msg, wire.GossipMsg):
            return me in msg.gossips
        if isinstance(msg, wire.UpdatesMsg):
            return me in msg.clocks
        if isinstance(msg, (wire.ReqInfoMsg, wire.ReqUpdatesMsg)):
            return me in msg.peers
        return False

    def _check_gossips(self, gossips: wire.Gossips, sender: str) -> None:
        """Gap detection: peers we miss, and mirrors behind the gossiped sums."""
        miss_peers: dict[str, set[int]] = {}
        miss_updates: dict[str, dict[int, int]] = {}
        for pid, sums in gossips.items():
            if pid == self.peer_id:
                continue
            if pid != sender:
                # a peer named by another peer has been heard
                self._newcomers.discard(pid)
            p = self._peers.get(pid)
            if p is not None and p.left:
                continue
            unknown = {i for i in sums if p is None or i not in p.machines}
            if unknown:
                miss_peers[pid] = unknown
            elif p is not None:
                behind = {i: s for i, s in sums.items() if p.machines[i].time_sum < s}
                if behind:
                    miss_updates[pid] = behind
        if miss_peers:
            self.mach.add1(S.MissPeersByGossip, {"missing": miss_peers})
        if miss_updates:
            self.mach.add1(S.MissUpdatesByGossip, {"missing": miss_updates})

    def _add_missing_peers(self, missing: dict[str, set[int]]) -> None:
        now = trio.current_time()
        for pid, idxs in missing.items():
            self._missing_peers.setdefault(pid, set()).update(idxs)
            self._missing_peers_since.setdefault(pid, now)

    def _add_missing_updates(self, missing: dict[str, dict[int, int]]) -> None:
        now = trio.current_time()
        for pid, sums in missing.items():
            have = self._missing_updates.setdefault(pid, {})
            for i, s in sums.items():
                have[i] = max(s, have.get(i, 0))
            self._missing_updates_since.setdefault(pid, now)

    def _forget_missing(self, pid: str) -> None:
        self._missing_peers.pop(pid, None)
        self._missing_updates.pop(pid, None)
        self._missing_peers_since.pop(pid, None)
        self._missing_updates_since.pop(pid, None)

    def _still_missing_peers(self) -> list[str]:
        """Peers of ``_missing_peers`` still unknown (dropping the ones now known)."""
        out = []
        for pid, idxs in list(self._missing_peers.items()):
            p = self._peers.get(pid)
            if p is not None and (p.left or (p.machines and all(i in p.machines for i in idxs))):
                del self._missing_peers[pid]
                self._missing_peers_since.pop(pid, None)
                self._requested_info.pop(pid, None)
            else:
                out.append(pid)
        return out

    def _still_missing_updates(self) -> list[str]:
        """Peers of ``_missing_updates`` whose mirrors are still behind."""
        out = []
        for pid, sums in list(self._missing_updates.items()):
            p = self._peers.get(pid)
            behind = (
                p is not None
                and not p.left
                and any(i in p.machines and p.machines[i].time_sum < s for i, s in sums.items())
            )
            if behind:
                out.append(pid)
            else:
                del self._missing_updates[pid]
                self._missing_updates_since.pop(pid, None)
                self._requested_updates.pop(pid, None)
        return out

    def _on_info(self, sender: str, msg: wire.InfoMsg) -> None:
        changed = False
        now = trio.current_time()
        for pid in msg.peers:
            self._info_seen[pid] = now
        for pid, machs in msg.peers.items():
            if pid == self.peer_id:
                continue
            p = self._peers.get(pid)
            if p is not None and p.left:
                # a peer that said bye stays gone (a restarted peer has a new id):
                # a late info, its own or forwarded, does not revive it
                continue
            if p is None:
                p = self._peers[pid] = _Peer(pid)
            new = False
            for idx, info in machs.items():
                if idx not in p.machines:
                    new |= self._on_mach_info(p, idx, info, sender)
                else:
                    changed |= self._on_mach_info(p, idx, info, sender)
            if new and pid == sender:
                # a peer's own info told us of it: name it in our next gossip or
                # info (so it learns it was heard; see _first_info)
                self._newcomers.add(pid)
            changed |= new
        if sender != self.peer_id and sender not in self._peers:
            self._add_missing_peers({sender: set()})
        self._welcome(sender, msg.gossips)
        if changed:
            self._notify()

    def _welcome(self, sender: str, gossips: wire.Gossips) -> None:
        """Catch a newcomer up with one ``info`` about every peer we know.

        A peer's ``info`` carries gossip about up to ``gossip_amount`` peers it
        knows; a newcomer's first ``info`` names only itself. One peer answers
        it, with the info of every peer it knows (its own included), so the
        newcomer does not have to learn of each peer by gossip and ask for it.
        The answering peer is picked by rendezvous hashing (the highest
        ``hash(newcomer, peer)`` among the peers we know and us), so peers that
        know the same peers pick the same one; the answer is debounced and
        suppressed like every ``info``. Gossip and ``reqinfo`` fill any gap.
        """
        if sender == self.peer_id or set(gossips) - {sender}:
            return
        known = [p for p in self._known() if p != sender]
        if not known and not self._exposed:
            return

        def rank(p: str) -> bytes:
            return hashlib.blake2b(f"{sender}/{p}".encode(), digest_size=8).digest()

        if max([*known, self.peer_id], key=rank) != self.peer_id:
            return
        self.mach.add1(S.SendInfo, {"peer_ids": [*known, self.peer_id]})

    def _picked_answerer(self, asker: str, asked: Sequence[str]) -> bool:
        """Whether we answer a ``reqinfo`` of ``asker`` for ``asked`` (for all of them).

        Rendezvous hashing again: the answerer is the peer with the highest
        ``hash(asker, asked, peer)`` among the peers we know and us, so peers
        that know the same peers pick the same one and a request is answered
        by one ``info``. Asked peers not picked answer for themselves later,
        unless an answer carried their info meanwhile (see ``SendInfo``).
        """
        key = asker + "/" + ",".join(sorted(asked)) + "/"

        def rank(p: str) -> bytes:
            return hashlib.blake2b((key + p).encode(), digest_size=8).digest()

        cands = [p for p in self._known() if p != asker]
        return max([*cands, self.peer_id], key=rank) == self.peer_id

    def _on_mach_info(self, p: _Peer, idx: int, info: wire.MachInfo, sender: str) -> bool:
        m = p.machines.get(idx)
        if m is None:
            try:
                m = Mirror(p.id, idx, info)
            except (am.AsyncMachineError, ValueError, TypeError) as err:
                self._malformed_from(sender)
                self.mach.log(f"bad info of machine {info.id!r} of {p.id} from {sender}: {err}")
                return False
            p.machines[idx] = m
            p.infos[idx] = info
            stashed = p.stash.pop(idx, None)
            best = stashed if stashed is not None and sum(stashed) > info.sum else info.time
            m._apply_clock(best)
            return True
        if m.remote_id != info.id or list(m.state_names) != info.states:
            # a different machine at the same index: the index must never change
            self._malformed_from(sender)
            return False
        if m._apply_clock(info.time):
            p.infos[idx] = info
            return True
        return False

    def _on_updates(self, sender: str, msg: wire.UpdatesMsg) -> None:
        changed = False
        unknown = []
        for pid, clocks in msg.clocks.items():
            if pid == self.peer_id:
                continue
            p = self._peers.get(pid)
            if p is not None and p.left:
                continue
            if p is None or any(i not in p.machines for i in clocks):
                if p is None:
                    p = self._peers[pid] = _Peer(pid)
                for idx, ticks in clocks.items():
                    if idx in p.machines:
                        continue
                    old = p.stash.get(idx)
                    if old is None or sum(ticks) > sum(old):
                        p.stash[idx] = ticks
                unknown.append(pid)
            for idx, ticks in clocks.items():
                m = p.machines.get(idx)
                if m is not None and m._apply_clock(ticks):
                    changed = True
        if unknown:
            self.mach.add1(
                S.MissPeersByUpdates, {"missing": {p: set(msg.clocks[p]) for p in unknown}}
            )
        if changed:
            self._notify()

    def _on_bye(self, sender: str, msg: wire.ByeMsg) -> None:
        p = self._peers.get(sender)
        if p is None:
            return
        if p.left:
            return
        for idx, ticks in msg.clocks.items():
            m = p.machines.get(idx)
            if m is not None:
                m._apply_clock(ticks)
        p.mark_left()
        self._forget_missing(sender)
        self._newcomers.discard(sender)
        self._notify()

    def _known(self) -> list[str]:
        return [pid for pid, p in self._peers.items() if not p.left and p.machines]

    def _peer_estimate(self) -> int:
        """How many other peers the topic has, as far as we can tell (at least 1).

        Known peers, peers we know exist but miss, and our direct neighbours: a
        newcomer that knows no machines yet still counts its neighbours, so it
        does not gossip on every heartbeat.
        """
        peers = {pid for pid, p in self._peers.items() if not p.left}
        peers.update(self._missing_peers, self._topic_peers)
        peers.discard(self.peer_id)
        return max(1, len(peers))

    def _gossip_later(self) -> None:
        """(Re)start the gossip timer: a random delay, up to ``gossip_every``
        heartbeats times the peers we know (plus two).

        Every gossip seen restarts it, so the peer whose timer runs out first
        gossips for the topic: about once per ``gossip_every`` heartbeats in
        all, each peer in turn, and two peers seldom at once (the delays are
        spread over many heartbeats).
        """
        period = max(1, self.config.gossip_every) * self._heartbeat_period()
        spread = self._peer_estimate() + 2
        self._gossip_due = trio.current_time() + period * random.uniform(0, spread)

    def _gossips(self) -> wire.Gossips:
        known = self._known()
        n = self.config.gossip_amount
        # newcomers nobody has named yet go first (they learn they were heard)
        picked = [p for p in known if p in self._newcomers][:n]
        self._newcomers.difference_update(picked)
        rest = [p for p in known if p not in picked]
        picked += random.sample(rest, min(n - len(picked), len(rest)))
        out: wire.Gossips = {
            pid: {i: m.time_sum for i, m in self._peers[pid].machines.items()} for pid in picked
        }
        if self._exposed:
            out[self.peer_id] = {i: sum(m.time()) for i, m in enumerate(self._exposed)}
        return out

    def _own_info(self) -> dict[int, wire.MachInfo]:
        return {
            i: wire.MachInfo(
                id=m.id,
                schema=m.schema,
                states=list(m.state_names),
                time=list(m.time()),
                tags=list(m.tags),
                parent=m.parent_id,
            )
            for i, m in enumerate(self._exposed)
        }

    def _info_for(self, peer_ids: Sequence[str]) -> wire.InfoMsg:
        peers: dict[str, dict[int, wire.MachInfo]] = {}
        for pid in peer_ids:
            if pid == self.peer_id:
                if self._exposed:
                    peers[pid] = self._own_info()
                continue
            p = self._peers.get(pid)
            if p is None or p.left or not p.machines:
                continue
            peers[pid] = {
                i: attrs.evolve(p.infos[i], time=list(m.time())) for i, m in p.machines.items()
            }
        if not self._first_info_sent and self.peer_id in peers:
            # our first info gossips only us: the newcomer's mark, which the
            # welcome answers (see _welcome), whatever we heard meanwhile
            self._first_info_sent = True
            return wire.InfoMsg(
                peers, {self.peer_id: {i: x.sum for i, x in peers[self.peer_id].items()}}
            )
        return wire.InfoMsg(peers, self._gossips())

    def _collect_updates(self) -> dict[int, list[int]]:
        out = {}
        for i, m in enumerate(self._exposed):
            t = list(m.time())
            s = sum(t)
            if s != self._sent_sums[i]:
                self._sent_sums[i] = s
                out[i] = t
        return out

    def _pick_requests(
        self, missing: list[str], requested: dict[str, tuple[float, int]]
    ) -> list[str]:
        """Up to ``max_requested`` of ``missing`` not asked about lately.

        A peer is asked about again ``5 * multiplayer`` seconds after the last
        request (ours or anyone's), doubling with each of our unanswered
        requests up to 16 times that: a slow topic is not flooded with repeats.
        """
        now = trio.current_time()
        ttl = 5 * self.config.multiplayer
        todo = []
        for p in missing:
            last, tries = requested.get(p, (-math.inf, 0))
            if now - last >= ttl * 2 ** min(tries, 4):
                todo.append(p)
        picked = random.sample(todo, min(self.config.max_requested, len(todo)))
        for p in picked:
            requested[p] = (now, requested.get(p, (0.0, 0))[1] + 1)
        return picked

    def _asked_by_others(
        self, peers: Sequence[str], requested: dict[str, tuple[float, int]]
    ) -> None:
        """Someone asked about ``peers``: the answer reaches us too, so wait for it."""
        now = trio.current_time()
        for p in peers:
            requested[p] = (now, requested.get(p, (0.0, 0))[1])

    def _request_missing(self, kind: str) -> None:
        """Send one ``reqinfo`` or ``requpdates`` for missing peers (rate limited)."""
        now = trio.current_time()
        if kind == "reqinfo":
            missing, requested, last = (
                self._still_missing_peers(),
                self._requested_info,
                self._last_req_info,
            )
        else:
            missing, requested, last = (
                self._still_missing_updates(),
                self._requested_updates,
                self._last_req_updates,
            )
        if not missing or now - last < self.config.multiplayer:
            return
        since = self._missing_peers_since if kind == "reqinfo" else self._missing_updates_since
        grace = self.config.request_grace * self.config.multiplayer
        missing = [p for p in missing if now - since.get(p, now) >= grace]
        picked = sorted(self._pick_requests(missing, requested))
        if not picked:
            return
        if kind == "reqinfo":
            self._last_req_info = now
            self._send(wire.ReqInfoMsg(picked), kind)
        else:
            self._last_req_updates = now
            self._send(wire.ReqUpdatesMsg(picked), kind)

    def _schedule_info(self, peer_ids: Sequence[str], slow: bool = False) -> None:
        now = trio.current_time()
        first = slow not in self._info_pending
        pending = self._info_pending.setdefault(slow, {})
        for p in peer_ids:
            pending[p] = now
        if first and self._nursery is not None:
            self._nursery.start_soon(self._info_later, slow)

    async def _info_later(self, slow: bool) -> None:
        cfg = self.config
        debounce = 2 * cfg.send_info_debounce * cfg.multiplayer
        # the slow batch waits for the picked answerer's info to arrive first
        low, high = (2 * debounce, 4 * debounce) if slow else (0.0, debounce)
        await trio.sleep(random.uniform(low, high))
        pending = self._info_pending.pop(slow, {})
        # suppression: someone sent the info after it was asked for
        seen = self._info_seen
        todo = [p for p, asked in sorted(pending.items()) if seen.get(p, -math.inf) < asked]
        if todo:
            self.mach.add1(S.DoSendInfo, {"peer_ids": todo})


class _TopicHandlers:
    """The topic machine's handlers: thin wrappers over the topic's methods."""

    def __init__(self, topic: Topic) -> None:
        self.t = topic

    def ready_enter(self, e: am.Event) -> bool:
        return len(self.t._topic_peers) >= self.t.config.connections_to_ready

    def process_msgs_state(self, e: am.Event) -> None:
        self.t._process(e.args["msgs"])

    def msg_info_state(self, e: am.Event) -> None:
        self.t._on_info(e.args["peer_id"], e.args["msg"])

    def msg_updates_state(self, e: am.Event) -> None:
        self.t._on_updates(e.args["peer_id"], e.args["msg"])

    def msg_bye_state(self, e: am.Event) -> None:
        self.t._on_bye(e.args["peer_id"], e.args["msg"])
        e.machine.add1(S.PeerLeft, {"peer_id": e.args["peer_id"], "bye": True})

    def miss_peers_by_gossip_state(self, e: am.Event) -> None:
        self.t._add_missing_peers(e.args["missing"])

    def miss_peers_by_updates_state(self, e: am.Event) -> None:
        self.t._add_missing_peers(e.args["missing"])

    def miss_updates_by_gossip_state(self, e: am.Event) -> None:
        self.t._add_missing_updates(e.args["missing"])

    def msg_req_info_state(self, e: am.Event) -> None:
        t = self.t
        asker: str = e.args["peer_id"]
        asked: list[str] = e.args["msg"].peers
        # the answer goes to everyone: don't ask for these again soon
        t._asked_by_others(asked, t._requested_info)
        known = [p for p in asked if p in t._peers and not t._peers[p].left]
        mine = t.peer_id in asked and bool(t._exposed)
        if t._picked_answerer(asker, asked):
            # one peer answers for every asked peer it knows (itself included)
            ids = ([t.peer_id] if mine else []) + known
            if ids:
                e.machine.add1(S.SendInfo, {"peer_ids": ids})
        elif mine:
            # an asked peer answers for itself later, unless the picked peer's
            # answer (or anyone's) has carried its info by then
            e.machine.add1(S.SendInfo, {"peer_ids": [t.peer_id], "slow": True})

    def msg_req_updates_state(self, e: am.Event) -> None:
        # the reference's guard read the wrong field and never answered
        t = self.t
        asked: list[str] = e.args["msg"].peers
        t._asked_by_others(asked, t._requested_updates)
        clocks: dict[str, dict[int, list[int]]] = {}
        if t.peer_id in asked and t._exposed:
            clocks[t.peer_id] = {i: list(m.time()) for i, m in enumerate(t._exposed)}
        known = [p for p in asked if p in t._peers and not t._peers[p].left]
        if known and random.random() < 1 / t._peer_estimate():
            for p in known:
                clocks[p] = {i: list(m.time()) for i, m in t._peers[p].machines.items()}
        if clocks:
            t._send(wire.UpdatesMsg(clocks), "updates")

    def heartbeat_state(self, e: am.Event) -> None:
        # only the work that is due is added: a heartbeat with nothing to do costs
        # one transition, not six (a topic beats every 0.2 s with multiplayer 0.2)
        m = e.machine
        t = self.t
        if m.is1(S.MissPeersByGossip) or m.is1(S.MissPeersByUpdates):
            m.remove([S.MissPeersByGossip, S.MissPeersByUpdates])
        updates = t._collect_updates()
        if updates:
            m.add1(S.SendUpdates, {"clocks": updates})
        if trio.current_time() >= t._gossip_due:
            t._gossip_later()
            m.add1(S.SendGossips)
        if t._missing_updates:
            m.add1(S.ReqMissingUpdates)
        if t._missing_peers:
            m.add1(S.ReqMissingPeers)
        m.remove1(S.Heartbeat)

    def send_updates_state(self, e: am.Event) -> None:
        t = self.t
        t._send(wire.UpdatesMsg({t.peer_id: e.args["clocks"]}), "updates")
        e.machine.remove1(S.SendUpdates)

    def send_gossips_state(self, e: am.Event) -> None:
        # the heartbeat adds it when the gossip timer runs out (see _gossip_later)
        t = self.t
        gossips = t._gossips()
        if gossips:
            t._send(wire.GossipMsg(gossips), "gossip")
        e.machine.remove1(S.SendGossips)

    def req_missing_peers_state(self, e: am.Event) -> None:
        self.t._request_missing("reqinfo")
        e.machine.remove1(S.ReqMissingPeers)

    def req_missing_updates_state(self, e: am.Event) -> None:
        self.t._request_missing("requpdates")
        e.machine.remove1(S.ReqMissingUpdates)

    def send_info_state(self, e: am.Event) -> None:
        self.t._schedule_info(
            e.args.get("peer_ids", [self.t.peer_id]), slow=bool(e.args.get("slow", False))
        )
        e.machine.remove1(S.SendInfo)

    def do_send_info_state(self, e: am.Event) -> None:
        t = self.t
        msg = t._info_for(e.args.get("peer_ids", [t.peer_id]))
        if msg.peers:
            now = trio.current_time()
            for pid in msg.peers:
                t._info_seen[pid] = now
            t._send(msg, "info")
            if len(msg.gossips) > 1:
                t._gossip_later()
        e.machine.remove1(S.DoSendInfo)

    def send_msg_state(self, e: am.Event) -> None:
        self.t._do_send(e.args["msg"], e.args.get("type", "msg"))

    def peer_joined_state(self, e: am.Event) -> None:
        self.t._notify()

    def peer_left_state(self, e: am.Event) -> None:
        self.t._notify()


@asynccontextmanager
async def open_topic(
    name: str,
    *,
    listen_addrs: Sequence[str] = (LOOPBACK_TCP,),
    bootstrap: Sequence[str] = (),
    expose: Sequence[am.Machine] = (),
    config: TopicConfig | None = None,
    log_level: am.LogLevel | int = am.LogLevel.NOTHING,
) -> AsyncIterator[Topic]:
    """Run a :class:`Topic` for the block: joined on entry, ``bye`` sent on exit."""
    topic = Topic(
        name,
        listen_addrs=listen_addrs,
        bootstrap=bootstrap,
        expose=expose,
        config=config,
        log_level=log_level,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(topic.run)
        try:
            yield topic
        finally:
            with trio.CancelScope(shield=True):
                await topic.aclose()
            nursery.cancel_scope.cancel()
