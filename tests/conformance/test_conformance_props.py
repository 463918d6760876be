"""Generated operation sequences, the same on etcd and pyetcd, compared field by field."""

from __future__ import annotations

from conformance_client import Conformance
from conformance_ops import (
    Op,
    any_ops,
    compacts,
    deletes,
    hash_kvs,
    kv_ops,
    lease_ops,
    puts,
    ranges,
    txns,
)
from conformance_run import budget, run_program
from hypothesis import given
from hypothesis import strategies as st


@budget(150)
@given(ops=st.lists(kv_ops, min_size=1, max_size=14))
def test_put_range_delete(conf: Conformance, ops: list[Op]) -> None:
    run_program(conf, ops)


@budget(100)
@given(setup=st.lists(puts(), min_size=3, max_size=10), reads=st.lists(ranges(), max_size=10))
def test_range_options(conf: Conformance, setup: list[Op], reads: list[Op]) -> None:
    run_program(conf, [*setup, *reads])


@budget(150)
@given(ops=st.lists(st.one_of(puts(), deletes(), txns()), min_size=1, max_size=8))
def test_txn(conf: Conformance, ops: list[Op]) -> None:
    run_program(conf, ops)


@budget(100)
@given(ops=st.lists(st.one_of(puts(), deletes(), ranges(), compacts, hash_kvs), max_size=14))
def test_compaction_and_history(conf: Conformance, ops: list[Op]) -> None:
    run_program(conf, ops)


@budget(100)
@given(ops=st.lists(st.one_of(lease_ops, puts(), deletes(), ranges()), max_size=12))
def test_leases(conf: Conformance, ops: list[Op]) -> None:
    run_program(conf, ops)


@budget(150)
@given(ops=st.lists(any_ops, max_size=16))
def test_everything(conf: Conformance, ops: list[Op]) -> None:
    run_program(conf, ops)
