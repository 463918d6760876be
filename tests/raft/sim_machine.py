"""The hypothesis state machine that drives the simulated cluster (sim.py).

Every rule is one input to the cluster: a tick, a message delivered (any one, so
reordering comes free), dropped or duplicated, a partition or heal, a crash or
restart, a proposal, a read, a campaign, a conf change, a leader transfer, a log
compaction. After EVERY rule the invariants run (the Checker also raises the moment
an observation contradicts history). A ``Profile`` switches rule families on and
off, so a test can aim the same simulation at one kind of bug.

In liveness mode the teardown heals the network, restarts every member and
requires a leader and a fresh commit within a bounded number of ticks.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sim import Cluster, SimOptions

from pyetcd.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    MessageType,
)

__all__ = ["SOAK", "Profile", "make_machine", "random_walk", "run_profile"]

F = TypeVar("F", bound=Callable[..., Any])

#: PYETCD_SOAK=1 multiplies every example budget by 10.
SOAK = os.environ.get("PYETCD_SOAK", "") not in ("", "0")

CCT = ConfChangeType
MT = MessageType
#: Message classes a rule can deliver alone (the rest stays in flight).
KINDS = {
    "votes": frozenset({MT.PRE_VOTE, MT.PRE_VOTE_RESP, MT.VOTE, MT.VOTE_RESP}),
    "appends": frozenset({MT.APP, MT.APP_RESP, MT.SNAP}),
    "heartbeats": frozenset({MT.HEARTBEAT, MT.HEARTBEAT_RESP}),
}
CONF_KINDS = ("add_voter", "remove", "add_learner", "joint", "joint_explicit", "leave_joint")


@dataclass(frozen=True, slots=True)
class Profile:
    """Which inputs a run uses, and how the cluster is built."""

    sizes: tuple[int, ...] = (3,)
    spares: int = 2
    election_tick: int = 5
    msg_sizes: tuple[int, ...] = (1, 1 << 20)
    inflights: tuple[int, ...] = (1, 4, 256)
    crashes: bool = True
    partitions: bool = True
    conf_changes: bool = True
    transfers: bool = True
    reads: bool = True
    compaction: bool = True
    liveness: bool = False
    vote_after_send: bool = False
    conf_kinds: tuple[str, ...] = CONF_KINDS
    # Rules to leave out entirely (by name), to aim a search.
    without: frozenset[str] = field(default_factory=frozenset)


def make_machine(p: Profile) -> type[RuleBasedStateMachine]:
    """A RuleBasedStateMachine class for profile ``p``."""
    member = st.integers(0, p.sizes[-1] + p.spares - 1)
    pick = st.integers(0, 1 << 16)

    def gate(flag: bool, name: str) -> Callable[[F], F]:
        """Enable rule ``name`` only if its family is on and it is not left out."""
        enabled = flag and name not in p.without
        return precondition(lambda self: enabled)

    class RaftSimulation(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self._cluster: Cluster | None = None
            # False while a rule runs; a failed rule leaves it False, so the
            # liveness teardown does not pile a second failure on the first.
            self.clean = True

        @property
        def c(self) -> Cluster:
            assert self._cluster is not None
            self.clean = False
            return self._cluster

        def mid(self, x: int) -> int:
            ids = self.c.ids
            return ids[x % len(ids)]

        @initialize(
            size=st.sampled_from(p.sizes),
            rng_seed=st.integers(0, (1 << 32) - 1),
            msg_size=st.sampled_from(p.msg_sizes),
            inflight=st.sampled_from(p.inflights),
            warm=st.booleans(),
        )
        def boot(self, size: int, rng_seed: int, msg_size: int, inflight: int, warm: bool) -> None:
            """Build the cluster; a warm start elects member 1 and lets it settle."""
            opts = SimOptions(
                size=size,
                spares=p.spares,
                election_tick=p.election_tick,
                max_size_per_msg=msg_size,
                max_inflight_msgs=inflight,
                vote_after_send=p.vote_after_send,
            )
            self._cluster = Cluster(opts, rng_seed)
            if warm:
                self._cluster.campaign(1)
                self._cluster.stabilize()

        @invariant()
        def safety(self) -> None:
            self.c.check_all()
            self.clean = True

        # -- time and the network ----------------------------------------------------

        @gate(True, "tick")
        @rule(m=member)
        def tick(self, m: int) -> None:
            self.c.tick(self.mid(m))

        @gate(True, "tick_all")
        @rule(n=st.integers(1, 2 * p.election_tick))
        def tick_all(self, n: int) -> None:
            for _ in range(n):
                self.c.tick_all()

        @gate(True, "deliver")
        @rule(i=pick)
        def deliver(self, i: int) -> None:
            self.c.deliver(i)

        @gate(True, "deliver_some")
        @rule(n=st.integers(1, 8), i=pick)
        def deliver_some(self, n: int, i: int) -> None:
            for k in range(n):
                self.c.deliver(i + k)

        @gate(True, "deliver_kind")
        @rule(kind=st.sampled_from(sorted(KINDS)))
        def deliver_kind(self, kind: str) -> None:
            self.c.deliver_kind(KINDS[kind])

        @gate(True, "stabilize")
        @rule()
        def stabilize(self) -> None:
            self.c.stabilize()

        @gate(True, "run")
        @rule(n=st.integers(1, 3 * p.election_tick))
        def run(self, n: int) -> None:
            """Time passes normally: every tick, every message in flight is delivered."""
            for _ in range(n):
                self.c.tick_all()
                self.c.stabilize()

        @gate(True, "drop")
        @rule(i=pick)
        def drop(self, i: int) -> None:
            self.c.drop(i)

        @gate(True, "duplicate")
        @rule(i=pick)
        def duplicate(self, i: int) -> None:
            self.c.duplicate(i)

        @gate(p.partitions, "isolate")
        @rule(m=member)
        def isolate(self, m: int) -> None:
            self.c.isolate(self.mid(m))

        @gate(p.partitions, "partition")
        @rule(mask=st.integers(1, (1 << (p.sizes[-1] + p.spares)) - 2))
        def partition(self, mask: int) -> None:
            ids = self.c.ids
            self.c.partition({ids[i] for i in range(len(ids)) if mask >> i & 1})

        @gate(p.partitions, "cut")
        @rule(a=member, b=member)
        def cut(self, a: int, b: int) -> None:
            self.c.cut_link(self.mid(a), self.mid(b))

        @gate(p.partitions, "heal")
        @rule()
        def heal(self) -> None:
            self.c.heal()

        # -- members -----------------------------------------------------------------

        @gate(p.crashes, "crash")
        @rule(m=member)
        def crash(self, m: int) -> None:
            self.c.crash(self.mid(m))

        @gate(p.crashes, "restart")
        @rule(m=member)
        def restart(self, m: int) -> None:
            self.c.restart(self.mid(m))

        @gate(p.compaction, "compact")
        @rule(m=member)
        def compact(self, m: int) -> None:
            self.c.compact(self.mid(m))

        # -- clients and operators ---------------------------------------------------

        @gate(True, "propose")
        @rule(m=member, n=st.integers(1, 4))
        def propose(self, m: int, n: int) -> None:
            for _ in range(n):
                self.c.propose(self.mid(m))

        @gate(p.reads, "read_index")
        @rule(m=member)
        def read_index(self, m: int) -> None:
            self.c.read_index(self.mid(m))

        @gate(True, "campaign")
        @rule(m=member)
        def campaign(self, m: int) -> None:
            self.c.campaign(self.mid(m))

        @gate(p.transfers, "transfer_leader")
        @rule(m=member, to=member)
        def transfer_leader(self, m: int, to: int) -> None:
            self.c.transfer_leader(self.mid(m), self.mid(to))

        @gate(p.conf_changes, "conf_change")
        @rule(kind=st.sampled_from(p.conf_kinds), a=member, b=member)
        def conf_change(self, kind: str, a: int, b: int) -> None:
            self.c.propose_conf_change(conf_change_for(kind, self.mid(a), self.mid(b)))

        def teardown(self) -> None:
            if p.liveness and self._cluster is not None and self.clean:
                self._cluster.check_liveness(max_ticks=12 * 2 * p.election_tick)

    return RaftSimulation


def conf_change_for(kind: str, a: int, b: int) -> ConfChange:
    """The conf change a rule asks for (the cluster skips invalid ones)."""
    one = {
        "add_voter": CCT.ADD_NODE,
        "remove": CCT.REMOVE_NODE,
        "add_learner": CCT.ADD_LEARNER_NODE,
    }
    if kind in one:
        return ConfChange(changes=(ConfChangeSingle(one[kind], a),))
    if kind == "leave_joint":
        return ConfChange()
    # Two changes at once go through joint consensus: add (or promote) a, and
    # demote b to a learner when b is even, remove it otherwise.
    second = CCT.ADD_LEARNER_NODE if b % 2 == 0 else CCT.REMOVE_NODE
    explicit = kind == "joint_explicit"
    transition = ConfChangeTransition.JOINT_EXPLICIT if explicit else ConfChangeTransition.AUTO
    return ConfChange(
        changes=(ConfChangeSingle(CCT.ADD_NODE, a), ConfChangeSingle(second, b)),
        transition=transition,
    )


def run_profile(
    p: Profile,
    *,
    examples: int,
    steps: int,
    seed_value: int,
    shrink: bool = True,
) -> None:
    """Run profile ``p`` under hypothesis; a failure carries its seed in a note.

    ``PYETCD_SIM_SEED`` overrides the seed (to rerun a soak failure); with
    PYETCD_SOAK=1 the budget is ten times larger.
    """
    env_seed = os.environ.get("PYETCD_SIM_SEED")
    if env_seed:
        seed_value = int(env_seed)
    machine = make_machine(p)
    phases = (Phase.explicit, Phase.generate, Phase.shrink) if shrink else (Phase.generate,)
    s = settings(
        max_examples=examples * (10 if SOAK else 1),
        stateful_step_count=steps,
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    print(f"raft simulation: hypothesis seed {seed_value}")
    try:
        run_state_machine_as_test(seed(seed_value)(machine), settings=s)  # type: ignore[no-untyped-call]
    except BaseException as e:
        e.add_note(
            f"raft simulation: hypothesis seed {seed_value}; rerun with "
            f"PYETCD_SIM_SEED={seed_value}"
        )
        raise


# -- a weighted random walk over the same rules ------------------------------------------

Sampler = Callable[[random.Random, Profile], dict[str, object]]


def _member(rng: random.Random, p: Profile) -> int:
    return rng.randrange(p.sizes[-1] + p.spares)


#: How the random walk draws each rule's arguments (the rules' strategies, by hand).
ARGS: dict[str, Sampler] = {
    "tick": lambda rng, p: {"m": _member(rng, p)},
    "tick_all": lambda rng, p: {"n": rng.randint(1, 2 * p.election_tick)},
    "deliver": lambda rng, p: {"i": rng.randrange(1 << 16)},
    "deliver_some": lambda rng, p: {"n": rng.randint(1, 8), "i": rng.randrange(1 << 16)},
    "deliver_kind": lambda rng, p: {"kind": rng.choice(sorted(KINDS))},
    "stabilize": lambda rng, p: {},
    "run": lambda rng, p: {"n": rng.randint(1, 3 * p.election_tick)},
    "drop": lambda rng, p: {"i": rng.randrange(1 << 16)},
    "duplicate": lambda rng, p: {"i": rng.randrange(1 << 16)},
    "isolate": lambda rng, p: {"m": _member(rng, p)},
    "partition": lambda rng, p: {"mask": rng.randint(1, (1 << (p.sizes[-1] + p.spares)) - 2)},
    "cut": lambda rng, p: {"a": _member(rng, p), "b": _member(rng, p)},
    "heal": lambda rng, p: {},
    "crash": lambda rng, p: {"m": _member(rng, p)},
    "restart": lambda rng, p: {"m": _member(rng, p)},
    "compact": lambda rng, p: {"m": _member(rng, p)},
    "propose": lambda rng, p: {"m": _member(rng, p), "n": rng.randint(1, 4)},
    "read_index": lambda rng, p: {"m": _member(rng, p)},
    "campaign": lambda rng, p: {"m": _member(rng, p)},
    "transfer_leader": lambda rng, p: {"m": _member(rng, p), "to": _member(rng, p)},
    "conf_change": lambda rng, p: {
        "kind": rng.choice(p.conf_kinds),
        "a": _member(rng, p),
        "b": _member(rng, p),
    },
}


def random_walk(
    p: Profile, weights: dict[str, float], *, runs: int, steps: int, seed_value: int
) -> int:
    """Run ``runs`` random programs of ``steps`` rules drawn with ``weights``; the
    invariants run after every step, as under hypothesis. A failure carries the
    seed and the program (as hypothesis prints one). Returns the runs completed."""
    rng = random.Random(seed_value)
    machine_cls = make_machine(p)
    names = sorted(weights)
    cum = [weights[n] for n in names]
    for run in range(runs):
        machine: Any = machine_cls()
        boot: dict[str, object] = {
            "size": rng.choice(p.sizes),
            "rng_seed": rng.randrange(1 << 32),
            "msg_size": rng.choice(p.msg_sizes),
            "inflight": rng.choice(p.inflights),
            "warm": rng.random() < 0.5,
        }
        program = [f"state.boot({_kwargs(boot)})"]
        try:
            machine.boot(**boot)
            for _ in range(steps):
                name = rng.choices(names, cum)[0]
                kwargs = ARGS[name](rng, p)
                program.append(f"state.{name}({_kwargs(kwargs)})")
                getattr(machine, name)(**kwargs)
                machine.safety()
            machine.teardown()
        except BaseException as e:
            e.add_note(f"random walk seed {seed_value}, run {run}; program:\n" + "\n".join(program))
            raise
    return runs


def _kwargs(kw: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kw.items())
