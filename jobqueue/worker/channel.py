"""Messages between the supervisor and a child: length-prefixed pickles over a socket pair.

The supervisor reads with one ``recv`` whatever a child has written since it
last looked and decodes every complete message in it, so a burst of short
jobs costs it one system call rather than two per report.

The supervisor's end never blocks: ``send`` queues the encoded message and
writes what the socket takes now, and the rest goes out when the socket is
writable again (``flush``). A child that is busy, stopped or stuck therefore
never stalls the supervisor's loop, whose heartbeat holds every job's lease.
The child's end blocks, as a child has nothing else to do while it waits.
"""

import pickle
import socket
import struct
from typing import Any

_HEADER = struct.Struct("!I")
_READ_SIZE = 1 << 16


class ChannelClosed(Exception):
    """The other end has closed its socket (the process has exited or died)."""


class Channel:
    """One end of a duplex message channel between two processes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._pending = bytearray()  # bytes received but not yet decoded
        self._outgoing = bytearray()  # bytes queued by a non-blocking end, not yet written

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a, b = socket.socketpair()
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def set_nonblocking(self) -> None:
        """Make ``send`` queue what the socket cannot take now (the supervisor's end)."""
        self.sock.setblocking(False)

    @property
    def unsent(self) -> int:
        """Bytes queued by ``send`` that the socket has not taken yet."""
        return len(self._outgoing)

    def send(self, message: Any) -> None:
        """Send one message: on a blocking end all of it, on a non-blocking one what fits now.

        Raises OSError when the other end has gone.
        """
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        frame = _HEADER.pack(len(data)) + data
        if self.sock.getblocking():
            self.sock.sendall(frame)
            return
        self._outgoing += frame
        self.flush()

    def send_many(self, messages: list[Any]) -> None:
        """Send several messages in one write (a blocking end: a child's reports)."""
        frames = bytearray()
        for message in messages:
            data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
            frames += _HEADER.pack(len(data))
            frames += data
        self.sock.sendall(frames)

    def flush(self) -> bool:
        """Write what the socket takes now of the queued bytes; True once none are left.

        Raises OSError when the other end has gone.
        """
        if self._outgoing:
            try:
                sent = self.sock.send(self._outgoing)
            except BlockingIOError:
                return False
            del self._outgoing[:sent]
        return not self._outgoing

    def receive_ready(self) -> list[Any]:
        """Every complete message that has arrived, after one ``recv`` (call when readable).

        Raises ChannelClosed at end of stream, or when the socket is broken.
        """
        try:
            data = self.sock.recv(_READ_SIZE)
        except BlockingIOError:
            return []
        except (ConnectionError, OSError) as e:
            raise ChannelClosed(str(e)) from e
        if not data:
            raise ChannelClosed("end of stream")
        self._pending += data
        return self._decode()

    def receive(self) -> Any:
        """The next message, waiting for it (the child's side)."""
        while True:
            messages = self._decode(limit=1)
            if messages:
                return messages[0]
            data = self.sock.recv(_READ_SIZE)
            if not data:
                raise ChannelClosed("end of stream")
            self._pending += data

    def _decode(self, limit: int | None = None) -> list[Any]:
        messages: list[Any] = []
        start = 0
        pending = self._pending
        while len(pending) - start >= _HEADER.size and (limit is None or len(messages) < limit):
            (size,) = _HEADER.unpack_from(pending, start)
            end = start + _HEADER.size + size
            if len(pending) < end:
                break
            messages.append(pickle.loads(pending[start + _HEADER.size : end]))
            start = end
        if start:
            del pending[:start]
        return messages
