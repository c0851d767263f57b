"""Benchmark: one console fanned out to many viewers, and a thousand kept consoles.

    python bench/console_fanout.py [--viewers 1,10,100,300] [--megabytes 8]
                                   [--kept 1000] [--seconds 30] [--write-docs]

(1) Fan-out. A console on a Unix socket (served by a child process, so its CPU is not
    counted) is opened through ``ConsoleHub`` with its console log on, and N sessions attach
    and drain their attachments as the SSH pump does. Measured per N:
    - added latency per byte: a timestamped probe line written to the console socket, until
      the last of the N viewers has it (median of 50 probes), against the baseline of one
      plain reader of the same socket without the gateway (the same run);
    - throughput: M MiB streamed by the console until every viewer has all of it, as console
      bytes/s and as delivered bytes/s (console bytes x N);
    - gateway CPU: process CPU seconds (user + system) per console MiB.
    The SSH transport is not in this loop (see bench/console_gateway.py for it): this measures
    what the keeper work added -- the multiplexer, notices, the hub's queues, the log writer.
(2) Kept consoles. K fake consoles (one child process serving K Unix sockets, each printing a
    line a second) are kept by a real ``ConsoleKeepers`` of a real installation (SQLite), log
    writing on. Measured over S seconds: the gateway process's RSS (and its growth over an
    otherwise identical process keeping none) and its CPU use.

The machine is shared: the load average is printed next to every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from certgate.audit.writer import AuditWriter  # noqa: E402
from certgate.consolelog.settings import ConsoleLogSettings  # noqa: E402
from certgate.consolelog.writer import ConsoleLogWriter  # noqa: E402
from certgate.consoles import ConsoleHub, UnixSocketConsole  # noqa: E402
from certgate.fleet import add_vm  # noqa: E402
from certgate.gateway.keepers import ConsoleKeepers  # noqa: E402
from certgate.home import Home  # noqa: E402
from certgate.installation import Installation  # noqa: E402
from certgate.provisioning import InitOptions, create_installation  # noqa: E402

MIB = 1024 * 1024
PROBES = 50

CONSOLE_SERVER = textwrap.dedent("""
    import asyncio, sys, time
    directory, count, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    clients = []

    async def handle(reader, writer):
        clients.append(writer)
        if mode == "lines":
            n = 0
            await asyncio.sleep((id(writer) % 1000) / 1000)
            try:
                while True:
                    n += 1
                    writer.write(b"kept console line %d at %.3f\\r\\n" % (n, time.time()))
                    await writer.drain()
                    await asyncio.sleep(1.0)
            except ConnectionError:
                return
        else:
            await reader.read()  # idle until the client leaves; commands come on stdin
            clients.remove(writer)

    async def commands():
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            word, _, arg = line.decode().strip().partition(" ")
            for writer in list(clients):
                if word == "probe":
                    writer.write(b"probe %.9f\\r\\n" % time.time())
                elif word == "bulk":
                    block = (b"x" * 1023 + b"\\n") * 64
                    for _ in range(int(arg) * 16):
                        writer.write(block)
                        await writer.drain()
                    writer.write(b"END-OF-BULK\\r\\n")
                await writer.drain()
            if word != "bulk":
                print("ok", len(clients), flush=True)

    async def main():
        servers = [await asyncio.start_unix_server(handle, f"{directory}/c{i}.sock")
                   for i in range(count)]
        print("ready", flush=True)
        if mode == "lines":
            await asyncio.Event().wait()
        else:
            await commands()

    asyncio.run(main())
""")


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ConsoleServer:
    def __init__(self, directory: Path, count: int, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CONSOLE_SERVER, str(directory), str(count), mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def command(self, text: str) -> int:
        """Send a command; except for ``bulk``, wait for the reply: how many clients."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        if text.startswith("bulk"):
            return -1
        return int(self.proc.stdout.readline().split()[1])

    async def wait_clients(self, count: int) -> None:
        while self.command("count") < count:
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


