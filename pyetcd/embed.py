"""Start a pyetcd member from a resolved Config: the server, its client API, signals.

This is the one place that wires the layers together (the server layer never imports
grpc; the API layer calls the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from pyetcd.api.grpc_server import build_grpc_server, grpc_bind_address
from pyetcd.config import Config
from pyetcd.ids import BootstrapError
from pyetcd.logutil import Logger, new_logger
from pyetcd.server.server import EtcdServer
from pyetcd.wal import WALError

__all__ = ["run", "serve"]


async def serve(cfg: Config, logger: Logger, stop: asyncio.Event | None = None) -> int:
    """Run the member until ``stop`` is set (or SIGTERM/SIGINT); returns the exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server = EtcdServer(cfg, logger)
    try:
        await server.start()
    except (BootstrapError, WALError, OSError) as err:
        logger.fatal("failed to start etcd", {"error": str(err)})
        return 1
    g = build_grpc_server(server)
    for url in cfg.listen_client_urls:
        addr = grpc_bind_address(url)
        try:
            g.add_insecure_port(addr)
        except RuntimeError as err:
            logger.fatal("failed to listen on client URL", {"address": url, "error": str(err)})
            await server.stop()
            return 1
    await g.start()
    await g.pyetcd_health.set("", g.pyetcd_serving)
    logger.info(
        "serving client traffic insecurely; this is strongly discouraged!",
        {"address": ",".join(cfg.listen_client_urls)},
    )
    logger.info("ready to serve client requests", {})
    await stop.wait()
    logger.info("received signal; shutting down", {})
    # In-flight requests get a grace period; new ones are refused.
    await g.stop(grace=2.0)
    await server.stop()
    return 0


def run(cfg: Config) -> int:
    logger = new_logger(cfg.logger, cfg.log_outputs, cfg.log_level)
    try:
        return asyncio.run(serve(cfg, logger))
    finally:
        logger.close()
