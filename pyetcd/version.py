"""The etcd version pyetcd reports, in one place.

pyetcd answers as etcd 3.5.13: every change of etcd 3.5.2 ... 3.5.13 that a client can
observe is in it (docs/VERSION.md lists each, with the test that pins it). Clients
decide on this number: kube-apiserver, for one, sends ``RequestWatchProgress`` (its
consistent reads from the watch cache) only to etcd 3.5.13 or later.

Everything that shows a version takes it from here: ``/version`` on the client and
peer ports, ``Status.version``, the ``etcd_server_version`` and
``etcd_cluster_version`` metrics, ``pyetcd --version``, ``pyetcdutl version`` and the
``clusterVersion`` written into a backend or snapshot.
"""

from __future__ import annotations

from typing import Final

__all__ = ["API_VERSION", "CLUSTER_VERSION", "SERVER_VERSION"]

#: The etcd server release whose client-visible behaviour pyetcd matches.
SERVER_VERSION: Final = "3.5.13"

#: The cluster version: etcd keeps only major.minor, with patch 0 ("3.5.0"), as the
#: version every member of the cluster is at least.
CLUSTER_VERSION: Final = SERVER_VERSION.rsplit(".", 1)[0] + ".0"

#: The API version (major.minor), as etcdctl and etcdutl print it.
API_VERSION: Final = SERVER_VERSION.rsplit(".", 1)[0]
