"""Benchmark: many concurrent interactive sessions against one ``certgate serve``.

    python bench/live_sessions.py [--sessions 100,300,1000] [--repo DIR] [--idle 10]
                                  [--revocations 40] [--json OUT] [--postgres]
                                  [--no-floor] [--no-second-wave] [--profile-memory DIR]

For each N: a fresh installation, a gateway subprocess (``python -m certgate serve``, the code
under ``--repo``, default this checkout, so the same script measures an older commit in
another worktree), N interactive sessions (pty requested) from asyncssh clients in this
process, on fake consoles (Unix sockets served here, one per VM, ten VMs). Measured:

- login rate: sessions opened per second (handshake, auth, decision, audit, console attach),
  10 logins in flight at a time (the per-source start-up limit);
- gateway RSS per session: (RSS with N sessions open - RSS before the first login) / N, the
  issue's figure; and the marginal cost, (RSS with N - RSS with N/2) / (N/2), without the
  start-up and first-use costs (the sessions are opened in two halves, RSS read 2 s after
  each);
- the same two figures, in the same run, for two floors (``FLOORS``): stock asyncssh servers
  serving the same clients' pty sessions with nothing behind them (``session``) or with a
  console connection of their own per session (``hop``), and the ratios against them;
- given back: all clients leave; once the store holds no live session and the RSS has
  settled, the share of the sessions' growth that the gateway returned; then the same number
  of sessions again (``rss_second_wave_mib``): what was kept is reused, not added to;
- idle CPU: gateway CPU time (utime + stime from /proc) over ``--idle`` seconds with N
  sessions open and nothing changing, as % of one core;
- revocation latency: ``--revocations`` users, one session each, have their AC revoked one
  after another, at random intervals of 0.05-1.05 s (through the CA service, as ``certgate
  revoke`` does); latency is from the revoke's commit to the client seeing "session ended";
  p50 and p99 (with 40 samples, p99 is the worst but one).

``--postgres`` puts the installation on a throwaway PostgreSQL 15 cluster (tests/pg.py)
instead of SQLite. ``--profile-memory DIR`` runs the gateway under tracemalloc
(bench/traced_gateway.py; ``CERTGATE_MEMORY_FRAMES=0`` for none, which keeps pymalloc's
figures) and prints where the second half's memory went and what stays after the end; its
timings and RSS are not the benchmark's figures.

The machine is shared: ``uptime``'s load average is printed next to every figure. The
clients are asyncssh (stock ``ssh`` would need 1,000 processes); their CPU is this process's
and is not counted as the gateway's. Only 127.0.0.1 and Unix sockets are used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import traced_gateway

ROOT = Path(__file__).resolve().parents[1]

PASSPHRASE = b"benchmark passphrase"
VMS = 10
CONCURRENT_LOGINS = 10
"""Logins in flight: the gateway refuses more than ``max_startups_per_source`` (10)
unauthenticated connections from one address, and every client here is 127.0.0.1."""
POLICY = """\
version: 1
rules:
  - name: operators
    effect: allow
    vms: {names: ["vm*"]}
    require: {roles: [operator]}
    privileges: [console.view, console.interact]
