"""Benchmark: the session recorder's CPU per 32 MiB of console output, whole and by step.

    python bench/recorder_cpu.py [--megabytes 32] [--chunk 262144] [--repeats 7]
                                 [--before-tree DIR] [--dir /tmp]

``bench/console_gateway.py`` counts the gateway's whole CPU for a bulk session; this script
isolates the part that neither baseline has: the tamper-evident asciicast recording of every
byte. It feeds ``AsciicastWriter.output`` the console payload of ``console_gateway.py`` in
chunks of ``--chunk`` bytes (256 KiB: what the gateway's socket consoles read under bulk
output), closes the recording (fsync) and counts the process's CPU time (user + system,
every thread). Then the steps on their own, on the same lines: turning the bytes into text
and escaping it, the SHA-256, and writing the file with its fsync.

``--before-tree DIR`` runs the whole-recorder measurement again with the recorder of another
checkout (e.g. ``git worktree add DIR COMMIT``), in a child process, in the same run.
Files go to a temporary directory under ``--dir`` (the gateway writes its recordings to
its home; pick the same file system).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD_LINE = b"console output line 0123456789 abcdefghijklmnopqrstuvwxyz\r\n"
"""The bulk console's line in ``console_gateway.py``."""


def chunks(megabytes: int, chunk: int) -> list[bytes]:
    unit = PAYLOAD_LINE * (chunk // len(PAYLOAD_LINE) + 1)
    count = (megabytes << 20) // chunk
    # Distinct objects, as a socket read returns fresh buffers.
    return [bytes(bytearray(unit[:chunk])) for _ in range(count)]


def cpu_of(action: Callable[[], object], repeats: int) -> list[float]:
    """CPU seconds (process time: every thread, user and system) of each run."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        action()
        times.append(time.process_time() - start)
    return times


def whole_recorder(directory: Path, data: list[bytes], repeats: int) -> list[float]:
    from certgate.audit.recording import AsciicastWriter

    counter = iter(range(10**9))

    def record() -> None:
        path = directory / f"r{next(counter)}.cast"
        with AsciicastWriter(path, width=80, height=24) as writer:
            for piece in data:
                writer.output(piece)
        path.unlink()

    return cpu_of(record, repeats)


def steps(directory: Path, data: list[bytes], repeats: int) -> dict[str, list[float]]:
    """The recorder's per-byte steps one at a time, on the lines it writes."""
    from certgate.audit.recording import json_string

    lines = [b'[1.000001, "o", ' + json_string(piece.decode("ascii")) + b"]\n"
             for piece in data]

    def escape() -> None:
        for piece in data:
            json_string(piece.decode("ascii"))

    def digest() -> None:
        state = hashlib.sha256()
        for line in lines:
            state.update(line)

    def write() -> None:
        path = directory / "w.cast"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for line in lines:
                os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
            path.unlink()

    return {"decode + escape (orjson)": cpu_of(escape, repeats),
            "SHA-256": cpu_of(digest, repeats),
            "write + fsync": cpu_of(write, repeats)}


def before_tree(tree: Path, options: argparse.Namespace) -> list[float]:
    """The whole-recorder figure with another checkout's recorder, in a child process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(
        [sys.executable, __file__, "--whole-only", "--megabytes", str(options.megabytes),
         "--chunk", str(options.chunk), "--repeats", str(options.repeats),
         "--dir", str(options.dir)],
        env=env, capture_output=True, text=True, check=True)
    answer = json.loads(result.stdout)
    if not Path(answer["module"]).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"the recorder came from {answer['module']}, not {tree}")
    times: list[float] = answer["times"]
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=256 * 1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--before-tree", type=Path, default=None, metavar="DIR")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--whole-only", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if not options.whole_only:
        sys.path.insert(0, str(ROOT))
    data = chunks(options.megabytes, options.chunk)
    scale = 32 / options.megabytes
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="cgrec-", dir=options.dir) as tmp:
        directory = Path(tmp)
        if options.whole_only:
            import certgate

            print(json.dumps({"module": certgate.__file__,
                              "times": whole_recorder(directory, data, options.repeats)}))
            return 0
        rows = {"recorder, whole (output + close)": whole_recorder(directory, data,
                                                                   options.repeats)}
        if options.before_tree is not None:
            rows[f"recorder of {options.before_tree}, whole"] = before_tree(
                options.before_tree, options)
        rows.update(steps(directory, data, options.repeats))
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{options.megabytes} MiB in {len(data)} chunks of {options.chunk} bytes, "
          f"{options.repeats} runs each, CPU per 32 MiB (process time); load average "
          f"{load_start} at the start, {load_end} at the end\n")
    print("| step | min | median |\n|---|---:|---:|")
    for name, times in rows.items():
        print(f"| {name} | {min(times) * scale * 1000:.1f} ms | "
              f"{statistics.median(times) * scale * 1000:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
