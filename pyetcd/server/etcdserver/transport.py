"""The peer transport interface the Raft driver sends through.

A single-member cluster has no peers, so ``NullTransport`` drops everything; the TCP
transport between members implements the same two methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from pyetcd.logutil import Logger
from pyetcd.raft import Message, MessageType

__all__ = ["CommitNotices", "NullTransport", "PeerMetrics", "Transport", "TransportParams"]

#: How long a leader holds a commit-only append at most (see CommitNotices).
COMMIT_NOTICE_DELAY = 0.002
#: ...and only while the next append to that follower has been following the commit
#: notices this closely (a moving average): an isolated put's commit leaves at once.
COMMIT_NOTICE_CLOSE = 0.001


class RTTObserver(Protocol):
    def observe_rtt(self, peer_id: int, seconds: float) -> None: ...


class LabelledHistogram(Protocol):
    """A histogram with one label (a Prometheus ``Histogram`` with ``("To",)``)."""

    def labels(self, *values: str) -> _Observer: ...


class _Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class _Discard:
    def observe(self, amount: float) -> None:
        pass


class PeerMetrics:
    """What a peer transport counts, by peer ID: bytes of raft traffic sent to and
    received from each peer, messages that could not be sent to each (dropped: peer
    down, queue full) and connections from each that failed; how often each peer went
    from active to inactive (``disconnected``); snapshot transfers to and from each
    (successes, failures, in flight); and each peer's round-trip times, the snapshot
    transfers' durations and the received database's fsync and save times
    (``etcd_network_*``, ``etcd_snap_db_*``). Counts are plain integers, bumped on the
    loop; a peer appears in a count once it happened to it, as etcd's label vectors
    show a peer once used."""

    def __init__(
        self,
        rtt: LabelledHistogram | None = None,
        *,
        snapshot_send: LabelledHistogram | None = None,
        snapshot_receive: LabelledHistogram | None = None,
        snap_db_fsync: _Observer | None = None,
        snap_db_save: _Observer | None = None,
    ) -> None:
        self.sent_bytes: dict[int, int] = {}
        self.received_bytes: dict[int, int] = {}
        self.sent_failures: dict[int, int] = {}
        self.received_failures: dict[int, int] = {}
        self.disconnected: dict[int, int] = {}
        self.snapshots_sent: dict[int, int] = {}
        self.snapshot_send_failures: dict[int, int] = {}
        self.snapshot_sends_inflight: dict[int, int] = {}
        self.snapshots_received: dict[int, int] = {}
        self.snapshot_receive_failures: dict[int, int] = {}
        self.snapshot_receives_inflight: dict[int, int] = {}
        self.snap_db_fsync: _Observer = snap_db_fsync or _Discard()
        self.snap_db_save: _Observer = snap_db_save or _Discard()
        self._rtt = rtt
        self._rtt_by_peer: dict[int, _Observer] = {}
        self._snapshot_send = snapshot_send
        self._snapshot_receive = snapshot_receive

    def observe_rtt(self, peer_id: int, seconds: float) -> None:
        if self._rtt is None:
            return
        child = self._rtt_by_peer.get(peer_id)
        if child is None:
            child = self._rtt_by_peer[peer_id] = self._rtt.labels(f"{peer_id:x}")
        child.observe(seconds)

    def peer_disconnected(self, peer_id: int) -> None:
        """``peer_id`` went from active to inactive."""
        _bump(self.disconnected, peer_id)

    def receive_failed(self, peer_id: int) -> None:
        """A connection from ``peer_id`` broke the protocol or failed mid-message."""
        _bump(self.received_failures, peer_id)

    def snapshot_send_started(self, peer_id: int) -> None:
        inflight = self.snapshot_sends_inflight
        inflight[peer_id] = inflight.get(peer_id, 0) + 1

    def snapshot_send_ended(self, peer_id: int, ok: bool, seconds: float) -> None:
        """A snapshot send to ``peer_id`` ended (etcd times only the successful ones,
        and counts a failed one as a send failure too)."""
        self.snapshot_sends_inflight[peer_id] -= 1
        if ok:
            _bump(self.snapshots_sent, peer_id)
            if self._snapshot_send is not None:
                self._snapshot_send.labels(f"{peer_id:x}").observe(seconds)
        else:
            _bump(self.snapshot_send_failures, peer_id)
            _bump(self.sent_failures, peer_id)

    def snapshot_receive_started(self, peer_id: int) -> None:
        inflight = self.snapshot_receives_inflight
        inflight[peer_id] = inflight.get(peer_id, 0) + 1

    def snapshot_receive_ended(self, peer_id: int, ok: bool, seconds: float) -> None:
        """A snapshot from ``peer_id`` was saved and stepped, or failed."""
        self.snapshot_receives_inflight[peer_id] -= 1
        if ok:
            _bump(self.snapshots_received, peer_id)
            if self._snapshot_receive is not None:
                self._snapshot_receive.labels(f"{peer_id:x}").observe(seconds)
        else:
            _bump(self.snapshot_receive_failures, peer_id)


def _bump(counts: dict[int, int], peer_id: int) -> None:
    counts[peer_id] = counts.get(peer_id, 0) + 1


class Transport(Protocol):
    async def start(self) -> None: ...

    def add_peer(self, peer_id: int, urls: Sequence[str]) -> None: ...

    def remove_peer(self, peer_id: int) -> None: ...

    def update_peer(self, peer_id: int, urls: Sequence[str]) -> None: ...

    def has_peer(self, peer_id: int) -> bool: ...

    def peer_active(self, peer_id: int) -> bool: ...

    def active_since(self, peer_id: int) -> float | None:
        """Since when (``time.monotonic()``) ``peer_id`` has been connected without a
        break; None while it is not (etcd's Transporter.ActiveSince)."""
        ...

    def send(self, msgs: Sequence[Message]) -> None:
        """Queue ``msgs`` for their peers; never blocks. Undeliverable messages are
        reported to the Raft driver as unreachable."""
        ...

    async def close(self) -> None: ...


class NullTransport:
    """Drops every message: the transport of a single-member cluster."""

    async def start(self) -> None:
        pass

    def add_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        pass

    def remove_peer(self, peer_id: int) -> None:
        pass

    def update_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        pass

    def has_peer(self, peer_id: int) -> bool:
        return False

    def peer_active(self, peer_id: int) -> bool:
        return False

    def active_since(self, peer_id: int) -> float | None:
        return None

    def send(self, msgs: Sequence[Message]) -> None:
        pass

    async def close(self) -> None:
        pass


class _Sender(Protocol):
    def send(self, msgs: Sequence[Message]) -> None: ...


_APP = MessageType.APP


class CommitNotices:
    """Sends the driver's messages through ``transport``, holding a leader's empty
    appends (the commit-only MsgApp the core sends each follower when the commit index
    moves) for up to ``delay`` seconds.

    The next append to that follower carries a commit index at least as high, so a
    held notice is dropped when one is sent (raft's paper: the commit index travels
    on future AppendEntries and heartbeats). One client's sequential puts to three
    members then exchange four peer messages per put instead of eight: a follower
    learns put N's commit with put N+1's entry and handles both in one turn, writes
    one WAL record and one answer, and the leader writes and reads half as often.
    Any other message to the follower (a heartbeat, MsgTimeoutNow) takes the held
    notice along, first; with nothing following, it goes out when ``delay`` ends.
    A notice is held only while the appends to that follower have been following its
    notices within ``close`` (a moving average), so an isolated put's commit leaves at
    once and its followers show it as soon as etcd's do; only the last put of a
    stream can reach them up to ``delay`` later. Only
    liveness information is delayed: the commit index a follower learns is advisory
    (it never commits beyond what it holds), and what commits, and when a put is
    answered, does not change.
    """

    def __init__(
        self,
        transport: _Sender,
        delay: float = COMMIT_NOTICE_DELAY,
        close: float = COMMIT_NOTICE_CLOSE,
    ) -> None:
        self._transport = transport
        self._delay = delay
        self._close = close
        #: follower id -> when its newest commit notice was built (loop time)
        self._noticed_at: dict[int, float] = {}
        #: follower id -> moving average of the time from a notice to the next append
        self._gap: dict[int, float] = {}
        #: follower id -> the newest empty append to it not sent yet
        self._held: dict[int, Message] = {}
        #: when the oldest held notice was held (loop time)
        self._held_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def held(self) -> int:
        """How many notices are held (one per follower at most)."""
        return len(self._held)

    def send(self, msgs: Sequence[Message]) -> None:
        """Send ``msgs``, holding their empty appends and dropping or taking along the
        notices already held for the same followers."""
        held = self._held
        out: list[Message] = []
        now = 0.0
        for m in msgs:
            if m.type == _APP:
                now = now or asyncio.get_running_loop().time()
                if not m.entries:
                    self._noticed_at[m.to] = now
                    if self._gap.get(m.to, self._close) >= self._close:
                        out.append(m)  # appends do not follow closely: tell it now
                        continue
                    if not held:
                        self._held_at = now
                    held[m.to] = m  # a newer notice replaces an older one
                    continue
                noticed = self._noticed_at.pop(m.to, None)
                if noticed is not None:
                    gap = self._gap.get(m.to)
                    sample = now - noticed
                    self._gap[m.to] = sample if gap is None else 0.75 * gap + 0.25 * sample
                if held:
                    held.pop(m.to, None)
            elif held and m.to in held:
                out.append(held.pop(m.to))  # the notice first, as it was sent first
            out.append(m)
        if out:
            self._transport.send(out)
        if held and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(self._held_at + self._delay, self._expire)

    def flush(self) -> None:
        """Send every held notice now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held:
            msgs = list(self._held.values())
            self._held.clear()
            self._transport.send(msgs)

    def _expire(self) -> None:
        self._timer = None
        if not self._held:
            return
        due = self._held_at + self._delay
        loop = asyncio.get_running_loop()
        if loop.time() < due:
            # the notices that were due went with appends; these were held since
            self._timer = loop.call_at(due, self._expire)
            return
        self.flush()


class PeerHTTPHandler(Protocol):
    async def serve_peer_http(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One plain HTTP request on the peer port (``first``: its first 4 bytes)."""


class SnapshotHooks(Protocol):
    def open_snapshot_db(self, msg: Message) -> AsyncIterator[bytes]:
        """The backend to stream to a follower with ``msg`` (a MsgSnap)."""
        ...

    def on_snapshot_received(self, msg: Message, path: str | None) -> None:
        """A MsgSnap's backend is durable at ``path``."""


class RaftReceiver(Protocol):
    def step(self, m: Message) -> None: ...

    def report_unreachable(self, node: int) -> None: ...

    def report_snapshot(self, node: int, ok: bool) -> None: ...


class Removals(Protocol):
    def removed_by_peer(self, peer: int) -> None:
        """A peer says this member was removed from the cluster."""

    def is_removed(self, peer: int) -> bool:
        """Whether ``peer`` was removed from the cluster (its streams are refused)."""
        ...


class FatalSink(Protocol):
    def fail(self, msg: str, err: BaseException) -> None:
        """The transport cannot go on (a task of its life died): end the member."""


@dataclass(frozen=True, slots=True)
class TransportParams:
    """Everything a peer transport is built from, all built before it (see inbox.py)."""

    member_id: int
    cluster_id: int
    #: the peer URLs to listen on
    listen_urls: tuple[str, ...]
    #: member id -> peer URLs of every other member known at start
    peers: dict[int, tuple[str, ...]]
    #: where received raft messages and delivery reports go (the driver's inbox)
    receiver: RaftReceiver
    snapshots: SnapshotHooks
    #: where received backends are saved
    snapshot_dir: str
    removed: Removals
    http: PeerHTTPHandler
    logger: Logger
    fatal: FatalSink
    #: what the transport counts (bytes, failures, round trips per peer)
    metrics: PeerMetrics
