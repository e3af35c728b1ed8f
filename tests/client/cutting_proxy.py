"""A TCP proxy in front of the real server that breaks connections on demand:
the next answer is swallowed after the server has sent it (the command ran,
the client never hears), or every open connection is cut (a dropped stream)."""

from __future__ import annotations

import socket
import threading


class CuttingProxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._swallow_next = False
        self.swallowed = 0
        self.sent: list[bytes] = []  # what clients sent, one entry per connection
        threading.Thread(target=self._accept, daemon=True).start()

    def swallow_next_answer(self) -> None:
        with self._lock:
            self._swallow_next = True

    def cut_all(self) -> None:
        with self._lock:
            sockets = list(self._open)
        for s in sockets:
            _close(s)

    def close(self) -> None:
        _close(self._listener)
        self.cut_all()

    def requests_sent(self) -> str:
        with self._lock:
            return b"".join(self.sent).decode("latin-1")

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self._open.update((client, upstream))
                index = len(self.sent)
                self.sent.append(b"")
            threading.Thread(target=self._requests, args=(client, upstream, index), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, index: int) -> None:
        while chunk := _recv(client):
            with self._lock:
                self.sent[index] += chunk
            if not _send(upstream, chunk):
                break
        self._forget(client, upstream)

    def _answers(self, upstream: socket.socket, client: socket.socket) -> None:
        while chunk := _recv(upstream):
            with self._lock:
                swallow, self._swallow_next = self._swallow_next, False
                self.swallowed += swallow
            if swallow or not _send(client, chunk):
                break
        self._forget(client, upstream)

    def _forget(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(sockets)
        for s in sockets:
            _close(s)


def _recv(s: socket.socket) -> bytes:
    try:
        return s.recv(65536)
    except OSError:
        return b""


def _send(s: socket.socket, data: bytes) -> bool:
    try:
        s.sendall(data)
        return True
    except OSError:
        return False


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
