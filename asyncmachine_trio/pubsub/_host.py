"""The libp2p side of a topic: host, gossipsub router, subscription (imports libp2p)."""

from __future__ import annotations

import contextlib
import functools
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import trio

from .errors import PubsubError

try:
    import multiaddr
    from libp2p import generate_new_ed25519_identity, new_host
    from libp2p.exceptions import ParseError
    from libp2p.io.exceptions import IncompleteReadError
    from libp2p.network.config import ConnectionConfig
    from libp2p.network.stream.exceptions import StreamError
    from libp2p.peer import peerstore as peerstore_mod
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.pubsub import gossipsub as gossipsub_mod
    from libp2p.pubsub import pubsub as pubsub_mod
    from libp2p.pubsub import utils as pubsub_utils_mod
    from libp2p.pubsub.gossipsub import PROTOCOL_ID, GossipSub
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.tools.anyio_service import background_trio_service
except ImportError as _err:  # pragma: no cover - depends on the environment
    from .._install import install_hint

    raise ImportError(
        f"asyncmachine_trio.pubsub needs py-libp2p: {install_hint('pubsub')};"
        f" a C compiler and libgmp are needed to build it ({_err})"
    ) from _err

__all__ = ["MUXERS", "Host", "open_host", "peer_id_str"]

#: stream muxers a host can prefer (py-libp2p's names)
MUXERS = {"mplex": "MPLEX", "yamux": "YAMUX"}

#: our listen addresses are compared with the cached signed peer record at most this often (s)
RECORD_RECHECK = 10.0
#: a peer's unchanged signed peer record is verified and stored again at most this often (s)
RECORD_REFRESH = 60.0
#: peers whose records are remembered per host (more: the oldest half is forgotten)
RECORD_PEERS_MAX = 1024
#: a connected peer without a pubsub stream for this long gets another attempt (s; more
#: than py-libp2p's 10 s protocol negotiation timeout, so its own attempt is over)
STRAY_AFTER = 12.0
#: py-libp2p's switch for a yamux window update after every read (see ``open_host``)
YAMUX_RELEASE_ON_READ = "PY_YAMUX_RELEASE_ON_READ"


# ----- py-libp2p's signed peer record, once per host instead of once per RPC
#
# py-libp2p 0.8 puts the host's signed peer record (an Envelope: the peer id and
# listen addresses, signed) into every pubsub RPC it sends, and verifies and
# stores the one in every RPC it receives. Building it calls ``host.get_addrs()``
# and re-serializes the envelope (~2 ms of CPU per RPC), checking it verifies an
# Ed25519 signature and rewrites the peer's address book (~1.3 ms per RPC). Both
# are repeated for every message forwarded, duplicates included. The adapter
# below gives libp2p's pubsub modules the same two functions with a per-host
# cache: the record sent is libp2p's own envelope, re-made when the listen
# addresses change (checked every RECORD_RECHECK s); a received record whose
# bytes equal the last one accepted from that peer is not verified again within
# RECORD_REFRESH s (other bytes go through libp2p's check as before, so a forged
# or changed record is still verified). Hosts not opened here are left to
# libp2p's functions. py-libp2p's files are not modified: only the two names its
# pubsub and gossipsub modules call are rebound, once, to the wrappers below.

_orig_env_to_send = peerstore_mod.env_to_send_in_RPC
_orig_consume = pubsub_utils_mod.maybe_consume_signed_record


@attrs.define(eq=False)
class _RecordCache:
    """One host's own record (bytes, when checked) and the records accepted from peers."""

    own: bytes = b""
    own_at: float = -1e18
    # peer id -> (record bytes, when verified and stored)
    peers: dict[Any, tuple[bytes, float]] = attrs.field(factory=dict)


_record_caches: weakref.WeakKeyDictionary[Any, _RecordCache] = weakref.WeakKeyDictionary()


