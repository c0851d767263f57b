"""How fast are the review site's sessions page and recording search at scale?

    python bench/review_web.py --sessions 100000 --corpus-mb 10240 --repeat 30 \
        --scratch /work/bench-data

Builds a throwaway installation (SQLite, under --scratch) with --sessions console sessions
over 200 VMs and 500 users, each with an asciicast v2 recording in the gateway recorder's
format; together the recordings hold --corpus-mb of terminal output (prompts, commands,
listings, colour escape sequences, words from a 20,000-word vocabulary). Recordings are
composed from 20,000 output bursts encoded once plus 15 % of events written afresh for each
recording, by one process per CPU, so gigabytes take minutes. It times indexing them with
the real code (``SearchIndex.catch_up(workers=--workers)``, as ``certgate web index``
does), then requests pages through the real application (Starlette, a signed-in reviewer
holding audit.review, every request authenticated, policy-checked and audited as in
production; no TLS):

  sessions   first page; page 20 (keyset cursor); filtered by user, by VM, by outcome,
             by end-reason substring, by a one-day window
  search     a rare word, a common word, two words, a word that is not there

--recorded N gives only N of the sessions a recording (the same corpus in fewer, larger
files).

Baselines in the same run: for pages, the same listing query called directly (no web
layer); for search, the same words found with a LIKE scan over the same text stored in a
plain table (what searching without a full-text index costs); for indexing, the first
--index-sample recordings indexed the reference way (read_cast + chunks, one transaction
per recording) and the current way.
"""

from __future__ import annotations

import argparse
import multiprocessing
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

from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "web"))

import warnings

from review_samples import add_person

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from certgate.audit.recording import json_string
from certgate.audit.replay import read_cast
from certgate.fleet import add_vm, apply_policy
from certgate.home import Home
from certgate.installation import Installation
from certgate.provisioning import InitOptions, create_installation
from certgate.store.schema import ConsoleSessionRow
from certgate.web import catalog, signin
from certgate.web.app import create_app
from certgate.web.search_index import SearchIndex, _Pending, _read_all
from certgate.web.server import build_site
from certgate.web.terminal_text import chunks

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
    """Bursts of output encoded once, as the recorder encodes them (``json_string``)."""
    return [json_string(output_text(rng, words)) for _ in range(BLOCKS)]


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
            body = json_string(output_text(rng, words))
        else:
            body = blocks[randrange(count)]
        line = b'[%.3f, "o", %s]\n' % (t, body)
        out.append(line)
        written += len(line)
    if rare:
        out.append(b'[%.3f, "o", "# grep %s /etc/hosts\\r\\n"]\n' % (t + 1,
                                                                     RARE.encode()))
    return b"".join(out)


SPACING = timedelta(seconds=77)
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=90)


_WORDS: list[str] = []
_BLOCKS: list[bytes] = []


def write_recording(job: tuple[Path, int, int, bool]) -> int:
    """Write one recording (in a generator process); its own seed keeps the corpus the same
    whatever process writes it. Returns its size."""
    path, seed, size, rare = job
    data = recording(random.Random(seed), _WORDS, _BLOCKS, size, rare)
    path.write_bytes(data)
    return len(data)


