"""The libp2p side of a topic: host, gossipsub router, subscription (imports libp2p)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import trio

from .errors import PubsubError

try:
    import multiaddr
    from libp2p import generate_new_ed25519_identity, new_host
    from libp2p.network.config import ConnectionConfig
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.pubsub import pubsub as pubsub_mod
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


def peer_id_str(raw: bytes) -> str:
    """A peer id (bytes on the wire) as its base58 string."""
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

    async def wait_mesh(self) -> None:
        """Wait until someone is in our mesh (what is published before is lost)."""
        while self.mesh_size() == 0:  # noqa: ASYNC110 (libp2p has no event for it)
            await trio.sleep(0.05)

    def connections(self) -> int:
        """Open libp2p connections (to distinct peers)."""
        return len(self.host.get_network().connections)

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
) -> AsyncIterator[Host]:
    """Start a host (Ed25519 identity; TCP and/or QUIC per the addresses) for ``topic``.

    ``muxer`` is the stream muxer proposed first on TCP connections (``"yamux"``
    or ``"mplex"``); the other one is offered too, so either kind of peer connects.
    """
    if muxer not in MUXERS:
        raise PubsubError(f"unknown muxer {muxer!r} (one of {', '.join(MUXERS)})")
    maddrs = _parse_addrs(listen_addrs)
    quic = any("/quic" in a for a in listen_addrs)
    host = new_host(
        key_pair=generate_new_ed25519_identity(),
        listen_addrs=maddrs,
        enable_quic=quic,
        muxer_preference=MUXERS[muxer],
        # the topology is the user's (bootstrap peers): no auto-dialing of
        # peers learnt from others (see the auto-connector below)
        connection_config=ConnectionConfig(min_connections=0, low_watermark=0),
    )
    router = GossipSub(
        [PROTOCOL_ID],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=gossipsub_heartbeat,
        max_messages_per_topic_per_second=router_rate_limit,
    )
    pubsub = Pubsub(host, router)
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
