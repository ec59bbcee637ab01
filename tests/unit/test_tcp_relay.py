"""The benchmarks' byte-counting relay forwards both ways and counts every byte."""

from __future__ import annotations

import socket
import threading

from harness.tcp_relay import TcpRelay


def test_relay_forwards_both_ways_and_counts_each_direction() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo_twice() -> None:
        conn, _ = server.accept()
        with conn:
            received = b""
            while len(received) < 100_000:
                received += conn.recv(65536)
            conn.sendall(received + received)

    thread = threading.Thread(target=echo_twice, daemon=True)
    thread.start()
    with TcpRelay(port) as relay, socket.create_connection(("127.0.0.1", relay.port)) as c:
        c.sendall(b"x" * 100_000)
        got = b""
        while len(got) < 200_000:
            chunk = c.recv(65536)
            assert chunk, "relay closed early"
            got += chunk
        thread.join(5)
        assert got == b"x" * 200_000
        assert (relay.upstream, relay.downstream, relay.connections) == (100_000, 200_000, 1)
        assert relay.total == 300_000
    server.close()