"""


def uptime_load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Certgate:
    """The certgate code under test, imported from ``--repo`` (old or new layout)."""

    def __init__(self, repo: Path) -> None:
        # Only the code under --repo may be imported: an editable install of another checkout
        # (its import hook) would otherwise supply modules the old code does not have.
        sys.meta_path[:] = [finder for finder in sys.meta_path
                            if not str(getattr(finder, "__module__", "")).startswith("__editable")]
        sys.path.insert(0, str(repo))
        self.repo = repo
        self.keys = importlib.import_module("ca.keys")
        self.attributes = importlib.import_module("ca.attributes")
        self.fleet = importlib.import_module("certgate.fleet")
        self.home_module = importlib.import_module("certgate.home")
        self.provisioning = importlib.import_module("certgate.provisioning")
        loaded = Path(self.fleet.__file__ or "").resolve()
        if not loaded.is_relative_to(repo.resolve()):
            raise RuntimeError(f"certgate was imported from {loaded}, not from {repo}")
        try:
            self.Installation = importlib.import_module("certgate.installation").Installation
        except ModuleNotFoundError:  # before the access-core layout
            self.Installation = importlib.import_module("certgate.authority").Installation

    def ca(self, inst: Any) -> Any:
        return getattr(inst, "ca", inst)


@dataclass
class Person:
    name: str
    key: Any
    ac_serial: str


def rss_figures(before: int, half: int, full: int, first: int, total: int) -> dict[str, float]:
    """Per live session, KiB: RSS growth over all sessions (start-up and first-use costs
    included, the figure the issue states) and over the second half only (marginal)."""
    return {"rss_per_session_kib": round((full - before) / max(1, total) / 1024, 1),
            "rss_marginal_per_session_kib": round((full - half) / max(1, total - first) / 1024,
                                                  1)}


@dataclass
class FloorRun:
    """The same sessions through a bare asyncssh hop (the floor), measured the same way."""

    sessions: int = 0
    first: int = 0
    rss_before: int = 0
    rss_half: int = 0
    rss_with_sessions: int = 0
    load: str = ""

    def summary(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "rss_before_mib": round(self.rss_before / 2**20, 1),
                **rss_figures(self.rss_before, self.rss_half, self.rss_with_sessions,
                              self.first, self.sessions), "load": self.load}


@dataclass
class Run:
    sessions: int
    login_rate: float = 0.0
    login_load: str = ""
    rss_before: int = 0
    rss_half: int = 0
    sessions_half: int = 0
    rss_with_sessions: int = 0
    rss_after_end: int = 0
    rss_second_wave: int = 0
    end_all_seconds: float = 0.0
    floors: dict[str, FloorRun] = field(default_factory=dict)
    idle_cpu_percent: float = 0.0
    idle_load: str = ""
    revocation_ms: list[float] = field(default_factory=list)
    revocation_load: str = ""
    failures: int = 0

    def summary(self) -> dict[str, Any]:
        revs = self.revocation_ms
        mine = rss_figures(self.rss_before, self.rss_half, self.rss_with_sessions,
                           self.sessions_half, self.sessions - self.failures)
        floor: dict[str, Any] = {}
        for name, baseline in self.floors.items():
            base = baseline.summary()
            floor.update({f"floor_{name}_{key}": value for key, value in base.items()})
            floor[f"per_session_vs_floor_{name}"] = round(
                mine["rss_per_session_kib"] / max(0.1, base["rss_per_session_kib"]), 2)
            floor[f"marginal_vs_floor_{name}"] = round(mine["rss_marginal_per_session_kib"] / max(
                0.1, base["rss_marginal_per_session_kib"]), 2)
        return {
            "sessions": self.sessions,
            "login_rate_per_s": round(self.login_rate, 1),
            "login_load": self.login_load,
            "rss_before_mib": round(self.rss_before / 2**20, 1),
            "rss_with_sessions_mib": round(self.rss_with_sessions / 2**20, 1),
            **mine,
            "end_all_seconds": round(self.end_all_seconds, 1),
            "rss_after_end_mib": round(self.rss_after_end / 2**20, 1),
            "rss_second_wave_mib": round(self.rss_second_wave / 2**20, 1),
            "given_back_percent": round(100 * (self.rss_with_sessions - self.rss_after_end)
                                        / max(1, self.rss_with_sessions - self.rss_before), 1),
            **floor,
            "idle_cpu_percent_of_one_core": round(self.idle_cpu_percent, 2),
            "idle_load": self.idle_load,
            "revocation_p50_ms": round(percentile(revs, 0.5), 1) if revs else None,
            "revocation_p99_ms": round(percentile(revs, 0.99), 1) if revs else None,
            "revocation_samples": len(revs),
            "revocation_load": self.revocation_load,
            "failed_logins": self.failures,
        }


class FakeConsoles:
    """Unix-socket consoles that greet and then stay quiet (an idle serial line)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.servers: list[asyncio.AbstractServer] = []

    async def start(self) -> list[Path]:
        paths = []
        for index in range(VMS):
            path = self.directory / f"c{index}.sock"

            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(b"login: ")
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    while await reader.read(65536):
                        pass
                writer.close()

            self.servers.append(await asyncio.start_unix_server(serve, str(path)))
            paths.append(path)
        return paths

    def close(self) -> None:
        for server in self.servers:
            server.close()


