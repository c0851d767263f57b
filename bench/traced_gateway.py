"""``certgate serve`` with tracemalloc on, for ``live_sessions.py --profile-memory``.

    CERTGATE_MEMORY_PROBE=DIR python bench/traced_gateway.py serve ...

Runs the same entry point as ``python -m certgate`` with ``tracemalloc.start(FRAMES)``. On
SIGUSR1 it writes ``DIR/probe-K.pickle`` (a tracemalloc snapshot) and ``DIR/probe-K.json``
(RSS, what tracemalloc traces, tracemalloc's own overhead, glibc's ``mallinfo2`` and
pymalloc's arena figures), K counting from 0, the JSON last so the reader can wait for it.
Not used by the gateway itself: a probe for the benchmark only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import re
import signal
import sys
import tempfile
import tracemalloc
from pathlib import Path
from types import FrameType

FRAMES = int(os.environ.get("CERTGATE_MEMORY_FRAMES", "30"))
"""Frames kept per allocation; 0 runs without tracemalloc (the figures as they are without
its overhead, and pymalloc's arena figures, which it hides)."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo() -> dict[str, int]:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    try:
        function = libc.mallinfo2
    except AttributeError:
        return {}
    function.restype = _MallInfo2
    info = function()
    # arena: bytes malloc took from the system with brk/sbrk (main arena), hblkhd: in mmap'd
    # blocks; uordblks: in use; fordblks: free but held.
    return {name: int(getattr(info, name)) for name in ("arena", "hblkhd", "uordblks",
                                                         "fordblks")}


def _pymalloc() -> dict[str, int]:
    """pymalloc's arenas, from ``sys._debugmallocstats`` (it prints to fd 2)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    figures = {}
    for key, pattern in (("arenas_bytes", r"Total\s+=\s+([\d,]+)"),
                         ("allocated_blocks_bytes", r"# bytes in allocated blocks\s+=\s+([\d,]+)"),
                         ("available_blocks_bytes", r"# bytes in available blocks\s+=\s+([\d,]+)")):
        match = re.search(pattern, text)
        if match:
            figures[key] = int(match.group(1).replace(",", ""))
    return figures


def _census() -> dict[str, list[int]]:
    """Count and shallow size (``sys.getsizeof``) of the gc-tracked objects, by type; an
    instance's ``__dict__`` is counted as a dict, which is where most of its size is."""
    census: dict[str, list[int]] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        entry = census.setdefault(name, [0, 0])
        entry[0] += 1
        entry[1] += sys.getsizeof(obj)
    return census


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    out = Path(os.environ["CERTGATE_MEMORY_PROBE"])
    count = 0

    def probe(_signum: int, _frame: FrameType | None) -> None:
        nonlocal count
        gc.collect()
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(out / f"probe-{count}.pickle"))
        traced, _peak = tracemalloc.get_traced_memory()
        figures = {"rss": _rss(), "traced": traced,
                   "tracemalloc_overhead": tracemalloc.get_tracemalloc_memory(),
                   "mallinfo": _mallinfo(), "pymalloc": _pymalloc(),
                   "gc_objects": len(gc.get_objects()), "types": _census()}
        # What malloc_trim would give back now (the gateway calls it once sessions stop
        # ending; a probe after that should find little).
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
        figures["rss_after_trim"] = _rss()
        partial = out / f"probe-{count}.json.part"
        partial.write_text(json.dumps(figures))
        partial.rename(out / f"probe-{count}.json")
        count += 1

    signal.signal(signal.SIGUSR1, probe)
    if FRAMES:
        tracemalloc.start(FRAMES)
    from certgate.cli.main import main as certgate_main

    sys.argv[0] = "certgate"
    certgate_main()


if __name__ == "__main__":
    main()


# -- the reading side (in live_sessions.py's process) ------------------------------------------

_STDLIB = (os.path.dirname(os.__file__),)


def _site(filename: str) -> str:
    """A frame's file, short: from the package root (``asyncssh/connection.py``)."""
    for marker in ("site-packages/", "/certgate/", "/ca/", "/lib/python3"):
        index = filename.rfind(marker)
        if index >= 0:
            tail = filename[index + len(marker):]
            if marker == "/lib/python3":
                tail = "stdlib/" + tail.split("/", 1)[-1]
            elif marker in ("/certgate/", "/ca/"):
                tail = marker.strip("/") + "/" + tail
            return tail
    return filename


