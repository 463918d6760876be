"""gRPC and HTTP/1.1 on one client port (etcd's cmux), for a grpc.aio server.

grpc.aio must own its listening socket, so pyetcd binds the client URL's port itself
and sorts each new connection by its first bytes:

- the HTTP/2 client preface (``PRI * HTTP/2.0...``) -> the connection is relayed to the
  grpc.aio server, which listens on a private address (a unix socket in the member
  directory, or an ephemeral loopback port);
- anything else -> handed, with the bytes already read, to the asyncio HTTP handler.

On a TLS listener (an ``https://`` client URL) the mux reads the TLS ClientHello and
routes by the ALPN protocols it offers, without terminating TLS itself: a client
offering ``h2`` but not ``http/1.1`` (every gRPC client) is relayed to the grpc.aio
server's TLS port; anything else (curl, browsers, Python's urllib) to a private
asyncio HTTPS server. Both terminate TLS themselves, so each sees the client's
certificate.

The relay is on the path of every gRPC request, so it runs in its own thread with one
epoll selector and moves bytes with ``os.splice`` through a pipe: the payload never
enters Python, and the GIL is released in every syscall. Rules the relay keeps:

1. One shared pipe per relay thread, empty between events: whatever a splice into a
   socket could not take is read back out into that direction's ``pending`` bytes.
2. A direction with pending bytes stops reading its source until the destination has
   taken them (backpressure instead of unbounded buffering).
3. End of stream is passed on as a half-close (``shutdown(SHUT_WR)``); a connection is
   closed when both directions have ended or either socket fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HTTP2_PREFACE", "ClientMux", "bind_client_url", "client_hello_alpn", "wants_grpc"]

#: What every HTTP/2 (and so gRPC) client sends first.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# No HTTP/1.x method starts with "PRI", so three bytes decide.
_SNIFF_BYTES = 3
_CHUNK = 64 * 1024  # the default pipe capacity
_SPLICE = hasattr(os, "splice")
_SPLICE_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if _SPLICE else 0
_READ, _WRITE = select.EPOLLIN, select.EPOLLOUT
# A hung-up or failed socket is reported ready both ways: the next syscall says why.
_BROKEN = select.EPOLLHUP | select.EPOLLERR

#: Called (from the relay thread) with an HTTP/1.x connection and its first bytes.
HTTPHandoff = Callable[[socket.socket, bytes], None]
#: A relay target: a unix socket path or (host, port).
Address = str | tuple[str, int]

_TLS_HANDSHAKE = 0x16
_TLS_HEADER = 5
_TLS_MAX_RECORD = 16384 + 2048  # a ClientHello fits one record
_ALPN_EXTENSION = 16


def client_hello_alpn(record: bytes) -> list[bytes] | None:
    """The ALPN protocols a TLS ClientHello record offers ([] for none).

    None when ``record`` is no well-formed ClientHello.
    """
    try:
        if record[0] != _TLS_HANDSHAKE or record[_TLS_HEADER] != 1:
            return None
        pos = _TLS_HEADER + 4 + 2 + 32  # handshake header, client version, random
        pos += 1 + record[pos]  # session id
        pos += 2 + int.from_bytes(record[pos : pos + 2], "big")  # cipher suites
        pos += 1 + record[pos]  # compression methods
        if pos >= len(record):
            return []
        end = pos + 2 + int.from_bytes(record[pos : pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            kind = int.from_bytes(record[pos : pos + 2], "big")
            size = int.from_bytes(record[pos + 2 : pos + 4], "big")
            body = record[pos + 4 : pos + 4 + size]
            if kind == _ALPN_EXTENSION:
                out, i = [], 2
                while i < len(body):
                    n = body[i]
                    out.append(bytes(body[i + 1 : i + 1 + n]))
                    i += 1 + n
                return out
            pos += 4 + size
        return []
    except IndexError:
        return None


def wants_grpc(alpn: list[bytes]) -> bool:
    """gRPC clients offer h2 only; HTTP/1.1 clients offer http/1.1 (or nothing)."""
    return b"h2" in alpn and b"http/1.1" not in alpn


def bind_client_url(url: str, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets for a client URL such as ``http://127.0.0.1:2379``.

    ``localhost`` and other names bind every address they resolve to.

    Raises:
        OSError: no address of the URL could be bound.
    """
    parts = urlsplit(url)
    host = parts.hostname or None
    port = parts.port or 2379
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    out: list[socket.socket] = []
    seen: set[Any] = set()
    last_err: OSError | None = None
    for family, _, _, _, addr in infos:
        if addr in seen:
            continue
        seen.add(addr)
        try:
            out.append(_listen(family, addr, reuse_port))
        except OSError as err:
            last_err = err
    if not out:
        raise last_err or OSError(errno.EADDRNOTAVAIL, f"cannot listen on {url}")
    return out


