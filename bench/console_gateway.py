"""Benchmark: stock ``ssh -tt`` → a console hop → a console socket, three hops in alternation.

    python bench/console_gateway.py [--rounds N] [--megabytes M]

The three systems, measured in the same run, alternating in every round:

- **certgate**: ``certgate serve`` (SQLite installation) with a policy allowing the user;
- **bastion-clean**: a real OpenSSH ``sshd`` on 127.0.0.1 whose ``ForceCommand`` runs
  ``socat - UNIX-CONNECT:SOCK``, logging into a dedicated system account made by this script
  (``cgbench``: shell ``/bin/sh``, an empty home, no rc files), so no login-shell start-up is
  counted against the bastion (root's rc files cost 200-270 ms per login on this machine);
- **asyncssh floor**: a bare asyncssh server (this script, ``--floor-server``) that accepts the
  key and pumps bytes between the channel and the socket: no policy, no audit, no recording.
  What any asyncssh-based gateway costs at least.

Every client is stock OpenSSH ``ssh -tt`` (a pty on the server side, as users run it), forced
onto curve25519-sha256 and aes128-gcm@openssh.com. The console socket (served here) sends one
banner byte the moment a client connects; on the bulk socket it then streams M MiB of
``\\r\\n``-terminated text and hangs up. Measured:

(a) time to first console byte: from spawning ``ssh`` to the banner byte on its stdout;
(b) bulk through a pty: payload MiB / seconds from the banner byte to ssh's end of output;
(c) server CPU per 32 MiB: CPU time of the server and everything it started (for sshd: its
    per-connection processes and ``socat``), counted by a cgroup-v1 cpuacct group made here,
    during one bulk session (handshake included), scaled to 32 MiB;
(d) server CPU per login: the same count over one whole first-byte session (handshake,
    login, session start and end), which (c) includes once.

Only 127.0.0.1 and Unix sockets are used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pwd
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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSPHRASE = b"benchmark passphrase"
BANNER = b"\x06"
KEX = "curve25519-sha256"
CIPHER = "aes128-gcm@openssh.com"
CHUNK = 65536
LOGIN_SETTLE = 0.3
"""Seconds after a first-byte session for the server to finish it before its CPU is read."""
CLEAN_USER = "cgbench"
POLICY = """\
version: 1
rules:
  - name: bench
    effect: allow
    vms: {names: ["*"]}
    require: {users: [bench]}
    privileges: [console.view, console.interact]
"""
SYSTEMS = ("certgate", "bastion-clean", "asyncssh floor")
BEFORE = "certgate-before"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ConsoleServer:
    """Unix-socket consoles: ``banner.sock`` sends the banner byte and idles;
    ``bulk.sock`` sends the banner byte, then ``megabytes`` MiB, then hangs up."""

    def __init__(self, directory: Path, megabytes: int) -> None:
        self.directory = directory
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
        os.chmod(path, 0o777)  # the bastion's socat runs as the unprivileged bench account
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
class Hop:
    name: str
    server: subprocess.Popen[bytes]
    meter: CpuMeter
    ssh_args: list[str]
    banner_target: list[str]
    bulk_target: list[str]


@dataclass
class Figures:
    first_byte_ms: list[float] = field(default_factory=list)
    mib_per_s: list[float] = field(default_factory=list)
    cpu_per_32: list[float] = field(default_factory=list)
    cpu_per_login_ms: list[float] = field(default_factory=list)
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


class CpuMeter:
    """CPU time of a server and every process it starts, through a cgroup-v1 cpuacct group.

    A cgroup counts descendants whether or not anyone reaps them (sshd's per-connection
    processes did not all show up in the listener's cutime). Without cpuacct, falls back to
    the server process's own utime+stime plus its reaped children's.
    """

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self, name: str) -> None:
        self.group: Path | None = self.ROOT / f"cgbench-{os.getpid()}-{name.replace(' ', '-')}"
        try:
            self.group.mkdir()
        except OSError:
            self.group = None
        self.pid = 0

    @property
    def method(self) -> str:
        return "cgroup cpuacct" if self.group else "/proc utime+stime+cutime+cstime"

    def enter(self) -> None:
        """Runs in the child before exec (``preexec_fn``)."""
        if self.group is not None:
            (self.group / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self) -> float:
        if self.group is not None:
            return int((self.group / "cpuacct.usage").read_text()) / 1e9
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.group is not None:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    self.group.rmdir()
                    return
                except OSError:
                    time.sleep(0.05)


def start_server(args: list[str], meter: CpuMeter, **kwargs: object) -> subprocess.Popen[bytes]:
    proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
        args, preexec_fn=meter.enter, start_new_session=True, **kwargs)
    meter.pid = proc.pid
    return proc


def wait_children_reaped(pid: int, deadline: float = 5.0) -> None:
    """Wait until the server's per-connection processes of the last session are gone."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        children = "".join(
            Path(f"/proc/{pid}/task/{task}/children").read_text()
            for task in os.listdir(f"/proc/{pid}/task"))
        if not children.strip():
            return
        time.sleep(0.01)


