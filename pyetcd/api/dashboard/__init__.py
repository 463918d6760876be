"""The live dashboard served on the client URLs at ``/dashboard``: the cluster, a
timeline of what Raft did, charts of ``/metrics``, keys, leases and a watch feed."""

from __future__ import annotations

from .app import PREFIX, Dashboard
from .timeline import Event, StateDiffer, Timeline

__all__ = ["PREFIX", "Dashboard", "Event", "StateDiffer", "Timeline"]