def _listen(family: int, addr: Any, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # Bind IPv6 alone so an IPv4 listener on the same port does not collide.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Direction:
    """Bytes flowing from ``src`` to ``dst``."""

    __slots__ = ("dst", "eof", "pending", "src")

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.pending = b""  # taken from src, not yet accepted by dst (rule 1)
        self.eof = False  # src ended; dst was (or will be, once drained) half-closed


class _Relay:
    """One client connection relayed to the gRPC server."""

    __slots__ = ("client", "down", "masks", "mux", "up")

    def __init__(self, mux: ClientMux, client: socket.socket, backend: socket.socket) -> None:
        self.mux = mux
        self.client = client
        self.up = _Direction(client, backend)
        self.down = _Direction(backend, client)
        self.masks: dict[socket.socket, int] = {client: 0, backend: 0}

    def on_event(self, sock: socket.socket, events: int) -> None:
        if not self.masks:
            return  # closed earlier in the same batch of selector events
        try:
            if events & _WRITE:
                self._flush(self.up if sock is self.up.dst else self.down)
            if events & _READ:
                self._pump(self.up if sock is self.up.src else self.down)
        except OSError:
            self.close()
            return
        if self.up.eof and self.down.eof and not self.up.pending and not self.down.pending:
            self.close()
        else:
            self.update()

    def _pump(self, d: _Direction) -> None:
        if d.pending or d.eof:
            return
        n, rest = self.mux.move(d.src, d.dst)
        if n == 0:
            d.eof = True
            d.dst.shutdown(socket.SHUT_WR)
        d.pending = rest

    def _flush(self, d: _Direction) -> None:
        if not d.pending:
            return
        try:
            sent = d.dst.send(d.pending)
        except BlockingIOError:
            return
        d.pending = d.pending[sent:]

    def update(self) -> None:
        """Register interest: read a source unless its bytes wait (rule 2)."""
        up, down = self.up, self.down
        client = backend = 0
        if up.pending:
            backend |= _WRITE
        elif not up.eof:
            client |= _READ
        if down.pending:
            client |= _WRITE
        elif not down.eof:
            backend |= _READ
        masks = self.masks
        if masks[up.src] != client:
            self.mux.set_interest(up.src, masks[up.src], client, self.on_event)
            masks[up.src] = client
        if masks[up.dst] != backend:
            self.mux.set_interest(up.dst, masks[up.dst], backend, self.on_event)
            masks[up.dst] = backend

    def close(self) -> None:
        for sock, mask in self.masks.items():
            if mask:
                self.mux.set_interest(sock, mask, 0, self.on_event)
            sock.close()
        self.masks = {}
        self.mux.relays.discard(self)


class ClientMux:
    """Accepts on the client listeners; relays gRPC, hands HTTP/1.x off.

    Args:
        listeners: bound, listening, non-blocking sockets (see :func:`bind_client_url`).
        grpc_address: where the grpc.aio server listens: a unix socket path, or
            ``(host, port)``.
        on_http: called in the relay thread with each HTTP/1.x connection and the
            bytes already read from it; it must only schedule work (e.g. with
            ``loop.call_soon_threadsafe``).
    """

    def __init__(
        self,
        listeners: list[socket.socket],
        grpc_address: Address,
        on_http: HTTPHandoff,
        *,
        tls_listeners: frozenset[socket.socket] = frozenset(),
        grpc_tls_address: Address = "",
        https_address: Address = "",
    ) -> None:
        self.listeners = listeners
        self.grpc_address = grpc_address
        self.on_http = on_http
        # TLS listeners and where their connections go (see the module docstring)
        self.tls_listeners = tls_listeners
        self.grpc_tls_address = grpc_tls_address
        self.https_address = https_address
        self.relays: set[_Relay] = set()
        self._sniffing: dict[socket.socket, bytes] = {}
        # epoll used directly: the relay thread's loop is on every request's path, and
        # selectors' bookkeeping per event cost more than the syscalls.
        self._epoll = select.epoll()
        self._handlers: dict[int, tuple[socket.socket, Callable[[Any, int], None] | None]] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._pipe_r, self._pipe_w = os.pipe() if _SPLICE else (-1, -1)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="client-mux", daemon=True)

    def start(self) -> None:
        """Start accepting in the relay thread."""
        for ls in self.listeners:
            self._register(ls, _READ, self._accept)
        self._register(self._wake_r, _READ, None)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close every relayed connection, join the thread."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join()

    # -- the relay thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                for fd, events in self._epoll.poll():
                    entry = self._handlers.get(fd)
                    if entry is None or entry[1] is None:
                        continue  # unregistered earlier in this batch, or the wake-up
                    if events & _BROKEN:
                        events |= _READ | _WRITE
                    entry[1](entry[0], events)
        finally:
            self._close_all()

    def _close_all(self) -> None:
        for relay in list(self.relays):
            relay.close()
        for sock in list(self._sniffing):
            sock.close()
        for ls in self.listeners:
            ls.close()
        self._epoll.close()
        self._wake_r.close()
        self._wake_w.close()
        if _SPLICE:
            os.close(self._pipe_r)
            os.close(self._pipe_w)

    def _accept(self, listener: socket.socket, events: int) -> None:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError:
            return  # e.g. EMFILE: try again on the next event
        sock.setblocking(False)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sniffing[sock] = b""
        if listener in self.tls_listeners:
            self._register(sock, _READ, self._sniff_tls)
        else:
            self._register(sock, _READ, self._sniff)

    def _sniff_tls(self, sock: socket.socket, events: int) -> None:
        seen = self._sniffing[sock]
        want = _TLS_HEADER
        if len(seen) >= _TLS_HEADER:
            want += int.from_bytes(seen[3:5], "big")
        try:
            data = sock.recv(min(want, _TLS_HEADER + _TLS_MAX_RECORD) - len(seen))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        seen += data
        if not data or seen[0] != _TLS_HANDSHAKE:
            self._drop(sock)
            return
        if len(seen) < _TLS_HEADER or len(seen) < _TLS_HEADER + int.from_bytes(seen[3:5], "big"):
            self._sniffing[sock] = seen
            return
        alpn = client_hello_alpn(seen)
        del self._sniffing[sock]
        self._unregister(sock)
        if alpn is None:
            sock.close()
            return
        self._relay(sock, seen, self.grpc_tls_address if wants_grpc(alpn) else self.https_address)

    def _sniff(self, sock: socket.socket, events: int) -> None:
        seen = self._sniffing[sock]
        try:
            data = sock.recv(_SNIFF_BYTES - len(seen))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        seen += data
        if len(seen) < _SNIFF_BYTES and HTTP2_PREFACE.startswith(seen):
            self._sniffing[sock] = seen
            return
        del self._sniffing[sock]
        self._unregister(sock)
        if seen.startswith(HTTP2_PREFACE[:_SNIFF_BYTES]):
            self._relay(sock, seen, self.grpc_address)
        else:
            self.on_http(sock, seen)

    def _drop(self, sock: socket.socket) -> None:
        del self._sniffing[sock]
        self._unregister(sock)
        sock.close()

    def _relay(self, client: socket.socket, first: bytes, addr: Address) -> None:
        family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
        backend = socket.socket(family, socket.SOCK_STREAM)
        try:
            # A local listener: connect and the first bytes complete at once.
            backend.connect(addr)
            backend.sendall(first)
            backend.setblocking(False)
            if family == socket.AF_INET:
                backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            backend.close()
            client.close()
            return
        relay = _Relay(self, client, backend)
        self.relays.add(relay)
        relay.update()

    def set_interest(
        self, sock: socket.socket, old: int, new: int, handler: Callable[[Any, int], None]
    ) -> None:
        """Change the selector registration of ``sock`` from mask ``old`` to ``new``."""
        if old and new:
            self._epoll.modify(sock.fileno(), new)
        elif new:
            self._register(sock, new, handler)
        elif old:
            self._unregister(sock)

    def _register(
        self, sock: socket.socket, mask: int, handler: Callable[[Any, int], None] | None
    ) -> None:
        fd = sock.fileno()
        self._epoll.register(fd, mask)
        self._handlers[fd] = (sock, handler)

    def _unregister(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        self._handlers.pop(fd, None)
        self._epoll.unregister(fd)

    def move(self, src: socket.socket, dst: socket.socket) -> tuple[int, bytes]:
        """Move up to one chunk from ``src`` to ``dst``.

        Returns the number of bytes taken from ``src`` (0 at end of stream, -1 when
        there was nothing to read) and the part of them ``dst`` did not accept yet.

        Raises:
            OSError: either socket failed (the connection is to be closed).
        """
        if not _SPLICE:
            return _move_copy(src, dst)
        try:
            n = os.splice(src.fileno(), self._pipe_w, _CHUNK, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            return -1, b""
        moved = 0
        failed: OSError | None = None
        while moved < n:
            try:
                moved += os.splice(self._pipe_r, dst.fileno(), n - moved, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                break
            except OSError as err:
                failed = err
                break
        rest = b""
        while moved + len(rest) < n:  # rule 1: leave the shared pipe empty, even on errors
            rest += os.read(self._pipe_r, n - moved - len(rest))
        if failed is not None:
            raise failed
        return n, rest


def _move_copy(src: socket.socket, dst: socket.socket) -> tuple[int, bytes]:
    try:
        data = src.recv(_CHUNK)
    except BlockingIOError:
        return -1, b""
    if not data:
        return 0, b""
    try:
        sent = dst.send(data)
    except BlockingIOError:
        sent = 0
    return len(data), data[sent:]
