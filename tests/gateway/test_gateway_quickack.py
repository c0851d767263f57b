"""During the SSH handshake the gateway acknowledges every TCP segment at once."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from certgate.gateway.quickack import acknowledge_promptly, stop_prompt_acks

QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class _Connection:
    """Stands in for an asyncssh connection: what the transport hands to ``data_received``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received: list[bytes] = []

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None

    def data_received(self, data: bytes, datatype: Any = None) -> None:
        self.received.append(data)


@pytest.fixture
def tcp_pair() -> Any:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    yield client, server
    client.close()
    server.close()


@pytest.mark.skipif(QUICKACK is None, reason="TCP_QUICKACK is Linux-only")
def test_each_read_rearms_quick_acks_until_authentication_ends(tcp_pair: Any) -> None:
    client, server = tcp_pair
    conn = _Connection(server)
    acknowledge_promptly(conn)

    server.setsockopt(socket.IPPROTO_TCP, QUICKACK, 0)  # as the kernel does in ping-pong
    client.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
    conn.data_received(server.recv(100))

    assert conn.received == [b"SSH-2.0-OpenSSH_9.2\r\n"]
    assert server.getsockopt(socket.IPPROTO_TCP, QUICKACK) == 1

    stop_prompt_acks(conn)
    server.setsockopt(socket.IPPROTO_TCP, QUICKACK, 0)
    conn.data_received(b"after authentication")

    assert conn.received[-1] == b"after authentication"
    assert server.getsockopt(socket.IPPROTO_TCP, QUICKACK) == 0
    assert "data_received" not in vars(conn)


def test_unix_sockets_and_missing_sockets_are_left_alone() -> None:
    left, right = socket.socketpair()
    with left, right:
        conn = _Connection(left)
        acknowledge_promptly(conn)
        assert "data_received" not in vars(conn)
    conn = _Connection(None)  # type: ignore[arg-type]
    acknowledge_promptly(conn)
    stop_prompt_acks(conn)
    assert "data_received" not in vars(conn)
