"""Benchmark: stock ``ssh`` → certgate → a console socket, against an OpenSSH bastion.

    python bench/console_gateway.py [--rounds N] [--megabytes M] [--write-docs]

Both paths end at the same Unix-socket "console" served by this script, which sends one
banner byte the moment a client connects and, on the bulk socket, then streams M MiB and
hangs up. Measured, for each path:

(a) time to first console byte: from spawning ``ssh`` to the banner byte on its stdout
    (median over N rounds; each round is a fresh ssh connection: handshake, auth, policy
    decision, console attach);
(b) bulk throughput: MiB/s of console output arriving on ssh's stdout (median over rounds).

The bastion is a real sshd on 127.0.0.1 whose ForceCommand runs
``socat - UNIX-CONNECT:SOCK``. Both clients are forced onto the same key exchange and
cipher, so the comparison is of the servers, not of algorithm choices. No pty is requested
on either path (stdin is a pipe), so terminal processing is out of the picture too.
Only 127.0.0.1 and Unix sockets are used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ca import keys  # noqa: E402
from certgate.fleet import add_vm, apply_policy  # noqa: E402
from certgate.home import Home  # noqa: E402
from certgate.installation import Installation  # noqa: E402
from certgate.provisioning import (  # noqa: E402
    InitOptions,
    create_installation,
    known_hosts_line,
)

PASSPHRASE = b"benchmark passphrase"
BANNER = b"\x06"
KEX = "curve25519-sha256"
CIPHER = "aes128-gcm@openssh.com"
CHUNK = 65536
POLICY = """\
version: 1
rules:
  - name: bench
    effect: allow
    vms: {names: ["*"]}
    require: {users: [bench]}
    privileges: [console.view, console.interact]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ConsoleServer:
    """Unix-socket consoles: ``banner.sock`` sends the banner byte and idles;
    ``bulk.sock`` sends the banner byte, then ``megabytes`` MiB, then hangs up."""

    def __init__(self, directory: Path, megabytes: int) -> None:
        self.banner_path = directory / "banner.sock"
        self.bulk_path = directory / "bulk.sock"
        self.payload = (b"console output line 0123456789 abcdefghijklmnopqrstuvwxyz\r\n" * 1200)[
            :CHUNK]
        self.total = megabytes * 1024 * 1024
        self._servers = [self._listen(self.banner_path, bulk=False),
                         self._listen(self.bulk_path, bulk=True)]

    def _listen(self, path: Path, *, bulk: bool) -> socket.socket:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(16)
        threading.Thread(target=self._accept, args=(server, bulk), daemon=True).start()
        return server

    def _accept(self, server: socket.socket, bulk: bool) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, bulk), daemon=True).start()

    def _serve(self, conn: socket.socket, bulk: bool) -> None:
        with conn:
            try:
                conn.sendall(BANNER)
                if bulk:
                    sent = 0
                    while sent < self.total:
                        piece = self.payload[: self.total - sent]
                        conn.sendall(piece)
                        sent += len(piece)
                    conn.shutdown(socket.SHUT_WR)
                while conn.recv(CHUNK):
                    pass
            except OSError:
                return

    def close(self) -> None:
        for server in self._servers:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()


@dataclass
class Path_:
    name: str
    ssh_args: list[str]
    banner_target: list[str]
    bulk_target: list[str]


@dataclass
class Figures:
    first_byte_ms: list[float]
    mib_per_s: list[float]
    truncated: int = 0


def spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ssh", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream:
            stream.close()


def first_byte(path: Path_) -> float:
    start = time.perf_counter()
    proc = spawn([*path.ssh_args, *path.banner_target])
    assert proc.stdout is not None
    try:
        seen = b""
        while BANNER not in seen:
            data = os.read(proc.stdout.fileno(), CHUNK)
            if not data:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"{path.name}: no banner byte; got {seen!r} {err}")
            seen += data
        return (time.perf_counter() - start) * 1000
    finally:
        stop(proc)


def bulk(path: Path_, total: int) -> tuple[float, bool]:
    """MiB/s of console output that reached ssh's stdout, and whether all of it did."""
    proc = spawn([*path.ssh_args, *path.bulk_target])
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        seen = b""
        while BANNER not in seen:
            data = os.read(fd, CHUNK)
            if not data:
                raise RuntimeError(f"{path.name}: no banner byte")
            seen += data
        start = time.perf_counter()
        received = len(seen) - seen.index(BANNER) - 1
        tail = b""
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            received += len(data)
            tail = (tail + data)[-300:]
        elapsed = time.perf_counter() - start
    finally:
        stop(proc)
    complete = received >= total  # certgate appends a one-line "session ended" notice
    if not complete:
        print(f"{path.name}: only {received} of {total} bytes arrived; the end: "
              f"{tail[-120:]!r}", file=sys.stderr)
    return min(received, total) / (1024 * 1024) / elapsed, complete


