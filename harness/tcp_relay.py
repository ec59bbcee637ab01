"""A TCP relay that counts the bytes it carries: what the sites and the server exchange.

Benchmarks put it between the sites and the server (Mosquitto, a Flower SuperLink) and read
the byte counts; it sees the transport's payload (TLS records when the link is encrypted),
not the IP and TCP headers.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

CHUNK = 1 << 16


class TcpRelay:
    """Listens on a free local port and forwards every connection to ``target_port``."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self._server = socket.create_server((host, 0))
        self.port: int = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self.upstream = 0
        """Bytes from the clients to the server."""
        self.downstream = 0
        """Bytes from the server to the clients."""
        self.connections = 0
        self._open: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()

    @property
    def total(self) -> int:
        """Bytes carried both ways so far."""
        with self._lock:
            return self.upstream + self.downstream

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection((self.host, self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._open += [client, server]
            for src, dst, up in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(CHUNK):
                with self._lock:  # counted before it is passed on, so a reader never lags
                    if up:
                        self.upstream += len(data)
                    else:
                        self.downstream += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop accepting and drop every relayed connection."""
        self._closed.set()
        self._server.close()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.close()

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