def _env_to_send_cached(host: Any) -> tuple[bytes, bool]:
    """``env_to_send_in_RPC`` with the result kept for ``RECORD_RECHECK`` seconds."""
    cache = _record_caches.get(host)
    if cache is None:
        raw0, created0 = _orig_env_to_send(host)
        return bytes(raw0), bool(created0)
    now = time.monotonic()
    if now - cache.own_at < RECORD_RECHECK:
        return cache.own, False
    raw, created = _orig_env_to_send(host)
    cache.own, cache.own_at = bytes(raw), now
    return cache.own, bool(created)


def _consume_cached(msg: Any, host: Any, peer_id: Any) -> bool:
    """``maybe_consume_signed_record`` skipping a record just accepted from the same peer."""
    cache = _record_caches.get(host)
    if cache is None or not msg.HasField("senderRecord"):
        return bool(_orig_consume(msg, host, peer_id))
    raw = msg.senderRecord
    now = time.monotonic()
    seen = cache.peers.get(peer_id)
    if seen is not None and seen[0] == raw and now - seen[1] < RECORD_REFRESH:
        return True
    ok = bool(_orig_consume(msg, host, peer_id))
    if ok:
        if len(cache.peers) >= RECORD_PEERS_MAX:
            for old in sorted(cache.peers, key=lambda p: cache.peers[p][1])[
                : len(cache.peers) // 2
            ]:
                del cache.peers[old]
        cache.peers[peer_id] = (raw, now)
    else:
        cache.peers.pop(peer_id, None)
    return ok


def _install_record_cache(host: Any) -> None:
    """Cache the signed peer records of ``host`` (rebinds libp2p's two names once)."""
    _record_caches[host] = _RecordCache()
    for mod in (pubsub_mod, gossipsub_mod):
        if mod.env_to_send_in_RPC is not _env_to_send_cached:
            mod.env_to_send_in_RPC = _env_to_send_cached
        if mod.maybe_consume_signed_record is not _consume_cached:
            mod.maybe_consume_signed_record = _consume_cached


# ----- pubsub's reads, buffered
#
# py-libp2p's pubsub reads each RPC's varint length prefix one byte at a time
# and then the body: two or three reads of the muxed stream per RPC. Each read of
# a yamux stream takes the muxer's locks and, with py-libp2p's default credit
# release, sends a WINDOW_UPDATE frame (Noise-encrypted, one socket write, and one
# frame the other side decrypts and handles). Our hosts hand pubsub's read loop a
# view of the stream that reads whatever the muxer holds (up to READ_CHUNK bytes)
# in one call and serves the small reads from that buffer: one muxer read (and at
# most one window update) per RPC or fewer when RPCs arrive together. Everything
# but ``read`` goes to the stream itself.

#: bytes asked of the muxer per read of a pubsub stream (it returns what it holds)
READ_CHUNK = 64 * 1024


class _BufferedStream:
    """A read-buffered view of a libp2p stream (``read`` buffered, the rest delegated)."""

    __slots__ = ("_buf", "_stream")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._buf = b""

    async def read(self, n: int | None = None) -> bytes:
        if n is None or n < 0:
            data, self._buf = self._buf, b""
            return data + bytes(await self._stream.read(n))
        if not self._buf:
            self._buf = bytes(await self._stream.read(max(n, READ_CHUNK)))
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# ----- pubsub's writes, batched
#
# py-libp2p writes every queued RPC on its own: one varint-prefixed protobuf, one
# muxer frame, one Noise frame and one socket write per message and peer, and
# the peer reads, decrypts, parses and checks the sender record of each. When
# the process is busy, a peer's outbound queue holds several messages at once;
# our hosts then send the waiting ``publish`` messages in one RPC (as the
# protocol allows: an RPC carries a list of messages), up to BATCH_BYTES. RPCs
# with control messages or subscriptions are sent on their own, in order. An
# idle host sends each message as it comes, as before.

#: the most bytes of queued messages merged into one RPC
BATCH_BYTES = 256 * 1024


def _publish_only(rpc: Any) -> bool:
    return not rpc.subscriptions and not rpc.HasField("control")


