"""A TCP proxy between a worker and PostgreSQL that can cut, silence or refuse on demand.

Killing a backend (pg_terminate_backend) or restarting the server are faults
the server announces: the client gets an error or a FIN at once. A broken
network is worse: nothing arrives at all. This proxy makes both kinds:

- ``cut()``: every proxied connection is reset (RST, by closing with
  SO_LINGER 0) on both sides; new connections are still accepted.
- ``blackhole()``: bytes stop moving in both directions, sockets stay open,
  no RST and no FIN, so each peer sees silence; new connections are
  accepted but not connected onward. Bytes read before the silence are held,
  not dropped, as TCP would retransmit them once the network heals.
- ``refuse()``: every proxied connection is reset and each new one closed at
  once (``refused`` counts them), as a server that went away would answer.
- ``restore()``: bytes move again, on the old connections and the new.

The target is a TCP ``(host, port)`` or, for the embedded server, the path
of its Unix socket.

Plain threads: a few connections per worker, and a test's lifetime.
"""

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

BUFFER = 65536
# How often a blocked pump looks at the proxy's state; bounds cut()'s latency.
TICK = 0.05


def _reset(sock: socket.socket) -> None:
    """Close so that the peer gets a RST, not an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _connect(target: tuple[str, int] | str) -> socket.socket:
    if isinstance(target, str):  # a Unix socket's path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(target)
        return sock
    return socket.create_connection(target, timeout=5)


class _Link:
    """One client connection and, once bytes may flow, its connection to the target."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.dead = threading.Event()
        self.half_closed = 0  # directions that ended with an orderly close

    def reset(self) -> None:
        self.dead.set()
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


class TcpProxy:
    """Listens on 127.0.0.1:``port`` and forwards to ``target_host:target_port``."""

    def __init__(self, target: tuple[str, int] | str) -> None:
        self.target = target
        self.refused = 0  # connections closed at once while refusing
        self._refusing = False
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TICK)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop)

    # ------------------------------------------------------------ control
    def cut(self) -> None:
        """Reset every proxied connection now; later ones are proxied as usual."""
        with self._lock:
            links, self._links = self._links, set()
        for link in links:
            link.reset()

    def blackhole(self) -> None:
        """Stop moving bytes in both directions; sockets stay open and silent."""
        self._flowing.clear()

    def refuse(self) -> None:
        """Reset every proxied connection, and close new ones at once, until ``restore()``."""
        self._refusing = True
        self.refused = 0
        self.cut()

    def restore(self) -> None:
        """Accept and move bytes again, including those held during a silence."""
        self._refusing = False
        self._flowing.set()

    def close(self) -> None:
        """Stop listening and reset every connection; for the end of a test."""
        self._closed.set()
        self._flowing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        for thread in self._threads:
            thread.join(timeout=2)

    @property
    def connections(self) -> int:
        """Connections currently proxied (or held by a black hole)."""
        with self._lock:
            return len(self._links)

    # ------------------------------------------------------------ workers
    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._refusing:
                self.refused += 1
                _reset(client)
                continue
            link = _Link(client)
            with self._lock:
                self._links.add(link)
            self._spawn(self._open, link)

    def _wait_flowing(self, link: _Link) -> bool:
        """Block while black-holed; False once the link is dead or the proxy closed."""
        while not self._flowing.wait(TICK):
            if link.dead.is_set():
                return False
        return not link.dead.is_set() and not self._closed.is_set()

    def _open(self, link: _Link) -> None:
        if not self._wait_flowing(link):
            return
        try:
            link.upstream = _connect(self.target)
        except OSError:
            self._drop(link)
            return
        if link.dead.is_set():  # cut while connecting
            _reset(link.upstream)
            return
        for sock in (link.client, link.upstream):
            sock.settimeout(TICK)
        self._spawn(self._pump, link, link.client, link.upstream)
        self._spawn(self._pump, link, link.upstream, link.client)

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket) -> None:
        """Copy bytes one way; the data read is held, not sent, while black-holed."""
        while not link.dead.is_set():
            if not self._wait_flowing(link):
                return
            try:
                data = source.recv(BUFFER)
            except TimeoutError:
                continue
            except OSError:
                self._drop(link)
                return
            if not data:  # an orderly close: pass it on as one
                self._half_close(link, sink)
                return
            while data:
                if not self._wait_flowing(link):
                    return
                try:
                    sent = sink.send(data)
                except TimeoutError:
                    continue  # the peer reads slowly; look at the state again
                except OSError:
                    self._drop(link)
                    return
                data = data[sent:]

    def _half_close(self, link: _Link, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self._lock:
            link.half_closed += 1
            done = link.half_closed == 2
            if done:
                self._links.discard(link)
        if done:
            link.dead.set()
            for sock in (link.client, link.upstream):
                if sock is not None:
                    sock.close()

    def _drop(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
        link.reset()
