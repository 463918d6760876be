"""The state the dashboard pushes: one member's own view, and the cluster view built
from every member's.

:func:`member_view` reads this member (its Raft status, store, alarms, leases,
watchers and recent timeline) into a JSON-ready dict; peers serve it at
``/dashboard/api/member``. :func:`cluster_view` merges this member's view with the
views fetched from its peers (or why a peer could not be asked) into what the page
shows. :class:`MetricsSampler` keeps the last minutes of the numbers ``/metrics``
exposes, one sample a second, for the charts; a sample reads those few numbers from the
objects that hold them (``ServerMetrics.chart_values``), not a scrape of every family.

``cluster_view`` and the sampler's arithmetic are pure: the unit tests feed them dicts.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pyetcd.pb import rpc_pb2
from pyetcd.server.etcdserver.membership import Member
from pyetcd.server.etcdserver.server import EtcdServer
from pyetcd.version import SERVER_VERSION

from .timeline import MemberSnapshot, Timeline

__all__ = [
    "HISTORY_SECONDS",
    "MemberRef",
    "MetricsSampler",
    "cluster_view",
    "member_snapshot",
    "member_view",
]

#: How far back the charts reach, in one-second samples.
HISTORY_SECONDS = 300
#: Events of each member carried in its view (the page merges them by time).
EVENTS_PER_MEMBER = 100


def _enum_name(value: object) -> str:
    """A Raft enum's name as the page shows it (``PRE_CANDIDATE`` -> ``pre-candidate``)."""
    name = getattr(value, "name", str(value))
    return str(name).lower().replace("_", "-")


def _hex(member_id: int) -> str:
    return f"{member_id:x}"


def member_view(server: EtcdServer, timeline: Timeline, now: float | None = None) -> dict[str, Any]:
    """This member as it sees itself: role, term, indexes, store, alarms, recent events.

    On the leader, ``progress`` holds each member's match and next index (the leader's
    own match is its last log index).
    """
    st = server.rawnode.status()
    kv = server.stores.kv
    me = server.membership.members.get(server.member_id)
    view: dict[str, Any] = {
        "id": _hex(server.member_id),
        "name": me.name if me is not None else server.cfg.name,
        "time": time.time() if now is None else now,
        "version": SERVER_VERSION,
        "role": _enum_name(st.raft_state),
        "term": st.term,
        "vote": _hex(st.vote),
        "leader": _hex(st.lead) if st.lead else "",
        "commit": st.commit,
        "applied": server.applied.applied,
        "snapshot_index": server.raft.snapshot_index,
        "is_learner": me.is_learner if me is not None else False,
        "db_size": kv.db_size,
        "db_size_in_use": kv.db_size_in_use,
        "revision": kv.current_revision,
        "compact_revision": max(0, kv.compact_revision),
        "alarms": [
            {"member": _hex(m), "alarm": rpc_pb2.AlarmType.Name(a)}
            for m, a in sorted(server.stores.alarms)
        ],
        "leases": len(server.lessor.leases()),
        "watchers": server.watchable.synced_count + len(server.watchable.unsynced),
        "progress": {
            _hex(pid): {
                "match": pr.match,
                "next": pr.next,
                "state": _enum_name(pr.state),
                "active": pr.recent_active,
            }
            for pid, pr in sorted(st.progress.items())
        },
        "events": [e.to_json() for e in timeline.recent(EVENTS_PER_MEMBER)],
    }
    return view


def member_snapshot(server: EtcdServer) -> MemberSnapshot:
    """What the timeline's differ compares: members, compaction, alarms."""
    return MemberSnapshot(
        members={m.id: (m.name, m.is_learner) for m in server.membership.members.values()},
        compact_revision=max(0, server.stores.kv.compact_revision),
        alarms=frozenset((m, rpc_pb2.AlarmType.Name(a)) for m, a in server.stores.alarms),
    )


