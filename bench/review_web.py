"""How fast are the review site's sessions page and recording search at scale?

    python bench/review_web.py [--sessions 100000] [--corpus-mb 1024] [--repeat 40]

Builds a throwaway installation (SQLite) with --sessions console sessions over 200 VMs and
500 users, each with an asciicast recording; together the recordings hold --corpus-mb of
terminal output (prompts, commands, listings, colour escape sequences, words from a 20,000
word vocabulary). It times indexing them into the FTS5 search index, then requests pages
through the real application (Starlette, a signed-in reviewer holding audit.review, every
request authenticated, policy-checked and audited as in production; no TLS):

  sessions   first page; page 20 (keyset cursor); filtered by user, by VM, by outcome,
             by end-reason substring, by a one-day window
  search     a rare word, a common word, two words, a word that is not there

--recorded N gives only N of the sessions a recording (the same corpus in fewer, larger
files), which makes building the index much quicker on a busy machine.

Baselines in the same run: for pages, the same listing query called directly (no web
layer); for search, the same words found with a LIKE scan over the same text stored in a
plain table (what searching without a full-text index costs).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "web"))

import warnings

from review_samples import add_person

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from certgate.audit.recording import json_string_body
from certgate.fleet import add_vm, apply_policy
from certgate.home import Home
from certgate.installation import Installation
from certgate.provisioning import InitOptions, create_installation
from certgate.store.schema import ConsoleSessionRow
from certgate.web import catalog, signin
from certgate.web.app import create_app
from certgate.web.server import build_site

PASSPHRASE = b"bench passphrase"
VMS, USERS = 200, 500
POLICY = """\
version: 1
rules:
  - name: auditors
    effect: allow
    vms: {names: ["*"]}
    require: {roles: [auditor]}
    privileges: [audit.review]
"""
RARE, COMMON = "zanzibarquux", "status"


def vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(3, 10)))
             for _ in range(20_000)}
    return sorted(words)


def output_text(rng: random.Random, words: list[str]) -> str:
    """One burst of shell output: a prompt and command, a listing, or lines of words."""
    kind = rng.random()
    if kind < 0.3:
        return (f"\u001b[32mroot@vm\u001b[0m:~# {rng.choice(words)} -{rng.choice('alrv')} "
                f"/var/{rng.choice(words)}/{rng.choice(words)}\r\n")
    if kind < 0.6:
        return "".join(f"-rw-r--r-- 1 root root {rng.randint(1, 99999):>6} "
                       f"{rng.choice(words)}.{rng.choice(['log', 'conf', 'txt'])}\r\n"
                       for _ in range(rng.randint(1, 6)))
    text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 25))) + "\r\n"
    if rng.random() < 0.05:
        text = f"{COMMON}: " + text
    return text


BLOCKS = 20_000
FRESH = 0.15
"""Share of a recording's events written afresh for it (its own words and numbers); the
rest are drawn from BLOCKS shared bursts, which is what makes 10 GB quick to generate."""


def shared_blocks(rng: random.Random, words: list[str]) -> list[bytes]:
    """Bursts of output encoded once, as the recorder encodes them (``json_string_body``)."""
    return [json_string_body(output_text(rng, words).encode()) for _ in range(BLOCKS)]


def recording(rng: random.Random, words: list[str], blocks: list[bytes], size: int,
              rare: bool) -> bytes:
    """An asciicast v2 recording of about ``size`` bytes, line for line in the gateway
    recorder's format (header, then ``[seconds, "o", "text"]`` events)."""
    out = [b'{"version": 2, "width": 80, "height": 24, "timestamp": 1795000000, '
           b'"env": {"TERM": "xterm"}}\n']
    t, written = 0.0, 0
    random_, randrange, count = rng.random, rng.randrange, len(blocks)
    while written < size:
        t += random_() * 2
        if random_() < FRESH:
            body = json_string_body(output_text(rng, words).encode())
        else:
            body = blocks[randrange(count)]
        line = b'[%r, "o", "%s"]\n' % (round(t, 3), body)
        out.append(line)
        written += len(line)
    if rare:
        out.append(b'[%r, "o", "# grep %s /etc/hosts\\r\\n"]\n' % (round(t + 1, 3),
                                                                     RARE.encode()))
    return b"".join(out)


SPACING = timedelta(seconds=77)
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=90)


