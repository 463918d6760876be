"""Publishing this member's name and client URLs through Raft (etcd's publishV3).

A member is ready to serve clients once its attributes are in the applied membership:
``Publisher.published`` is etcd's ReadyNotify.
"""

from __future__ import annotations

import asyncio

from pyetcd.logutil import Logger, go_duration
from pyetcd.pb import raft_internal_pb2

from .leadership import Leadership
from .proposer import Proposer

__all__ = ["Publisher"]


class Publisher:
    def __init__(
        self,
        member_id: int,
        cluster_id: int,
        name: str,
        client_urls: tuple[str, ...],
        leadership: Leadership,
        proposer: Proposer,
        logger: Logger,
        *,
        timeout: float,
        retry_delay: float,
    ) -> None:
        """``timeout``: the request timeout (seconds) etcd reports as publish-timeout;
        ``retry_delay``: seconds between attempts that failed."""
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.name = name
        self.client_urls = client_urls
        self.leadership = leadership
        self.proposer = proposer
        self.log = logger
        self.timeout = timeout
        self.retry_delay = retry_delay
        #: Set once the attributes were applied: from then on the member is ready.
        self.published = asyncio.Event()

    async def run(self) -> None:
        """Propose the attributes until they land (then log etcd's line)."""
        req = raft_internal_pb2.InternalRaftRequest()
        attr = req.cluster_member_attr_set
        attr.member_ID = self.member_id
        attr.member_attributes.name = self.name
        attr.member_attributes.client_urls.extend(self.client_urls)
        while True:
            try:
                await self.leadership.wait_leader()
                await self.proposer.propose(req)
                break
            except Exception as err:  # keep trying until it lands
                self.log.warn("failed to publish local member to cluster", {"error": str(err)})
                await asyncio.sleep(self.retry_delay)
        self.log.info(
            "published local member to cluster through raft",
            {
                "local-member-id": f"{self.member_id:x}",
                "local-member-attributes": (
                    f"{{Name:{self.name} ClientURLs:[{' '.join(self.client_urls)}]}}"
                ),
                "request-path": f"/0/members/{self.member_id:x}/attributes",
                "cluster-id": f"{self.cluster_id:x}",
                "publish-timeout": go_duration(self.timeout),
            },
        )
        self.published.set()
