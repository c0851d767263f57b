"""What do console logs add to a review-site search?

    python bench/console_log_search.py [--vms 500] [--segments 20] [--lines 200] [--repeat 20]

Writes --vms console logs of --segments segments each (--lines lines of shell-like output per
segment) with the gateway's own console-log writer into a throwaway directory, then times:

  first catch-up      indexing every segment into a fresh search index (MiB/s of logs)
  one new line/VM     the catch-up after each VM's open segment got one more line
  nothing new         the catch-up a search runs when nothing was written since the last
                      one, with the review site's kept directory listings and without
  search              the FTS5 query for a rare word (the baseline: what a search costs
                      without any catch-up)

p50/p95 over --repeat runs after one warm-up; ratios are against the search baseline
measured in the same run. Note the load average printed with the figures: the machine this
runs on is shared.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certgate.consolelog.settings import ConsoleLogSettings
from certgate.consolelog.writer import ConsoleLogWriter
from certgate.web.console_log_index import SegmentListings, catch_up_console_logs
from certgate.web.search_index import SearchIndex

WORDS = [f"w{n:05d}" for n in range(20_000)]


def write_logs(logs: Path, vms: int, segments: int, lines: int) -> list[ConsoleLogWriter]:
    """One writer per VM, its older segments sealed and its newest left open."""
    rng = random.Random(7)
    writers = []
    clock = [1_800_000_000.0]
    settings = ConsoleLogSettings(segment_bytes=1 << 30, retain_bytes=1 << 40)
    for number in range(vms):
        vm = f"vm{number:04d}"
        writer = ConsoleLogWriter(logs / vm, vm, settings, clock=lambda: clock[0])
        for segment in range(segments):
            for line in range(lines):
                clock[0] += 0.25
                words = " ".join(rng.choice(WORDS) for _ in range(8))
                writer.output(f"\x1b[32m{vm}\x1b[0m:~$ echo {line} {words}\r\n".encode())
            writer.tick()
            if segment < segments - 1:
                writer.rotate()
        writers.append(writer)
    return writers


def timed(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=500)
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cg-console-bench-"))
    try:
        logs = root / "console-logs"
        writers = write_logs(logs, args.vms, args.segments, args.lines)
        size = sum(f.stat().st_size for f in logs.rglob("*.cast"))
        index = SearchIndex(root / "search.sqlite")
        started = time.perf_counter()
        first = catch_up_console_logs(index, logs)
        first_seconds = time.perf_counter() - started
        listings = SegmentListings()
        later = time.time() + 60  # directory listings older than the racy window
        catch_up_console_logs(index, logs, listings=listings, now=later)
        vms = [f"vm{n:04d}" for n in range(args.vms)]

        def one_new_line() -> None:
            for writer in writers:
                writer.output(b"one more line w00042\r\n")
                writer.tick()
            catch_up_console_logs(index, logs, listings=listings, now=later)

        def line_writes_only() -> None:
            for writer in writers:
                writer.output(b"one more line w00042\r\n")
                writer.tick()

        search = timed(lambda: index.search("w12345", vms), args.repeat)
        kept = timed(lambda: catch_up_console_logs(index, logs, listings=listings, now=later),
                     args.repeat)
        fresh = timed(lambda: catch_up_console_logs(index, logs, now=later), args.repeat)
        appended = timed(one_new_line, args.repeat)
        writes = timed(line_writes_only, args.repeat)
        segments = args.vms * args.segments
        print(f"{args.vms} VMs x {args.segments} segments = {segments} segments, "
              f"{size / 2**20:.1f} MiB of console logs; {first.chunks_added} chunks; "
              f"index {os.path.getsize(index.path) / 2**20:.1f} MiB; "
              f"{args.repeat} runs; uptime: {os.popen('uptime').read().strip()}")
        print()
        print("| what | p50 ms | p95 ms | p50 / search p50 |")
        print("|---|---:|---:|---:|")
        print(f"| first catch-up ({size / 2**20 / first_seconds:.2f} MiB/s) | "
              f"{first_seconds * 1000:.0f} | | |")
        rows = [("search, rare word (baseline)", search),
                ("catch-up, nothing new, kept listings (what a search adds)", kept),
                ("catch-up, nothing new, fresh listings", fresh),
                ("catch-up after one new line per VM (minus the writes)",
                 (appended[0] - writes[0], appended[1] - writes[1]))]
        for label, (p50, p95) in rows:
            print(f"| {label} | {p50:.1f} | {p95:.1f} | {p50 / search[0]:.1f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