def measure(path: Path_, rounds: int, megabytes: int) -> Figures:
    first_byte(path)  # warm-up: page cache, first policy load
    figures = Figures([], [])
    for _ in range(rounds):
        figures.first_byte_ms.append(first_byte(path))
    for _ in range(max(3, rounds // 3)):
        rate, complete = bulk(path, megabytes * 1024 * 1024)
        figures.mib_per_s.append(rate)
        figures.truncated += not complete
    return figures


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"{what} did not start: {err}")
        time.sleep(0.05)


@contextlib.contextmanager
def certgate_path(work: Path, console: ConsoleServer, user_key: Path) -> Iterator[Path_]:
    port = free_port()
    home = Home(work / "home")
    create_installation(home, InitOptions(gateway_name="bench.gw", listen_port=port),
                        passphrase=PASSPHRASE, actor="bench")
    inst = Installation(home, actor="bench", passphrase=lambda: PASSPHRASE)
    try:
        inst.ca.add_user("bench", email=None, days=1,
                      public_key=keys.load_public_key(Path(f"{user_key}.pub").read_bytes()))
        add_vm(inst, "banner", f"unix:{console.banner_path}", {})
        add_vm(inst, "bulk", f"unix:{console.bulk_path}", {})
        apply_policy(inst, POLICY, "bench.yaml")
        known_hosts = work / "certgate_known_hosts"
        known_hosts.write_text(known_hosts_line(home, inst.config) + "\n")
    finally:
        inst.close()
    env = {**os.environ, "CERTGATE_HOME": str(home.root),
           "CERTGATE_CA_PASSPHRASE": PASSPHRASE.decode()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "certgate", "serve", "--log-level", "warning"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        wait_port(port, proc, "certgate serve")
        args = client_args(port, known_hosts, user_key)
        yield Path_("certgate", args, ["banner@127.0.0.1"], ["bulk@127.0.0.1"])
    finally:
        stop(proc)


@contextlib.contextmanager
def bastion_path(work: Path, console: ConsoleServer, user_key: Path) -> Iterator[Path_]:
    os.makedirs("/run/sshd", exist_ok=True)
    host_key = work / "bastion_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                   check=True)
    authorized = work / "bastion_authorized_keys"
    authorized.write_text(Path(f"{user_key}.pub").read_text())
    port = free_port()
    # The client's command picks the socket (banner|bulk), as the login name does on certgate.
    force = f"exec socat - UNIX-CONNECT:{console.banner_path.parent}/$SSH_ORIGINAL_COMMAND.sock"
    config = work / "bastion_sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\nUsePAM no\nStrictModes no\n"
        f"PidFile {work / 'bastion.pid'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel ERROR\n"
        f"ForceCommand {force}\n"
    )
    known_hosts = work / "bastion_known_hosts"
    kind, blob = Path(f"{host_key}.pub").read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_port(port, proc, "sshd")
        args = client_args(port, known_hosts, user_key)
        user = os.environ.get("USER") or "root"
        yield Path_("openssh bastion", args, [f"{user}@127.0.0.1", "banner"],
                    [f"{user}@127.0.0.1", "bulk"])
    finally:
        stop(proc)


def client_args(port: int, known_hosts: Path, key: Path) -> list[str]:
    return ["-F", "/dev/null", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", f"KexAlgorithms={KEX}", "-c", CIPHER, "-T", "-i", str(key),
            "-p", str(port)]


def report(results: dict[str, Figures], rounds: int, megabytes: int) -> str:
    cg, ba = results["certgate"], results["openssh bastion"]
    fb = (statistics.median(cg.first_byte_ms), statistics.median(ba.first_byte_ms))
    tp = (statistics.median(cg.mib_per_s), statistics.median(ba.mib_per_s))
    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    lines = [
        f"rounds={rounds}, bulk={megabytes} MiB, kex={KEX}, cipher={CIPHER}, no pty, "
        f"{os.cpu_count()} CPUs, {ssh_version}",
        "",
        "| figure | certgate | OpenSSH bastion (sshd + socat) | ratio certgate/bastion |",
        "|---|---|---|---|",
        f"| time to first console byte, median | {fb[0]:.1f} ms | {fb[1]:.1f} ms | "
        f"{fb[0] / fb[1]:.2f} (lower is better) |",
        f"| bulk console output, median | {tp[0]:.1f} MiB/s | {tp[1]:.1f} MiB/s | "
        f"{tp[0] / tp[1]:.2f} (higher is better) |",
        "",
        f"bulk runs cut short before all {megabytes} MiB arrived: certgate {cg.truncated} of "
        f"{len(cg.mib_per_s)}, bastion {ba.truncated} of {len(ba.mib_per_s)}",
        f"first-byte samples (ms): certgate {', '.join(f'{x:.0f}' for x in cg.first_byte_ms)}; "
        f"bastion {', '.join(f'{x:.0f}' for x in ba.first_byte_ms)}",
        f"throughput samples (MiB/s): certgate {', '.join(f'{x:.0f}' for x in cg.mib_per_s)}; "
        f"bastion {', '.join(f'{x:.0f}' for x in ba.mib_per_s)}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--megabytes", type=int, default=64)
    options = parser.parse_args()
    for tool in ("ssh", "ssh-keygen", "socat", "/usr/sbin/sshd"):
        if shutil.which(tool) is None:
            print(f"console_gateway.py: {tool} is required", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="cgb-", dir="/tmp") as tmp:
        work = Path(tmp)
        user_key = work / "user_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(user_key)],
                       check=True)
        console = ConsoleServer(work, options.megabytes)
        results: dict[str, Figures] = {}
        try:
            for make in (certgate_path, bastion_path):
                with make(work, console, user_key) as path:
                    results[path.name] = measure(path, options.rounds, options.megabytes)
        finally:
            console.close()
    print(report(results, options.rounds, options.megabytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