def _owner(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame outside the standard library: whose code asked for the memory."""
    frames = list(traceback)  # oldest first
    for frame in reversed(frames):
        if not frame.filename.startswith(_STDLIB):
            return f"{_site(frame.filename)}:{frame.lineno}"
    return f"{_site(frames[-1].filename)}:{frames[-1].lineno}"


def _package(label: str) -> str:
    head = label.split("/", 1)[0]
    return head.split(":", 1)[0]


def wait_for_probe(out: Path, index: int, timeout: float = 120.0) -> dict[str, object]:
    import time

    deadline = time.monotonic() + timeout
    path = out / f"probe-{index}.json"
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the traced gateway wrote no {path}")
        time.sleep(0.1)
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def report(out: Path, before: int, after: int, sessions: int, top: int = 25) -> str:
    """What the ``sessions`` sessions opened between probe ``before`` and ``after`` hold,
    per session: RSS against what tracemalloc sees, then Python's allocations grouped by the
    code that asked for them (innermost frame outside the standard library), by package,
    and the largest allocation sites (innermost frame, any code)."""
    first, second = (json.loads((out / f"probe-{i}.json").read_text()) for i in (before, after))
    per = float(max(1, sessions))

    def delta(*keys: str) -> float:
        a: object = first
        b: object = second
        for key in keys:
            a = a.get(key, 0) if isinstance(a, dict) else 0
            b = b.get(key, 0) if isinstance(b, dict) else 0
        return (float(b) - float(a)) / per  # type: ignore[arg-type]

    kib = 1024.0
    lines = [
        f"memory profile: {sessions} sessions opened between two probes (tracemalloc, "
        f"{FRAMES} frames; per session, KiB)",
        f"  RSS growth                          {delta('rss') / kib:8.2f}",
        f"  RSS growth if trimmed at the probe  {delta('rss_after_trim') / kib:8.2f}",
        f"  tracemalloc's own tables            {delta('tracemalloc_overhead') / kib:8.2f}",
        f"  RSS less tracemalloc's tables       "
        f"{(delta('rss') - delta('tracemalloc_overhead')) / kib:8.2f}",
        f"  traced Python allocations           {delta('traced') / kib:8.2f}",
        f"  malloc in use (mallinfo uordblks)   {delta('mallinfo', 'uordblks') / kib:8.2f}"
        "   (includes tracemalloc's tables and Python blocks > 512 B)",
        f"  malloc free but held (fordblks)     {delta('mallinfo', 'fordblks') / kib:8.2f}",
        f"  pymalloc arenas                     {delta('pymalloc', 'arenas_bytes') / kib:8.2f}",
        f"  pymalloc allocated blocks           "
        f"{delta('pymalloc', 'allocated_blocks_bytes') / kib:8.2f}",
        f"  pymalloc available blocks           "
        f"{delta('pymalloc', 'available_blocks_bytes') / kib:8.2f}",
        f"  gc-tracked objects (count)          {delta('gc_objects'):8.1f}",
    ]
    kinds = {name: [count - first["types"].get(name, [0, 0])[0],
                    size - first["types"].get(name, [0, 0])[1]]
             for name, (count, size) in second.get("types", {}).items()}
    lines.append(f"  gc-tracked objects by type, top {top} (shallow KiB and count per session):")
    lines += [f"    {size / per / kib:8.2f} {count / per:7.1f}  {name}" for name, (count, size) in
              sorted(kinds.items(), key=lambda kv: -kv[1][1])[:top]]
    if not (out / f"probe-{after}.pickle").exists():
        return "\n".join(lines)
    old = tracemalloc.Snapshot.load(str(out / f"probe-{before}.pickle"))
    new = tracemalloc.Snapshot.load(str(out / f"probe-{after}.pickle"))
    owners: dict[str, float] = {}
    packages: dict[str, float] = {}
    counts: dict[str, float] = {}
    for stat in new.compare_to(old, "traceback"):
        label = _owner(stat.traceback)
        owners[label] = owners.get(label, 0) + stat.size_diff
        counts[label] = counts.get(label, 0) + stat.count_diff
        packages[_package(label)] = packages.get(_package(label), 0) + stat.size_diff
    lines.append("  by package of the code that asked (KiB per session):")
    lines += [f"    {size / per / kib:8.2f}  {name}" for name, size in
              sorted(packages.items(), key=lambda kv: -kv[1]) if abs(size / per) >= 16]
    lines.append(f"  top {top} by the code that asked (KiB and blocks per session):")
    lines += [f"    {size / per / kib:8.2f} {counts[name] / per:7.1f}  {name}" for name, size in
              sorted(owners.items(), key=lambda kv: -kv[1])[:top]]
    lines.append(f"  top {top} allocation sites (innermost frame; KiB per session):")
    for stat in new.compare_to(old, "lineno")[:top]:
        frame = stat.traceback[0]
        lines.append(f"    {stat.size_diff / per / kib:8.2f} {stat.count_diff / per:7.1f}  "
                     f"{_site(frame.filename)}:{frame.lineno}")
    return "\n".join(lines)


def tracebacks(out: Path, before: int, after: int, sessions: int, match: str,
               limit: int = 5) -> str:
    """Full tracebacks of the largest growths whose owner contains ``match`` (exploring)."""
    old = tracemalloc.Snapshot.load(str(out / f"probe-{before}.pickle"))
    new = tracemalloc.Snapshot.load(str(out / f"probe-{after}.pickle"))
    shown = []
    for stat in new.compare_to(old, "traceback"):
        if match in _owner(stat.traceback):
            shown.append(f"{stat.size_diff / max(1, sessions):.0f} B/session "
                         f"{stat.count_diff / max(1, sessions):.1f} blocks\n  "
                         + "\n  ".join(stat.traceback.format(most_recent_first=True)[:24]))
            if len(shown) >= limit:
                break
    return "\n".join(shown)
