"""A helper that runs inside a test's network namespace and makes or takes connections.

The test drives it with one JSON command per line on stdin and reads one JSON answer per line,
so a namespace costs one process however many connections a test makes. It binds only to the
addresses the test gives it, which are all inside namespaces the test created.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading


def _serve_tcp(server: socket.socket, banner: bytes) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn, contextlib.suppress(OSError):
            conn.sendall(banner)


def main() -> None:
    name = sys.argv[1]
    udp: dict[int, socket.socket] = {}
    keep: list[socket.socket] = []
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        answer: dict[str, object] = {"ok": True}
        try:
            if op == "listen_tcp":
                server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind(("0.0.0.0", command["port"]))
                server.listen(64)
                keep.append(server)
                banner = f"{name}:{command['port']}\n".encode()
                threading.Thread(target=_serve_tcp, args=(server, banner), daemon=True).start()
            elif op == "connect_tcp":
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
                    client.settimeout(command["timeout"])
                    if command.get("source"):
                        client.bind((command["source"], 0))
                    try:
                        client.connect((command["host"], command["port"]))
                        answer["banner"] = client.recv(100).decode().strip()
                    except (TimeoutError, OSError) as exc:
                        answer = {"ok": False, "error": type(exc).__name__}
            elif op == "listen_udp":
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind(("0.0.0.0", command["port"]))
                udp[command["port"]] = sock
            elif op == "send_udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.bind((command["source"], 0))
                    sock.sendto(command["payload"].encode(), (command["host"], command["port"]))
            elif op == "recv_udp":
                sock = udp[command["port"]]
                sock.settimeout(command["timeout"])
                received: list[list[str]] = []
                try:
                    while True:
                        data, peer = sock.recvfrom(2048)
                        received.append([data.decode(), peer[0]])
                        sock.settimeout(0.05)
                except (TimeoutError, OSError):
                    pass
                answer["received"] = received
            else:
                answer = {"ok": False, "error": f"unknown op {op}"}
        except OSError as exc:
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