class MemberRef(Protocol):
    """A member of the cluster as the membership knows it."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def peer_urls(self) -> tuple[str, ...]: ...
    @property
    def client_urls(self) -> tuple[str, ...]: ...
    @property
    def is_learner(self) -> bool: ...


def cluster_view(
    self_id: int,
    members: Sequence[MemberRef | Member],
    views: Mapping[int, dict[str, Any] | str],
) -> dict[str, Any]:
    """The cluster as the page shows it.

    Args:
        self_id: the member serving the page.
        members: the membership, as this member applied it.
        views: each reachable member's :func:`member_view`, or for an unreachable one
            the reason (text); a member missing here was not asked.

    Returns:
        ``members`` (sorted by name, then ID), each with its view as ``status`` and
        ``reachable``, plus ``lag`` (entries its match index trails the leader's log,
        from the leader's progress, when the leader was reachable); ``leader`` and
        ``term`` as the reachable member at the highest term says; ``timeline``: every
        reachable member's events, oldest first; a change of the applied state that
        every member records (:data:`CLUSTER_WIDE`) appears once, as first recorded.
    """
    reachable = {mid: v for mid, v in views.items() if isinstance(v, dict)}
    leader = ""
    term = 0
    for v in reachable.values():
        if v["term"] > term or (v["term"] == term and v["leader"] and not leader):
            term = v["term"]
            leader = v["leader"]
    leader_view = next((v for v in reachable.values() if v["id"] == leader), None)
    progress: dict[str, Any] = leader_view["progress"] if leader_view is not None else {}
    leader_last = progress.get(leader, {}).get("match")
    out_members = []
    for m in sorted(members, key=lambda m: (m.name, m.id)):
        hex_id = _hex(m.id)
        got = views.get(m.id)
        status = {k: x for k, x in got.items() if k != "events"} if isinstance(got, dict) else None
        pr = progress.get(hex_id)
        lag = None
        if leader_last is not None and pr is not None:
            lag = max(0, leader_last - pr["match"])
        out_members.append(
            {
                "id": hex_id,
                "name": m.name,
                "peer_urls": list(m.peer_urls),
                "client_urls": list(m.client_urls),
                "is_learner": m.is_learner,
                "is_leader": hex_id == leader,
                "is_self": m.id == self_id,
                "reachable": isinstance(got, dict),
                "error": got if isinstance(got, str) else "",
                "status": status,
                "lag": lag,
            }
        )
    names = {_hex(m.id): m.name for m in members}
    events = []
    for v in reachable.values():
        for e in v.get("events", ()):
            events.append({**e, "member": v["id"], "member_name": names.get(v["id"], "")})
    events.sort(key=lambda e: (e["time"], e["member"], e["seq"]))
    events = _once(events)
    return {
        "self": _hex(self_id),
        "leader": leader,
        "term": term,
        "members": out_members,
        "timeline": events,
    }


#: Event kinds every member records alike (they come from the applied state).
CLUSTER_WIDE = frozenset({"member", "compaction", "alarm"})


def _once(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for e in events:
        if e["kind"] in CLUSTER_WIDE:
            if (e["kind"], e["text"]) in seen:
                continue
            seen.add((e["kind"], e["text"]))
        out.append(e)
    return out


@dataclass(frozen=True, slots=True)
class Sample:
    time: float
    values: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"t": self.time, **self.values}


class MetricsSampler:
    """The last :data:`HISTORY_SECONDS` samples of the numbers the charts plot."""

    def __init__(
        self,
        read: Callable[[], Mapping[str, float]],
        capacity: int = HISTORY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``read``: the charted numbers now, by series name (``ServerMetrics.chart_values``
        and the live lease count); it runs once a second, so it must stay cheap."""
        self.read = read
        self.samples: deque[Sample] = deque(maxlen=capacity)
        self._clock = clock

    def sample(self) -> Sample:
        """Read the numbers once and keep the sample."""
        out = Sample(self._clock(), dict(self.read()))
        self.samples.append(out)
        return out

    def history(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.samples]


#: Mean latencies between two samples: result name -> the histogram's series prefix.
_MEANS = {"fsync_ms": "fsync", "commit_ms": "commit", "latency_ms": "latency"}


def rates(older: Mapping[str, float], newer: Mapping[str, float]) -> dict[str, float]:
    """Per-second rates and mean latencies between two samples (the page's arithmetic,
    kept here too so the unit tests pin it).

    A mean latency is the histogram's sum grown over its count grown (seconds, shown in
    ms); it is absent when nothing was observed in between (or, for ``latency_ms``,
    when the member keeps no handling times: start it with ``--metrics=extensive``).
    """
    dt = newer["t"] - older["t"]
    if dt <= 0:
        return {}
    out = {
        name: (newer[name] - older[name]) / dt
        for name in ("committed", "applied", "revision", "requests", "requests_failed")
        if name in newer and name in older
    }
    for result, prefix in _MEANS.items():
        count, total = prefix + "_count", prefix + "_sum"
        n = newer.get(count, 0) - older.get(count, 0)
        if n > 0 and total in newer and total in older:
            out[result] = 1000 * (newer[total] - older[total]) / n
    return out
