"""Benchmark: many concurrent interactive sessions against one ``certgate serve``.

    python bench/live_sessions.py [--sessions 100,300,1000] [--repo DIR] [--idle 10]
                                  [--revocations 40] [--json OUT]

For each N: a fresh installation, a gateway subprocess (``python -m certgate serve``, the code
under ``--repo``, default this checkout, so the same script measures an older commit in
another worktree), N interactive sessions (pty requested) from asyncssh clients in this
process, on fake consoles (Unix sockets served here, one per VM, ten VMs). Measured:

- login rate: sessions opened per second (handshake, auth, decision, audit, console attach),
  10 logins in flight at a time (the per-source start-up limit);
- gateway RSS per session: (RSS with N sessions open - RSS before the first login) / N;
- idle CPU: gateway CPU time (utime + stime from /proc) over ``--idle`` seconds with N
  sessions open and nothing changing, as % of one core;
- revocation latency: ``--revocations`` users, one session each, have their AC revoked one
  after another, at random intervals of 0.05-1.05 s (through the CA service, as ``certgate
  revoke`` does); latency is from the revoke's commit to the client seeing "session ended";
  p50 and p99 (with 40 samples, p99 is the worst but one).

``--postgres`` puts the installation on a throwaway PostgreSQL 15 cluster (tests/pg.py)
instead of SQLite.

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
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

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


@dataclass
class Run:
    sessions: int
    login_rate: float = 0.0
    login_load: str = ""
    rss_before: int = 0
    rss_with_sessions: int = 0
    rss_per_session: float = 0.0
    idle_cpu_percent: float = 0.0
    idle_load: str = ""
    revocation_ms: list[float] = field(default_factory=list)
    revocation_load: str = ""
    failures: int = 0

    def summary(self) -> dict[str, Any]:
        revs = self.revocation_ms
        return {
            "sessions": self.sessions,
            "login_rate_per_s": round(self.login_rate, 1),
            "login_load": self.login_load,
            "rss_before_mib": round(self.rss_before / 2**20, 1),
            "rss_with_sessions_mib": round(self.rss_with_sessions / 2**20, 1),
            "rss_per_session_kib": round(self.rss_per_session / 1024, 1),
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


def start_gateway(cg: Certgate, home: Path) -> tuple[subprocess.Popen[bytes], int]:
    env = {**os.environ, "CERTGATE_HOME": str(home),
           "CERTGATE_CA_PASSPHRASE": PASSPHRASE.decode(), "PYTHONPATH": str(cg.repo)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "certgate", "serve", "--listen", "127.0.0.1:0",
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
    if not done.wait(60):
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
                  work: Path, database_url: str | None, profile: Path | None = None) -> Run:
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
    proc, port = start_gateway(cg, home_dir)
    clients: list[tuple[Any, Any]] = []
    try:
        await asyncio.sleep(1.0)
        run.rss_before = proc_rss_bytes(proc.pid)
        owners = victims_list + [bulk] * (count - victims)
        semaphore = asyncio.Semaphore(CONCURRENT_LOGINS)

        async def login(index: int, person: Person) -> tuple[Any, Any] | None:
            async with semaphore:
                try:
                    return await open_session(asyncssh, port, person, f"vm{index % VMS:02d}")
                except (OSError, asyncssh.Error, RuntimeError, TimeoutError):
                    run.failures += 1
                    return None

        started = time.monotonic()
        opened = await asyncio.gather(*(login(i, p) for i, p in enumerate(owners)))
        elapsed = time.monotonic() - started
        run.login_load = uptime_load()
        clients = [c for c in opened if c is not None]
        run.login_rate = len(clients) / elapsed
        await asyncio.sleep(2.0)
        run.rss_with_sessions = proc_rss_bytes(proc.pid)
        run.rss_per_session = (run.rss_with_sessions - run.rss_before) / max(1, len(clients))
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
    finally:
        for conn, _ in clients:
            conn.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        consoles.close()
        inst.close()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="100,300,1000")
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--revocations", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--postgres", action="store_true")
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
                run = asyncio.run(measure(cg, count, args.revocations, args.idle, Path(work),
                                          url, profile))
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
