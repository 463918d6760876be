"""Start a pyetcd member from a resolved ServerConfig: the server, its client API, signals.

This is the one place that wires the layers together (the server layer never imports
grpc; the API layer calls the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import signal
import ssl
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from pyetcd.api.etcdhttp.metrics import ServerMetrics
from pyetcd.api.listener import ClientListener, ListenError, MetricsListener
from pyetcd.api.v3rpc.grpc import build_grpc_server
from pyetcd.config import ServerConfig, log_rotation
from pyetcd.ids import BootstrapError
from pyetcd.logutil import Logger, new_logger
from pyetcd.server.auth.errors import AuthOptionsError
from pyetcd.server.etcdserver.corrupt import DataInconsistencyError
from pyetcd.server.etcdserver.events import NO_EVENTS
from pyetcd.server.etcdserver.fatal import FatalError
from pyetcd.server.etcdserver.server import EtcdServer, TransportFactory
from pyetcd.server.etcdserver.transport import TransportParams
from pyetcd.server.rafthttp.transport import PeerTransport
from pyetcd.tlsutil import TLSInfo, TLSSetupError, client_tls_info, peer_tls_info
from pyetcd.version import SERVER_VERSION

if TYPE_CHECKING:
    from pyetcd.api.dashboard import Dashboard, Timeline
from pyetcd.wal import WALError

__all__ = ["run", "serve"]


async def serve(cfg: ServerConfig, logger: Logger, stop: asyncio.Event | None = None) -> int:
    """Run the member until ``stop`` is set (or SIGTERM/SIGINT); returns the exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        client_tls = client_tls_info(cfg)
        peer_tls = peer_tls_info(cfg)
        # Both follow the peer certificate files for each new connection.
        peer_server_ssl = peer_tls.server_context(logger=logger) if peer_tls else None
        peer_ssl = peer_tls.client_context(logger=logger) if peer_tls else None
    except TLSSetupError as err:
        # etcd sets TLS up in StartEtcd; its errors end in these two lines.
        logger.warn("failed to start etcd", {"error": str(err)})
        logger.fatal("discovery failed", {"error": str(err)})
        return 1
    # The dashboard's timeline hears of elections and snapshots from the server's parts.
    # The dashboard is opt-in, and imported only then (issue 22: idle memory).
    timeline: Timeline | None = None
    if cfg.enable_dashboard:
        from pyetcd.api.dashboard import Timeline

        timeline = Timeline()
    server = EtcdServer(
        cfg,
        logger,
        transport_factory=_peer_factory(peer_server_ssl, peer_ssl),
        peer_ssl=peer_ssl,
        events=timeline if timeline is not None else NO_EVENTS,
    )
    _log_starting(logger, cfg)
    # Start-up builds the key index: hundreds of thousands of objects that all live on.
    # Cyclic collections while they pile up would rescan them again and again.
    gc.disable()
    try:
        await server.start()
    except FatalError as err:
        server.fatal.fail(err.msg, err)
        return 1
    except (
        BootstrapError,
        WALError,
        OSError,
        TLSSetupError,
        AuthOptionsError,
        DataInconsistencyError,
    ) as err:
        logger.fatal("failed to start etcd", {"error": str(err)})
        return 1
    finally:
        _tune_gc()
    g = build_grpc_server(server)
    # gRPC and HTTP share each client port: the listener sorts connections (cmux).
    metrics = ServerMetrics(server, g.method_stats)
    dashboard: Dashboard | None = None
    if timeline is not None:
        from pyetcd.api.dashboard import Dashboard

        client_ssl = client_tls.client_context() if client_tls is not None else None
        dashboard = Dashboard(server, metrics, timeline, client_ssl=client_ssl)
    client = ClientListener(server, client_tls, metrics=metrics, site=dashboard)
    extra = MetricsListener(server, metrics, client_tls)
    _log_now_serving(logger, cfg, server.member_id)
    try:
        client.listen(g)
        await extra.start()
    except (ListenError, TLSSetupError) as err:
        url = err.url if isinstance(err, ListenError) else ""
        logger.fatal("failed to listen on client URL", {"address": url, "error": str(err)})
        await server.stop()
        return 1
    await client.start()
    if dashboard is not None:
        dashboard.start()
    await g.health.set("", g.serving)
    # As etcd, "ready" once this member's attributes are published through Raft.
    ready = asyncio.ensure_future(_log_ready(server, logger, cfg, client_tls))
    removed = asyncio.ensure_future(server.removed_event.wait())
    stopped = asyncio.ensure_future(stop.wait())
    failed = asyncio.ensure_future(server.fatal.wait())
    await asyncio.wait({removed, stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    for waiter in (removed, stopped, failed, ready):
        waiter.cancel()
    if server.fatal.failed:
        # The fatal line is written; end at once, as etcd's lg.Fatal does: no grace
        # period for requests that can no longer be answered truthfully.
        await server.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 1.0)
            await asyncio.wait_for(extra.stop(), 1.0)
        return 1
    logger.info("received signal; shutting down", {})
    closing = {
        "name": cfg.name,
        "data-dir": cfg.data_dir,
        "advertise-peer-urls": list(cfg.initial_advertise_peer_urls),
        "advertise-client-urls": list(cfg.advertise_client_urls),
    }
    logger.info("closing etcd server", closing)
    # In-flight requests get a grace period; new ones are refused.
    await g.stop(grace=2.0)
    if dashboard is not None:
        await dashboard.stop()
    await extra.stop()
    await client.stop()
    await server.stop()
    logger.info("closed etcd server", closing)
    return 1 if server.fatal.failed else 0


def _log_starting(logger: Logger, cfg: ServerConfig) -> None:
    """etcd's first line of a member (embed.StartEtcd), with its main fields."""
    logger.info(
        "starting an etcd server",
        {
            "etcd-version": SERVER_VERSION,
            "name": cfg.name,
            "data-dir": cfg.data_dir,
            "wal-dir": cfg.wal_dir,
            "member-dir": cfg.member_dir,
            "member-initialized": os.path.isdir(cfg.wal_path),
            "initial-advertise-peer-urls": list(cfg.initial_advertise_peer_urls),
            "listen-peer-urls": list(cfg.listen_peer_urls),
            "advertise-client-urls": list(cfg.advertise_client_urls),
            "listen-client-urls": list(cfg.listen_client_urls),
            "listen-metrics-urls": list(cfg.listen_metrics_urls),
            "initial-cluster": cfg.initial_cluster,
            "initial-cluster-state": cfg.initial_cluster_state,
            "initial-cluster-token": cfg.initial_cluster_token,
        },
    )


def _log_now_serving(logger: Logger, cfg: ServerConfig, member_id: int) -> None:
    logger.info(
        "now serving peer/client/metrics",
        {
            "local-member-id": f"{member_id:x}",
            "initial-advertise-peer-urls": list(cfg.initial_advertise_peer_urls),
            "listen-peer-urls": list(cfg.listen_peer_urls),
            "advertise-client-urls": list(cfg.advertise_client_urls),
            "listen-client-urls": list(cfg.listen_client_urls),
            "listen-metrics-urls": list(cfg.listen_metrics_urls),
        },
    )
    for url in cfg.listen_peer_urls:
        logger.info("serving peer traffic", {"address": url.split("://", 1)[-1]})


async def _log_ready(
    server: EtcdServer, logger: Logger, cfg: ServerConfig, tls: TLSInfo | None
) -> None:
    await server.publisher.published.wait()
    logger.info("ready to serve client requests", {})
    _log_serving(logger, cfg, tls)


def _log_serving(logger: Logger, cfg: ServerConfig, tls: TLSInfo | None) -> None:
    # One line per client URL, its address as host:port (etcd's embed/serve.go).
    for url in cfg.listen_client_urls:
        address = url.split("://", 1)[-1]
        if not url.startswith("https:"):
            logger.info(
                "serving client traffic insecurely; this is strongly discouraged!",
                {"address": address},
            )
        elif tls is not None:
            logger.info(
                "serving client traffic securely",
                {"address": address, "client-cert-auth": tls.client_cert_auth},
            )


def _peer_factory(
    server_ssl: ssl.SSLContext | None, client_ssl: ssl.SSLContext | None
) -> TransportFactory:
    """Builds the TCP transport on the peer URLs (peer TLS from the two contexts) from
    what the server hands it; everything it calls exists before it (etcdserver/inbox.py)."""

    def build(params: TransportParams) -> PeerTransport:
        return PeerTransport(
            params.member_id,
            params.cluster_id,
            params.listen_urls,
            params.peers,
            on_message=params.receiver.step,
            on_unreachable=params.receiver.report_unreachable,
            on_snapshot_status=params.receiver.report_snapshot,
            logger=params.logger,
            open_snapshot_db=params.snapshots.open_snapshot_db,
            on_snapshot=params.snapshots.on_snapshot_received,
            snapshot_dir=params.snapshot_dir,
            on_removed=params.removed.removed_by_peer,
            is_removed=params.removed.is_removed,
            http_handler=params.http.serve_peer_http,
            on_fatal=params.fatal.fail,
            metrics=params.metrics,
            server_ssl=server_ssl,
            client_ssl=client_ssl,
        )

    return build


def _tune_gc() -> None:
    # Every request allocates a few dozen short-lived objects; collecting the young
    # generation every 700 allocations costs several percent of a core under load.
    # What was built at start-up (modules, the key index) is frozen out of the scans,
    # without a full collection first: that would walk the whole index once more, and
    # start-up leaves next to no cyclic garbage.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    gc.enable()


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    # uvloop makes the event loop (every client connection's I/O) noticeably cheaper;
    # fall back when absent.
    if os.environ.get("PYETCD_NO_UVLOOP") != "1":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def raise_fd_limit(logger: Logger) -> None:
    """Raise the open-file soft limit to the hard limit, as etcd does at start: every
    client connection is a descriptor, and running out at a WAL cut ends the member."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as err:
        logger.warn("failed to raise the open file limit", {"error": str(err)})


async def _serve_process(cfg: ServerConfig, logger: Logger) -> int:
    code = await serve(cfg, logger)
    if code != 0:
        # Exit now, like zap's Fatal (os.Exit): the loop's teardown would wait for
        # worker threads, and one may be stuck on the disk that failed.
        logger.close()
        os._exit(code)
    return code


def run(cfg: ServerConfig) -> int:
    logger = new_logger(cfg.logger, cfg.log_outputs, cfg.log_level, rotation=log_rotation(cfg))
    raise_fd_limit(logger)
    try:
        return _run_loop(_serve_process(cfg, logger))
    finally:
        logger.close()