def populate(inst: Installation, sessions: int, corpus: int, seed: int,
             recorded: int) -> tuple[int, float]:
    """Session rows (bulk) and, for ``recorded`` of them, recordings; returns (bytes
    written, seconds)."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    blocks = shared_blocks(rng, words)
    started = time.perf_counter()
    recordings = inst.home.recordings_dir
    base = BASE
    per = max(200, corpus // recorded)
    every = max(1, sessions // recorded)
    total = 0
    rows = []
    for n in range(sessions):
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        path: Path | None = None
        data = b""
        if n % every == 0:
            path = recordings / f"{session_id}.cast"
            data = recording(rng, words, blocks, int(per * (0.5 + rng.random())),
                             rare=n % (every * 50) == 0)
            path.write_bytes(data)
            total += len(data)
        begin = base + n * SPACING
        rows.append({
            "id": session_id, "user_name": f"user{n % USERS}", "vm": f"vm{n % VMS:03d}",
            "identity_serial": "1f" * 10, "source": "10.0.0.1", "privileges": ["console.view"],
            "gateway_id": "bench", "started_at": begin, "heartbeat_at": begin,
            "ended_at": begin + timedelta(seconds=60 + n % 3600),
            "end_reason": "access withdrawn: revoked" if n % 97 == 0 else "user detached",
            "status": "abnormal" if n % 211 == 0 else "ended", "bytes_in": 100,
            "bytes_out": len(data), "recording_path": str(path) if path else None,
            "recording_sha256": None,
        })
        if len(rows) == 5000:
            with inst.database.write() as session:
                session.execute(insert(ConsoleSessionRow), rows)
            rows = []
    if rows:
        with inst.database.write() as session:
            session.execute(insert(ConsoleSessionRow), rows)
    return total, time.perf_counter() - started


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def timed(repeat: int, call: Callable[[], object]) -> tuple[float, float]:
    call()  # warm caches once, as a server that has been running would be
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def like_table(index_path: Path, scratch: Path) -> Path:
    """The indexed chunks copied into a plain table: the no-index baseline for search."""
    plain = scratch / "plain.sqlite"
    with sqlite3.connect(plain) as target:
        target.execute("CREATE TABLE chunks(text TEXT, session_id TEXT, vm TEXT)")
        target.execute("ATTACH DATABASE ? AS idx", (str(index_path),))
        target.execute("INSERT INTO chunks SELECT text, session_id, vm FROM idx.chunks")
        target.commit()
    return plain


def like_search(plain: Path, words: list[str]) -> Callable[[], object]:
    where = " AND ".join("text LIKE ?" for _ in words)

    def run() -> object:
        with sqlite3.connect(plain) as connection:
            return connection.execute(
                f"SELECT session_id FROM chunks WHERE {where} ORDER BY rowid DESC LIMIT 50",
                [f"%{w}%" for w in words]).fetchall()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--corpus-mb", type=int, default=1024)
    parser.add_argument("--recorded", type=int, default=None,
                        help="sessions with a recording (default: all)")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="processes reading recordings while one writes the index "
                             "(as `certgate web index` does; default: CPUs - 1)")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="directory for the throwaway installation (default: $TMPDIR)")
    parser.add_argument("--optimize", action="store_true",
                        help="merge the index's FTS5 segments before timing searches "
                             "(`certgate web index` does not)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="certgate-bench-web-", dir=args.scratch))
    home = Home(scratch / "home")
    create_installation(home, InitOptions(gateway_name="gw.bench"), passphrase=PASSPHRASE,
                        actor="bench")
    inst = Installation(home, actor="bench", passphrase=lambda: PASSPHRASE)
    try:
        for n in range(VMS):
            add_vm(inst, f"vm{n:03d}", "tcp:127.0.0.1:9", {"env": "lab" if n % 2 else "prod"})
        apply_policy(inst, POLICY, "bench-policy.yaml")
        people = scratch / "people"
        people.mkdir()
        auditor = add_person(inst, people, "auditor", "auditor")

        recorded = args.recorded or args.sessions
        corpus, gen_seconds = populate(inst, args.sessions, args.corpus_mb * 2**20, args.seed,
                                       recorded)
        print(f"generated {args.sessions:,} sessions, {corpus / 2**20:,.0f} MiB of recordings "
              f"in {gen_seconds:.0f} s", file=sys.stderr)
        site = build_site(inst)
        start = time.perf_counter()
        added = site.index.catch_up(inst.database, home.recordings_dir, workers=args.workers)
        index_seconds = time.perf_counter() - start
        index_bytes = sum(p.stat().st_size for p in site.index.path.parent.iterdir())
        optimize_seconds = site.index.optimize() if args.optimize else 0.0
        optimized_bytes = sum(p.stat().st_size for p in site.index.path.parent.iterdir())
        stats = site.index.stats()
        print(f"indexed {added:,} recordings ({stats.chunks:,} chunks) in "
              f"{index_seconds:.0f} s; index {index_bytes / 2**20:,.0f} MiB; optimize "
              f"{optimize_seconds:.0f} s, then {optimized_bytes / 2**20:,.0f} MiB",
              file=sys.stderr)

        token = signin.issue_link(inst.database, user="auditor",
                                  identity_serial=auditor.identity_serial)
        client = TestClient(create_app(site), base_url="https://localhost")
        client.post(f"/signin/{token}")
        vms = [f"vm{n:03d}" for n in range(VMS)]
        page = catalog.sessions_page(inst.database, catalog.SessionFilter(), vms)
        cursor = None
        for _ in range(19):
            page = catalog.sessions_page(inst.database, catalog.SessionFilter(), vms, cursor)
            cursor = page.next_cursor
        assert cursor is not None
        middle = BASE + args.sessions // 2 * SPACING
        day = middle.strftime("%Y-%m-%dT%H:%M")
        day_end = (middle + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        pages = [
            ("first page", {}, catalog.SessionFilter(), None),
            ("page 20 (cursor)", {"before": cursor.encode()}, catalog.SessionFilter(), cursor),
            ("user filter", {"user": "user7"}, catalog.SessionFilter(user="user7"), None),
            ("VM filter", {"vm": "vm042"}, catalog.SessionFilter(vm="vm042"), None),
            ("outcome abnormal", {"outcome": "abnormal"},
             catalog.SessionFilter(status="abnormal"), None),
            ("end reason 'revoked'", {"reason": "revoked"},
             catalog.SessionFilter(end_reason="revoked"), None),
            ("one-day window", {"since": day, "until": day_end},
             catalog.SessionFilter(since=datetime.fromisoformat(day + "+00:00"),
                                   until=datetime.fromisoformat(day_end + "+00:00")), None),
        ]
        results = []
        for label, params, filters, page_cursor in pages:
            response = client.get("/sessions", params=params)
            assert response.status_code == 200 and "data-session" in response.text, label
            web = timed(args.repeat, lambda p=params: client.get("/sessions", params=p))
            direct = timed(args.repeat, lambda f=filters, c=page_cursor: catalog.sessions_page(
                inst.database, f, vms, c))
            results.append(("sessions", label, web, direct))
        plain = like_table(site.index.path, scratch)
        for label, words in (("rare word", [RARE]), ("common word", [COMMON]),
                             ("two words", [COMMON, "root"]), ("no match", ["qqqqzzzz"])):
            text = " ".join(words)
            response = client.get("/search", params={"q": text})
            assert response.status_code == 200, label
            web = timed(args.repeat, lambda t=text: client.get("/search", params={"q": t}))
            baseline = timed(max(3, args.repeat // 8), like_search(plain, words))
            results.append(("search", label, web, baseline))
    finally:
        inst.close()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    print(f"\n{args.sessions:,} sessions ({recorded:,} with recordings), "
          f"{corpus / 2**20:,.0f} MiB of recordings "
          f"({stats.chunks:,} indexed chunks, index {index_bytes / 2**20:,.0f} MiB), "
          f"generated in {gen_seconds:.0f} s, indexed in {index_seconds:.0f} s "
          f"({corpus / 2**20 / index_seconds:.1f} MiB/s, {args.workers} reading processes) "
          f"{'+ optimize ' + format(optimize_seconds, '.0f') + ' s, ' if args.optimize else ''}"
          f"{args.repeat} requests each, "
          f"{os.cpu_count()} CPUs; uptime: {load.strip()}\n")
    print("| page | request | p50 ms | p95 ms | baseline p50 ms | baseline p95 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, label, (p50, p95), (b50, b95) in results:
        print(f"| {kind} | {label} | {p50:.1f} | {p95:.1f} | {b50:.1f} | {b95:.1f} |")


if __name__ == "__main__":
    main()