def read_banner(hop: Hop, proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stdout is not None
    seen = b""
    while BANNER not in seen:
        data = os.read(proc.stdout.fileno(), CHUNK)
        if not data:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"{hop.name}: no banner byte; got {seen!r} {err}")
        seen += data
    return seen


def first_byte(hop: Hop) -> float:
    start = time.perf_counter()
    proc = spawn([*hop.ssh_args, *hop.banner_target])
    try:
        read_banner(hop, proc)
        return (time.perf_counter() - start) * 1000
    finally:
        stop(proc)


def login_cpu(hop: Hop) -> tuple[float, float]:
    """First byte (ms) and the server's CPU (ms) for that whole session: handshake, login,
    the session and its end (the server is given a moment to record the end)."""
    wait_children_reaped(hop.server.pid)
    before = hop.meter.seconds()
    elapsed = first_byte(hop)
    time.sleep(LOGIN_SETTLE)
    wait_children_reaped(hop.server.pid)
    return elapsed, (hop.meter.seconds() - before) * 1000


def bulk(hop: Hop, total: int) -> tuple[float, float, bool]:
    """MiB/s of console payload through the hop, server CPU s per 32 MiB, and completeness."""
    wait_children_reaped(hop.server.pid)
    cpu_before = hop.meter.seconds()
    proc = spawn([*hop.ssh_args, *hop.bulk_target])
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        seen = read_banner(hop, proc)
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
        proc.wait()
    finally:
        stop(proc)
    wait_children_reaped(hop.server.pid)
    cpu = hop.meter.seconds() - cpu_before
    # certgate appends a one-line "session ended" notice; a pty on sshd turns the payload's
    # "\r\n" into "\r\r\n": count completeness in bytes, speed in payload bytes.
    complete = received >= total
    if not complete:
        print(f"{hop.name}: only {received} of {total} bytes arrived; the end: "
              f"{tail[-120:]!r}", file=sys.stderr)
    mib = total / (1024 * 1024)
    return mib / elapsed, cpu * 32 / mib, complete


def summarize_profile(raw: Path, top: int = 25) -> str:
    """Inclusive share of samples per function, from py-spy's collapsed stacks."""
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = waiting = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")")
                  for f in stack.split(";")]
        # Waits py-spy does not always see as idle: a worker thread waiting for work, the
        # event loop in epoll. Left out, so shares are of the time the server was busy.
        if frames[-1].startswith(("_worker thread.py:81", "EpollSelector.select")):
            waiting += count
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + count
    total = max(total, 1)
    lines = [f"py-spy: {total} busy samples ({waiting} waiting left out); on a loaded machine a "
             "thread waiting for a CPU counts as busy where it was preempted; by self share "
             "(inclusive share beside)"]
    for frame, count in sorted(leaf.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  self {100 * count / total:5.1f}%  "
                     f"incl {100 * inclusive[frame] / total:5.1f}%  {frame}")
    lines.append("by inclusive share, event-loop and thread plumbing left out:")
    plumbing = ("runners.py", "base_events.py", "events.py", "threading.py", "core.py",
                "runpy", "__main__.py", "decorators.py", "main.py", "thread.py", "console_gateway")
    shown = 0
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1]):
        if any(p in frame for p in plumbing):
            continue
        lines.append(f"  incl {100 * count / total:5.1f}%  {frame}")
        shown += 1
        if shown == top:
            break
    return "\n".join(lines)


