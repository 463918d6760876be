"""The watchable store: fan-out of the KV store's changes to watchers.

Rules this module keeps (etcd's watchableStore, without goroutines):

1. A watcher is in exactly one place: ``synced`` (it has seen every revision
   up to the current one and gets new events as they are written),
   ``unsynced`` (it must catch up from the backend), or ``victims`` (its
   stream's buffer was full; one undelivered batch waits with it).
2. Writers never block: :meth:`WatchableStore.notify` only appends to
   bounded per-stream buffers; a full buffer turns the watcher into a victim.
3. The server drives catch-up by calling :meth:`WatchableStore.sync`
   periodically (etcd: every 100 ms) and whenever a consumer drained its
   stream; it moves victims on and catches unsynced watchers up in batches.
4. Each watcher sees each event once, in revision order, and all events of
   one revision in one response (except when a response is fragmented).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum

from pyetcd.mvcc.errors import MvccError
from pyetcd.mvcc.key_index import index_end
from pyetcd.mvcc.kvstore import KVStore
from pyetcd.mvcc.revision import bytes_to_rev, decode_kv, is_tombstone, rev_to_bytes
from pyetcd.mvcc.types import Event, EventType, KeyValue

__all__ = [
    "CHAN_BUF_LEN",
    "WatchFilter",
    "WatchResponse",
    "WatchStream",
    "WatchableStore",
    "Watcher",
    "fragment",
]

# responses a stream buffers before its watchers become victims (etcd's chanBufLen)
CHAN_BUF_LEN = 128
MAX_WATCHERS_PER_SYNC = 512
# a catch-up response carries at most this many revisions (etcd's watchBatchMaxRevs)
WATCH_BATCH_MAX_REVS = 1000


class WatchFilter(IntEnum):
    """etcdserverpb.WatchCreateRequest.FilterType."""

    NOPUT = 0
    NODELETE = 1


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """What a watcher receives; no events and no cancel = a progress notification."""

    watch_id: int
    events: tuple[Event, ...] = ()
    revision: int = 0
    compact_revision: int = 0
    canceled: bool = False
    fragment: bool = False


#: the filters of a watcher that has none (most): one shared set, not one per watcher
_NO_FILTERS: frozenset[WatchFilter] = frozenset()


class Watcher:
    """One watch: a key or range and the next revision it needs (``min_rev``).

    Slotted and small (about 100 bytes): a member may hold tens of thousands."""

    __slots__ = ("end", "filters", "id", "key", "min_rev", "prev_kv", "stream", "synced")

    def __init__(
        self,
        stream: WatchStream,
        watch_id: int,
        key: bytes,
        end: bytes | None,
        min_rev: int,
        filters: frozenset[WatchFilter],
        prev_kv: bool,
    ) -> None:
        self.stream = stream
        self.id = watch_id
        self.key = key
        self.end = end  # index convention: None = one key, b"" = no upper bound
        self.min_rev = min_rev
        self.filters = filters or _NO_FILTERS
        self.prev_kv = prev_kv
        self.synced = False  # rule 1: in the store's synced index (see WatchableStore)

    def matches(self, key: bytes) -> bool:
        """Whether ``key`` is in this watcher's key or range."""
        if self.end is None:
            return key == self.key
        return self.key <= key and (self.end == b"" or key < self.end)


