"""``etcd3gw`` (OpenStack's client of etcd's JSON gateway) against pyetcd and etcd 3.5.1.

The same run on a fresh pyetcd and a fresh etcd: puts and gets (with metadata, prefix,
sort, limit), the library's create/replace/delete txns and a raw txn, a lease refreshed
through ``/v3/lease/keepalive`` past several TTLs, watches on the streaming
``/v3/watch`` (etcd3gw parses each chunk of the chunked response as one JSON object),
``watch_once`` from a revision, the library's lock (a txn on create_revision under
a lease), and the errors it raises (etcd's code and text in the gateway's JSON body).
etcd3gw picks its prefix from ``/version`` (``/v3/`` for 3.4 and later); the run is
repeated on ``/v3beta/``, which etcd 3.5 serves too. Each result is checked on its own
and the two servers' results must be equal.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import Etcd3Exception

from tests.framework import Member

from .conftest import KINDS

LEASE_TTL = 2  # etcd's minimum (1.5 x election timeout, rounded up)
EVENT_TIMEOUT = 10.0


def _kv(kv: dict[str, Any]) -> dict[str, Any]:
    return {k: kv.get(k) for k in ("key", "value", "create_revision", "mod_revision",
                                   "version", "lease")} | {"has_lease": "lease" in kv}


def _events(events: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The next ``n`` events of a watch iterator, or fail after EVENT_TIMEOUT."""
    got: queue.Queue[dict[str, Any]] = queue.Queue()

    def pump() -> None:
        for _ in range(n):
            got.put(next(events))

    threading.Thread(target=pump, daemon=True).start()
    out = []
    for _ in range(n):
        e = got.get(timeout=EVENT_TIMEOUT)
        prev = e.get("prev_kv")
        if prev is not None:  # etcd3gw decodes the event's kv, not its prev_kv
            prev = {k: base64.b64decode(v) if k in ("key", "value") else v
                    for k, v in prev.items()}
        out.append({"type": e.get("type", "PUT"), "kv": _kv(e["kv"]),
                    "prev_kv": _kv(prev) if prev is not None else None})
    return out


def _error(call: Callable[[], object]) -> tuple[str, int, str] | str:
    """etcd3gw's exception for a refused call: its type, the gRPC code and etcd's text."""
    try:
        call()
    except Etcd3Exception as err:
        text = err.detail_text or ""
        body = json.loads(text) if text.startswith("{") else {}
        return (type(err).__name__, body.get("code", 0), body.get("message", text))
    return "no error"


def _errors(c: Etcd3Client) -> dict[str, Any]:
    c.put("gw/e", "1")
    old = int(c.get("gw/e", metadata=True)[0][1]["mod_revision"])
    c.put("gw/e", "2")
    c.post(c.get_url("/kv/compaction"), json={"revision": old + 1})
    return {
        "compacted": _error(lambda: c.get("gw/e", revision=old)),
        "future": _error(lambda: c.get("gw/e", revision=old + 100)),
        "unknown_lease": _error(lambda: c.post(
            c.get_url("/kv/put"), json={"key": "Z3cvZQ==", "value": "", "lease": 42})),
        "empty_key": _error(lambda: c.put("", "x")),
        "bad_json": _error(lambda: c.post(c.get_url("/kv/put"), data="{nope")),
        "unknown_route": _error(lambda: c.post(c.get_url("/kv/nothing"), json={})),
        "watch_once_timeout": _error(lambda: c.watch_once("gw/none", timeout=0.5)),
        "status_fields": sorted(c.status()),
        "member_fields": [sorted(m) for m in c.members()],
    }