def profiled_bulk(hop: Hop, total: int, out: Path) -> str:
    """One bulk session with py-spy sampling the hop's server process."""
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p",
                            str(hop.server.pid), "-r", "250", "-f", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    bulk(hop, total)
    spy.send_signal(signal.SIGINT)
    spy.wait()
    return summarize_profile(out)


def profiled_logins(hop: Hop, count: int, out: Path) -> str:
    """``count`` first-byte logins with py-spy sampling the hop's server process."""
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p",
                            str(hop.server.pid), "-r", "1000", "-f", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    for _ in range(count):
        first_byte(hop)
        time.sleep(0.1)  # let the session end (its end is recorded) before the next login
    spy.send_signal(signal.SIGINT)
    spy.wait()
    return summarize_profile(out, top=40)


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit status {proc.poll()})")
        time.sleep(0.05)


def client_args(port: int, known_hosts: Path, key: Path) -> list[str]:
    return ["-F", "/dev/null", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", f"KexAlgorithms={KEX}", "-c", CIPHER, "-tt", "-i", str(key),
            "-p", str(port)]


def host_key_pair(work: Path, name: str) -> tuple[Path, str]:
    key = work / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = Path(f"{key}.pub").read_text().split()[:2]
    return key, f"{kind} {blob}"


@contextlib.contextmanager
def certgate_hop(work: Path, console: ConsoleServer, user_key: Path,
                 tree: Path | None = None) -> Iterator[Hop]:
    """``tree``: run the server from another checkout (``PYTHONPATH``), e.g. the commit before
    a change, as the ``certgate-before`` hop of the same run."""
    if tree is not None:
        work = work / "before"
        work.mkdir()
    from ca import keys
    from certgate.fleet import add_vm, apply_policy
    from certgate.home import Home
    from certgate.installation import Installation
    from certgate.provisioning import InitOptions, create_installation, known_hosts_line

    port = free_port()
    home = Home(work / "home")
    create_installation(home, InitOptions(gateway_name="bench.gw", listen_port=port),
                        passphrase=PASSPHRASE, actor="bench")
    inst = Installation(home, actor="bench", passphrase=lambda: PASSPHRASE)
    try:
        inst.ca.add_user("bench", email=None, days=1,
                         public_key=keys.load_public_key(Path(f"{user_key}.pub").read_bytes()))
        # On demand, as the other hops: each session opens the console socket itself (a kept
        # bulk console would re-read the stream in the background and skew the CPU figure).
        add_vm(inst, "banner", f"unix:{console.banner_path}", {}, keep="on-demand")
        add_vm(inst, "bulk", f"unix:{console.bulk_path}", {}, keep="on-demand")
        apply_policy(inst, POLICY, "bench.yaml")
        known_hosts = work / "certgate_known_hosts"
        known_hosts.write_text(known_hosts_line(home, inst.config) + "\n")
    finally:
        inst.close()
    env = {**os.environ, "CERTGATE_HOME": str(home.root),
           "CERTGATE_CA_PASSPHRASE": PASSPHRASE.decode()}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    name = BEFORE if tree is not None else "certgate"
    check_tree(tree or ROOT, name)
    meter = CpuMeter(name)
    with open(work / "certgate.log", "wb") as log:
        # `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH: run
        # from the other tree, or a benchmark started in a checkout runs that checkout twice.
        proc = start_server(
            [sys.executable, "-m", "certgate", "serve", "--log-level", "warning"], meter,
            env=env, cwd=tree or ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_port(port, proc, "certgate serve")
        args = client_args(port, known_hosts, user_key)
        yield Hop(name, proc, meter, args, ["banner@127.0.0.1"], ["bulk@127.0.0.1"])
    finally:
        stop(proc)
        meter.close()


def check_tree(tree: Path, name: str) -> None:
    """Fail unless the server imports certgate from ``tree`` (the same-run before/after is
    worthless if both hops run the same code)."""
    found = subprocess.run(
        [sys.executable, "-c", "import certgate, sys; sys.stdout.write(certgate.__file__)"],
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
        check=True).stdout
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"{name}: certgate would be imported from {found}, not {tree}")


