"""Cost of following rotated certificates: TLS handshakes per second against a listener
whose context was loaded once (what pyetcd did before) and one whose connections swap to
the context of the files as they are now (``TLSInfo.server_context``: two ``stat`` calls
and an ``SSL_set_SSL_CTX`` per handshake), in one process over 127.0.0.1, client and
server on one loop, interleaved rounds; the client certificate is required and checked
in both.

    python bench/tls_handshake.py [--handshakes 400] [--rounds 5] [--tls12]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pyetcd.tlsutil import TLSInfo  # noqa: E402
from tests.e2e.tls_certs import CertAuthority  # noqa: E402


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _rate(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, n: int) -> float:
    server = await asyncio.start_server(_handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    start = time.perf_counter()
    for _ in range(n):
        _, w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="127.0.0.1"
        )
        w.close()
    elapsed = time.perf_counter() - start
    server.close()
    return n / elapsed


async def main(n: int, rounds: int, tls12: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ca = CertAuthority(Path(tmp))
        cert, key = ca.issue("server", "server")
        ccert, ckey = ca.issue("client", "client")
        static = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        static.load_cert_chain(cert, key)
        static.load_verify_locations(ca.ca_file)
        static.verify_mode = ssl.CERT_REQUIRED
        rotating = TLSInfo(str(cert), str(key), str(ca.ca_file), True).server_context()
        client = ssl.create_default_context(cafile=str(ca.ca_file))
        client.load_cert_chain(ccert, ckey)
        if tls12:
            client.maximum_version = ssl.TLSVersion.TLSv1_2
        await _rate(static, client, 50)  # warm-up
        await _rate(rotating, client, 50)
        rates: dict[str, list[float]] = {"loaded once": [], "follows the files": []}
        for _ in range(rounds):
            rates["loaded once"].append(await _rate(static, client, n))
            rates["follows the files"].append(await _rate(rotating, client, n))
    version = "TLS 1.2" if tls12 else "TLS 1.3"
    print(f"{version}, {n} handshakes x {rounds} rounds, loop {type(asyncio.get_running_loop())}")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"  {name:18s} median {med:7.0f} handshakes/s  ({1e6 / med:6.0f} us each)")
    a, b = (statistics.median(v) for v in rates.values())
    print(f"  difference: {100 * (a - b) / a:+.1f}% of the static rate")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--handshakes", type=int, default=400)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tls12", action="store_true")
    p.add_argument("--uvloop", action="store_true")
    args = p.parse_args()
    coro = main(args.handshakes, args.rounds, args.tls12)
    if args.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
