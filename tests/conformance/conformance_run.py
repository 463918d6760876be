"""Running generated programs on both servers, and the hypothesis budget."""

from __future__ import annotations

import os
from collections.abc import Sequence

import grpc
from conformance_client import Conformance, Mismatch
from conformance_ops import HashKV, LeaseTTL, Op
from hypothesis import HealthCheck, settings

__all__ = ["EXAMPLES", "budget", "run_program"]

#: PYETCD_CONFORMANCE_EXAMPLES=N runs N examples per property test (long runs).
EXAMPLES = int(os.environ.get("PYETCD_CONFORMANCE_EXAMPLES", "0"))


def budget(ci_examples: int) -> settings:
    """hypothesis settings: ``ci_examples`` in CI, deterministic, no deadline."""
    return settings(
        max_examples=EXAMPLES or ci_examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


def run_program(conf: Conformance, ops: Sequence[Op], *, reset: bool = True) -> None:
    """Reset both servers to one clean slate, then run ``ops`` on both, comparing
    every answer; also checks the fields excluded from equality where they can be
    checked another way (lease TTLs to +-1 s, hash equality classes)."""
    if reset:
        conf.reset()
    hashes: list[tuple[int, int]] = []
    for op in ops:
        a, b = conf.check(op.service, op.method, op.request(conf.base))
        if isinstance(a, grpc.RpcError) or isinstance(b, grpc.RpcError):
            continue
        if isinstance(op, LeaseTTL):
            ta, tb = int(a.TTL), int(b.TTL)
            if abs(ta - tb) > 1 or (ta < 0) != (tb < 0):
                raise Mismatch(f"lease TTL etcd {ta} pyetcd {tb} for {op}")
        if isinstance(op, HashKV):
            hashes.append((int(a.hash), int(b.hash)))
    check_hash_classes(hashes)


def check_hash_classes(hashes: list[tuple[int, int]]) -> None:
    """Two HashKV answers are equal on etcd iff they are equal on pyetcd."""
    for i, (ea, pa) in enumerate(hashes):
        for eb, pb in hashes[i + 1 :]:
            if (ea == eb) != (pa == pb):
                raise Mismatch(f"hash equality differs: etcd {ea}/{eb}, pyetcd {pa}/{pb}")