# -- (1) fan-out -------------------------------------------------------------------------------


async def _viewer(attachment, marks: dict[bytes, list[float]], done: asyncio.Event,
                  counts: list[int], index: int) -> None:
    tail = b""
    async for chunk in attachment:
        counts[index] += len(chunk)
        data = tail + chunk
        now = time.time()
        for token in (b"probe ", b"END-OF-BULK"):
            start = 0
            while (found := data.find(token, start)) >= 0:
                end = data.find(b"\r\n", found)
                if end < 0:
                    break
                marks.setdefault(data[found:end], []).append(now)
                start = end
        tail = data[-64:]
        if done.is_set():
            return


async def baseline_latency(path: Path, server: ConsoleServer) -> float:
    reader, writer = await asyncio.open_unix_connection(str(path))
    await server.wait_clients(1)
    samples = []
    for _ in range(PROBES):
        server.command("probe")
        line = await reader.readuntil(b"\r\n")
        samples.append(time.time() - float(line.split()[1]))
        await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    return statistics.median(samples)


async def baseline_throughput(path: Path, server: ConsoleServer, megabytes: int) -> float:
    """MiB/s one plain reader gets from the console socket: what the gateway is held to."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    await server.wait_clients(1)
    start = time.monotonic()
    server.command(f"bulk {megabytes}")
    tail = b""
    while b"END-OF-BULK" not in tail:
        tail = tail[-16:] + await reader.read(65536)
    elapsed = time.monotonic() - start
    writer.close()
    await writer.wait_closed()
    return megabytes / elapsed


async def fanout(path: Path, server: ConsoleServer, viewers: int, megabytes: int,
                 logs: Path) -> dict[str, float]:
    log = ConsoleLogWriter(logs / f"fan{viewers}", f"fan{viewers}",
                           ConsoleLogSettings(rate_limit=1024 * MIB, burst=1024 * MIB))
    hub = ConsoleHub(UnixSocketConsole(str(path)), console_log=log)
    await hub.start_keeping()
    await hub.connected.wait()
    await server.wait_clients(1)
    marks: dict[bytes, list[float]] = {}
    done = asyncio.Event()
    counts = [0] * viewers
    attachments = [await hub.attach(f"s{i}", can_interact=i == 0, user=f"u{i}")
                   for i in range(viewers)]
    tasks = [asyncio.create_task(_viewer(a, marks, done, counts, i))
             for i, a in enumerate(attachments)]
    latencies = []
    for _ in range(PROBES):
        before = set(marks)
        server.command("probe")
        while True:
            await asyncio.sleep(0.002)
            new = [k for k in marks if k not in before and len(marks[k]) == viewers]
            if new:
                sent = float(new[0].split()[1])
                latencies.append(max(marks[new[0]]) - sent)
                break
        log.tick()
    cpu0, t0 = cpu_seconds(), time.monotonic()
    server.command(f"bulk {megabytes}")
    while len(marks.get(b"END-OF-BULK", [])) < viewers:
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
    done.set()
    await hub.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    log.close()
    console_bytes = megabytes * MIB
    return {
        "latency_ms": statistics.median(latencies) * 1000,
        "p90_ms": sorted(latencies)[int(len(latencies) * 0.9)] * 1000,
        "console_mib_s": console_bytes / elapsed / MIB,
        "delivered_mib_s": console_bytes * viewers / elapsed / MIB,
        "cpu_s_per_mib": cpu / megabytes,
        "cpu_pct": 100 * cpu / elapsed,
    }


async def run_fanout(counts: list[int], megabytes: int, work: Path) -> list[str]:
    server = ConsoleServer(work, 1, "commands")
    path = work / "c0.sock"
    lines = [f"Fan-out ({load()} at start), {megabytes} MiB bulk, {PROBES} probes:", "",
             "| viewers | added latency, median (p90) | console bytes/s (vs baseline) |"
             " delivered bytes/s | gateway CPU per console MiB | gateway CPU |",
             "|---:|---:|---:|---:|---:|---:|"]
    try:
        base = await baseline_latency(path, server)
        base_rate = await baseline_throughput(path, server, megabytes)
        lines.insert(1, f"baseline (same run): one plain reader of the socket sees a probe after "
                        f"{base * 1000:.3f} ms (median) and reads {base_rate:.1f} MiB/s")
        for count in counts:
            result = await fanout(path, server, count, megabytes, work / "logs")
            lines.append(
                f"| {count} | {result['latency_ms'] - base * 1000:.2f} ms "
                f"({result['p90_ms'] - base * 1000:.2f} ms) | "
                f"{result['console_mib_s']:.1f} MiB/s "
                f"({result['console_mib_s'] / base_rate:.2f}x) | "
                f"{result['delivered_mib_s']:.0f} MiB/s |"
                f" {result['cpu_s_per_mib'] * 1000:.1f} ms | {result['cpu_pct']:.0f}% |")
            print(lines[-1], f"({load()})", flush=True)
    finally:
        server.stop()
    return lines


# -- (2) kept consoles -------------------------------------------------------------------------


async def run_kept(count: int, seconds: float, work: Path) -> list[str]:
    home = Home(work / "home")
    passphrase = b"bench passphrase"
    create_installation(home, InitOptions(gateway_name="bench.gw"), passphrase=passphrase,
                        actor="bench")
    inst = Installation(home, actor="bench", passphrase=lambda: passphrase)
    sockets = work / "kept"
    sockets.mkdir()
    for i in range(count):
        add_vm(inst, f"k{i:04d}", f"unix:{sockets}/c{i}.sock", {})
    writer = AuditWriter(inst.audit)
    await writer.start()
    rss_before = rss_mib()
    server = ConsoleServer(sockets, count, "lines")
    keepers = ConsoleKeepers(inst, actor="gateway:bench", audit=writer.append,
                             settings=ConsoleLogSettings(),
                             ssh_options=None,
                             write_modes_of=lambda vms: {vm.name: "shared" for vm in vms},
                             reconcile_interval=3600)
    try:
        await keepers.start()
        while not all(h.connected.is_set() for h in keepers.hubs.values()):
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # settle
        cpu0, t0 = cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu = cpu_seconds() - cpu0
        elapsed = time.monotonic() - t0
        rss_after = rss_mib()
        logged = sum(p.stat().st_size for p in (home.console_logs_dir).rglob("*.cast"))
    finally:
        await keepers.stop()
        await writer.close()
        server.stop()
        inst.close()
    return [
        f"Kept consoles ({load()} at the end): {count} consoles, one line a second each, "
        f"log writing on, measured over {elapsed:.0f} s:",
        "",
        f"- gateway RSS {rss_after:.0f} MiB, of which {rss_after - rss_before:.0f} MiB for the "
        f"kept consoles ({(rss_after - rss_before) * 1024 / count:.0f} KiB each)",
        f"- gateway CPU {100 * cpu / elapsed:.1f}% of one core "
        f"({1e6 * cpu / elapsed / count:.0f} µs per console per second)",
        f"- {logged / 1024:.0f} KiB of console log written",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", default="1,10,100,300")
    parser.add_argument("--megabytes", type=int, default=8)
    parser.add_argument("--kept", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--skip-kept", action="store_true")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    work = Path(tempfile.mkdtemp(prefix="cgfan-", dir="/tmp"))
    try:
        lines: list[str] = []
        if not args.skip_fanout:
            counts = [int(n) for n in args.viewers.split(",")]
            lines += [*asyncio.run(run_fanout(counts, args.megabytes, work)), ""]
        if not args.skip_kept:
            lines += asyncio.run(run_kept(args.kept, args.seconds, work))
        print("\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
