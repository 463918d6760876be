"""The simulation has teeth: inject a known Raft bug into the core and require the
same simulation (same rules, same invariants) to report a violation.

The search is a seeded random walk over the state machine's own rules (hypothesis's
generator is poor at these needle-in-a-haystack schedules), with the invariants
checked after every step exactly as under hypothesis. Each test may aim the walk
(rule weights, rule families left out) but never changes what is checked. The
violation found is printed with its seed and program.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from sim_invariants import InvariantViolation
from sim_machine import Profile, random_walk

from pyetcd.raft.log import RaftLog
from pyetcd.raft.quorum import JointConfig
from pyetcd.raft.raft import Raft
from pyetcd.raft.tracker import ProgressTracker
from pyetcd.raft.types import Entry

#: Rule weights of the random walk: every rule of the machine, progress rules favoured.
WEIGHTS: dict[str, float] = {
    "tick": 1, "tick_all": 2, "deliver": 2, "deliver_some": 2, "deliver_kind": 2,
    "stabilize": 1, "run": 2, "drop": 1, "duplicate": 1, "isolate": 1, "partition": 2,
    "cut": 1, "heal": 1, "crash": 1, "restart": 1, "compact": 1, "propose": 3,
    "read_index": 1, "campaign": 1, "transfer_leader": 1, "conf_change": 2,
}  # fmt: skip

#: No membership changes, transfers or reads: the bugs below need none of them.
STATIC = Profile(spares=0, conf_changes=False, transfers=False, reads=False)


def weights(p: Profile, **override: float) -> dict[str, float]:
    off = set(p.without)
    if not p.conf_changes:
        off.add("conf_change")
    if not p.transfers:
        off.add("transfer_leader")
    if not p.reads:
        off.add("read_index")
    return {k: v for k, v in {**WEIGHTS, **override}.items() if k not in off and v > 0}


def expect_violation(
    p: Profile, w: dict[str, float], *, runs: int, steps: int = 40, seed_value: int = 1
) -> str:
    """Random programs over the machine's rules must hit an InvariantViolation."""
    with pytest.raises(InvariantViolation) as info:
        random_walk(p, w, runs=runs, steps=steps, seed_value=seed_value)
    print(str(info.value), *getattr(info.value, "__notes__", ()), sep="\n")
    return str(info.value)


# -- (a) a vote granted without the log up-to-date check ---------------------------------


def test_vote_without_up_to_date_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, last_index, term: True)
    expect_violation(STATIC, weights(STATIC), runs=1500)


# -- (b) committing an entry of an earlier term by counting replicas ---------------------


def _maybe_commit_any_term(self: RaftLog, max_index: int, term: int) -> bool:
    if max_index > self.committed:
        self.commit_to(max_index)
        return True
    return False


def test_commit_of_earlier_term_by_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "maybe_commit", _maybe_commit_any_term)
    # Figure 8 of the Raft paper: a leader elected whose own entry never leaves it
    # (an election alone, then a partition), then an older leader re-elected that
    # replicates its stale entry one entry per message (max_size_per_msg=1).
    p = replace(STATIC, msg_sizes=(1,))
    w: dict[str, float] = {
        "partition": 2,
        "propose": 2,
        "tick_all": 2,
        "deliver_kind": 2,
        "run": 1,
        "campaign": 2,
    }
    expect_violation(p, w, runs=3000, steps=25, seed_value=5)


# -- (c) a follower that does not truncate a conflicting suffix --------------------------


def _append_without_truncation(
    self: RaftLog, index: int, log_term: int, committed: int, ents: tuple[Entry, ...]
) -> int | None:
    if not self.match_term(index, log_term):
        return None
    last_new = index + len(ents)
    # The bug: keep whatever we hold, conflicting or not; only add past our end.
    new = [e for e in ents if e.index > self.last_index()]
    if new:
        self.append(new)
    self.commit_to(min(committed, last_new))
    return last_new


def test_conflicting_suffix_not_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftLog, "maybe_append", _append_without_truncation)
    expect_violation(STATIC, weights(STATIC), runs=1500)


# -- (d) the vote not durable before the vote response is sent ---------------------------


def test_vote_sent_before_durable() -> None:
    # The sim's fault flag: term and vote become durable only at the member's next
    # Ready, after the vote response went out; a crash in between forgets the vote.
    p = replace(STATIC, vote_after_send=True)
    expect_violation(p, weights(p, crash=3, restart=3, deliver=3), runs=3000)


# -- (e) a learner counted in the quorum -------------------------------------------------


def _committed_with_learners(self: ProgressTracker) -> int:
    def acked(node: int) -> int | None:
        pr = self.progress.get(node)
        return pr.match if pr is not None else None

    voters = self.config.voters
    return JointConfig(voters.incoming | self.config.learners, voters.outgoing).committed_index(
        acked
    )


def test_learner_counted_in_quorum(monkeypatch: pytest.MonkeyPatch) -> None:
    committed: Callable[[ProgressTracker], int] = _committed_with_learners
    monkeypatch.setattr(ProgressTracker, "committed", committed)
    p = Profile(transfers=False, reads=False, conf_kinds=("add_learner", "remove"))
    expect_violation(p, weights(p), runs=1500)


# -- liveness has teeth too --------------------------------------------------------------


def test_no_elections_fails_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Raft, "hup", lambda self, t: None)
    p = replace(STATIC, liveness=True)
    message = expect_violation(p, weights(p), runs=50)
    assert message.startswith("liveness")
