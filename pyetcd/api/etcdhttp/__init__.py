"""pyetcd.api.etcdhttp: HTTP/1.1 on the client URLs: ``/health``, ``/livez``,
``/readyz``, ``/version``, ``/metrics`` (``metrics``: etcd's metric families) and the JSON
gateway under ``/v3`` and ``/v3beta`` (``gateway``, ``streams``, ``gojson``), routed by
``HTTPFrontend``."""

from __future__ import annotations

from .handler import HTTPFrontend
from .metrics import ServerMetrics

__all__ = ["HTTPFrontend", "ServerMetrics"]
