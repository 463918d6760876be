"""Proposing through Raft and waiting for the apply (etcd's raftRequest).

The path of a write: ``propose()`` stamps the InternalRaftRequest with a fresh ID,
registers a waiter (with the request already converted to the store's shape, so
the apply loop on this member does not convert it again), hands the bytes to the
driver's inbox and awaits the waiter, which the Applier resolves once the entry is
committed and applied. One periodic sweep fails the waiters whose deadline passed.
"""

from __future__ import annotations

import asyncio
import time

from google.protobuf.message import Message

from pyetcd.mvcc import IDGenerator
from pyetcd.mvcc.hash import varint
from pyetcd.pb import raft_internal_pb2
from pyetcd.raft import ConfChange, ConfChangeSingle, ConfChangeType
from pyetcd.server.auth.store import AuthInfo

from .errors import NoLeaderError, RequestTimeoutError, RequestTooLargeError, StoppedError
from .inbox import RaftInbox
from .leadership import Leadership
from .membership import Member
from .wait import RequestWait

__all__ = ["Proposer"]


class Proposer:
    """Replicates requests and answers with what applying them produced."""

    def __init__(
        self,
        member_id: int,
        inbox: RaftInbox,
        waits: RequestWait,
        leadership: Leadership,
        *,
        max_request_bytes: int,
        request_timeout: float,
    ) -> None:
        self.idgen = IDGenerator(member_id, int(time.time() * 1000))
        self.inbox = inbox
        self.waits = waits
        self.leadership = leadership
        self.max_request_bytes = max_request_bytes
        self.request_timeout = request_timeout
        self.stopped = False
        #: etcd_server_proposals_failed_total
        self.proposals_failed = 0

    async def propose(
        self,
        req: raft_internal_pb2.InternalRaftRequest,
        auth: AuthInfo | None = None,
        request: object = None,
        *,
        body: tuple[str, Message] | None = None,
    ) -> object:
        """Replicate ``req`` through Raft and return what applying it produced.

        ``auth`` (who asked, from the request's token) goes into the entry header,
        so every member checks the entry's permissions at apply alike. ``request``:
        the store request ``req`` carries, already converted (see the module docstring).
        ``body``: (field name, client request) to carry in the entry as that field of
        ``req`` without copying it in: ``InternalRaftRequest(put=r)`` copies ``r``,
        which for a parsed 1 MiB put cost ~2.5 ms; its bytes are put first, where
        ``req``'s serialization (a header only, field 100) would place them.

        Raises:
            StoppedError, RequestTooLargeError, NoLeaderError, RequestTimeoutError, and
            whatever applying the request raised.
        """
        if self.stopped:
            raise StoppedError()
        req_id = self.idgen.next()
        req.header.ID = req_id
        if auth is not None:
            req.header.username = auth.username
            req.header.auth_revision = auth.revision
        data = req.SerializeToString()
        if body is not None:
            data = _embedded(*body) + data
        if len(data) > self.max_request_bytes:
            raise RequestTooLargeError()
        fut = self.waits.register_until(req_id, self.request_timeout, request)
        self.inbox.propose(data)
        # run_expiry fails the waiter once its deadline passed.
        return await fut

    async def propose_conf_change(self, cc_type: ConfChangeType, member: Member) -> None:
        """Propose one membership change and wait until it is applied.

        Raises:
            RequestTimeoutError, and the membership errors applying it raised.
        """
        req_id = self.idgen.next()
        ctx = member.encode_with_request(req_id)
        cc = ConfChange(changes=(ConfChangeSingle(cc_type, member.id),), context=ctx)
        fut = self.waits.register(req_id)
        self.inbox.propose_conf_change(cc)
        try:
            await asyncio.wait_for(fut, self.request_timeout)
        except TimeoutError:
            self.waits.cancel(req_id)
            raise RequestTimeoutError() from None

    def _timeout_error(self) -> BaseException:
        self.proposals_failed += 1
        if not self.leadership.lead:
            return NoLeaderError()
        return RequestTimeoutError()

    async def run_expiry(self) -> None:
        """Fail the waiters whose deadline passed (runs for the member's life)."""
        loop = asyncio.get_running_loop()
        while True:
            # idle (no deadline pending): no wake-ups; else a sweep every 100 ms
            await self.waits.armed.wait()
            await asyncio.sleep(0.1)
            self.waits.expire(loop.time(), self._timeout_error)


def _embedded(name: str, msg: Message) -> bytes:
    """Field ``name`` of InternalRaftRequest holding ``msg``, in protobuf wire format."""
    raw = msg.SerializeToString()
    return b"".join((_TAGS[name], varint(len(raw)), raw))


# Each message field's key (number, wire type 2) as encoded.
_TAGS = {
    f.name: varint(f.number << 3 | 2)
    for f in raft_internal_pb2.InternalRaftRequest.DESCRIPTOR.fields
    if f.message_type is not None
}