def _drive(c: Etcd3Client) -> dict[str, Any]:
    r: dict[str, Any] = {}
    for i in range(4):
        c.put(f"gw/k{i}", f"v{i}")
    r["get"] = c.get("gw/k1")
    r["get_meta"] = [(v, _kv(m)) for v, m in c.get("gw/k1", metadata=True)]
    r["missing"] = c.get("gw/none")
    r["prefix"] = [(v, m["key"]) for v, m in c.get_prefix("gw/", sort_order="descend",
                                                             sort_target="key")]
    r["limit"] = c.get("gw/", range_end="gw0", limit=2)
    r["get_all"] = c.get_all()[:2]
    r["create_new"] = c.create("gw/c", "1")
    r["create_taken"] = c.create("gw/c", "2")
    r["replace_ok"] = c.replace("gw/c", "1", "3")
    r["replace_stale"] = c.replace("gw/c", "1", "4")
    r["after_replace"] = c.get("gw/c")
    txn = c.transaction({
        "compare": [{"key": "Z3cvYw==", "result": "EQUAL", "target": "VALUE",
                     "value": "Mw=="}],  # gw/c == "3"
        "success": [{"request_put": {"key": "Z3cvdA==", "value": "b2s="}},  # gw/t = ok
                    {"request_range": {"key": "Z3cvYw=="}}],
        "failure": [],
    })
    r["txn"] = {"succeeded": txn["succeeded"],
                "responses": [sorted(x) for x in txn["responses"]],
                "revision": txn["header"]["revision"]}
    r["delete"] = c.delete("gw/k3")
    r["delete_missing"] = c.delete("gw/k3")
    r["delete_prefix"] = c.delete_prefix("gw/k")
    r["left"] = sorted(m["key"] for _, m in c.get_prefix("gw/"))

    events, cancel = c.watch_prefix("gw/w/", prev_kv=True)
    c.put("gw/w/a", "1")
    c.put("gw/w/a", "2")
    c.delete("gw/w/a")
    r["watch"] = _events(events, 3)
    cancel()
    start = r["watch"][0]["kv"]["mod_revision"]
    r["watch_once_from_rev"] = c.watch_once("gw/w/a", timeout=EVENT_TIMEOUT,
                                            start_revision=int(start))["kv"]["value"]

    lease = c.lease(LEASE_TTL)
    c.put("gw/lease", "held", lease=lease)
    r["lease_keys"] = lease.keys()
    refreshed = []
    deadline = time.monotonic() + 2.5 * LEASE_TTL
    while time.monotonic() < deadline:
        refreshed.append(lease.refresh())
        time.sleep(LEASE_TTL / 4)  # the client's own keep-alive period: no event to await
    r["refresh_ttls"] = sorted(set(refreshed))
    r["lease_key_after_ttls"] = c.get("gw/lease")
    r["lease_ttl_positive"] = lease.ttl() > 0
    r["revoke"] = lease.revoke()
    r["lease_key_after_revoke"] = c.get("gw/lease")
    r["refresh_revoked"] = lease.refresh()

    first, second = c.lock("gwlock", ttl=5), c.lock("gwlock", ttl=5)
    r["lock"] = {"first": first.acquire(), "second_while_held": second.acquire(),
                 "is_acquired": first.is_acquired(), "release": first.release(),
                 "second_after_release": second.acquire(),
                 "release_not_held": first.release()}
    second.release()
    r["errors"] = _errors(c)
    return r


def _check(r: dict[str, Any]) -> None:
    assert r["get"] == [b"v1"] and r["missing"] == []
    assert r["prefix"] == [(b"v3", b"gw/k3"), (b"v2", b"gw/k2"), (b"v1", b"gw/k1"),
                           (b"v0", b"gw/k0")]
    assert r["limit"] == [b"v0", b"v1"]
    assert (r["create_new"], r["create_taken"]) == (True, False)
    assert (r["replace_ok"], r["replace_stale"]) == (True, False)
    assert r["after_replace"] == [b"3"] and r["txn"]["succeeded"] is True
    assert (r["delete"], r["delete_missing"], r["delete_prefix"]) == (True, False, True)
    assert r["left"] == [b"gw/c", b"gw/t"]
    assert [(e["type"], e["kv"]["value"]) for e in r["watch"]] == [
        ("PUT", b"1"), ("PUT", b"2"), ("DELETE", None)]
    assert r["watch"][2]["prev_kv"]["value"] == b"2"
    assert r["watch_once_from_rev"] == b"1"
    assert r["lease_keys"] == [b"gw/lease"] and r["refresh_ttls"] == [LEASE_TTL]
    assert r["lease_key_after_ttls"] == [b"held"] and r["lease_ttl_positive"]
    assert r["lease_key_after_revoke"] == [] and r["refresh_revoked"] == -1
    assert r["lock"] == {"first": True, "second_while_held": False, "is_acquired": True,
                         "release": True, "second_after_release": True,
                         "release_not_held": False}
    e = r["errors"]
    compacted = "etcdserver: mvcc: required revision has been compacted"
    assert e["compacted"] == ("Etcd3Exception", 11, compacted)
    assert e["unknown_lease"] == ("Etcd3Exception", 5, "etcdserver: requested lease not found")
    assert e["empty_key"] == ("Etcd3Exception", 3, "etcdserver: key is not provided")
    assert e["watch_once_timeout"] == ("WatchTimedOut", 0, "")
    assert "version" in e["status_fields"]


@pytest.mark.parametrize("api_path", [None, "/v3beta/"], ids=["discovered", "v3beta"])
def test_etcd3gw_same_as_etcd(fresh_pair: dict[str, Member], api_path: str | None) -> None:
    clients = {
        kind: Etcd3Client(host="127.0.0.1", port=fresh_pair[kind].client_port,
                          api_path=api_path, timeout=EVENT_TIMEOUT)
        for kind in KINDS
    }
    with ThreadPoolExecutor(len(KINDS)) as pool:
        futures = {kind: pool.submit(_drive, c) for kind, c in clients.items()}
        results = {kind: f.result() for kind, f in futures.items()}
    if api_path is None:
        assert {c.api_path for c in clients.values()} == {"/v3/"}
    for kind in KINDS:
        _check(results[kind])
    assert results["pyetcd"] == results["etcd"]