def _merge_waiting(rpc: Any, queue: Any) -> Any:
    """``rpc`` with the ``publish`` messages queued right behind it appended."""
    waiting = getattr(getattr(queue, "_queue", None), "_non_priority", None)
    if not waiting or not _publish_only(rpc):
        return rpc
    size = rpc.ByteSize()
    while waiting and _publish_only(waiting[0]):
        more = waiting[0].ByteSize()
        if size + more > BATCH_BYTES:
            break
        rpc.publish.extend(waiting.popleft().publish)
        size += more
    return rpc


class _Pubsub(Pubsub):  # type: ignore[misc]
    """libp2p's pubsub with buffered reads and batched writes (see above)."""

    #: messages a peer's outbound queue holds (py-libp2p's default, 32, loses bursts)
    peer_queue_size = 1024

    #: set (and replaced by the waiter) when a peer's topics may have changed
    membership: trio.Event | None = None

    @functools.cached_property
    def _write_locks(self) -> weakref.WeakKeyDictionary[Any, trio.Lock]:
        return weakref.WeakKeyDictionary()

    def _membership_changed(self) -> None:
        if self.membership is not None:
            self.membership.set()

    def handle_subscription(self, origin_id: Any, sub_message: Any) -> None:
        super().handle_subscription(origin_id, sub_message)
        self._membership_changed()

    def _forget_all_subscriptions(self, peer_id: Any) -> None:
        # a dead or torn-down peer leaves every topic
        super()._forget_all_subscriptions(peer_id)
        self._membership_changed()

    async def write_msg(self, stream: Any, rpc_msg: Any) -> bool:
        """libp2p's ``write_msg``, one writer at a time per stream.

        A muxed stream writes a message frame by frame and lets other tasks run
        between frames (and while it waits for the peer's window). py-libp2p has
        more than one task writing to a peer's pubsub stream (the sending loop,
        gossipsub's flushes of pending and recent messages), so two messages could
        interleave and the peer would read garbage (seen with 20 peers in one
        process, once a message spanned several frames).
        """
        locks = self._write_locks
        lock = locks.get(stream)
        if lock is None:
            lock = locks[stream] = trio.Lock()
        async with lock:
            return bool(await super().write_msg(stream, rpc_msg))

    #: called with a peer's id (base58) when its pubsub stream sent what libp2p
    #: could not take (an RPC that does not parse, ...): the stream is reset
    on_bad_stream: Callable[[str, Exception], None] | None = None

    async def continuously_read_stream(self, stream: Any) -> None:
        peer_id = stream.muxed_conn.peer_id
        try:
            await super().continuously_read_stream(_BufferedStream(stream))
        except (StreamError, ParseError, IncompleteReadError):
            raise  # a stream that broke off: libp2p's stream handler drops the peer
        except Exception as err:
            # py-libp2p lets an RPC that does not parse (protobuf's DecodeError),
            # and whatever its handling of a peer's odd RPC raises, out of this
            # peer's read loop, and from there into the whole service: one peer
            # could end the topic for everyone. Only that peer's stream goes.
            with contextlib.suppress(Exception):
                await stream.reset()
            self._handle_dead_peer(peer_id)
            if self.on_bad_stream is not None:
                self.on_bad_stream(peer_id.to_base58(), err)

    async def handle_sending_messages(self, peer_id: Any, stream: Any, queue: Any) -> None:
        """One peer's sending loop: waiting ``publish`` messages go out in one RPC."""
        inner = getattr(queue, "_queue", None)
        if inner is not None and getattr(inner, "max_size", 0) < self.peer_queue_size:
            inner.max_size = self.peer_queue_size
        try:
            while True:
                rpc = await queue.pop()
                if rpc is None:  # the queue was closed
                    return
                if not await self.write_msg(stream, _merge_waiting(rpc, queue)):
                    return
        except Exception:
            self._handle_dead_peer(peer_id)


@functools.lru_cache(maxsize=4096)
def peer_id_str(raw: bytes) -> str:
    """A peer id (bytes on the wire) as its base58 string (pure-Python base58: cached)."""
    return str(ID(raw).to_base58())