def start_gateway(cg: Certgate, home: Path, memory_probe: Path | None = None,
                  ) -> tuple[subprocess.Popen[bytes], int]:
    env = {**os.environ, "CERTGATE_HOME": str(home),
           "CERTGATE_CA_PASSPHRASE": PASSPHRASE.decode(), "PYTHONPATH": str(cg.repo)}
    entry = ["-m", "certgate"]
    if memory_probe is not None:
        env["CERTGATE_MEMORY_PROBE"] = str(memory_probe)
        entry = [str(ROOT / "bench" / "traced_gateway.py")]
    proc = subprocess.Popen(
        [sys.executable, *entry, "serve", "--listen", "127.0.0.1:0",
         "--gateway-id", "bench", "--log-level", "warning"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=str(cg.repo))
    assert proc.stderr is not None
    ready: list[int] = []
    done = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            if "listening on" in line and not ready:
                ready.append(int(line.rsplit(":", 1)[1].split(",")[0]))
                done.set()

    threading.Thread(target=drain, daemon=True).start()
    if not done.wait(60 if memory_probe is None else 300):  # tracemalloc slows start-up
        proc.kill()
        raise RuntimeError("certgate serve did not start")
    return proc, ready[0]


async def open_session(asyncssh: Any, port: int, person: Person, vm: str) -> Any:
    conn = await asyncssh.connect("127.0.0.1", port, username=vm, client_keys=[person.key],
                                  known_hosts=None, agent_path=None, config=None)
    process = await conn.create_process(term_type="xterm", term_size=(80, 24), encoding=None)
    seen = b""
    async with asyncio.timeout(60):
        while b"login: " not in seen:
            chunk = await process.stdout.read(4096)
            if not chunk:
                raise RuntimeError(f"session refused: {seen!r}")
            seen += chunk
    return conn, process


async def wait_ended(process: Any) -> float:
    seen = b""
    while b"session ended" not in seen:
        chunk = await process.stdout.read(4096)
        if not chunk:
            break
        seen += chunk
    return time.monotonic()


def start_idle_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy samples the gateway (100 Hz) for the idle window; idle threads are left out
    by py-spy, so every sample is the gateway doing something."""
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen([str(spy), "record", "-p", str(pid), "-r", "100", "-d",
                             str(max(1, round(seconds))), "-f", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_idle_profile(raw: Path, seconds: float, sessions: int, top: int = 10) -> str:
    if not raw.exists():
        return f"idle profile: py-spy wrote nothing to {raw} (is py-spy installed?)"
    # Waits py-spy does not always recognise as idle: a worker thread waiting for work, the
    # event loop waiting in epoll.
    waits = ("_worker (concurrent/futures/thread.py:81)", "EpollSelector.select")
    counts: dict[str, int] = {}
    total = waiting = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        if leaf.startswith(waits):
            waiting += int(count_text)
            continue
        total += int(count_text)
        counts[leaf] = counts.get(leaf, 0) + int(count_text)
    lines = [f"idle profile, {sessions} sessions: {total} busy samples in {seconds:g} s at "
             f"100 Hz ({total / max(seconds, 1e-9):.1f}/s; {waiting} more were threads "
             "waiting); py-spy's sampling itself adds gateway CPU, so read the idle CPU "
             "figure from a run without --profile-idle"]
    lines += [f"  {count:6d}  {frame}" for frame, count in
              sorted(counts.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(lines)


async def measure(cg: Certgate, count: int, revocations: int, idle: float,
                  work: Path, database_url: str | None, profile: Path | None = None,
                  memory_probe: Path | None = None, floor: bool = True,
                  second_wave: bool = True) -> Run:
    import asyncssh

    run = Run(count)
    home_dir = work / f"home{count}"
    home = cg.home_module.Home(home_dir)
    cg.provisioning.create_installation(
        home, cg.provisioning.InitOptions(gateway_name="bench.gw", database_url=database_url),
        passphrase=PASSPHRASE, actor="bench")
    inst = cg.Installation(home, actor="bench", passphrase=lambda: PASSPHRASE)
    consoles = FakeConsoles(work)
    console_paths = await consoles.start()
    for index, path in enumerate(console_paths):
        cg.fleet.add_vm(inst, f"vm{index:02d}", f"unix:{path}", {})
    cg.fleet.apply_policy(inst, POLICY, "bench.yaml")
    operator = cg.attributes.parse_attribute_assignments(["role=operator"])
    people: list[Person] = []
    victims = min(revocations, count)
    for index in range(victims + 1):
        key = asyncssh.generate_private_key("ssh-ed25519")
        name = f"user{index:04d}"
        cg.ca(inst).add_user(name, email=None, days=1,
                             public_key=cg.keys.load_public_key(key.export_public_key()))
        ac = cg.ca(inst).grant(name, operator, valid_for=timedelta(hours=8))
        people.append(Person(name, key, ac.serial))
    bulk = people[-1]
    victims_list = people[:victims]
    proc, port = start_gateway(cg, home_dir, memory_probe)
    clients: list[tuple[Any, Any]] = []
    try:
        await asyncio.sleep(1.0)
        run.rss_before = proc_rss_bytes(proc.pid)
        if memory_probe is not None:
            await probe_memory(proc.pid, memory_probe, 0)
        owners = victims_list + [bulk] * (count - victims)
        semaphore = asyncio.Semaphore(CONCURRENT_LOGINS)

        async def login(index: int, person: Person) -> tuple[Any, Any] | None:
            async with semaphore:
                try:
                    return await open_session(asyncssh, port, person, f"vm{index % VMS:02d}")
                except (OSError, asyncssh.Error, RuntimeError, TimeoutError):
                    run.failures += 1
                    return None

        halves = await open_in_halves(login, owners, proc.pid, memory_probe)
        clients = halves.clients
        run.login_rate = len(clients) / halves.login_seconds
        run.login_load = halves.load
        run.rss_half, run.rss_with_sessions = halves.rss_half, halves.rss_full
        run.sessions_half = halves.first
        spy = start_idle_profile(proc.pid, idle, profile) if profile else None
        cpu_start = proc_cpu_seconds(proc.pid)
        wall_start = time.monotonic()
        await asyncio.sleep(idle)
        run.idle_cpu_percent = 100 * (proc_cpu_seconds(proc.pid) - cpu_start) / (
            time.monotonic() - wall_start)
        run.idle_load = uptime_load()
        if spy is not None and profile is not None:
            await asyncio.to_thread(spy.wait)
            print(summarize_idle_profile(profile, idle, count))
        victim_sessions = clients[:victims]
        for person, (_, process) in zip(victims_list, victim_sessions, strict=False):
            ended = asyncio.create_task(wait_ended(process))
            await asyncio.to_thread(cg.ca(inst).revoke, person.ac_serial, reason="keyCompromise")
            committed = time.monotonic()
            try:
                finished = await asyncio.wait_for(ended, 30)
                run.revocation_ms.append((finished - committed) * 1000)
            except TimeoutError:
                run.revocation_ms.append(30_000.0)
            # Revocations come at random moments, not in step with a gateway's poll.
            await asyncio.sleep(random.uniform(0.05, 1.05))
        run.revocation_load = uptime_load()
        # Given back? Every client leaves; the gateway returns freed memory once sessions
        # have stopped ending for a moment (gateway/memory.py: 2 s, releases 30 s apart).
        for conn, _ in clients:
            conn.close()
        clients = []
        closed = time.monotonic()
        await all_ended(cg, inst)
        run.end_all_seconds = time.monotonic() - closed
        # The gateway releases memory at most every 30 s (gateway/memory.py): a release
        # during the revocations defers the last one by up to that long.
        await asyncio.sleep(RELEASE_WAIT)
        run.rss_after_end = await settled_rss(proc.pid)
        if second_wave:
            # The same number of sessions again (one unrevoked person): memory kept after
            # the first wave should be reused, not added to.
            again = await open_in_halves(login, [bulk] * count, proc.pid)
            clients = again.clients
            run.rss_second_wave = again.rss_full
        if memory_probe is not None:
            await probe_memory(proc.pid, memory_probe, 3)
            print("after every session ended, against all sessions live (negative: given "
                  "back; per session)\n" + traced_gateway.report(memory_probe, 2, 3, count),
                  flush=True)
            print("after every session ended, against before the first login (what stays; "
                  "per session)\n" + traced_gateway.report(memory_probe, 0, 3, count),
                  flush=True)
    finally:
        close_and_stop(clients, proc)
        inst.close()
        if not floor:
            consoles.close()
    if floor:
        try:
            sockets = work / "floor-sockets"
            sockets.mkdir()
            for index, path in enumerate(console_paths):
                (sockets / f"vm{index:02d}.sock").symlink_to(path)
            host_key = work / "floor_host_key"
            asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(host_key))
            authorized = work / "floor_authorized_keys"
            authorized.write_text("".join(p.key.export_public_key().decode() for p in people))
            for name, command in FLOORS.items():
                run.floors[name] = await measure_floor(
                    asyncssh, [sys.executable, *command, str(host_key), str(authorized),
                               str(sockets)], owners)
        finally:
            consoles.close()
    return run


FLOORS = {
    "session": [__file__, "--floor-server", "session"],
    "hop": [__file__, "--floor-server", "hop"],
}
"""Same-run baselines: stock asyncssh servers that accept the clients' keys (loaded once, as
the gateway loads its own) and serve the same pty sessions. ``session`` writes the console's
greeting itself and reads until the client leaves: what asyncssh alone holds per session.
``hop`` pumps bytes between the channel and a console connection of its own per session, like
console_gateway.py's floor (no policy, audit, recording, nor sharing of consoles)."""