class WatchStream:
    """One client's watch stream: its watchers and a bounded response buffer.

    The consumer (the gRPC layer) takes responses with :meth:`pop_all`; the
    optional ``notify`` callback is called whenever the buffer gains a
    response (e.g. to wake an asyncio task with ``call_soon_threadsafe``).
    """

    def __init__(
        self,
        store: WatchableStore,
        capacity: int = CHAN_BUF_LEN,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self.capacity = capacity
        self._notify = notify
        self._buf: deque[WatchResponse] = deque()
        self.watchers: dict[int, Watcher] = {}
        self._next_id = 0
        self._closed = False

    @property
    def store(self) -> WatchableStore:
        """The store this stream's watchers live in: the one it was made on, or the
        store that adopted that one's watchers after a backend restore."""
        store = self._store
        while store.successor is not None:
            store = self._store = store.successor
        return store

    def watch(
        self,
        key: bytes,
        range_end: bytes = b"",
        start_revision: int = 0,
        filters: Iterable[WatchFilter] = (),
        prev_kv: bool = False,
        watch_id: int = -1,
    ) -> int:
        """Create a watcher (wire range_end convention); returns its ID.

        ``start_revision`` 0 means "from the next write". A start revision
        already compacted is answered, on the next :meth:`WatchableStore.sync`,
        with a canceled response carrying the compact revision.
        ``watch_id`` -1 lets the stream choose (IDs count up from 0).

        Raises:
            ValueError: with etcd's text: the range is empty (``key >= range_end``)
                or the client-chosen ID is in use.
        """
        if range_end not in (b"", b"\x00") and key >= range_end:
            raise ValueError("mvcc: watcher range is empty")
        if watch_id == -1:
            while self._next_id in self.watchers:
                self._next_id += 1
            watch_id = self._next_id
            self._next_id += 1
        elif watch_id in self.watchers:
            raise ValueError("mvcc: duplicate watch ID provided on the WatchStream")
        w = Watcher(
            self, watch_id, key, index_end(range_end), start_revision, frozenset(filters), prev_kv
        )
        self.watchers[watch_id] = w
        self.store.add_watcher(w)
        return watch_id

    def cancel(self, watch_id: int) -> bool:
        """Remove a watcher; returns whether it existed."""
        w = self.watchers.pop(watch_id, None)
        if w is None:
            return False
        self.store.remove_watcher(w)
        return True

    def request_progress(self, watch_id: int) -> None:
        """Send a progress notification for a synced watcher (nothing otherwise)."""
        w = self.watchers.get(watch_id)
        if w is not None:
            self.store.progress(w)

    def close(self) -> None:
        """Cancel every watcher of the stream."""
        for watch_id in list(self.watchers):
            self.cancel(watch_id)
        if not self._closed:
            self._closed = True
            self.store.kv.metrics.watch_streams -= 1

    def pop_all(self) -> list[WatchResponse]:
        """Take every buffered response, oldest first."""
        out = list(self._buf)
        self._buf.clear()
        return out

    def __len__(self) -> int:
        return len(self._buf)

    def send(self, w: Watcher, resp: WatchResponse) -> bool:
        """Filter and buffer ``resp``; False if the buffer is full (nothing buffered)."""
        events = resp.events
        if w.filters and events:
            events = tuple(e for e in events if not _filtered(w.filters, e))
            if not events:
                return True  # everything filtered: nothing to send, nothing lost
            resp = WatchResponse(resp.watch_id, events, resp.revision)
        if len(self._buf) >= self.capacity:
            return False
        self._buf.append(resp)
        self._store.kv.metrics.events += len(events)
        if self._notify is not None:
            self._notify()
        return True


def _filtered(filters: frozenset[WatchFilter], e: Event) -> bool:
    if e.type == EventType.PUT:
        return WatchFilter.NOPUT in filters
    return WatchFilter.NODELETE in filters


class WatchableStore:
    """Watch support on top of a :class:`KVStore` (installs its change hook)."""

    def __init__(self, kv: KVStore) -> None:
        """Attach to ``kv``: every later write transaction is fanned out to watchers
        (the store's change hook is set while a synced watcher exists: with none, a
        write builds no events at all)."""
        self.kv = kv
        kv.on_changes = None
        # The store that adopted this one's watchers (a restored backend): every stream
        # made on this store follows it from then on (see WatchStream.store).
        self.successor: WatchableStore | None = None
        # The synced watchers, indexed for notify (etcd's watcherGroup: a map of key ->
        # watchers plus its interval tree of ranges). A key watched by one watcher, the
        # common case, maps to that watcher itself, not to a set of one (216 bytes).
        self._synced_keys: dict[bytes, Watcher | set[Watcher]] = {}
        self._synced_ranges: set[Watcher] = set()
        self.synced_count = 0
        self.unsynced: set[Watcher] = set()
        self.victims: dict[Watcher, WatchResponse] = {}

    @property
    def synced(self) -> list[Watcher]:
        """Every synced watcher (built on each call: for metrics and rebuilds)."""
        out = list(self._synced_ranges)
        for group in self._synced_keys.values():
            if isinstance(group, Watcher):
                out.append(group)
            else:
                out.extend(group)
        return out

    def new_stream(
        self, capacity: int = CHAN_BUF_LEN, notify: Callable[[], None] | None = None
    ) -> WatchStream:
        """A new watch stream on this store (call its ``close`` when done)."""
        self.kv.metrics.watch_streams += 1
        return WatchStream(self, capacity, notify)

    # -- membership ------------------------------------------------------------

    def adopt(self, old: WatchableStore) -> None:
        """Take every watcher of ``old`` (a store replaced by a restored backend) as
        unsynced: each catches up from its next revision."""
        for w in [*old.synced, *old.unsynced, *old.victims]:
            w.synced = False
            self.unsynced.add(w)
        old.successor = self

    def add_watcher(self, w: Watcher) -> None:
        """Place a new watcher: synced if it starts after the current revision."""
        cur = self.kv.current_revision
        if w.min_rev == 0 or w.min_rev > cur:
            if w.min_rev == 0:
                w.min_rev = cur + 1
            self._add_synced(w)
        else:
            self.unsynced.add(w)

    def remove_watcher(self, w: Watcher) -> None:
        """Forget a watcher wherever it is."""
        if w.synced:
            self._remove_synced(w)
        self.unsynced.discard(w)
        self.victims.pop(w, None)

    def _add_synced(self, w: Watcher) -> None:
        w.synced = True
        self.synced_count += 1
        if self.synced_count == 1:
            self.kv.on_changes = self.notify
        if w.end is not None:
            self._synced_ranges.add(w)
            return
        group = self._synced_keys.get(w.key)
        if group is None:
            self._synced_keys[w.key] = w
        elif isinstance(group, Watcher):
            self._synced_keys[w.key] = {group, w}
        else:
            group.add(w)

    def _remove_synced(self, w: Watcher) -> None:
        if not w.synced:
            return
        w.synced = False
        self.synced_count -= 1
        if not self.synced_count:
            self.kv.on_changes = None
        if w.end is not None:
            self._synced_ranges.discard(w)
            return
        group = self._synced_keys.get(w.key)
        if group is w:
            del self._synced_keys[w.key]
        elif isinstance(group, set):
            group.discard(w)
            if len(group) == 1:
                self._synced_keys[w.key] = next(iter(group))

    # -- fan-out of new writes -------------------------------------------------

    def notify(self, rev: int, changes: list[KeyValue]) -> None:
        """The KV store's change hook: deliver revision ``rev`` to synced watchers."""
        if not self.synced_count:
            return
        batches: dict[Watcher, list[Event]] = {}
        keys = self._synced_keys
        for kv in changes:
            ev = _to_event(kv, rev)
            # a watcher created with a future start revision is synced but
            # must see nothing before that revision
            group = keys.get(kv.key)
            if group is None:
                pass
            elif isinstance(group, Watcher):
                if group.min_rev <= rev:
                    batches.setdefault(group, []).append(ev)
            else:
                for w in group:
                    if w.min_rev <= rev:
                        batches.setdefault(w, []).append(ev)
            for w in self._synced_ranges:
                if w.min_rev <= rev and w.matches(kv.key):
                    batches.setdefault(w, []).append(ev)
        for w, events in batches.items():
            w.min_rev = rev + 1
            resp = WatchResponse(w.id, self._with_prev(w, events), rev)
            if not w.stream.send(w, resp):
                self._remove_synced(w)
                self.victims[w] = resp

    def _with_prev(self, w: Watcher, events: list[Event]) -> tuple[Event, ...]:
        if not w.prev_kv:
            return tuple(events)
        out = []
        for e in events:
            prev = self._prev_kv(e.kv.key, e.kv.mod_revision - 1)
            out.append(Event(e.type, e.kv, prev) if prev is not None else e)
        return tuple(out)

    def _prev_kv(self, key: bytes, rev: int) -> KeyValue | None:
        try:
            kvs, _ = self.kv.range_keys(key, None, rev, self.kv.current_revision, 0, False)
        except MvccError:
            return None  # compacted away: etcd omits prev_kv then
        return kvs[0] if kvs else None

    # -- progress ------------------------------------------------------------

    def progress(self, w: Watcher) -> None:
        """A progress notification at the current revision, only if ``w`` is synced."""
        if w.synced:
            w.stream.send(w, WatchResponse(w.id, (), self.kv.current_revision))

    def progress_all(self, watchers: Iterable[Watcher]) -> bool:
        """One stream-wide progress notification (watch ID -1) at the current revision
        if every one of ``watchers`` (one stream's) is synced; False, and nothing sent,
        if one is not. etcd 3.5.13's progressAll: no watcher, no notification."""
        group = list(watchers)
        if not all(w.synced for w in group):
            return False
        if group:
            w = group[0]
            w.stream.send(w, WatchResponse(-1, (), self.kv.current_revision))
        return True

    # -- catch-up ------------------------------------------------------------

    def sync(self) -> bool:
        """Move victims on and catch unsynced watchers up; True if work remains."""
        self.sync_victims()
        self.sync_watchers()
        return bool(self.unsynced or self.victims)

    def sync_victims(self) -> None:
        """Retry delivering each victim's pending batch."""
        cur = self.kv.current_revision
        for w, resp in list(self.victims.items()):
            if not w.stream.send(w, resp):
                continue
            del self.victims[w]
            if w.min_rev <= cur:
                self.unsynced.add(w)
            else:
                self._add_synced(w)

    def sync_watchers(self) -> None:
        """Catch up to :data:`MAX_WATCHERS_PER_SYNC` unsynced watchers from the backend."""
        if not self.unsynced:
            return
        cur = self.kv.current_revision
        compact = self.kv.compact_revision
        chosen: list[Watcher] = []
        for w in sorted(self.unsynced, key=lambda item: (item.min_rev, id(item))):
            if len(chosen) >= MAX_WATCHERS_PER_SYNC:
                break
            if w.min_rev < compact:
                # etcd's compaction cancel carries no revision (its header shows 0)
                resp = WatchResponse(w.id, (), 0, compact_revision=compact, canceled=True)
                if w.stream.send(w, resp):
                    self.unsynced.discard(w)
                    w.stream.watchers.pop(w.id, None)
                continue
            chosen.append(w)
        if not chosen:
            return
        min_rev = min(w.min_rev for w in chosen)
        events = self._events_between(min_rev, cur, chosen)
        for w in chosen:
            self._deliver_catch_up(w, events, cur)

    def _events_between(self, lo: int, cur: int, group: list[Watcher]) -> list[Event]:
        rows = self.kv.backend.key_range(rev_to_bytes((lo, 0)), rev_to_bytes((cur + 1, 0)))
        out = []
        for rb, raw in rows:
            kv = decode_kv(raw)
            if not any(w.matches(kv.key) for w in group):
                continue
            if is_tombstone(rb):
                tomb = KeyValue(kv.key, mod_revision=bytes_to_rev(rb)[0])
                out.append(Event(EventType.DELETE, tomb))
            else:
                out.append(Event(EventType.PUT, kv))
        return out

    def _deliver_catch_up(self, w: Watcher, events: list[Event], cur: int) -> None:
        mine: list[Event] = []
        revs = 0
        last = 0
        more_rev = 0
        for e in events:
            r = e.kv.mod_revision
            if r < w.min_rev or not w.matches(e.kv.key):
                continue
            if r != last:
                revs += 1
                last = r
                if revs > WATCH_BATCH_MAX_REVS:
                    more_rev = r
                    break
            mine.append(e)
        w.min_rev = more_rev or cur + 1
        if not mine:
            self.unsynced.discard(w)
            self._add_synced(w)
            return
        resp = WatchResponse(w.id, self._with_prev(w, mine), cur)
        self.unsynced.discard(w)
        if not w.stream.send(w, resp):
            self.victims[w] = resp
        elif not more_rev:
            self._add_synced(w)
        else:
            self.unsynced.add(w)


def _to_event(kv: KeyValue, rev: int) -> Event:
    if kv.create_revision == 0:
        return Event(EventType.DELETE, KeyValue(kv.key, mod_revision=rev))
    return Event(EventType.PUT, kv)


def fragment(resp: WatchResponse, max_bytes: int) -> list[WatchResponse]:
    """Split a response whose events exceed ``max_bytes`` (keys + values) into
    fragments; every fragment but the last has ``fragment=True``."""
    out: list[WatchResponse] = []
    chunk: list[Event] = []
    size = 0
    for e in resp.events:
        n = len(e.kv.key) + len(e.kv.value) + (len(e.prev_kv.value) if e.prev_kv else 0)
        if chunk and size + n > max_bytes:
            out.append(WatchResponse(resp.watch_id, tuple(chunk), resp.revision, fragment=True))
            chunk, size = [], 0
        chunk.append(e)
        size += n
    out.append(WatchResponse(resp.watch_id, tuple(chunk), resp.revision))
    return out
