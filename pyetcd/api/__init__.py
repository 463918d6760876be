"""pyetcd.api: what clients meet on the client URLs: etcd's gRPC services (``v3rpc``),
the HTTP endpoints and JSON gateway (``etcdhttp``), the dashboard (``dashboard``), and
the listener that serves them all on one port (``listener``)."""

from __future__ import annotations

__all__: list[str] = []