def populate(inst: Installation, sessions: int, corpus: int, seed: int,
             recorded: int, processes: int) -> tuple[int, float]:
    """Session rows (bulk) and, for ``recorded`` of them, recordings written by
    ``processes`` processes; returns (bytes written, seconds)."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    _WORDS[:] = words
    _BLOCKS[:] = shared_blocks(rng, words)
    started = time.perf_counter()
    recordings = inst.home.recordings_dir
    per = max(200, corpus // recorded)
    every = max(1, sessions // recorded)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(sessions)]
    jobs = [(recordings / f"{ids[n]}.cast", rng.getrandbits(64), int(per * (0.5 + rng.random())),
             n % (every * 50) == 0) for n in range(0, sessions, every)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        sizes = dict(zip((job[0] for job in jobs),
                         pool.imap(write_recording, jobs, chunksize=64), strict=True))
    rows = []
    for n, session_id in enumerate(ids):
        path = recordings / f"{session_id}.cast" if n % every == 0 else None
        begin = BASE + n * SPACING
        rows.append({
            "id": session_id, "user_name": f"user{n % USERS}", "vm": f"vm{n % VMS:03d}",
            "identity_serial": "1f" * 10, "source": "10.0.0.1", "privileges": ["console.view"],
            "gateway_id": "bench", "started_at": begin, "heartbeat_at": begin,
            "ended_at": begin + timedelta(seconds=60 + n % 3600),
            "end_reason": "access withdrawn: revoked" if n % 97 == 0 else "user detached",
            "status": "abnormal" if n % 211 == 0 else "ended", "bytes_in": 100,
            "bytes_out": sizes[path] if path else 0,
            "recording_path": str(path) if path else None, "recording_sha256": None,
        })
        if len(rows) == 5000:
            with inst.database.write() as session:
                session.execute(insert(ConsoleSessionRow), rows)
            rows = []
    if rows:
        with inst.database.write() as session:
            session.execute(insert(ConsoleSessionRow), rows)
    return sum(sizes.values()), time.perf_counter() - started


def index_sample(inst: Installation, scratch: Path, count: int,
                 workers: int) -> tuple[float, float, int]:
    """Index the same ``count`` recordings twice into scratch indexes, timed: the reference
    way (``read_cast`` + ``chunks``, one transaction per recording: the code before the fast
    path) and the way ``catch_up`` does now. Returns (reference s, now s, bytes)."""
    with inst.database.read() as session:
        rows = session.execute(
            select(ConsoleSessionRow.id, ConsoleSessionRow.vm, ConsoleSessionRow.user_name,
                   ConsoleSessionRow.ended_at, ConsoleSessionRow.recording_path)
            .where(ConsoleSessionRow.recording_path.is_not(None))
            .order_by(ConsoleSessionRow.ended_at).limit(count)).all()
    todo = [_Pending(r[0], r[1], r[2], r[3], Path(r[4])) for r in rows
            if r[3] is not None and r[4] is not None]
    size = sum(item.cast.stat().st_size for item in todo)
    reference = SearchIndex(scratch / "sample-reference" / "index.sqlite")
    start = time.perf_counter()
    with reference.writing() as connection:
        for item in todo:
            chunk_rows = [(c.text, item.session_id, item.vm, c.t_start, c.t_end)
                          for c in chunks(read_cast(item.cast)[1])]
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("INSERT INTO chunks(text, session_id, vm, t_start, t_end) "
                                   "VALUES (?,?,?,?,?)", chunk_rows)
            connection.execute("INSERT OR REPLACE INTO recordings VALUES (?,?,?,?,?,?)",
                               (item.session_id, item.vm, item.user,
                                item.ended_at.isoformat(), len(chunk_rows), "now"))
            connection.execute("COMMIT")
    reference_seconds = time.perf_counter() - start
    fast = SearchIndex(scratch / "sample-now" / "index.sqlite")
    start = time.perf_counter()
    with fast.writing() as connection:
        fast._store(connection, todo, _read_all(todo, workers))
    now_seconds = time.perf_counter() - start
    for index in (reference, fast):
        shutil.rmtree(index.path.parent)
    return reference_seconds, now_seconds, size


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
    parser.add_argument("--workers", type=int, default=max(0, min(8, (os.cpu_count() or 1) - 1)),
                        help="processes reading recordings while this one writes the index; "
                             "0 reads them in the writer (as `certgate web index`; "
                             "default: CPUs - 1)")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="directory for the throwaway installation (default: $TMPDIR)")
    parser.add_argument("--index-sample", type=int, default=500,
                        help="recordings indexed both the reference way and the way "
                             "catch_up does, as the same-run baseline for indexing speed")
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
                                       recorded, os.cpu_count() or 1)
        print(f"generated {args.sessions:,} sessions, {corpus / 2**20:,.0f} MiB of recordings "
              f"in {gen_seconds:.0f} s", file=sys.stderr)
        sample = index_sample(inst, scratch, args.index_sample, args.workers)
        print(f"index sample: {sample[2] / 2**20:.0f} MiB; reference "
              f"{sample[2] / 2**20 / sample[0]:.1f} MiB/s, now "
              f"{sample[2] / 2**20 / sample[1]:.1f} MiB/s", file=sys.stderr)
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
    print(f"Indexing baseline (same {sample[2] / 2**20:.0f} MiB, {args.index_sample} recordings, "
          f"just before): reference reader {sample[2] / 2**20 / sample[0]:.1f} MiB/s, "
          f"now {sample[2] / 2**20 / sample[1]:.1f} MiB/s ({sample[0] / sample[1]:.1f}x)\n")
    print("| page | request | p50 ms | p95 ms | baseline p50 ms | baseline p95 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, label, (p50, p95), (b50, b95) in results:
        print(f"| {kind} | {label} | {p50:.1f} | {p95:.1f} | {b50:.1f} | {b95:.1f} |")


if __name__ == "__main__":
    main()
