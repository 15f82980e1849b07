"""Messages between the supervisor and a child: length-prefixed pickles over a socket pair.

The supervisor reads with one ``recv`` whatever a child has written since it
last looked and decodes every complete message in it, so a burst of short
jobs costs it one system call rather than two per report. Sends are one
``sendall`` per message; a batch of jobs travels as one message.
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

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a, b = socket.socketpair()
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        self.sock.sendall(_HEADER.pack(len(data)) + data)

    def receive_ready(self) -> list[Any]:
        """Every complete message that has arrived, after one ``recv`` (call when readable).

        Raises ChannelClosed at end of stream, or when the socket is broken.
        """
        try:
            data = self.sock.recv(_READ_SIZE)
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
