"""pyetcd/api/dashboard/state.py: the cluster view the page is pushed, and the chart
samples, from hand-made member views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyetcd.api.dashboard.state import MetricsSampler, cluster_view, rates


@dataclass(frozen=True)
class M:
    id: int
    name: str
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False


MEMBERS = [M(0xA, "infra1"), M(0xB, "infra2"), M(0xC, "infra3", is_learner=True)]


def view(mid: int, role: str, term: int, leader: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": f"{mid:x}",
        "role": role,
        "term": term,
        "leader": leader,
        "commit": 10,
        "progress": kw.pop("progress", {}),
        "events": kw.pop("events", []),
        **kw,
    }


def ev(seq: int, t: float, kind: str, text: str) -> dict[str, Any]:
    return {"seq": seq, "time": t, "kind": kind, "text": text}


def test_leader_lag_and_reachability() -> None:
    views: dict[int, dict[str, Any] | str] = {
        0xA: view(
            0xA,
            "leader",
            5,
            "a",
            progress={"a": {"match": 100}, "b": {"match": 97}, "c": {"match": 40}},
        ),
        0xB: view(0xB, "follower", 5, "a"),
        0xC: "connection refused",
    }
    out = cluster_view(0xB, MEMBERS, views)
    assert (out["self"], out["leader"], out["term"]) == ("b", "a", 5)
    by = {m["name"]: m for m in out["members"]}
    assert [m["name"] for m in out["members"]] == ["infra1", "infra2", "infra3"]
    assert by["infra1"]["is_leader"] and not by["infra2"]["is_leader"]
    assert by["infra2"]["is_self"] and not by["infra1"]["is_self"]
    assert (by["infra1"]["lag"], by["infra2"]["lag"], by["infra3"]["lag"]) == (0, 3, 60)
    assert by["infra3"]["reachable"] is False and by["infra3"]["status"] is None
    assert by["infra3"]["error"] == "connection refused" and by["infra3"]["is_learner"]
    assert by["infra2"]["status"]["role"] == "follower"
    assert "events" not in by["infra2"]["status"]


def test_the_highest_term_names_the_leader_and_without_it_no_lag() -> None:
    # infra1 still believes it leads at term 5; infra2 has seen infra3 win term 6.
    views: dict[int, dict[str, Any] | str] = {
        0xA: view(0xA, "leader", 5, "a", progress={"a": {"match": 9}, "b": {"match": 9}}),
        0xB: view(0xB, "follower", 6, "c"),
        0xC: "timed out",
    }
    out = cluster_view(0xA, MEMBERS, views)
    assert (out["leader"], out["term"]) == ("c", 6)
    assert all(m["lag"] is None for m in out["members"])  # the leader's progress is unknown
    assert [m["is_leader"] for m in out["members"]] == [False, False, True]


def test_no_leader_during_an_election() -> None:
    views: dict[int, dict[str, Any] | str] = {
        0xA: view(0xA, "candidate", 7, ""),
        0xB: view(0xB, "pre-candidate", 6, ""),
    }
    out = cluster_view(0xA, MEMBERS, views)
    assert (out["leader"], out["term"]) == ("", 7)
    assert not any(m["is_leader"] for m in out["members"])
    assert out["members"][2]["reachable"] is False and out["members"][2]["error"] == ""


def test_timeline_merges_every_member_in_time_order_and_shows_applied_changes_once() -> None:
    views: dict[int, dict[str, Any] | str] = {
        0xA: view(
            0xA,
            "leader",
            3,
            "a",
            events=[
                ev(1, 10.0, "member", "member x (f) joined as a voter"),
                ev(2, 12.0, "election", "became candidate at term 3"),
                ev(3, 12.5, "election", "became leader at term 3"),
            ],
        ),
        0xB: view(
            0xB,
            "follower",
            3,
            "a",
            events=[
                ev(1, 10.2, "member", "member x (f) joined as a voter"),
                ev(2, 12.1, "election", "voted for a at term 3"),
            ],
        ),
    }
    out = cluster_view(0xA, MEMBERS, views)
    got = [(e["member"], e["member_name"], e["text"]) for e in out["timeline"]]
    assert got == [
        ("a", "infra1", "member x (f) joined as a voter"),
        ("a", "infra1", "became candidate at term 3"),
        ("b", "infra2", "voted for a at term 3"),
        ("a", "infra1", "became leader at term 3"),
    ]


def test_sampler_keeps_what_it_reads_up_to_its_capacity() -> None:
    values = {"committed": 5.0, "revision": 42.0}
    ticks = iter([100.0, 101.0, 102.0])
    s = MetricsSampler(lambda: values, capacity=2, clock=lambda: next(ticks))
    first = s.sample().to_json()
    assert first == {"t": 100.0, "committed": 5.0, "revision": 42.0}
    values["committed"] = 15.0
    assert s.sample().values["committed"] == 15.0
    assert first["committed"] == 5.0  # a sample is a copy, not the reader's dict
    s.sample()
    assert [h["t"] for h in s.history()] == [101.0, 102.0]  # capacity 2


def test_rates() -> None:
    a = {
        "t": 10.0,
        "committed": 100,
        "applied": 90,
        "revision": 5,
        "fsync_sum": 1.0,
        "fsync_count": 10,
    }
    b = {
        "t": 12.0,
        "committed": 300,
        "applied": 290,
        "revision": 25,
        "fsync_sum": 1.5,
        "fsync_count": 60,
    }
    r = rates(a, b)
    assert r["committed"] == 100 and r["applied"] == 100 and r["revision"] == 10
    assert abs(r["fsync_ms"] - 10.0) < 1e-9  # 0.5 s over 50 syncs
    assert "fsync_ms" not in rates(a, {**b, "fsync_count": 10})
    assert rates(b, a) == {}


def test_rates_of_requests_and_mean_latencies() -> None:
    a = {"t": 10.0, "requests": 100, "requests_failed": 1, "commit_sum": 0.5, "commit_count": 5}
    b = {"t": 14.0, "requests": 500, "requests_failed": 9, "commit_sum": 0.7, "commit_count": 45}
    r = rates(a, b)
    assert r["requests"] == 100 and r["requests_failed"] == 2
    assert abs(r["commit_ms"] - 5.0) < 1e-9  # 0.2 s over 40 commits
    assert "latency_ms" not in r  # no handling times kept
    ext = rates(
        {**a, "latency_sum": 2.0, "latency_count": 100},
        {**b, "latency_sum": 2.3, "latency_count": 400},
    )
    assert abs(ext["latency_ms"] - 1.0) < 1e-9  # 0.3 s over 300 unary calls
    assert "commit_ms" not in rates(a, {**b, "commit_count": 5})  # no commit in between