def run_floor_server(kind: str, port: int, host_key: str, authorized: str,
                     sockets: str) -> None:
    """``--floor-server KIND PORT HOST_KEY AUTHORIZED_KEYS SOCKETS``: see ``FLOORS``."""
    import asyncssh

    async def read_until_eof(process: asyncssh.SSHServerProcess[bytes],
                             sink: asyncio.StreamWriter | None) -> None:
        while True:
            try:
                data = await process.stdin.read(65536)
            except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived):
                continue
            except (asyncssh.Error, OSError):
                return
            if not data:
                return
            if sink is not None:
                sink.write(data)
                await sink.drain()

    async def session(process: asyncssh.SSHServerProcess[bytes]) -> None:
        if kind == "session":
            process.stdout.write(b"login: ")
            await read_until_eof(process, None)
            process.exit(0)
            return
        name = process.get_extra_info("username")
        reader, writer = await asyncio.open_unix_connection(f"{sockets}/{name}.sock")
        typing = asyncio.ensure_future(read_until_eof(process, writer))
        try:
            while data := await reader.read(65536):
                process.stdout.write(data)
                await process.stdout.drain()
        finally:
            typing.cancel()
            writer.close()
            process.exit(0)

    async def serve() -> None:
        await asyncssh.create_server(
            asyncssh.SSHServer, "127.0.0.1", port,
            server_host_keys=[asyncssh.read_private_key(host_key)],
            authorized_client_keys=asyncssh.read_authorized_keys(authorized),
            process_factory=session, encoding=None, line_editor=False)
        await asyncio.Event().wait()

    asyncio.run(serve())


