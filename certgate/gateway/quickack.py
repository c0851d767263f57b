"""Prompt TCP acknowledgements during the SSH handshake (Linux ``TCP_QUICKACK``).

Measured with OpenSSH's ``ssh -vvv`` against asyncssh (docs/benchmarks.md, "Console
gateway"): every login stalled ~40 ms after the client's ``NEWKEYS``, and often another
~40 ms after its ``KEX_ECDH_INIT``. The client sends two small packets back to back before
it turns ``TCP_NODELAY`` on (it does so only once the session is interactive); Nagle holds
the second until the first is acknowledged, and the server's kernel delays that ACK (it has
nothing to send back yet) by its delayed-ACK timer, 40 ms. OpenSSH's ``sshd`` answers the
same client without the stall.

The fix is on our side of the socket: while the connection is authenticating, re-arm
``TCP_QUICKACK`` after each read, which makes the kernel acknowledge at once (it is not a
sticky flag). Once authentication is over the client has ``TCP_NODELAY`` and the wrapper is
removed, so bulk transfer pays nothing. A handful of ``setsockopt`` calls per login.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def acknowledge_promptly(conn: Any) -> None:
    """Make ``conn`` (an asyncssh connection) acknowledge every segment at once until
    ``stop_prompt_acks`` is called. A no-op off Linux or on non-TCP sockets."""
    sock = conn.get_extra_info("socket")
    if (_QUICKACK is None or sock is None
            or sock.family not in (socket.AF_INET, socket.AF_INET6)):
        return
    received = conn.data_received
    option = _QUICKACK

    def data_received(data: bytes, datatype: Any = None) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, 1)
        received(data, datatype)

    conn.data_received = data_received


def stop_prompt_acks(conn: Any) -> None:
    """Back to the kernel's normal (delayed) acknowledgements."""
    with contextlib.suppress(AttributeError):
        del conn.data_received  # the instance wrapper; the class's method shows again