@attrs.define
class Host:
    """A running libp2p host with gossipsub, subscribed to one topic."""

    host: Any
    pubsub: Any
    router: Any
    topic: str
    peer_id: str
    peer_id_bytes: bytes
    sub: Any = None
    #: another attempt to open a pubsub stream to a connected peer, by peer id
    stray_retries: dict[str, int] = attrs.field(factory=dict)
    # peer id -> when first seen connected without a pubsub stream
    _stray_since: dict[Any, float] = attrs.field(factory=dict)
    _retrying: set[Any] = attrs.field(factory=set)

    @property
    def addrs(self) -> list[str]:
        """The listening multiaddrs, each ending in ``/p2p/<peer id>``."""
        return [str(a) for a in self.host.get_addrs()]

    def topic_peers(self) -> list[str]:
        """Peers subscribed to the topic (as far as we know)."""
        return [p.to_base58() for p in self.pubsub.peer_topics.get(self.topic, ())]

    def mesh_size(self) -> int:
        """Peers in our gossipsub mesh of the topic (who gets what we publish)."""
        return len(self.router.mesh.get(self.topic, ()))

    def grow_queues(self, size: int) -> None:
        """Let each peer's outbound queue hold ``size`` messages.

        py-libp2p gives every peer a queue of 32 messages and drops what does
        not fit, which loses forwarded messages in bursts; there is no option
        for it, so the queues are resized once the peers appear.
        """
        for q in self.pubsub.peer_queues.values():
            inner = getattr(q, "_queue", None)
            if inner is not None and getattr(inner, "max_size", size) < size:
                inner.max_size = size

    async def wait_membership(self, period: float) -> None:
        """Wait until a peer's topics may have changed, or ``period`` passed."""
        event = self.pubsub.membership = trio.Event()
        with trio.move_on_after(period):
            await event.wait()

    async def wait_mesh(self) -> None:
        """Wait until someone is in our mesh (what is published before is lost)."""
        while self.mesh_size() == 0:  # noqa: ASYNC110 (libp2p has no event for it)
            await trio.sleep(0.05)

    def connections(self) -> int:
        """Open libp2p connections (to distinct peers)."""
        return len(self.host.get_network().connections)

    def stray_peers(self) -> list[Any]:
        """Connected peers that have had no pubsub stream for a while (due another attempt).

        py-libp2p opens a pubsub stream to every peer that connects, retrying
        while the muxer is not ready, but gives up for good when the protocol
        negotiation times out (10 s; a busy process gets there): such a peer
        stays connected yet never hears or forwards the topic. A peer is due
        ``STRAY_AFTER`` seconds after it was first seen so (libp2p's own attempt
        is over by then), and again 2, 4, ... up to 60 seconds after each of our
        attempts that failed.
        """
        now = time.monotonic()
        registered = self.pubsub.peers
        stray = [p for p in self.host.get_network().connections if p not in registered]
        for p in [p for p in self._stray_since if p not in stray]:
            del self._stray_since[p]
        due = []
        for p in stray:
            since = self._stray_since.setdefault(p, now)
            tries = self.stray_retries.get(p.to_base58(), 0)
            wait = STRAY_AFTER if tries == 0 else min(2.0**tries, 60.0)
            if p not in self._retrying and now - since >= wait:
                due.append(p)
        return due

    async def register_peer(self, peer_id: Any) -> bool:
        """Open the pubsub stream to a connected peer (libp2p's ``ensure_peer_stream``)."""
        key = peer_id.to_base58()
        self.stray_retries[key] = self.stray_retries.get(key, 0) + 1
        self._retrying.add(peer_id)
        try:
            return bool(await self.pubsub.ensure_peer_stream(peer_id, timeout=30.0))
        except Exception:
            return False
        finally:
            self._retrying.discard(peer_id)
            self._stray_since.pop(peer_id, None)

    async def dial(self, addr: str) -> None:
        """Connect to a peer given as a multiaddr with ``/p2p/<id>``."""
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as err:
            raise PubsubError(f"bad bootstrap address {addr!r}: {err}") from err
        await self.host.connect(info)

    async def join(self, buffer: int = 1024) -> None:
        """Subscribe to the topic; ``buffer`` messages wait for the reader (more are lost)."""
        # py-libp2p sizes the subscription's channel from a module constant (32)
        old = pubsub_mod.SUBSCRIPTION_CHANNEL_SIZE
        pubsub_mod.SUBSCRIPTION_CHANNEL_SIZE = buffer
        try:
            self.sub = await self.pubsub.subscribe(self.topic)
        finally:
            pubsub_mod.SUBSCRIPTION_CHANNEL_SIZE = old

    async def publish(self, data: bytes) -> None:
        """Publish ``data`` on the topic."""
        await self.pubsub.publish(self.topic, data)

    async def receive(self) -> Any:
        """The next message of the topic (``.data``, ``.from_id``)."""
        return await self.sub.get()

    def receive_nowait(self) -> Any:
        """A waiting message; raises ``trio.WouldBlock`` when there is none."""
        return self.sub.receive_channel.receive_nowait()