async def measure_floor(asyncssh: Any, command: list[str], owners: list[Person]) -> FloorRun:
    """The same clients and sessions through a floor server (``FLOORS``), measured the same
    way in the same run; the port goes in after ``command``'s first four items."""
    port = free_port()
    proc = subprocess.Popen(
        [*command[:4], str(port), *command[4:]],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    floor = FloorRun(sessions=0)
    clients: list[tuple[Any, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the asyncssh floor server did not start")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        floor.rss_before = proc_rss_bytes(proc.pid)
        semaphore = asyncio.Semaphore(CONCURRENT_LOGINS)

        async def login(index: int, person: Person) -> tuple[Any, Any] | None:
            async with semaphore:
                with contextlib.suppress(OSError, asyncssh.Error, RuntimeError, TimeoutError):
                    return await open_session(asyncssh, port, person, f"vm{index % VMS:02d}")
                return None

        halves = await open_in_halves(login, owners, proc.pid)
        clients = halves.clients
        floor.sessions, floor.first = len(clients), halves.first
        floor.rss_half, floor.rss_with_sessions = halves.rss_half, halves.rss_full
        floor.load = halves.load
    finally:
        close_and_stop(clients, proc)
    return floor


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def all_ended(cg: Certgate, inst: Any, limit: float = 300.0) -> None:
    """Wait until the store holds no live session: every end committed."""
    sessions = importlib.import_module("certgate.audit.sessions")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and await asyncio.to_thread(
            sessions.list_sessions, inst.database, live_only=True, limit=1):
        await asyncio.sleep(0.5)


def close_and_stop(clients: list[Any], proc: subprocess.Popen[Any]) -> None:
    """Close the clients' connections, then stop the server process (killed after 30 s)."""
    for conn, _ in clients:
        conn.close()
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


RELEASE_WAIT = 32.0
"""Seconds to let the gateway's memory release run after the last session ended."""


async def settled_rss(pid: int, quiet: float = 5.0, limit: float = 120.0) -> int:
    """RSS once it has not moved by more than 1 MiB for ``quiet`` seconds (ending 1,000
    sessions takes the gateway a while: recordings closed, ends committed)."""
    deadline = time.monotonic() + limit
    last, steady_since = proc_rss_bytes(pid), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = proc_rss_bytes(pid)
        if abs(now - last) > 2**20:
            last, steady_since = now, time.monotonic()
        elif time.monotonic() - steady_since >= quiet:
            break
    return proc_rss_bytes(pid)


@dataclass
class Halves:
    clients: list[tuple[Any, Any]]
    first: int
    login_seconds: float
    load: str
    rss_half: int
    rss_full: int


async def open_in_halves(login: Any, owners: list[Person], pid: int,
                         memory_probe: Path | None = None) -> Halves:
    """Open the sessions in two halves, reading the server's RSS (and, with ``memory_probe``,
    probing it) 2 s after each: the second half's growth is the cost of a live session
    without the start-up and first-use costs that the first half also carries."""
    half = len(owners) // 2
    started = time.monotonic()
    opened = list(await asyncio.gather(*(login(i, p) for i, p in enumerate(owners[:half]))))
    seconds = time.monotonic() - started
    await asyncio.sleep(2.0)
    rss_half = proc_rss_bytes(pid)
    if memory_probe is not None:
        await probe_memory(pid, memory_probe, 1)
    first = sum(1 for c in opened if c is not None)
    started = time.monotonic()
    opened += await asyncio.gather(*(login(half + i, p) for i, p in enumerate(owners[half:])))
    seconds += time.monotonic() - started
    load = uptime_load()
    await asyncio.sleep(2.0)
    rss_full = proc_rss_bytes(pid)
    clients = [c for c in opened if c is not None]
    if memory_probe is not None:
        await probe_memory(pid, memory_probe, 2)
        added = len(clients) - first
        print(traced_gateway.report(memory_probe, 1, 2, added), flush=True)
        for match in os.environ.get("MEMORY_TRACEBACKS", "").split(","):
            if match:
                print(traced_gateway.tracebacks(memory_probe, 1, 2, added, match))
    return Halves(clients, first, seconds, load, rss_half, rss_full)


async def probe_memory(pid: int, out: Path, index: int) -> None:
    """Let the sessions settle, then have the traced gateway write probe ``index``."""
    await asyncio.sleep(2.0)
    os.kill(pid, signal.SIGUSR1)
    await asyncio.to_thread(traced_gateway.wait_for_probe, out, index)


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--floor-server":
        run_floor_server(sys.argv[2], int(sys.argv[3]), *sys.argv[4:7])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="100,300,1000")
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--revocations", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--no-second-wave", action="store_true",
                        help="skip opening the sessions again after they all ended")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the same-run bare asyncssh hop (the memory floor)")
    parser.add_argument("--profile-memory", type=Path, default=None, metavar="DIR",
                        help="run the gateway under tracemalloc; open half the sessions, "
                             "probe, the other half, probe; print where the second half's "
                             "memory went (probes kept in DIR; slow: not for the figures)")
    parser.add_argument("--profile-idle", type=Path, default=None, metavar="OUT",
                        help="py-spy the gateway during the idle window (raw stacks to OUT)")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cg = Certgate(args.repo.resolve())
    commit = subprocess.run(["git", "-C", str(cg.repo), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    cluster = None
    if args.postgres:
        sys.path.insert(0, str(ROOT / "tests"))
        from pg import start_cluster

        cluster = start_cluster()
    results = []
    try:
        for count in (int(n) for n in args.sessions.split(",")):
            url = cluster.create_database() if cluster is not None else None
            with tempfile.TemporaryDirectory(prefix="cgb-", dir="/tmp") as work:
                profile = (args.profile_idle.with_suffix(f".{count}.raw")
                           if args.profile_idle else None)
                probe = None
                if args.profile_memory is not None:
                    probe = args.profile_memory / str(count)
                    probe.mkdir(parents=True, exist_ok=True)
                    for stale in probe.glob("probe-*"):
                        stale.unlink()
                run = asyncio.run(measure(cg, count, args.revocations, args.idle, Path(work),
                                          url, profile, probe, not args.no_floor,
                                          not args.no_second_wave))
            summary = {"commit": commit, "database": "postgresql" if url else "sqlite",
                       **run.summary()}
            results.append(summary)
            print(json.dumps(summary), flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
