"""Membership changes: applying conf changes to a tracker config, checked for safety.

Every function returns a NEW (config, progress map) pair and leaves its inputs alone,
so a change that fails validation changes nothing.

Rules kept here:
1. A simple change alters the voters by at most one member.
2. A joint config can only be entered from a non-joint one, and only left from a joint one.
3. A member is never a voter and a learner at once; a voter of the outgoing config
   that is to become a learner waits in ``learners_next`` until the joint config is left.
4. There is always at least one voter.
"""

from __future__ import annotations

from .quorum import JointConfig
from .tracker import Inflights, Progress, TrackerConfig
from .types import ConfChangeSingle, ConfChangeType, ConfState

__all__ = ["Changer", "ConfChangeError", "restore"]

ProgressMap = dict[int, Progress]


class ConfChangeError(Exception):
    """A conf change that would break a membership rule."""


class Changer:
    """Applies conf changes to ``config``/``progress``; ``last_index`` seeds new members."""

    def __init__(
        self, config: TrackerConfig, progress: ProgressMap, last_index: int, max_inflight: int
    ) -> None:
        self.config = config
        self.progress = progress
        self.last_index = last_index
        self.max_inflight = max_inflight

    def enter_joint(
        self, auto_leave: bool, changes: tuple[ConfChangeSingle, ...]
    ) -> tuple[TrackerConfig, ProgressMap]:
        cfg, prs = self._check_and_copy()
        if cfg.voters.is_joint():
            raise ConfChangeError("config is already joint")
        if not cfg.voters.incoming:
            raise ConfChangeError("can't make a zero-voter config joint")
        cfg.voters = JointConfig(cfg.voters.incoming, cfg.voters.incoming)
        self._apply(cfg, prs, changes)
        cfg.auto_leave = auto_leave
        _check_invariants(cfg, prs)
        return cfg, prs

    def leave_joint(self) -> tuple[TrackerConfig, ProgressMap]:
        cfg, prs = self._check_and_copy()
        if not cfg.voters.is_joint():
            raise ConfChangeError("can't leave a non-joint config")
        for node in cfg.learners_next:
            cfg.learners.add(node)
            prs[node].is_learner = True
        cfg.learners_next = set()
        incoming = cfg.voters.incoming
        for node in cfg.voters.outgoing:
            if node not in incoming and node not in cfg.learners:
                del prs[node]
        cfg.voters = JointConfig(incoming)
        cfg.auto_leave = False
        _check_invariants(cfg, prs)
        return cfg, prs

    def simple(self, changes: tuple[ConfChangeSingle, ...]) -> tuple[TrackerConfig, ProgressMap]:
        cfg, prs = self._check_and_copy()
        if cfg.voters.is_joint():
            raise ConfChangeError("can't apply simple config change in joint config")
        before = set(cfg.voters.incoming)
        self._apply(cfg, prs, changes)
        if len(before ^ set(cfg.voters.incoming)) > 1:
            raise ConfChangeError("more than one voter changed without entering joint config")
        _check_invariants(cfg, prs)
        return cfg, prs

    # -- helpers ---------------------------------------------------------------

    def _check_and_copy(self) -> tuple[TrackerConfig, ProgressMap]:
        cfg = self.config.clone()
        prs: ProgressMap = {}
        for node, pr in self.progress.items():
            # Shallow copy is enough: only is_learner is changed here; inflights are shared
            # by design since the new map replaces the old one.
            prs[node] = Progress(
                match=pr.match,
                next=pr.next,
                state=pr.state,
                pending_snapshot=pr.pending_snapshot,
                recent_active=pr.recent_active,
                msg_app_flow_paused=pr.msg_app_flow_paused,
                inflights=pr.inflights,
                is_learner=pr.is_learner,
            )
        _check_invariants(cfg, prs)
        return cfg, prs

    def _apply(
        self, cfg: TrackerConfig, prs: ProgressMap, changes: tuple[ConfChangeSingle, ...]
    ) -> None:
        for cc in changes:
            if cc.node_id == 0:
                continue  # etcd ignores changes to node 0
            if cc.type == ConfChangeType.ADD_NODE:
                self._make_voter(cfg, prs, cc.node_id)
            elif cc.type == ConfChangeType.ADD_LEARNER_NODE:
                self._make_learner(cfg, prs, cc.node_id)
            elif cc.type == ConfChangeType.REMOVE_NODE:
                self._remove(cfg, prs, cc.node_id)
            elif cc.type == ConfChangeType.UPDATE_NODE:
                pass
        if not cfg.voters.incoming:
            raise ConfChangeError("removed all voters")

    def _init_progress(
        self, cfg: TrackerConfig, prs: ProgressMap, node: int, learner: bool
    ) -> None:
        if learner:
            cfg.learners.add(node)
        else:
            cfg.voters = JointConfig(cfg.voters.incoming | {node}, cfg.voters.outgoing)
        # A new member is probed from the leader's last index; it is considered
        # active so that adding it cannot make check-quorum fire at once.
        prs[node] = Progress(
            match=0,
            next=max(self.last_index, 1),
            inflights=Inflights(self.max_inflight),
            is_learner=learner,
            recent_active=True,
        )

    def _make_voter(self, cfg: TrackerConfig, prs: ProgressMap, node: int) -> None:
        pr = prs.get(node)
        if pr is None:
            self._init_progress(cfg, prs, node, learner=False)
            return
        pr.is_learner = False
        cfg.learners.discard(node)
        cfg.learners_next.discard(node)
        cfg.voters = JointConfig(cfg.voters.incoming | {node}, cfg.voters.outgoing)

    def _make_learner(self, cfg: TrackerConfig, prs: ProgressMap, node: int) -> None:
        pr = prs.get(node)
        if pr is None:
            self._init_progress(cfg, prs, node, learner=True)
            return
        if pr.is_learner:
            return
        self._remove(cfg, prs, node)
        prs[node] = pr
        if node in cfg.voters.outgoing:
            # Still a voter of the outgoing config: becomes a learner on leaving joint.
            cfg.learners_next.add(node)
        else:
            pr.is_learner = True
            cfg.learners.add(node)

    def _remove(self, cfg: TrackerConfig, prs: ProgressMap, node: int) -> None:
        if node not in prs:
            return
        cfg.voters = JointConfig(cfg.voters.incoming - {node}, cfg.voters.outgoing)
        cfg.learners.discard(node)
        cfg.learners_next.discard(node)
        # Keep the progress while the member is still a voter of the outgoing config.
        if node not in cfg.voters.outgoing:
            del prs[node]