def ensure_clean_account(home: Path) -> bool:
    """The bastion's login account: /bin/sh, an empty home, no rc files. True if created."""
    try:
        pwd.getpwnam(CLEAN_USER)
        created = False
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/bin/sh", "--no-create-home",
                        "--home-dir", str(home), CLEAN_USER], check=True)
        created = True
    # "*": no password login, but not "locked" ("!"), which sshd refuses without PAM.
    subprocess.run(["usermod", "--password", "*", "--shell", "/bin/sh", "--home", str(home),
                    CLEAN_USER], check=True)
    home.mkdir(mode=0o755, exist_ok=True)
    entry = pwd.getpwnam(CLEAN_USER)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    return created


@contextlib.contextmanager
def bastion_hop(work: Path, console: ConsoleServer, user_key: Path) -> Iterator[Hop]:
    os.makedirs("/run/sshd", exist_ok=True)
    home = work / "cgbench-home"
    created = ensure_clean_account(home)
    host_key, host_line = host_key_pair(work, "bastion_host_key")
    authorized = work / "bastion_authorized_keys"
    authorized.write_text(Path(f"{user_key}.pub").read_text())
    authorized.chmod(0o644)
    port = free_port()
    # The client's command picks the socket (banner|bulk), as the login name does on certgate.
    force = f"exec socat - UNIX-CONNECT:{console.directory}/$SSH_ORIGINAL_COMMAND.sock"
    config = work / "bastion_sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\nUsePAM no\nStrictModes no\n"
        f"PidFile {work / 'bastion.pid'}\nPermitRootLogin no\nAllowUsers {CLEAN_USER}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel ERROR\n"
        "PrintMotd no\nPrintLastLog no\nPermitUserRC no\nPermitUserEnvironment no\n"
        f"ChrootDirectory none\nForceCommand {force}\n"
    )
    known_hosts = work / "bastion_known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_line}\n")
    meter = CpuMeter("bastion")
    proc = start_server(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], meter,
                        stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, "sshd")
        args = client_args(port, known_hosts, user_key)
        yield Hop("bastion-clean", proc, meter, args, [f"{CLEAN_USER}@127.0.0.1", "banner"],
                  [f"{CLEAN_USER}@127.0.0.1", "bulk"])
    finally:
        stop(proc)
        meter.close()
        if created:
            subprocess.run(["userdel", CLEAN_USER], check=False)


@contextlib.contextmanager
def floor_hop(work: Path, console: ConsoleServer, user_key: Path) -> Iterator[Hop]:
    host_key, host_line = host_key_pair(work, "floor_host_key")
    port = free_port()
    known_hosts = work / "floor_known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_line}\n")
    meter = CpuMeter("floor")
    proc = start_server(
        [sys.executable, __file__, "--floor-server", str(port), str(host_key),
         f"{user_key}.pub", str(console.directory)], meter,
        stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, "asyncssh floor server")
        args = client_args(port, known_hosts, user_key)
        yield Hop("asyncssh floor", proc, meter, args, ["banner@127.0.0.1"],
                  ["bulk@127.0.0.1"])
    finally:
        stop(proc)
        meter.close()


