"""The ``etcd3`` npm package (Node, on @grpc/grpc-js) against pyetcd and etcd 3.5.1.

``node/drive.js`` runs puts, ranges (prefix, limit, count, sort), txns with compares
(create if mod_revision == 0, compare-and-swap on mod_revision and value), a lease
with keep-alive outliving several TTLs, a watch with prev_kv seeing puts and a delete
and a replay from a revision, a namespace, the library's STM under a conflict, several
watchers on one stream, the library's lock and election (txns, leases and
watches), etcd's Lock and Election services on grpc-js, and the errors the library
types by etcd's texts (compacted and future revisions, unknown leases, auth's user and
role errors); it prints what it saw as JSON. Both servers get the same run, started
fresh, and must print the same thing; each result is also checked on its own, so a run
that fails alike on both fails too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.framework import Member, clean_env, source_root

from .conftest import KINDS

TIMEOUT = 120


def _drive(node_project: Path, pair: dict[str, Member]) -> dict[str, dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None
    proto = str(source_root() / "proto")
    procs = {
        kind: subprocess.Popen(
            [node, str(node_project / "drive.js"), pair[kind].client_url, proto],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for kind in KINDS
    }
    results = {}
    for kind, proc in procs.items():
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, f"drive.js against {kind}: {err[-2000:]}"
        results[kind] = json.loads(out)
    return results


def _expectations(r: dict[str, Any]) -> None:
    assert r["kv"]["get"] == "v1b" and r["kv"]["missing"] is None
    assert list(r["kv"]["prefix"]) == [f"kv/k{i}" for i in range(5)]
    assert [kv["key"] for kv in r["kv"]["limit"]] == ["kv/k0", "kv/k1"]
    assert r["kv"]["limit_more"] is True and r["kv"]["limit_count"] == "5"
    assert r["kv"]["descend"] == ["kv/k4", "kv/k3", "kv/k2"]
    assert r["kv"]["after_delete"] == []
    assert r["txn"]["create"]["succeeded"] and not r["txn"]["create_again"]["succeeded"]
    assert r["txn"]["update"] == {"succeeded": True, "responses": 2}
    assert not r["txn"]["stale"]["succeeded"]
    assert r["txn"]["final"] == {"tx/a": "updated"}
    events = r["watch"]["events"]
    assert [(e["type"], e["kv"]["key"]) for e in events] == [
        ("put", "w/a"), ("put", "w/a"), ("put", "w/b"), ("delete", "w/a")]
    assert events[1]["prev"]["value"] == "1" and events[3]["prev"]["value"] == "2"
    assert [e["type"] for e in r["watch"]["replayed"]] == ["Put", "Put", "Delete"]
    assert (r["more"]["ns_get"], r["more"]["ns_raw"], r["more"]["ns_keys"]) == ("1", "1", ["a"])
    assert r["more"]["stm_tries"] == 2 and r["more"]["stm"] == {"stm/x": "100", "stm/y": "101"}
    assert r["more"]["multi_watch"] == ["w1:mw/a", "w3:mw/a", "w3:mw/b"]
    assert r["lock"] == {"held": True, "second": "refused", "released": True,
                         "after_release": "acquired"}
    assert r["election"]["leader"] == "alice"
    assert r["election"]["second_elected_while_first_leads"] is False
    assert r["election"]["leader_after_resign"] == "bob"
    assert r["lock_service"] == {"first_key_prefix": True, "second_blocked_while_held": True,
                                 "second_after_unlock": True, "second_key_differs": True,
                                 "keys_left": 0}
    svc = r["election_service"]
    assert svc["observed"] == ["alice", "alice2", "bob"]
    assert svc["second_elected_while_first_leads"] is False
    assert svc["leader_when_none"] == "election: no leader"
    errors = r["errors"]
    assert errors["compacted_read"]["type"] == "GRPCOutOfRangeError"
    assert errors["put_unknown_lease"]["type"] == "EtcdLeaseInvalidError"
    assert [errors[k]["type"] for k in ("user_exists", "role_exists", "role_not_found",
                                        "user_not_found")] == [
        "EtcdUserExistsError", "EtcdRoleExistsError", "EtcdRoleNotFoundError",
        "EtcdUserNotFoundError"]
    assert errors["empty_key"]["message"].endswith("etcdserver: key is not provided")
    assert (errors["user_roles"], errors["users"], errors["roles_left"]) == (["r1"], ["u1"], [])
    assert r["lease"] == {"key_after_ttls": "held", "granted_ttl": 2,
                          "keepalives_at_least_3": True, "lost": None,
                          "key_after_revoke": None}


def test_etcd3_node_client_same_as_etcd(node_project: Path, fresh_pair: dict[str, Member]) -> None:
    results = _drive(node_project, fresh_pair)
    for kind in KINDS:
        _expectations(results[kind])
    assert results["pyetcd"] == results["etcd"]