def _check_invariants(cfg: TrackerConfig, prs: ProgressMap) -> None:
    for ids in (cfg.voters.ids(), cfg.learners, cfg.learners_next):
        for node in ids:
            if node not in prs:
                raise ConfChangeError(f"no progress for {node}")
    for node in cfg.learners_next:
        if node not in cfg.voters.outgoing:
            raise ConfChangeError(f"{node} is in learners_next, but not outgoing")
        if prs[node].is_learner:
            raise ConfChangeError(f"{node} is in learners_next, but is already marked as learner")
    for node in cfg.learners:
        if node in cfg.voters.outgoing or node in cfg.voters.incoming:
            raise ConfChangeError(f"{node} is in learners and voters")
        if not prs[node].is_learner:
            raise ConfChangeError(f"{node} is in learners, but is not marked as learner")
    if not cfg.voters.is_joint():
        if cfg.learners_next:
            raise ConfChangeError("learners_next must be empty when not joint")
        if cfg.auto_leave:
            raise ConfChangeError("auto_leave must be false when not joint")


def restore(cs: ConfState, last_index: int, max_inflight: int) -> tuple[TrackerConfig, ProgressMap]:
    """Build the config described by ``cs`` from scratch (used at start and on snapshots)."""
    chg = Changer(TrackerConfig(), {}, last_index, max_inflight)
    outgoing_first = [ConfChangeSingle(ConfChangeType.ADD_NODE, n) for n in cs.voters_outgoing]
    incoming = [ConfChangeSingle(ConfChangeType.ADD_NODE, n) for n in cs.voters]
    incoming += [ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, n) for n in cs.learners]
    incoming += [ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, n) for n in cs.learners_next]
    if not outgoing_first:
        cfg, prs = chg.config, chg.progress
        for cc in incoming:
            chg.config, chg.progress = cfg, prs
            cfg, prs = chg.simple((cc,))
        return cfg, prs
    # Build the outgoing config first, then enter joint with the incoming changes,
    # which reproduces learners_next exactly.
    cfg, prs = chg.config, chg.progress
    for cc in outgoing_first:
        chg.config, chg.progress = cfg, prs
        cfg, prs = chg.simple((cc,))
    # Enter joint: incoming voters = outgoing voters, then remove all and re-add.
    chg.config, chg.progress = cfg, prs
    removes = tuple(ConfChangeSingle(ConfChangeType.REMOVE_NODE, n) for n in cs.voters_outgoing)
    return chg.enter_joint(cs.auto_leave, (*removes, *incoming))