def run_floor_server(port: int, host_key: str, authorized: str, sockets: str) -> None:
    """A bare asyncssh hop: accept the key, pump bytes between channel and socket."""
    import asyncssh

    async def session(process: asyncssh.SSHServerProcess[bytes]) -> None:
        name = process.get_extra_info("username")
        reader, writer = await asyncio.open_unix_connection(f"{sockets}/{name}.sock")

        async def upstream() -> None:
            while True:
                try:
                    data = await process.stdin.read(CHUNK)
                except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived):
                    continue
                if not data:
                    return
                writer.write(data)
                await writer.drain()

        typing = asyncio.ensure_future(upstream())
        try:
            while data := await reader.read(CHUNK):
                process.stdout.write(data)
                await process.stdout.drain()
        finally:
            typing.cancel()
            writer.close()
            process.exit(0)

    async def serve() -> None:
        await asyncssh.create_server(
            asyncssh.SSHServer, "127.0.0.1", port, server_host_keys=[host_key],
            authorized_client_keys=authorized, process_factory=session, encoding=None,
            line_editor=False)
        await asyncio.Event().wait()

    asyncio.run(serve())


def report(results: dict[str, Figures], rounds: int, megabytes: int, load: str,
           method: str) -> str:
    cg, ba, fl = (results[name] for name in SYSTEMS)
    med = statistics.median

    def spread(values: list[float], fmt: str) -> str:
        return f"{format(min(values), fmt)}-{format(max(values), fmt)}"

    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    fb = [med(f.first_byte_ms) for f in (cg, ba, fl)]
    tp = [med(f.mib_per_s) for f in (cg, ba, fl)]
    cpu = [med(f.cpu_per_32) for f in (cg, ba, fl)]
    login = [med(f.cpu_per_login_ms) for f in (cg, ba, fl)]
    lines = [
        f"rounds={rounds}, bulk={megabytes} MiB, kex={KEX}, cipher={CIPHER}, ssh -tt, "
        f"{os.cpu_count()} CPUs, {ssh_version}; CPU counted by {method}; load average {load}",
        "",
        "| figure | certgate | bastion-clean (sshd + socat) | asyncssh floor | "
        "certgate / bastion-clean | certgate / floor |",
        "|---|---:|---:|---:|---:|---:|",
        f"| first console byte, median | {fb[0]:.1f} ms | {fb[1]:.1f} ms | {fb[2]:.1f} ms | "
        f"{fb[0] / fb[1]:.2f} | {fb[0] / fb[2]:.2f} |",
        f"| bulk through a pty, median | {tp[0]:.1f} MiB/s | {tp[1]:.1f} MiB/s | "
        f"{tp[2]:.1f} MiB/s | {tp[0] / tp[1]:.2f} | {tp[0] / tp[2]:.2f} |",
        f"| server CPU per 32 MiB, median | {cpu[0]:.2f} s | {cpu[1]:.2f} s | {cpu[2]:.2f} s | "
        f"{cpu[0] / cpu[1]:.2f} | {cpu[0] / cpu[2]:.2f} |",
        f"| server CPU per login (whole first-byte session), median | {login[0]:.1f} ms | "
        f"{login[1]:.1f} ms | {login[2]:.1f} ms | {login[0] / login[1]:.2f} | "
        f"{login[0] / login[2]:.2f} |",
        "",
        f"bulk runs cut short: certgate {cg.truncated}, bastion-clean {ba.truncated}, "
        f"floor {fl.truncated} (of {len(cg.mib_per_s)} each)",
    ]
    names = list(SYSTEMS)
    if results.get(BEFORE) is not None and results[BEFORE].first_byte_ms:
        names.append(BEFORE)
        bf = results[BEFORE]
        at = next(i for i, line in enumerate(lines) if line.startswith("| server CPU per login"))
        lines[at + 1:at + 1] = [
            f"| {BEFORE}: first console byte | {med(bf.first_byte_ms):.1f} ms | | | "
            f"{med(bf.first_byte_ms) / fb[1]:.2f} | {med(bf.first_byte_ms) / fb[2]:.2f} |",
            f"| {BEFORE}: bulk | {med(bf.mib_per_s):.1f} MiB/s | | | "
            f"{med(bf.mib_per_s) / tp[1]:.2f} | {med(bf.mib_per_s) / tp[2]:.2f} |",
            f"| {BEFORE}: server CPU per 32 MiB | {med(bf.cpu_per_32):.2f} s | | | "
            f"{med(bf.cpu_per_32) / cpu[1]:.2f} | {med(bf.cpu_per_32) / cpu[2]:.2f} |",
            f"| {BEFORE}: server CPU per login | {med(bf.cpu_per_login_ms):.1f} ms | | | "
            f"{med(bf.cpu_per_login_ms) / login[1]:.2f} | "
            f"{med(bf.cpu_per_login_ms) / login[2]:.2f} |",
        ]
    for label, attr, fmt in (("first byte (ms)", "first_byte_ms", ".0f"),
                             ("CPU per login (ms)", "cpu_per_login_ms", ".0f"),
                             ("bulk (MiB/s)", "mib_per_s", ".1f"),
                             ("CPU per 32 MiB (s)", "cpu_per_32", ".2f")):
        lines.append(f"{label}: " + "; ".join(
            f"{name} {', '.join(format(x, fmt) for x in getattr(results[name], attr))}"
            f" ({spread(getattr(results[name], attr), fmt)})" for name in names))
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--floor-server":
        run_floor_server(int(sys.argv[2]), *sys.argv[3:6])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--bulk-rounds", type=int, default=5)
    parser.add_argument("--megabytes", type=int, default=32)
    parser.add_argument("--before-tree", type=Path, default=None, metavar="DIR",
                        help="also run certgate from the checkout DIR (e.g. `git worktree add "
                             "DIR COMMIT`) as a fourth hop, for a same-run before/after")
    parser.add_argument("--profile", action="store_true",
                        help="after the rounds, py-spy certgate's logins and one bulk "
                             "session of certgate and of the floor")
    options = parser.parse_args()
    for tool in ("ssh", "ssh-keygen", "socat", "/usr/sbin/sshd", "useradd"):
        if shutil.which(tool) is None:
            print(f"console_gateway.py: {tool} is required", file=sys.stderr)
            return 1
    if os.geteuid() != 0:
        print("console_gateway.py: run as root (it makes the bastion's clean account)",
              file=sys.stderr)
        return 1
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="cgb-", dir="/tmp") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # the bastion account reaches the console sockets through it
        user_key = work / "user_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(user_key)],
                       check=True)
        console = ConsoleServer(work, options.megabytes)
        results = {name: Figures() for name in (*SYSTEMS, BEFORE)}
        try:
            with contextlib.ExitStack() as stack:
                hops = [stack.enter_context(make(work, console, user_key))
                        for make in (certgate_hop, bastion_hop, floor_hop)]
                if options.before_tree is not None:
                    hops.append(stack.enter_context(
                        certgate_hop(work, console, user_key, options.before_tree)))
                method = hops[0].meter.method
                for hop in hops:
                    first_byte(hop)  # warm-up: page cache, first policy load
                for round_ in range(options.rounds):
                    order = hops[round_ % len(hops):] + hops[: round_ % len(hops)]
                    for hop in order:
                        elapsed, cpu_ms = login_cpu(hop)
                        results[hop.name].first_byte_ms.append(elapsed)
                        results[hop.name].cpu_per_login_ms.append(cpu_ms)
                for round_ in range(options.bulk_rounds):
                    order = hops[round_ % len(hops):] + hops[: round_ % len(hops)]
                    for hop in order:
                        rate, cpu, complete = bulk(hop, options.megabytes * 1024 * 1024)
                        figures = results[hop.name]
                        figures.mib_per_s.append(rate)
                        figures.cpu_per_32.append(cpu)
                        figures.truncated += not complete
                if options.profile:
                    print(f"{hops[0].name}, {options.rounds} logins (first byte):")
                    print(profiled_logins(hops[0], options.rounds,
                                          work / f"{hops[0].meter.pid}.login.spy"))
                    for hop in hops[::2]:
                        print(f"{hop.name}, one bulk session:")
                        print(profiled_bulk(hop, options.megabytes << 20,
                                            work / f"{hop.meter.pid}.spy"))
        finally:
            console.close()
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(report(results, options.rounds, options.megabytes,
                 f"{load_start} at the start, {load_end} at the end", method))
    return 0


if __name__ == "__main__":
    sys.exit(main())