def _parse_addrs(addrs: Sequence[str]) -> list[Any]:
    out = []
    for a in addrs:
        try:
            out.append(multiaddr.Multiaddr(a))
        except Exception as err:
            raise PubsubError(f"bad listen address {a!r}: {err}") from err
    return out


@asynccontextmanager
async def open_host(
    topic: str,
    listen_addrs: Sequence[str],
    *,
    router_rate_limit: float,
    gossipsub_heartbeat: float,
    muxer: str = "yamux",
    degree: tuple[int, int, int] = (6, 4, 12),
    peer_queue_size: int = 1024,
) -> AsyncIterator[Host]:
    """Start a host (Ed25519 identity; TCP and/or QUIC per the addresses) for ``topic``.

    ``muxer`` is the stream muxer proposed first on TCP connections (``"yamux"``
    or ``"mplex"``); the other one is offered too, so either kind of peer connects.
    ``degree`` is gossipsub's mesh degree: (D, D low, D high); ``peer_queue_size``
    the messages each peer's outbound queue holds.
    """
    if muxer not in MUXERS:
        raise PubsubError(f"unknown muxer {muxer!r} (one of {', '.join(MUXERS)})")
    maddrs = _parse_addrs(listen_addrs)
    quic = any("/quic" in a for a in listen_addrs)
    # py-libp2p's yamux credits the sender's window after every read of a stream
    # (one more frame each way per RPC); go-yamux credits it once half the window
    # is read. The variable is py-libp2p's own switch between the two; a value
    # the user set is kept.
    os.environ.setdefault(YAMUX_RELEASE_ON_READ, "0")
    host = new_host(
        key_pair=generate_new_ed25519_identity(),
        listen_addrs=maddrs,
        enable_quic=quic,
        muxer_preference=MUXERS[muxer],
        # the topology is the user's (bootstrap peers): no auto-dialing of
        # peers learnt from others (see the auto-connector below)
        connection_config=ConnectionConfig(
            min_connections=0, low_watermark=0, max_connections_per_peer=1
        ),
    )
    router = GossipSub(
        [PROTOCOL_ID],
        degree=degree[0],
        degree_low=degree[1],
        degree_high=degree[2],
        heartbeat_initial_delay=0.1,
        heartbeat_interval=gossipsub_heartbeat,
        max_messages_per_topic_per_second=router_rate_limit,
    )
    pubsub = _Pubsub(host, router)
    pubsub.peer_queue_size = peer_queue_size
    _install_record_cache(host)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(host.run(listen_addrs=maddrs))
        # py-libp2p's auto-connector aims at the middle of the watermarks (150
        # connections with a low watermark of 0) and dials every peer it has
        # heard of, every 30 s and after each disconnect: with ten hosts that is
        # a full mesh of Noise handshakes nobody asked for. It has no off switch
        # but stop(), which leaves its periodic task and the disconnect trigger idle.
        await host.get_network().auto_connector.stop()
        await stack.enter_async_context(background_trio_service(pubsub))
        await stack.enter_async_context(background_trio_service(router))
        with trio.fail_after(10):
            await pubsub.wait_until_ready()
        pid = host.get_id()
        try:
            yield Host(host, pubsub, router, topic, pid.to_base58(), pid.to_bytes())
        finally:
            # close the connections explicitly: cancelling the services leaves
            # their sockets to the garbage collector
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await host.get_network().close()
