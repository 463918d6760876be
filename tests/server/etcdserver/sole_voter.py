"""A one-voter RaftNode over a real WALStorage, no peers: what the driver tests build."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence

from pyetcd.logutil import Logger
from pyetcd.raft import ConfChange, Config, ConfState, Entry, EntryType, RawNode
from pyetcd.raft.types import HardState
from pyetcd.server.etcdserver.fatal import Fatal
from pyetcd.server.etcdserver.inbox import RaftInbox
from pyetcd.server.etcdserver.raft_node import RaftNode, conf_change_entries
from pyetcd.server.etcdserver.transport import NullTransport
from pyetcd.server.etcdserver.wait import AppliedIndex
from pyetcd.wal import WALStorage


class Applied:
    """The state machine: what was applied."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.changed = asyncio.Event()

    def apply_entries(
        self, entries: Sequence[Entry], apply_conf: Callable[[ConfChange], ConfState]
    ) -> None:
        for e in entries:
            if e.type == EntryType.CONF_CHANGE_V2:
                apply_conf(ConfChange.decode(e.data))
            elif e.data:
                self.entries.append(e)
        self.changed.set()


def sole_voter_node(
    storage: WALStorage, logger: Logger, fatal: Fatal
) -> tuple[RaftNode, Applied, asyncio.Event]:
    """A node that is member 1 of a one-voter cluster (its bootstrap conf change saved),
    what it applies, and an event set once it leads (after ``node.start()``)."""
    ents = conf_change_entries([(1, b"")])
    storage.save(HardState(term=1, commit=len(ents)), ents).result()
    rawnode = RawNode(Config(id=1, storage=storage, election_tick=10, rng=random.Random(1)))
    applied = Applied()
    led = asyncio.Event()
    node = RaftNode(
        rawnode,
        RaftInbox(),
        storage,
        NullTransport(),
        applied,  # type: ignore[arg-type]
        AppliedIndex(),
        tick_interval=0.01,
        snapshot_count=10_000,
        conf_state=ConfState(voters=(1,)),
        logger=logger,
        fatal=fatal,
        on_leader_change=lambda _old, new: led.set() if new == 1 else None,
    )
    return node, applied, led
